"""`prune()`: rank → remove the globally weakest channels → fine-tune → repeat.

Each step ranks the channels of the current model, removes the lowest
(``filters_per_step`` of them, or by default ``step_fraction`` of those that
can still go; see `kprune.pruning.selection` and `kprune.training.recovery`), fine-tunes
(optionally distilling from the unpruned model, `kprune.training.distill`) and
evaluates on validation data. The loop stops at the target (fraction of
parameters or FLOPs removed, or filters removed) or when validation accuracy
falls more than ``max_accuracy_drop`` points below the start; that last step
is then rolled back, as is a step that leaves the outputs the same for every
input (a network pruned dead), which ends the run too. A final fine-tune
follows. When the end is more than
``keep_within`` points below the start, the most-pruned model that stayed
within it is kept too (``within-Npt.keras``) and the report says so.

Every step draws its randomness from ``seed + step`` alone and ends with an
atomic checkpoint, so a run killed at any point and resumed gives the same
result as an uninterrupted one (given deterministic data: pass a callable
``seed -> dataset`` as ``train_data``, as the CLI does).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from kprune import interrupts
from kprune.card import environment
from kprune.config import PruneConfig, make_config
from kprune.criteria import get as get_criterion
from kprune.data import as_dataset, batches_per_epoch
from kprune.errors import InvalidArgumentError, TrainingDivergedError
from kprune.graph import analyze
from kprune.graph.rebuild import flatten_model
from kprune.history import PruningHistory
from kprune.modelio import save_model
from kprune.progress import PruneProgress
from kprune.pruning import checkpoint, runlock
from kprune.pruning.ranking import rank_groups
from kprune.pruning.report import step_record, write_run_files
from kprune.pruning.selection import removable_channels, select
from kprune.pruning.targets import TargetContext, check_requested, initial_size, make_target, target_names
from kprune.surgery import remove_filters
from kprune.training import recovery
from kprune.training.checks import check_data, non_finite_weights, output_spread
from kprune.training.determinism import deterministic, seed_everything
from kprune.training.distill import Distillation
from kprune.training.distribute import is_chief, worker_dir
from kprune.training.setup import TrainingSetup, TrainSettings

# A step whose outputs vary across a validation batch less than this share of the unpruned
# model's pruned the network dead. Seed 1 of the fp32 board run fell to 1.6e-4 (softmax
# outputs 0.0002 apart, validation at chance); a working model's spread is of order 1.
DEAD_SPREAD = 1e-3


@dataclass
class PruneResult:
    """What `prune()` returns.

    Attributes:
        model: The pruned, fine-tuned model.
        history: The removals, replayable on the original model.
        report: Per-step records and totals (what report.json holds).
        run_dir: Where checkpoints and reports were written, if anywhere.
        within_budget: When the result ends more than ``keep_within`` points
            below the start: the most-pruned step that stayed within it
            (``step``, ``val_drop``, ``params_removed``, ``flops_removed`` and
            ``file``, its model in ``run_dir``; replay the first ``step``
            removals of ``history`` to rebuild it without a run dir). Else None.
    """

    model: keras.Model
    history: PruningHistory
    report: dict
    run_dir: Path | None = None
    within_budget: dict | None = None


@dataclass
class _State:
    model: keras.Model
    step: int
    history: PruningHistory
    records: list[dict] = field(default_factory=list)
    stop_reason: str | None = None  # why pruning stopped; None while it goes on
    finished: bool = False  # the final fine-tune is done
    within: dict | None = None  # the most-pruned step within keep_within points


def prune(
    model: keras.Model,
    train_data: Any,
    val_data: Any,
    config: PruneConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: bool = True,
    setup: TrainingSetup | None = None,
    loss: Any = None,
    metrics: Any = None,
    optimizer: Any = None,
    finetune: Callable | None = None,
    **options,
) -> PruneResult:
    """Prunes ``model`` step by step to a target; the input model is not modified.

    Ranking, fine-tuning and the accuracy budget use the model's training
    setup: the loss, loss weights and metrics it was compiled with (sparse
    categorical cross-entropy and accuracy when it is not compiled), and
    ``monitor`` (default: its first metric) for the budget.

    Args:
        model: A functional or Sequential model; nested sub-models (e.g. a
            ``keras.applications`` backbone) are flattened into the result.
        train_data: Batches for ranking and fine-tuning: anything
            ``model.fit`` takes (`kprune.data.as_dataset`), or a callable
            ``seed -> data`` called once per step (needed for a resumed run to
            equal an uninterrupted one).
        val_data: Batches for the accuracy budget and the report (data that
            can be read more than once).
        config: A `kprune.PruneConfig`; ``**options`` override its fields.
        run_dir: Folder for checkpoints, report.json, history.json, plots.
            Under a multi-worker strategy only the chief writes there; the
            other workers write to a temporary folder, removed at the end.
            The run holds its lock, ``run_dir/.kprune.lock`` (`kprune.pruning.runlock`).
        resume: Continue the run saved in ``run_dir`` from its last complete
            step (every worker reads it there).
        strategy: A ``tf.distribute`` strategy for ranking and fine-tuning
            (see docs/DISTRIBUTED.md).
        callbacks: Keras callbacks passed to every fine-tuning ``fit``.
        progress: Show a progress bar.
        setup: A whole `TrainingSetup` (then ``loss``, ``metrics``,
            ``optimizer`` and ``finetune`` are not taken).
        loss: Replaces the compiled loss: a Keras loss, or a list/dict of
            them by output.
        metrics: Replaces the compiled metrics.
        optimizer: A ``keras.optimizers.Optimizer`` for fine-tuning (a fresh
            copy each time), or a name of `PruneConfig.optimizer`.
        finetune: ``(model, data, steps) -> model``: your own fine-tune
            (distillation, a custom ``train_step``…) instead of kprune's.
        **options: `PruneConfig` fields, e.g. ``criterion="combined"``,
            ``target_params=0.7``, ``monitor="val_auc"``.

    Returns:
        A `PruneResult`.

    Raises:
        InvalidArgumentError: Bad options (named with their value), or resume
            without a checkpoint.
        TrainingDivergedError: A NaN or infinite loss; the last good
            checkpoint stays in ``run_dir``.
        RunDirInUseError: Another live run holds ``run_dir``.

    Example:
        >>> result = kprune.prune(model, train, val, criterion="taylor", target_params=0.7)
    """
    config, objects = _resolved_options(config, options, loss=loss, metrics=metrics, optimizer=optimizer)
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume and run_dir is None:
        raise InvalidArgumentError("`resume=True` needs the `run_dir` of the run to continue.")
    strategy = strategy or tf.distribute.get_strategy()
    setup = setup or _training_setup(model, config, objects, finetune)
    if config.distill:
        setup = replace(setup, distillation=Distillation(config.distill_temperature, config.distill_weight))
    writes = worker_dir(run_dir, strategy) if run_dir is not None else contextlib.nullcontext(None)
    with _run_dir_lock(run_dir, strategy), deterministic(config.deterministic), writes as write_dir:
        loop = _Loop(
            config, setup, model, train_data, val_data, run_dir, write_dir, strategy, callbacks, progress
        )
        return loop.run(resume)


def _resolved_options(config: PruneConfig | None, options: dict, **given: Any) -> tuple[PruneConfig, dict]:
    """The run's `PruneConfig` (``config`` overridden by ``options``, and by ``loss``,
    ``metrics`` and ``optimizer`` given as names), and the ones given as objects.

    Raises:
        InvalidArgumentError: A bad option, no target, or an unknown criterion.
    """
    base = config.model_dump() if config is not None else {}
    # Names go into the (serializable) config; objects straight into the setup.
    names = {k: v for k, v in given.items() if isinstance(v, str) and k != "metrics"}
    if _names(given["metrics"]):
        names["metrics"] = list(given["metrics"])
    objects = {k: v for k, v in given.items() if v is not None and k not in names}
    config = make_config(PruneConfig, {**base, **names, **options}, source="prune options")
    if not config.has_target and config.max_accuracy_drop is None:
        raise InvalidArgumentError(
            "Give a target (target_params, target_flops, target_filters, target_latency, latency_ms, "
            f"or target={{name: value}} with a registered name: {', '.join(target_names())}) "
            "or max_accuracy_drop, so that pruning knows when to stop."
        )
    get_criterion(config.criterion)  # unknown names fail before any work
    check_requested(config)
    return config, objects


def _training_setup(model: keras.Model, config: PruneConfig, objects: dict, finetune) -> TrainingSetup:
    """The model's compiled optimizer (class, hyperparameters, learning rate) unless one is
    named or given; SGD at 0.01 for a model that is not compiled; the compiled loss and
    metrics unless others are given."""
    compiled = recovery.compiled_optimizer(model)
    if config.optimizer is not None or objects.get("optimizer") is not None:
        compiled = None
    learning_rate = config.learning_rate or (
        recovery.initial_learning_rate(compiled) if compiled is not None else recovery.DEFAULT_LEARNING_RATE
    )
    settings = TrainSettings(
        optimizer=config.optimizer or recovery.DEFAULT_OPTIMIZER,
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        warmup_epochs=0.0,
    )
    return TrainingSetup.for_model(
        model,
        settings,
        loss=objects.get("loss", config.loss),
        metrics=objects.get("metrics", config.metrics),
        optimizer=objects.get("optimizer"),
        monitor=config.monitor,
        finetune_fn=finetune,
        optimizer_template=compiled,
    )


def _run_dir_lock(run_dir: Path | None, strategy) -> contextlib.AbstractContextManager:
    """The run dir's lock, held by the chief for the run (`kprune prune` already holds it)."""
    if run_dir is None or not is_chief(strategy) or runlock.held_by_this_thread(run_dir):
        return contextlib.nullcontext()
    return runlock.claimed(run_dir)


def _names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)


class _Loop:
    """One pruning run; `run` reads as the algorithm, the pieces below it."""

    def __init__(
        self, config, setup, model, train_data, val_data, run_dir, write_dir, strategy, callbacks, progress
    ):
        self.config = config
        self.setup = setup
        self.original = model
        self.train_data = train_data
        self.val_data = val_data
        self.run_dir = run_dir  # read on resume
        self.write_dir = write_dir  # run_dir, or a non-chief worker's temporary folder
        self.strategy = strategy
        self.callbacks = list(callbacks)
        self.progress = progress
        self.started = time.time()
        self.monitor = setup.monitor_name(model)
        self.higher_is_better = setup.higher_is_better(model)
        graph = analyze(model, unsupported=config.unsupported)
        self.initial = initial_size(model, graph)
        self.target = make_target(config, TargetContext(model, graph, config, run_dir, progress))
        if self.target is not None:
            self.initial.setdefault(self.target.name, self.target.initial)
        self.display = PruneProgress(False)

    # --- the algorithm ----------------------------------------------------------
    def run(self, resume: bool) -> PruneResult:
        state = self._resume() if resume else self._start()  # _start plans the lengths
        if resume:
            self._plan_lengths()  # before any report: it records them
        if state.finished:
            return self._result(state)
        self._probe = self._dead_network_probe()
        if self.setup.distillation is not None:
            self.setup = replace(self.setup, teacher=self._teacher())
        with PruneProgress(self.progress) as self.display:
            if self.progress:
                self.display.log(self.setup.describe())
                self.display.log(self.setup.describe_finetuning())
                self.display.log(self._plan(state))
            self._show(state)
            while state.stop_reason is None:
                interrupts.check()
                self._step(state)
            self._final_finetune(state)
            self._show(state)
            over = self._over_budget(state)
            if over is not None and self.progress:
                self.display.log(over_budget_message(over, self.write_dir))
        return self._result(state)

    def _step(self, state: _State) -> None:
        """rank → select → remove → fine-tune → evaluate → keep or roll back → record."""
        config, step = self.config, state.step + 1
        if self.target is not None and self.target.reached(state.model):
            state.stop_reason = "target reached"
            return
        started = time.time()
        seed_everything(config.seed + step)
        with self.strategy.scope():
            graph = analyze(state.model, unsupported=config.unsupported)
            scores = self._rank(state.model, graph, step)
            removal = self._select(state.model, graph, scores)
            if not removal:
                state.stop_reason = "nothing left to prune within min_filters_per_layer/round_to/ignore"
                return
            candidate = remove_filters(state.model, removal, graph=graph)
            candidate = self._finetune(
                candidate, step, self.finetune_steps, self.setup.settings.learning_rate
            )
        record = self._record(candidate, removal, started, step)
        drop = self._drop(state.records[0], record)
        collapse = self._collapse(candidate, step, state.step)
        if collapse or (config.max_accuracy_drop is not None and drop > config.max_accuracy_drop):
            record["rolled_back"] = True
            state.records.append(record)
            state.stop_reason = collapse or (
                f"accuracy budget: step {step} dropped {drop:.2f} points > "
                f"{config.max_accuracy_drop}; rolled back to step {state.step}"
            )
            self._checkpoint(state)
            return
        measure = f"{config.snapshot_measure}_removed"
        previous = state.records[-1][measure]
        state.model, state.step = candidate, step
        state.history.append(removal)
        state.records.append(record)
        self._save_snapshots(state.model, previous, record[measure])
        self._keep_within(state, drop)
        self._checkpoint(state)
        self._show(state)

    def _dead_network_probe(self) -> tuple[Any, float]:
        """One validation batch and how much the unpruned model's outputs vary across it,
        to tell a step that pruned the network dead (`_collapse`)."""
        batch = next(iter(as_dataset(self.val_data)))
        return batch, output_spread(self.original, batch)

    def _collapse(self, candidate, step: int, previous: int) -> str | None:
        """Why the step is undone when it left a network whose outputs (almost) no longer
        depend on its input: across one validation batch they vary less than ``DEAD_SPREAD``
        of the unpruned model's. Pruned dead (its layers kept only always-zero channels),
        nothing brings it back: its gradients, and so its Taylor scores, are all but zero."""
        batch, spread = self._probe
        if spread <= 0 or output_spread(candidate, batch) > DEAD_SPREAD * spread:
            return None
        return (
            f"step {step} left the model's outputs the same for every input (a network pruned dead); "
            f"rolled back to step {previous}. A smaller step (step_fraction, latency_per_step) or "
            "min_filters_per_layer may get further"
        )

    def _final_finetune(self, state: _State) -> None:
        """The last, longer fine-tune; its model is kept only if validation did not get worse."""
        config = self.config
        started = time.time()
        before, weights_before = state.model, None
        if self.final_steps > 0 and state.step > 0:
            weights_before = before.get_weights()  # fine-tuning trains the model in place
            step = state.step + 1
            seed_everything(config.seed + step)
            total = self.final_steps
            with self.strategy.scope():
                state.model = self._finetune(
                    state.model, step, total, self._final_learning_rate(), label="final fine-tune"
                )
        final = self._record(state.model, {}, started, state.step)
        last = next(record for record in reversed(state.records) if not record.get("rolled_back"))
        if weights_before is not None and self._drop(last, final) > 0:
            self.display.log(
                f"The final fine-tune lowered validation {last['monitor']} from {last['val_monitor']:.4f} to "
                f"{final['val_monitor']:.4f}: kept the model from before it."
            )
            before.set_weights(weights_before)
            state.model = before
            final = {**self._record(before, {}, started, state.step), "final_finetune_discarded": True}
        final["phase"] = "final"
        state.records.append(final)
        state.finished = True
        self._checkpoint(state)

    # --- the pieces -------------------------------------------------------------
    def _rank(self, model, graph, step: int) -> dict:
        config = self.config
        return rank_groups(
            model,
            self._train_stream(step),
            config.criterion,
            graph=graph,
            normalize=config.normalize,
            flops_weight=config.flops_weight,
            num_batches=config.rank_batches,
            seed=config.seed + step,
            setup=self.setup,
            strategy=self.strategy,
            **config.criterion_options,
        )

    def _select(self, model, graph, scores) -> dict[str, list[int]]:
        target = self.target
        count = self._channels_per_step(graph)
        if target is None:
            return select(graph, scores, count, **self._select_options())
        return target.choose(model, graph, scores, count, **self._select_options())

    def _select_options(self) -> dict:
        config = self.config
        return dict(
            min_per_group=config.min_filters_per_layer, round_to=config.round_to, ignore=tuple(config.ignore)
        )

    def _channels_per_step(self, graph) -> int:
        """``filters_per_step``, else ``step_fraction`` of the channels that can still go."""
        if self.config.filters_per_step is not None:
            return self.config.filters_per_step
        removable = sum(removable_channels(graph, **self._select_options()).values())
        return recovery.channels_per_step(removable, self.config.step_fraction)

    def _plan_lengths(self) -> None:
        """Fine-tune lengths: the config's, else scaled to the batches in an epoch."""
        config = self.config
        batches = batches_per_epoch(self.train_data, self._train_stream(0))
        self.finetune_steps = (
            config.finetune_steps if config.finetune_steps is not None else recovery.finetune_steps(batches)
        )
        if config.final_finetune_epochs is not None:
            epoch = batches or recovery.UNKNOWN_EPOCH
            self.final_steps = int(round(config.final_finetune_epochs * epoch))
            if config.final_finetune_epochs > 0:
                self.final_steps = max(1, self.final_steps)
        else:
            self.final_steps = recovery.final_finetune_steps(batches)

    def _final_learning_rate(self) -> float:
        return self.config.final_learning_rate or self.setup.settings.learning_rate

    def _plan(self, state: _State) -> str:
        """The run's plan in one line: about how many steps, of what size, and the fine-tune lengths."""
        graph = analyze(state.model, unsupported=self.config.unsupported)
        removable = removable_channels(graph, **self._select_options())
        count = self._channels_per_step(graph)
        if self.target is not None and self.target.step_size() is not None:
            size = self.target.step_size()
        elif self.config.filters_per_step is None:
            size = (
                f"{count} channel{'s' * (count != 1)} ({100 * self.config.step_fraction:g}% of the "
                f"{sum(removable.values())} that can still go)"
            )
        else:
            size = f"{count} channel{'s' * (count != 1)} (filters_per_step)"
        total = sum(removable.values()) or 1
        per_group = {index: count * n / total for index, n in removable.items()}
        steps = (
            ""
            if self.target is None
            else (
                "about "
                f"{self.target.estimated_steps(state.model, graph, per_group, self.config.filters_per_step is None)}"
                " more steps of "
            )
        )
        return (
            f"Plan: {steps}{size} each, {self.finetune_steps} fine-tune batches per step, "
            f"{self.final_steps} in the final fine-tune."
        )

    def _teacher(self) -> keras.Model:
        """The unpruned model, frozen: a copy, so that the user's model is never touched."""
        with self.strategy.scope():
            flat = flatten_model(self.original)
            teacher = keras.models.clone_model(flat)
            teacher.set_weights(flat.get_weights())
        teacher.trainable = False
        return teacher

    def _keep_within(self, state: _State, drop: float) -> None:
        """Keeps the most-pruned model so far whose drop stays within ``keep_within``."""
        limit = self.config.keep_within
        if limit is None or drop > limit:
            return
        last = state.records[-1]
        state.within = {
            "step": state.step,
            "val_drop": round(drop, 4),
            "params_removed": last["params_removed"],
            "flops_removed": last["flops_removed"],
            "file": None,
        }
        if self.write_dir is not None:
            name = f"within-{limit:g}pt.keras"
            save_model(state.model, self.write_dir / name)
            state.within["file"] = name

    def _train_stream(self, step: int) -> tf.data.Dataset:
        if callable(self.train_data) and not isinstance(self.train_data, tf.data.Dataset):
            return as_dataset(self.train_data(self.config.seed + step))
        return as_dataset(self.train_data)

    def _finetune(self, model, step, steps, learning_rate, label="fine-tune") -> keras.Model:
        if steps <= 0:
            return model
        callbacks = [*self.callbacks]
        bar = self.display.finetune_callback(f"step {step} {label}", steps)
        if bar is not None:
            callbacks.append(bar)
        try:
            return self.setup.finetune(
                model, self._train_stream(step), steps, learning_rate=learning_rate, callbacks=callbacks
            )
        except TrainingDivergedError as error:
            where = f" The last good checkpoint is in {self.run_dir}." if self.run_dir else ""
            raise TrainingDivergedError(
                f"Fine-tuning stopped at pruning step {step}: {error}{where}"
            ) from None

    def _evaluate(self, model) -> dict:
        data = as_dataset(self.val_data)
        if self.config.val_batches:
            data = data.take(self.config.val_batches)
        return self.setup.evaluate(model, data)

    def _record(self, model, removal, started: float, step: int) -> dict:
        metrics = self._evaluate(model)
        if self.monitor not in metrics:
            raise InvalidArgumentError(
                f"`monitor` {self.monitor!r} is not a metric of this model; its metrics: "
                f"{', '.join(k for k in metrics if k != 'examples')}. Fix: pass one of them as monitor=."
            )
        record = step_record(
            model, removal, metrics, time.time() - started, step, self.initial, self.started, self.monitor
        )
        if self.target is not None:
            for key, value in self.target.record(model).items():
                record.setdefault(key, value)
        return record

    def _drop(self, start: dict, now: dict) -> float:
        """How much worse the monitored metric got since the start, ×100 (points)."""
        change = start["val_monitor"] - now["val_monitor"]
        return 100.0 * (change if self.higher_is_better else -change)

    # --- persistence and display ------------------------------------------------
    def _start(self) -> _State:
        seed_everything(self.config.seed)
        broken = non_finite_weights(self.original)
        if broken:
            raise InvalidArgumentError(
                f"Model {self.original.name!r} holds NaN or infinite weights (layer(s) {', '.join(broken[:5])}): "
                "there is nothing to prune. Fix: give the model from before its training diverged."
            )
        self.setup.check(self.original, self._train_stream(0))
        check_data(as_dataset(self.val_data), "validation")
        with self.strategy.scope():
            model = flatten_model(self.original)  # nested sub-models inlined, once
            if model is self.original:
                model = keras.models.clone_model(self.original)
                model.set_weights(self.original.get_weights())
        state = _State(model=model, step=0, history=PruningHistory(model_name=self.original.name))
        state.records.append(self._record(model, {}, time.time(), 0))
        if self.config.check_chance:
            problem = self.setup.near_chance(model, state.records[0]["val_metrics"], self.monitor)
            if problem:
                raise InvalidArgumentError(problem)
        self._plan_lengths()  # after the data checks: it counts the training batches
        self._checkpoint(state)
        return state

    def _checkpoint(self, state: _State) -> None:
        if self.write_dir is None:
            return
        checkpoint.save(
            self.write_dir,
            state.model,
            {
                "step": state.step,
                "history": state.history.to_dict(),
                "records": state.records,
                "stop_reason": state.stop_reason,
                "finished": state.finished,
                "within": state.within,
                "config": self.config.model_dump(),
                "initial": self.initial,
            },
        )
        write_run_files(self.write_dir, self._report(state), state.history)

    def _save_snapshots(self, model, before: float, after: float) -> None:
        """Saves the model when this step crossed a snapshot fraction."""
        if self.write_dir is None:
            return
        for fraction in self.config.snapshots:
            if before < fraction <= after:
                name = f"{self.config.snapshot_measure}-{round(100 * fraction):02d}.keras"
                save_model(model, self.write_dir / "snapshots" / name)

    def _resume(self) -> _State:
        saved = checkpoint.load(self.run_dir)
        if saved is None and self.write_dir != self.run_dir:
            raise InvalidArgumentError(
                f"This worker finds no checkpoint in {self.run_dir} to resume from. Fix: put the "
                "run dir on storage every worker reads at the same path, or copy the chief's "
                f"{self.run_dir / checkpoint.FOLDER} to this host."
            )
        if saved is None:
            raise InvalidArgumentError(
                f"Nothing to resume in {self.run_dir}: it has no checkpoint. Fix: run "
                "without --resume to start, or give the run dir of an earlier run."
            )
        model, saved_state = saved
        if saved_state["config"] != self.config.model_dump():
            changed = sorted(
                k for k, v in self.config.model_dump().items() if saved_state["config"].get(k) != v
            )
            raise InvalidArgumentError(
                f"The run in {self.run_dir} used other settings ({', '.join(changed)}). "
                "Fix: resume with the same config, or start a new run dir."
            )
        with self.strategy.scope():
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
        return _State(
            model=copy,
            step=saved_state["step"],
            history=PruningHistory.from_dict(saved_state["history"]),
            records=saved_state["records"],
            stop_reason=saved_state["stop_reason"],
            finished=saved_state["finished"],
            within=saved_state.get("within"),
        )

    def _report(self, state: _State) -> dict:
        return {
            "criterion": self.config.criterion,
            "config": self.config.model_dump(),
            "initial": self.initial,
            "steps": state.records,
            "stop_reason": state.stop_reason,
            "finished": state.finished,
            "within_budget": self._over_budget(state),
            # what the defaults resolved to, so that a report says how long it fine-tuned
            "fine_tuning": {
                "description": self.setup.describe_finetuning(),
                "batches_per_step": self.finetune_steps,
                "final_batches": self.final_steps,
                "learning_rate": self.setup.settings.learning_rate,
                "final_learning_rate": self._final_learning_rate(),
            },
            # the end-of-run table's row for the target, where it is not params or FLOPs
            "target_row": None
            if self.target is None
            else self.target.summary(state.records[0], state.records[-1]),
            "wall_time_s": round(time.time() - self.started, 1),
            "environment": environment(),
        }

    def _result(self, state: _State) -> PruneResult:
        report = self._report(state)
        if self.write_dir is not None:
            save_model(state.model, self.write_dir / "pruned.keras")
            write_run_files(self.write_dir, report, state.history, plots=True)
        within = report.get("within_budget")
        return PruneResult(state.model, state.history, report, self.run_dir, within)

    def _over_budget(self, state: _State) -> dict | None:
        """The kept within-budget step, when the end is more than ``keep_within`` points down."""
        limit = self.config.keep_within
        if limit is None or not state.finished or len(state.records) < 2:
            return None
        drop = self._drop(state.records[0], state.records[-1])
        if drop <= limit:
            return None
        return {
            **(state.within or {"step": 0, "val_drop": 0.0, "file": None}),
            "final_val_drop": round(drop, 4),
            "limit": limit,
        }

    def _show(self, state: _State) -> None:
        last = state.records[-1]
        done = 1.0 if state.finished else (0.0 if self.target is None else self.target.progress(state.model))
        self.display.update(
            done,
            (
                f"step {state.step}  filters {sum(last['filters'].values())}  "
                f"params -{100 * last['params_removed']:.1f}%  val {self.monitor} {last['val_monitor']:.4f}"
            ),
        )
        if last["step"] and self.progress:
            note = self.target.note(last) if self.target is not None else ""
            self.display.log(
                f"step {last['step']}{' (final)' if last.get('phase') else ''}: "
                f"params -{100 * last['params_removed']:.1f}%  FLOPs -{100 * last['flops_removed']:.1f}%  "
                + (f"{note}  " if note else "")
                + f"val {self.monitor} {last['val_monitor']:.4f}  ({last['seconds']:.0f} s)"
            )


def over_budget_message(over: dict, run_dir: Path | None) -> str:
    """What to say when the end is more than ``keep_within`` points below the start."""
    limit = f"{over['limit']:g} point{'s' if over['limit'] != 1 else ''}"
    head = f"Reaching the target cost {over['final_val_drop']:.2f} points on validation, more than {limit}"
    if not over.get("step"):
        return f"{head}, and no pruning step stayed within {limit}: the input model is the one within it."
    if over.get("file") and run_dir is not None:
        return (
            f"{head}. The target's model: {Path(run_dir) / 'pruned.keras'}. The most-pruned "
            f"model within {limit}: {Path(run_dir) / over['file']} (step {over['step']}, "
            f"before the final fine-tune, val drop {over['val_drop']:.2f})."
        )
    return (
        f"{head}. Step {over['step']} was the last within {limit} (val drop "
        f"{over['val_drop']:.2f}): replay that many steps of the history to rebuild it."
    )
