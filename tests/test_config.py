from pathlib import Path

import pytest
import yaml

from kprune.config import QUICKSTART, PruneConfig, RunConfig, load_run_config
from kprune.errors import InvalidArgumentError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_states_its_command(path):
    config = load_run_config(path, {})
    assert isinstance(config, RunConfig)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# kprune prune") and path.name in first_line


def test_quickstart_file_matches_the_cli_defaults():
    assert yaml.safe_load(Path("configs/quickstart.yaml").read_text()) == QUICKSTART


def test_flags_override_the_file_and_none_is_ignored(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("criterion: l2\ntarget_params: 0.5\nfilters_per_step: 10\n")
    config = load_run_config(path, {"filters_per_step": 20, "criterion": None})
    assert (config.criterion, config.filters_per_step, config.target_params) == ("l2", 20, 0.5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("target_params: 0.5\nfilter_per_step: 3\n", r"`filter_per_step`: unknown key"),
        ("target_params: 1.2\n", r"`target_params`: Input should be less than 1.*Received target_params=1.2"),
        ("target_params: 0.5\nnormalize: max\n", r"`normalize`: Input should be 'l2' or 'none'"),
        ("- a\n- b\n", "must hold a mapping"),
        ("target_params: [0.5\n", "not valid YAML"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError, match=message):
        load_run_config(path, {})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidArgumentError, match="nope.yaml does not exist"):
        load_run_config(tmp_path / "nope.yaml", {})


def test_prune_config_is_the_run_config_minus_run_fields():
    run = RunConfig(target_flops=0.3, dataset="cifar10", batch_size=32)
    prune = run.prune_config()
    assert isinstance(prune, PruneConfig) and prune.target_flops == 0.3
    assert not hasattr(prune, "dataset")


def test_preprocess_is_validated_and_overridable(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preprocess: scale=1/255,mean=0.5,std=0.5\n")
    assert load_run_config(path, {}).preprocess == "scale=1/255,mean=0.5,std=0.5"
    assert load_run_config(path, {"preprocess": "raw"}).preprocess == "raw"
    assert RunConfig().preprocess is None  # the rule: the model card's, else raw pixels
    with pytest.raises(
        InvalidArgumentError,
        match=r"^Invalid options: `preprocess`: `preprocess` must "
        r"be raw, card, dataset or scale=S,mean=M,std=D. Received preprocess='std=0:'",
    ):
        load_run_config(None, {"preprocess": "std=0:"})


def test_a_target_flag_replaces_the_files_target(tmp_path):
    from kprune.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text("target_params: 0.9\nfilters_per_step: 32\n")
    config = load_run_config(path, {"target_latency": 0.75})
    assert config.target_latency == 0.75 and config.target_params is None
    assert config.filters_per_step == 32
    assert load_run_config(path, {"target_latency": None}).target_params == 0.9
