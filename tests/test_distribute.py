"""`kprune.training.distribute`: which strategy, who writes, what a TF_CONFIG must say."""

from types import SimpleNamespace

import pytest

from kprune.config import RunConfig
from kprune.errors import InvalidArgumentError
from kprune.runs import run_prune
from kprune.training.distribute import check_tf_config, is_chief, make_strategy


def _resolver(task_type, task_id, cluster):
    spec = SimpleNamespace(as_dict=lambda: cluster)
    return SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)


@pytest.mark.parametrize(
    "task_type, task_id, cluster, chief",
    [
        ("worker", 0, {"worker": ["a", "b"]}, True),
        ("worker", 1, {"worker": ["a", "b"]}, False),
        ("worker", 0, {"chief": ["c"], "worker": ["a"]}, False),
        ("chief", 0, {"chief": ["c"], "worker": ["a"]}, True),
    ],
)
def test_only_the_chief_writes(task_type, task_id, cluster, chief):
    strategy = SimpleNamespace(cluster_resolver=_resolver(task_type, task_id, cluster))
    assert is_chief(strategy) is chief
    assert is_chief(None) and is_chief(make_strategy("none"))


def test_mirrored_strategy_is_built():
    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync >= 1


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, r"needs \$TF_CONFIG, which is not set"),
        ("{cluster", r"\$TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}}', r'needs a "cluster" and a "task"'),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            r"task 'worker' index 2 is not in its cluster \{'worker': 2\}",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            r"task 'chief' index 0 is not in its cluster",
        ),
    ],
)
def test_a_multiworker_run_without_a_usable_tf_config_is_refused(tf_config, message, monkeypatch, tmp_path):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        make_strategy("multiworker")
    assert "\n" not in str(raised.value) and "Fix: export TF_CONFIG=" in str(raised.value)
    config = RunConfig(strategy="multiworker", target_params=0.5)
    with pytest.raises(InvalidArgumentError, match=message):
        run_prune(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_a_valid_tf_config_is_read():
    text = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
    assert check_tf_config(text)["task"] == {"type": "worker", "index": 1}
