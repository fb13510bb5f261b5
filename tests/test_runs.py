from types import SimpleNamespace

import pytest

from kprune.runs import is_chief, make_strategy


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
