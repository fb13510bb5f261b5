"""``kprune prune``: iterative rank → remove → fine-tune to a target."""

from __future__ import annotations

import json
from pathlib import Path
from shlex import quote
from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import (
    DataDirOption,
    LimitOption,
    PreprocessOption,
    SeedOption,
    StrictDataOption,
    err,
    format_count,
    out,
    quiet_import,
    user_errors,
)

CRITERIA = "taylor, l2, combined, l1, l2_weight, bn_gamma, apoz or random"


def prune(
    ctx: typer.Context,
    criterion: Annotated[Optional[str], typer.Option("--criterion", "-c", help=CRITERIA)] = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="A .keras file (default: the shipped SqueezeNet baseline)."),
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", "-d", help="fashion_mnist, cifar10, folder:PATH.")
    ] = None,
    target_params: Annotated[
        Optional[float], typer.Option("--target-params", help="Fraction of parameters to remove, e.g. 0.7.")
    ] = None,
    target_flops: Annotated[
        Optional[float], typer.Option("--target-flops", help="Fraction of FLOPs to remove.")
    ] = None,
    target_filters: Annotated[
        Optional[float], typer.Option("--target-filters", help="Filters to remove (≥ 1) or a fraction.")
    ] = None,
    target_latency: Annotated[
        Optional[float],
        typer.Option("--target-latency", help="Fraction of the measured latency to remove, e.g. 0.75."),
    ] = None,
    latency_ms: Annotated[
        Optional[float],
        typer.Option("--latency-ms", help="Prune until the predicted latency is this many ms."),
    ] = None,
    latency_table: Annotated[
        Optional[str],
        typer.Option(
            "--latency-table",
            help="A table from `kprune profile` or the bundle's profiler (default: measure here).",
        ),
    ] = None,
    latency_runtime: Annotated[
        Optional[str],
        typer.Option("--latency-runtime", help="tflite or onnx, when the table is measured here."),
    ] = None,
    latency_threads: Annotated[
        Optional[int], typer.Option("--latency-threads", help="Threads, when the table is measured here.")
    ] = None,
    latency_quantize: Annotated[
        Optional[str],
        typer.Option(
            "--latency-quantize",
            help="TFLite precision the table is measured in here: none, float16 or int8 (prune for the int8 cost).",
        ),
    ] = None,
    latency_per_step: Annotated[
        Optional[float],
        typer.Option(
            "--latency-per-step",
            help="Share of the start latency a latency target's step removes at most (default 0.03).",
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        Optional[float],
        typer.Option("--max-accuracy-drop", help="Stop and roll back past this drop, in points."),
    ] = None,
    filters_per_step: Annotated[
        Optional[int],
        typer.Option(
            "--filters-per-step",
            help="Channels per step (default: --step-fraction of those that can still go; not for a latency target).",
        ),
    ] = None,
    step_fraction: Annotated[
        Optional[float],
        typer.Option(
            "--step-fraction",
            help="Share of the removable channels each step removes (default 0.05; not for a latency target).",
        ),
    ] = None,
    finetune_steps: Annotated[
        Optional[int],
        typer.Option(
            "--finetune-steps", help="Batches of fine-tuning per step (default: scaled to the data)."
        ),
    ] = None,
    final_finetune_epochs: Annotated[
        Optional[float],
        typer.Option(
            "--final-finetune-epochs",
            help="Epochs of the final fine-tune (default: 10, at most 10,000 batches, at least one epoch).",
        ),
    ] = None,
    rank_batches: Annotated[
        Optional[int], typer.Option("--rank-batches", help="Batches to rank on per step.")
    ] = None,
    round_to: Annotated[
        Optional[int], typer.Option("--round-to", help="Keep channel counts multiples of this.")
    ] = None,
    min_filters: Annotated[
        Optional[int], typer.Option("--min-filters", help="Filters every layer keeps.")
    ] = None,
    ignore: Annotated[
        Optional[str], typer.Option("--ignore", help="Comma-separated layers not to prune.")
    ] = None,
    optimizer: Annotated[
        Optional[str],
        typer.Option(
            "--optimizer", help="sgd, adam or adamw (default: the model's compiled optimizer, else sgd)."
        ),
    ] = None,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr", help="Fine-tuning learning rate (default: the compiled optimizer's, else 0.01)."
        ),
    ] = None,
    final_lr: Annotated[
        Optional[float], typer.Option("--final-lr", help="Learning rate of the final fine-tune.")
    ] = None,
    snapshots: Annotated[
        Optional[str],
        typer.Option(
            "--snapshots",
            help="Also save the model at these fractions of params removed (of FLOPs with --target-flops), e.g. 0.5,0.7.",
        ),
    ] = None,
    strategy: Annotated[
        Optional[str], typer.Option("--strategy", help="none, mirrored or multiworker.")
    ] = None,
    unsupported: Annotated[
        Optional[str], typer.Option("--unsupported", help="error, or freeze unknown layers.")
    ] = None,
    config: Annotated[
        Optional[str], typer.Option("--config", help="A YAML run config (see configs/); flags override it.")
    ] = None,
    out_dir: Annotated[
        Optional[str], typer.Option("--out", "-o", help="Run dir (default runs/CRITERION-TIME).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last step.")
    ] = False,
    monitor: Annotated[
        Optional[str],
        typer.Option(
            "--monitor", help="Metric the accuracy budget watches (default: the model's first metric)."
        ),
    ] = None,
    loss: Annotated[
        Optional[str], typer.Option("--loss", help="A Keras loss name replacing the model's compiled loss.")
    ] = None,
    distill: Annotated[
        Optional[bool],
        typer.Option(
            "--distill/--no-distill", help="Distill from the unpruned model while fine-tuning (default: on)."
        ),
    ] = None,
    distill_temperature: Annotated[
        Optional[float],
        typer.Option("--distill-temperature", help="Softmax temperature of distillation (default 4)."),
    ] = None,
    distill_weight: Annotated[
        Optional[float],
        typer.Option("--distill-weight", help="Weight of the teacher's term, 0..1 (default 0.5)."),
    ] = None,
    keep_within: Annotated[
        Optional[float],
        typer.Option(
            "--keep-within", help="Also keep the most-pruned model within this many points (default 1)."
        ),
    ] = None,
    chance_check: Annotated[
        bool,
        typer.Option(
            "--chance-check/--no-chance-check", help="Stop if the model scores near chance before pruning."
        ),
    ] = True,
    seed: Annotated[Optional[int], SeedOption] = None,
    data_dir: DataDirOption = None,
    limit: LimitOption = None,
    preprocess: PreprocessOption = None,
    strict_data: StrictDataOption = False,
):
    """Prune a model step by step to a target; with only --criterion, the quickstart."""
    quiet_import()
    with user_errors():
        from kprune import interrupts
        from kprune.card import command_line
        from kprune.config import QUICKSTART, TARGET_FIELDS, load_run_config
        from kprune.runs import default_run_dir, run_prune

        overrides = dict(
            criterion=criterion,
            model=model,
            dataset=dataset,
            target_params=target_params,
            target_flops=target_flops,
            target_filters=target_filters,
            target_latency=target_latency,
            latency_ms=latency_ms,
            latency_table=latency_table,
            latency_runtime=latency_runtime,
            latency_threads=latency_threads,
            latency_quantize=latency_quantize,
            latency_per_step=latency_per_step,
            max_accuracy_drop=max_accuracy_drop,
            filters_per_step=filters_per_step,
            step_fraction=step_fraction,
            optimizer=optimizer,
            distill=distill,
            distill_temperature=distill_temperature,
            distill_weight=distill_weight,
            keep_within=keep_within,
            finetune_steps=finetune_steps,
            final_finetune_epochs=final_finetune_epochs,
            rank_batches=rank_batches,
            round_to=round_to,
            min_filters_per_layer=min_filters,
            ignore=ignore.split(",") if ignore else None,
            learning_rate=lr,
            final_learning_rate=final_lr,
            snapshots=_fractions(snapshots),
            strategy=strategy,
            unsupported=unsupported,
            seed=seed,
            data_dir=data_dir,
            limit=limit,
            monitor=monitor,
            loss=loss,
            check_chance=None if chance_check else False,
            preprocess=preprocess,
            strict_data=strict_data or None,  # absent: the config file's
        )
        if any(overrides.get(t) is not None for t in TARGET_FIELDS):
            base = {k: v for k, v in QUICKSTART.items() if not k.startswith("target_")}
        else:
            base = QUICKSTART
        settings = load_run_config(config, overrides, defaults=None if config else base)
        _refuse_channel_steps_for_latency(settings, filters_per_step, step_fraction)
        # Named here (not in run_prune) so that a Ctrl-C can say where the run is.
        run_dir = out_dir if out_dir or resume else str(default_run_dir(settings))
        try:
            with interrupts.deferred():  # Ctrl-C and SIGTERM stop the run at its next batch
                report = run_prune(settings, run_dir=run_dir, resume=resume, command=command_line(ctx))
        except BaseException as error:  # Ctrl-C, also when TensorFlow wrapped it (a third one, at once)
            interrupt = _interrupt_in(error)
            if interrupt is None:
                raise
            _interrupted(run_dir, command_line(ctx), out_dir is None)
            raise typer.Exit(code=143 if isinstance(interrupt, interrupts.Terminated) else 130) from None
    _print_summary(report)


def _interrupt_in(error: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``error`` (itself, or what it was raised from), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _interrupted(run_dir: str, command: str, add_out: bool) -> None:
    """Says where a Ctrl-C left the run, and the command that continues it."""

    state = Path(run_dir) / "checkpoint" / "state.json"
    if not state.is_file():
        err.print(
            f"Interrupted before the first checkpoint: nothing to resume in {run_dir}.", highlight=False
        )
        return
    step = json.loads(state.read_text()).get("step", 0)
    resume = command + (f" --out {quote(run_dir)}" if add_out else "")
    resume += "" if "--resume" in command.split() else " --resume"
    err.print(
        f"Interrupted: the run in {run_dir} is saved at step {step}. Continue it with:\n  {resume}",
        highlight=False,
        soft_wrap=True,
    )


def _refuse_channel_steps_for_latency(settings, filters_per_step, step_fraction) -> None:
    """A latency target sizes its steps by latency, so a channel step size given here would
    do nothing: say so rather than ignore it."""
    from kprune.errors import InvalidArgumentError
    from kprune.pruning.targets import requested

    latency = (requested(settings) or ("",))[0] in ("latency", "latency_ms")
    given = [
        flag
        for flag, value in (("--filters-per-step", filters_per_step), ("--step-fraction", step_fraction))
        if value is not None
    ]
    if latency and given:
        raise InvalidArgumentError(
            f"`{given[0]}` does not apply to a latency target, whose steps remove up to a share of the "
            f"start latency. Fix: use --latency-per-step (now {settings.latency_per_step:g})."
        )


def _fractions(text: str | None) -> list[float] | None:
    if not text:
        return None
    from kprune.errors import InvalidArgumentError

    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(
            f"`--snapshots` must be fractions such as 0.5,0.7. Received {text!r}."
        ) from None


def _print_summary(report: dict) -> None:
    before, after = report["test_before"], report["test_after"]
    table = Table(title=f"{report['criterion']} pruning — test split of {report['dataset']}")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="right" if column else "left")
    for label, key, formatter in (
        ("parameters", "params", lambda v: f"{v:,}"),
        ("FLOPs", "flops", format_count),
        ("size on disk (.keras)", "file_bytes", lambda v: "-" if v is None else f"{v / 1e6:.2f} MB"),
    ):
        old, new = before[key], after[key]
        change = "" if not old or new is None else f"{100 * (new - old) / old:+.1f}%"
        table.add_row(label, formatter(old), formatter(new), change)
    table.add_row(
        "top-1 accuracy",
        f"{100 * before['accuracy']:.2f}%",
        f"{100 * after['accuracy']:.2f}%",
        f"{100 * (after['accuracy'] - before['accuracy']):+.2f} pts",
    )
    if report.get("target_row"):
        table.add_row(*report["target_row"])
    out.print(table)
    if report.get("within_budget"):
        from kprune.pruning.loop import over_budget_message

        out.print(over_budget_message(report["within_budget"], report["run_dir"]), soft_wrap=True)
    out.print(
        f"Stopped: {report['stop_reason']}. {len([s for s in report['steps'] if s['step'] and not s.get('phase')])} "
        f"steps in {report['wall_time_s']:.0f} s. Results in {report['run_dir']}/"
    )


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
