"""Typed, validated run configuration.

`PruneConfig` holds what `kprune.prune()` needs; `RunConfig` adds what the
CLI needs to find the model and the data. YAML files in configs/ are
`RunConfig`s: unknown keys are refused, CLI flags override file values, and
every run writes its resolved config next to its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kprune import baselines
from kprune.data.preprocess import check_preprocess
from kprune.errors import InvalidArgumentError

TARGET_FIELDS = ("target_params", "target_flops", "target_filters", "target_latency", "latency_ms", "target")


class PruneConfig(BaseModel):
    """How to prune: criterion, target, step size, fine-tuning.

    Targets are fractions removed: ``target_params=0.7`` removes 70% of the
    parameters. ``target_filters`` is a number of filters when ≥ 1, else a
    fraction of the prunable filters. ``max_accuracy_drop`` is in points of
    validation top-1 accuracy (1.0 = one percentage point) — or, with
    ``monitor``, of that metric ×100 (for a loss, an increase). ``snapshots``
    lists fractions of parameters removed at which the model (before the final
    fine-tune) is also saved, as ``snapshots/params-NN.keras`` in the run dir —
    of FLOPs removed, as ``snapshots/flops-NN.keras``, when the target is
    ``target_flops``.
    ``loss``/``metrics`` (Keras names) replace the model's compiled ones;
    ``monitor`` names the metric the budget watches (default: the first
    metric). ``check_chance`` stops a run whose model scores near chance on
    the validation data before pruning (wrong preprocessing or labels?).
    ``deterministic`` turns TF op determinism on during the run (and restores
    it after), which makes a resumed run equal an uninterrupted one.

    Latency targets: ``target_latency=0.6`` removes 60% of the model's
    latency, ``latency_ms=0.15`` prunes until it runs in 0.15 ms — on the
    runtime of ``latency_table`` (a file from ``kprune profile`` or the
    bundle's profiler), or, without one, of a table measured here at the
    start of the run with ``latency_runtime``, ``latency_threads`` and
    ``latency_quantize``. Selection then weighs scores against the latency
    each removal saves and keeps channel counts at the table's tile step.
    A step of a latency target removes up to ``latency_per_step`` of the
    start latency (``filters_per_step`` does not apply: the cheap time is in
    the layers with few channels).

    ``target={"name": value}`` prunes to a target registered with
    `kprune.register_target` (the built-in ones by name too: ``params``,
    ``flops``, ``filters``, ``latency``, ``latency_ms``); ``target_options``
    are for its factory, which reads them from the config it is given.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    criterion: str = "taylor"
    criterion_options: dict[str, Any] = Field(default_factory=dict)
    target_params: Optional[float] = Field(None, gt=0, lt=1)
    target_flops: Optional[float] = Field(None, gt=0, lt=1)
    target_filters: Optional[float] = Field(None, gt=0)
    target_latency: Optional[float] = Field(None, gt=0, lt=1)
    latency_ms: Optional[float] = Field(None, gt=0)
    target: Optional[dict[str, float]] = None  # {registered target name: value}
    target_options: dict[str, Any] = Field(default_factory=dict)  # read by that target's factory
    latency_table: Optional[str] = None
    latency_runtime: Literal["tflite", "onnx"] = "tflite"
    latency_threads: int = Field(1, ge=1)
    latency_quantize: Literal["none", "float16", "int8"] = "none"
    latency_per_step: float = Field(0.03, gt=0, le=1)
    max_accuracy_drop: Optional[float] = Field(None, ge=0)
    # None: each step removes step_fraction of the channels that can still go.
    filters_per_step: Optional[int] = Field(None, ge=1)
    step_fraction: float = Field(0.05, gt=0, le=1)
    rank_batches: int = Field(20, ge=1)
    normalize: Literal["l2", "none"] = "l2"
    flops_weight: float = Field(0.0, ge=0)
    min_filters_per_layer: int = Field(1, ge=1)
    round_to: Optional[int] = Field(None, ge=1)
    ignore: list[str] = Field(default_factory=list)
    unsupported: Literal["error", "freeze"] = "error"
    # None: scaled to the data (kprune.training.recovery): batches per step, epochs at the end.
    finetune_steps: Optional[int] = Field(None, ge=0)
    final_finetune_epochs: Optional[float] = Field(None, ge=0)
    val_batches: Optional[int] = Field(None, ge=1)
    # None: the model's compiled optimizer and its learning rate, else SGD
    # (Nesterov momentum) at 0.01; every fine-tune decays it to zero (cosine).
    optimizer: Optional[Literal["sgd", "adam", "adamw"]] = None
    learning_rate: Optional[float] = Field(None, gt=0)
    final_learning_rate: Optional[float] = Field(None, gt=0)
    weight_decay: float = Field(5e-4, ge=0)  # kprune's SGD and AdamW
    # Knowledge distillation from the unpruned model during every fine-tune: on by
    # default, as it kept more accuracy on every model of scripts/experiments/bench_defaults.py.
    distill: bool = True
    distill_temperature: float = Field(4.0, gt=0)
    distill_weight: float = Field(0.5, ge=0, le=1)
    # Keep the most-pruned model whose validation drop stays within this many points.
    keep_within: Optional[float] = Field(1.0, ge=0)
    snapshots: list[float] = Field(default_factory=list)
    seed: int = 0
    # The training setup: None takes what the model was compiled with
    # (else sparse categorical cross-entropy and accuracy).
    loss: Optional[str] = None
    metrics: Optional[list[str]] = None
    monitor: Optional[str] = None
    check_chance: bool = True
    deterministic: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> PruneConfig:
        targets = [t for t in TARGET_FIELDS if getattr(self, t) is not None]
        if len(targets) > 1:
            raise ValueError(f"give one target, not {len(targets)}: {', '.join(targets)}")
        if self.target is not None and len(self.target) != 1:
            raise ValueError(f"target names one target, as {{name: value}}; got {self.target}")
        if any(not 0 < s < 1 for s in self.snapshots):
            raise ValueError(f"snapshots must be fractions in (0, 1), got {self.snapshots}")
        return self

    @property
    def has_target(self) -> bool:
        return any(getattr(self, t) is not None for t in TARGET_FIELDS)

    @property
    def snapshot_measure(self) -> Literal["params", "flops"]:
        """What the ``snapshots`` fractions count: FLOPs for a FLOPs target, else parameters."""
        flops = self.target_flops is not None or (self.target is not None and "flops" in self.target)
        return "flops" if flops else "params"


class RunConfig(PruneConfig):
    """A whole `kprune prune` run: the pruning settings plus model, data and output.

    ``preprocess`` is the input transform (see `kprune.data.choose_preprocessing`):
    None for the rule — the model card's, else raw pixels 0..255 as Keras'
    loaders give —, or ``raw``, ``card``, ``dataset``, ``scale=S,mean=M,std=D``.
    ``strict_data`` refuses a ``folder:PATH`` file that cannot be decoded
    instead of skipping it with a note.
    """

    model: str = baselines.DEFAULT  # the shipped baseline, found from any folder
    dataset: str = "fashion_mnist"
    data_dir: Optional[str] = None
    batch_size: int = Field(64, ge=1)
    augment: bool = True
    limit: Optional[int] = Field(None, ge=1)
    preprocess: Optional[str] = None
    strict_data: bool = False
    out: Optional[str] = None
    strategy: Literal["none", "mirrored", "multiworker"] = "none"

    @field_validator("preprocess")
    @classmethod
    def _valid_preprocess(cls, value: Optional[str]) -> Optional[str]:
        return check_preprocess(value)

    def prune_config(self) -> PruneConfig:
        """The `PruneConfig` part of this run."""
        return PruneConfig(**{k: getattr(self, k) for k in PruneConfig.model_fields})


# What `kprune prune --criterion X` does with no other option: prune the shipped
# SqueezeNet baseline on Fashion-MNIST by 70% of its parameters in minutes on
# 2 CPU cores. configs/quickstart.yaml holds the same values (a test checks).
QUICKSTART: dict[str, Any] = {
    "model": baselines.DEFAULT,
    "dataset": "fashion_mnist",
    "target_params": 0.7,
    "rank_batches": 10,
    "val_batches": 8,
    "batch_size": 64,
    "augment": True,
}


def make_config(cls: type[BaseModel], values: dict[str, Any], source: str = "config") -> Any:
    """Validates ``values`` into ``cls``; one readable error on failure.

    Raises:
        InvalidArgumentError: Naming each bad key, its problem and the value.
    """
    try:
        return cls(**values)
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            key = ".".join(str(part) for part in issue["loc"]) or "config"
            message = issue["msg"].replace("Extra inputs are not permitted", "unknown key")
            message = message.removeprefix("Value error, ").rstrip(".")
            # A message from kprune's own checks already echoes the value.
            echoed = not issue["loc"] or "Received" in message
            received = "" if echoed else f" Received {key}={issue['input']!r}."
            problems.append(f"`{key}`: {message}.{received}")
        raise InvalidArgumentError(f"Invalid {source}: " + " ".join(problems)) from None


def load_run_config(
    path: str | Path | None, overrides: dict[str, Any], defaults: dict[str, Any] | None = None
) -> RunConfig:
    """``defaults``, then a YAML file (optional), then CLI overrides (None ones ignored).

    A target among the overrides replaces the file's target (a run has one).

    Raises:
        InvalidArgumentError: Missing or malformed file, unknown keys, bad values.
    """
    values: dict[str, Any] = dict(defaults or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InvalidArgumentError(f"Config file {path} does not exist.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise InvalidArgumentError(f"Config file {path} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InvalidArgumentError(f"Config file {path} must hold a mapping of keys to values.")
        values.update(loaded or {})
    if any(overrides.get(name) is not None for name in TARGET_FIELDS):
        for name in TARGET_FIELDS:
            values.pop(name, None)
    values.update({key: value for key, value in overrides.items() if value is not None})
    return make_config(RunConfig, values, source=f"config {path}" if path else "options")


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Writes the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
