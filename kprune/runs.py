"""A whole `kprune prune` run from a `RunConfig`: find the model and the data,
measure the start, prune, measure the end, write everything into the run dir.

Run dir contents: pruned.keras with pruned.card.json/.md, config.yaml (the
resolved config), report.json (per step, plus ``before``/``after`` on the test
split), history.json (replayable), the PNG plots, and checkpoint/;
while a run holds it, .kprune.lock (`kprune.pruning.runlock`).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path
from shlex import quote

from kprune import card
from kprune.config import RunConfig, dump_config
from kprune.criteria import get as get_criterion
from kprune.data import choose_preprocessing, load
from kprune.errors import FileWriteError, InvalidArgumentError
from kprune.files import replaced_atomically
from kprune.metrics import count_flops, count_params
from kprune.modelio import load_model, resolve_model_path
from kprune.pruning import checkpoint, runlock
from kprune.pruning.loop import prune
from kprune.pruning.report import write_run_files
from kprune.pruning.targets import check_requested
from kprune.training.distribute import is_chief, make_strategy, worker_dir
from kprune.training.setup import TrainingSetup


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{config.criterion}-{datetime.now():%Y%m%d-%H%M%S}"


def run_prune(
    config: RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    command: str | None = None,
) -> dict:
    """Prunes ``config.model`` as ``config`` says; returns report.json's content.

    ``command`` is recorded as the command that reproduces the run (default:
    this process's command line).

    The chief holds the run dir's lock (`kprune.pruning.runlock`) while it runs. A run
    that fails before its first checkpoint removes what it created in the run
    dir (never what was there before); a later failure keeps the last checkpoint
    for ``resume``.

    Raises:
        InvalidArgumentError, ModelFileError, DatasetNotFoundError: On bad input,
            before anything is written.
        RunDirInUseError: If another live run holds the run dir.
        FileWriteError: If the disk is full or the run dir not writable; the
            message says how to continue.
    """
    started = time.time()
    get_criterion(config.criterion)  # every check before anything is written
    if not config.has_target and config.max_accuracy_drop is None:
        raise InvalidArgumentError(
            "Give a target (--target-params, --target-flops, --target-filters, --target-latency or "
            "--latency-ms) or --max-accuracy-drop, so that pruning knows when to stop."
        )
    check_requested(config)
    model_path = resolve_model_path(config.model)
    if resume and run_dir is None:
        raise InvalidArgumentError("--resume needs --out RUN_DIR: the folder of the run to continue.")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if Path(model_path).exists() and Path(model_path).resolve().parent == run_dir.resolve():
        raise InvalidArgumentError(
            f"The run dir {run_dir} holds the input model; pick another --out so it is never overwritten."
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise InvalidArgumentError(f"The run dir {run_dir} is a file. Fix: give a folder as --out.")
    strategy = make_strategy(config.strategy)
    # Every worker runs the same loop; only the chief keeps what it writes, and locks.
    claim = runlock.claimed(run_dir) if is_chief(strategy) else contextlib.nullcontext()
    with claim, worker_dir(run_dir, strategy) as write_dir:
        try:
            report = _run(config, model_path, run_dir, write_dir, resume, strategy, started, command)
        except FileWriteError as error:
            raise FileWriteError(f"{error} {_how_to_continue(run_dir, command)}") from error
    report["run_dir"] = str(run_dir)
    return report


def _how_to_continue(run_dir: Path, command: str | None) -> str:
    """After a refused write: from where, and with which command, the run goes on."""
    step = (checkpoint.saved_state(run_dir) or {}).get("step")
    if step is None:
        return "Nothing of the run was kept (no step was saved); once that is fixed, run it again."
    if command is None:
        return f"The run is saved at step {step}; once that is fixed, continue it with resume=True."
    words = command.split()
    again = command + ("" if {"--out", "-o"} & set(words) else f" --out {quote(str(run_dir))}")
    again += "" if "--resume" in words else " --resume"
    return f"The run is saved at step {step}; once that is fixed, continue it with: {again}"


def _run(config, model_path, run_dir, write_dir, resume, strategy, started, command) -> dict:
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = load_model(model_path)
    shape = tuple(model.input_shape[1:])
    # The model's own input transform: --preprocess, else its card's, else raw pixels.
    chosen = choose_preprocessing(config.preprocess, model_path, shape)
    common = dict(
        input_shape=shape,
        data_dir=config.data_dir,
        limit=config.limit,
        preprocessing=chosen.preprocessing,
        strict_data=config.strict_data,
    )

    def train_stream(seed: int):
        return load(
            config.dataset, "train", batch_size=config.batch_size, augment=config.augment, seed=seed, **common
        )

    val = load(config.dataset, "val", batch_size=256, **common)
    test = load(config.dataset, "test", batch_size=256, **common)
    setup = TrainingSetup.for_model(model)
    setup.check(model, test, what="test")  # the data against the model, before anything is written
    with replaced_atomically(write_dir / "config.yaml") as temporary:
        dump_config(config, temporary)

    evaluate = setup.evaluate
    before = {
        **evaluate(model, test),
        "params": count_params(model),
        "flops": count_flops(model),
        "file_bytes": _file_size(model_path),
    }
    result = prune(
        model, train_stream, val, config.prune_config(), run_dir=run_dir, resume=resume, strategy=strategy
    )
    pruned_path = write_dir / "pruned.keras"
    after = {
        **evaluate(result.model, test),
        "params": count_params(result.model),
        "flops": count_flops(result.model),
        "file_bytes": _file_size(pruned_path),
    }
    report = {
        **result.report,
        "model": config.model,
        "dataset": config.dataset,
        "preprocess": chosen.name,
        "preprocessing": test.preprocessing.to_dict(),
        "test_split_note": test.note,
        "test_before": before,
        "test_after": after,
        "wall_time_s": round(time.time() - started, 1),
        "command": command or card.command_line(),
    }
    write_run_files(write_dir, report, result.history)
    card.write_card(
        pruned_path,
        {
            "model": result.model.name,
            "pruned_from": config.model,
            "dataset": config.dataset,
            "criterion": config.criterion,
            "test_accuracy": after["accuracy"],
            "test_accuracy_before": before["accuracy"],
            "params": after["params"],
            "params_before": before["params"],
            "flops": after["flops"],
            "flops_before": before["flops"],
            "preprocess": chosen.name,
            "preprocessing": test.preprocessing.to_dict(),
            "class_names": list(test.info.class_names),
            "stop_reason": result.report["stop_reason"],
            "seed": config.seed,
            "wall_time_s": report["wall_time_s"],
            "command": report["command"],
            "environment": card.environment(),
        },
    )
    return report


def _file_size(path) -> int | None:
    path = Path(path)
    return path.stat().st_size if path.is_file() else None
