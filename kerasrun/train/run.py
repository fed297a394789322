"""run_experiment(experiment, run_dir): from a prepared experiment (train.experiment) to a finished run folder.

Training state goes through the `Trainer` interface (fit or custom loop alike), so checkpoints,
resume and the run folder's records are written once, here.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kerasrun._tf import keras, tf
from kerasrun.build import registry
from kerasrun.build.model import (
    build_training_state,
    output_names,
    summarize,
)
from kerasrun.config.resolved import config_to_yaml
from kerasrun.config.schema import Config
from kerasrun.data import Data, Split, make_dataset
from kerasrun.data.epochs import EpochClock
from kerasrun.data.feed import make_array_feed
from kerasrun.data.stream import cache_in, worker_share
from kerasrun.errors import DivergedError, KerasrunError, RunFailedError, graph_error
from kerasrun.integrations.tensorboard_events import tensorboard_callback
from kerasrun.rundir import checkpoints
from kerasrun.rundir.io import write_json_atomic, write_text_atomic
from kerasrun.rundir.layout import CACHE_DIR, CLASSES_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE, PREDICTIONS_FILE, SUMMARY_FILE
from kerasrun.rundir.liveness import resume_blocker, resume_command
from kerasrun.rundir.record import RunRecord
from kerasrun.runs.plot import write_run_curves
from kerasrun.train import checkpoint
from kerasrun.train.callbacks.checkpointer import Checkpointer
from kerasrun.train.callbacks.order import RunCallbacks
from kerasrun.train.callbacks.progress import make_progress
from kerasrun.train.callbacks.records import DivergenceGuard, HistoryWriter, RecordProgress
from kerasrun.train.checkpoint import CallbackStates, RestoreCallbackState
from kerasrun.train.experiment import Experiment
from kerasrun.train.launch import announce_run_dir
from kerasrun.train.memory import out_of_memory_hint
from kerasrun.train.metric_state import restore_metrics
from kerasrun.train.preemption import Preemption, PreemptionCheck, ResumeMidEpoch
from kerasrun.train.restart import slurm_job
from kerasrun.train.resume import ResumePlan
from kerasrun.train.signals import as_interrupted, on_forced_exit
from kerasrun.train.trainers.base import Trainer
from kerasrun.train.workers import describe_cluster


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    status: str
    history: dict[str, list[Any]]
    metrics: dict[str, float] | None
    warnings: list[str] = field(default_factory=list)  # for the command to show, e.g. why curves.png is missing
    notes: list[str] = field(default_factory=list)  # for the command to show, e.g. that the decoded-rows cache was removed


def run_experiment(
    experiment: Experiment,
    run_dir: Path,
    progress: str = "auto",
    command: list[str] | None = None,
    resume: ResumePlan | None = None,
    extra_callbacks: list[Any] | None = None,
    progress_stream: TextIO | None = None,
) -> RunResult:
    """Train, save and evaluate into `run_dir` — a new folder, or with `resume` the run's own folder.

    With output.mlflow, the MLflow run ends with the folder's final status, whichever way training ended.

    The folder records failure, interruption (with the signal) or divergence too; a checkpoint is
    written after every epoch (output.checkpoint) and on interruption, so `kerasrun resume` continues
    from the last completed epoch and ends with the uninterrupted run's bytes. `extra_callbacks` run
    after kerasrun's own (the epoch is recorded and checkpointed first): a sweep's pruning callback.
    Plain and JSON progress lines go to `progress_stream` (default: stdout).
    """
    config, model, data, trainer = experiment.config, experiment.model, experiment.data, experiment.trainer
    run_dir = Path(run_dir)
    state = resume.state if resume is not None else None
    history = HistoryWriter(run_dir / HISTORY_FILE, state.history if state is not None else None)
    guard = DivergenceGuard()
    timings = dict(experiment.timings)
    record: RunRecord | None = None
    checkpointer: Checkpointer | None = None
    bar: Any = None
    warnings: list[str] = []

    def epochs_done() -> int:
        return len(history.history["epoch"])

    def finish_quietly(status: str, **fields: Any) -> str | None:
        """Record the run's end if its record exists; the failure to do so, as text."""
        return record.try_finish(status, timings=timings, epochs_completed=epochs_done(), **fields) if record is not None else None

    def mark_forced(signum: int) -> None:
        """From the signal watchdog, when the main thread is stuck in TensorFlow: record the interruption."""
        finish_quietly("interrupted", signal=signal.Signals(signum).name, forced=True, **saved_at(checkpointer))

    with on_forced_exit(mark_forced), mlflow_run_ended(experiment, run_dir):
        try:
            record = open_record(experiment, run_dir, command, resume)
            if experiment.placement.is_chief:
                announce_run_dir(run_dir)  # under `kerasrun launch`: the workers' logs go to the run folder
            record.record_config(config_to_yaml(config, data.data_dir))
            if data.class_names is not None:  # what each label stands for: predictions are indices into this list
                write_json_atomic(run_dir / CLASSES_FILE, data.class_names)
            write_text_atomic(run_dir / SUMMARY_FILE, summarize(model))
            record.start_heartbeat()
            if experiment.tracker is not None and experiment.placement.is_chief:  # one MLflow run, not one per worker
                experiment.tracker.start(run_dir, resumed=resume is not None)
            if state is not None:
                history.save()  # epochs written after the checkpoint are trained again
            user_callbacks = [
                registry.resolve_callback(spec, run_dir, ("train", "callbacks", index)) for index, spec in enumerate(config.train.callbacks)
            ]
            states = CallbackStates(user_callbacks)  # as built: what training changes later is their state
            if state is not None:
                checkpoint.prepare_callbacks_for_resume(user_callbacks, state.epoch)
            if getattr(config.data, "cache", "none") in ("file", "keep"):  # decode streamed rows once, into the run folder
                data = cache_in(data, run_dir / CACHE_DIR)
            clock = EpochClock()
            batch = config.train.batch_size
            start = time.perf_counter()  # fit_s includes building the input pipelines, as fit's own array conversion does
            shuffle = data.shuffles_train(config.train.shuffle)
            # With steps_per_epoch the training data is an endless stream of passes: each epoch trains exactly that many steps.
            # The custom loop reads array data that way too, one pass per epoch (Trainer.one_stream_steps).
            per_epoch = config.train.steps_per_epoch or trainer.one_stream_steps(data.train, batch)
            if (share := worker_share(data.train, experiment.placement.peers)) is not None:
                train_ds = make_worker_dataset(share, trainer, data, config, output_names(model), clock)
            else:
                train_ds = make_dataset(data.train, batch, shuffle, config.seed, output_names(model), clock, per_epoch)
            val_ds = make_dataset(data.validation, batch, False, config.seed) if data.validation is not None else None
            if share is None and per_epoch is not None:  # the same batches, gathered inside the compiled call
                trainer.read_in_graph(
                    lambda: (
                        make_array_feed(data.train, batch, shuffle, config.seed, output_names(model)),
                        make_array_feed(data.validation, batch, False, config.seed),
                    )
                )
            with experiment.placement.scope():
                build_training_state(model, train_ds)
                restore = None
                if state is not None:
                    trainer.build_state(train_ds)
                    checkpoint.restore_variables(trainer.state_variables(), state)
                    restore = RestoreCallbackState(states, state)
                preemption = None
                if config.output.checkpoint:
                    spec = config.output.checkpoint
                    checkpointer = Checkpointer(run_dir, trainer.state_variables, states, history, spec.every, spec.keep)
                    preemption = make_preemption(checkpointer, trainer, run_dir)
                bar = make_progress(progress, progress_stream)
                callbacks = RunCallbacks(
                    user=user_callbacks,
                    restore=restore,
                    clock=clock.callback(),
                    guard=guard,
                    history=history,
                    tensorboard=tensorboard_callback(config, run_dir),
                    mlflow=experiment.tracker.callback() if experiment.tracker is not None else None,
                    checkpointer=checkpointer,
                    progress_record=RecordProgress(record, epochs_done),
                    display=bar,
                    extra=list(extra_callbacks or []),
                    preemption=PreemptionCheck(preemption) if preemption is not None else None,
                    resume_mid_epoch=mid_epoch_restorer(state, trainer, states) if state is not None and state.step else None,
                )
                with preemption.watching() if preemption is not None else nullcontext():
                    trainer.fit(
                        train_ds,
                        val_ds,
                        callbacks.ordered(),
                        resume.start_epoch if resume is not None else config.train.initial_epoch,
                        resume.start_step if resume is not None else 0,
                    )
            timings["fit_s"] = time.perf_counter() - start
            if checkpointer is not None:
                timings["checkpoint_s"] = checkpointer.seconds  # part of fit_s
            if guard.diverged_at is not None:
                note = finish_quietly("diverged", diverged_at=guard.diverged_at)
                message = (
                    f"the loss became NaN or inf at epoch {guard.diverged_at['epoch']}; history.json keeps the finite epochs ({run_dir})"
                )
                raise DivergedError(message + (f"; {note}" if note else ""))
            if config.output.save_model:
                save_model_atomic(model, run_dir / MODEL_FILE)
            start = time.perf_counter()
            metrics = evaluate_and_predict(trainer, data, config, run_dir)
            timings["evaluate_s"] = time.perf_counter() - start
            if config.output.curves:
                start = time.perf_counter()
                if note := write_run_curves(run_dir, history.history):
                    warnings.append(note)
                timings["curves_s"] = time.perf_counter() - start
        except KeyboardInterrupt as exc:
            if hasattr(bar, "stop"):
                bar.stop()  # a live display ends its line before the interruption is reported
            interrupted = as_interrupted(exc)
            flush_quietly(checkpointer, interrupted.notes)
            note = finish_quietly(interrupted.status, **interrupted.outcome(), **saved_at(checkpointer))
            interrupted.notes += [note] if note else []
            interrupted.not_resumable = resume_blocker(run_dir, record.info) if record is not None else None
            raise interrupted from None
        except DivergedError:
            raise
        except KerasrunError as exc:  # e.g. a ConfigError only training could find: the folder says so too
            note = finish_quietly("failed", error=f"{type(exc).__name__}: {exc}")
            if note:
                raise RunFailedError(f"{exc}; {note}") from exc
            raise
        except Exception as exc:
            what = failure_text(exc, config)
            note = finish_quietly("failed", error=what)
            also = f"; {note}" if note else ""
            if (
                record is not None and experiment.placement.is_chief and resume_blocker(run_dir, record.info) is None
            ):  # not a scratch folder
                also += f"; after fixing the cause, {resume_command(run_dir, record.info)} continues from its last checkpoint"
            raise RunFailedError(f"training failed: {what} (run folder {run_dir} is marked failed){also}") from exc
        record.finish("completed", timings=timings, epochs_completed=epochs_done(), metrics=metrics)
    cache = getattr(config.data, "cache", "none")
    note = settle_cache(run_dir / CACHE_DIR, keep=cache == "keep") if cache in ("file", "keep") else None
    notes = [note] if note else []
    return RunResult(run_dir, "completed", history.history, metrics, warnings, notes)


def settle_cache(folder: Path, keep: bool) -> str | None:
    """Remove a completed run's decoded-rows cache unless it is to be kept; where it is (or was), and its size, as a note."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    if not files:  # every split was in memory: nothing was cached
        shutil.rmtree(folder, ignore_errors=True)
        return None
    size = sum(path.stat().st_size for path in files) / 1e6
    if keep:
        return f"the decoded rows stay cached in {folder} ({size:.1f} MB; data.cache: keep)"
    # Nothing reads it once the run is complete: evaluate and predict decode afresh, and resume rebuilds it.
    shutil.rmtree(folder, ignore_errors=True)
    return f"removed the decoded rows cached in {folder} ({size:.1f} MB) now that the run is complete (data.cache: keep keeps them)"


def failure_text(exc: BaseException, config: Config) -> str:
    """What a training failure says: `Type: message`, or for a TensorFlow graph error one line with the op and the likely config key.

    TensorFlow's message holds the whole Python stack that defined the op; `--debug` shows it. A failure that
    memory likely caused says so (a MemoryError often has no message at all).
    """
    hint = out_of_memory_hint(exc)
    graph = graph_error(exc)
    if graph is None:
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return f"{said} ({hint})" if hint else said
    keys = {
        "metrics": [f"compile.{key}" for key in ("metrics", "weighted_metrics") if getattr(config.compile, key)],
        "loss": ["compile.loss"],
        "optimizer": ["compile.optimizer"],
        "model": ["model.layers" if config.model.layers else "model.factory"],
    }.get(graph.stage or "", [])
    likely = hint or (f"likely {' or '.join(keys)}" if keys else "")
    return f"{type(exc).__name__}: {graph.line} ({likely + '; ' if likely else ''}--debug shows TensorFlow's stack)"


@contextmanager
def mlflow_run_ended(experiment: Experiment, run_dir: Path) -> Iterator[None]:
    """End the experiment's MLflow run when the block ends, after run.json holds the final status (output.mlflow)."""
    try:
        yield
    finally:
        if experiment.tracker is not None:
            experiment.tracker.end(run_dir)


def make_worker_dataset(share: Any, trainer: Trainer, data: Data, config: Config, outputs: list[str], clock: EpochClock) -> Any:
    """This worker's own training batches when it reads its own files (data_sharding: file): per-replica batches, an endless stream.

    Its shards hold more or fewer rows than the others', so an epoch is a fixed number of global steps
    (train.steps_per_epoch, else one pass of the whole split: ceil(rows / batch_size)) and each worker
    reads its stream of passes over its own rows from epoch x steps on: every worker runs the same steps,
    and a resumed run reads what the uninterrupted run read.
    """
    placement = trainer.placement
    steps = config.train.steps_per_epoch or math.ceil(len(data.train) / config.train.batch_size)
    local_replicas = placement.replicas // placement.peers.count
    trainer.read_by_worker(steps, placement.peers.index)
    shuffle = data.shuffles_train(config.train.shuffle)
    per_replica = config.train.batch_size // placement.replicas
    # The stream ends with the run's last call (the loop reads whole calls of steps_per_execution steps): endless,
    # the prefetch after the last step would start the next pass and fill its shuffle buffer, a whole share (#19 item 8).
    spe = trainer.model.steps_per_execution
    per_epoch = math.ceil(steps / spe) * spe * local_replicas

    def until(epoch: Any) -> Any:
        return (config.train.epochs - epoch) * per_epoch

    return make_dataset(share, per_replica, shuffle, config.seed, outputs, clock, steps * local_replicas, until)


def open_record(experiment: Experiment, run_dir: Path, command: list[str] | None, resume: ResumePlan | None) -> RunRecord:
    """run.json for a new run, or the resumed run's own, taken over by this process.

    A resumed multi-worker run's other workers start a record of their own, in their scratch folder.
    """
    if resume is not None and experiment.placement.is_chief:
        checkpoints.remove_leftovers(run_dir)  # temp files of the killed process's unfinished writes
        record = RunRecord.reopen(run_dir, from_epoch=resume.state.epoch, command=command)
        if (
            cluster := describe_cluster(experiment.placement, experiment.data.train)
        ) is not None:  # the cluster that resumes it (another launcher, say)
            record.update(resumes=[*record.info["resumes"][:-1], {**record.info["resumes"][-1], "cluster": cluster}])
        return record
    config = experiment.config
    cluster = describe_cluster(experiment.placement, experiment.data.train)  # multi-worker only
    return RunRecord.start(
        run_dir,
        name=config.name,
        seed=config.seed,
        device=experiment.placement.device,
        command=command,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        placement=experiment.placement.describe(),
        deterministic=config.runtime.deterministic,
        precision=config.runtime.precision,
        loop=experiment.trainer.name,
        loop_chosen=experiment.trainer.chosen_because,
        init_from=experiment.init_from,
        **({"cluster": cluster} if cluster is not None else {}),
        **({"slurm": job} if (job := slurm_job()) else {}),  # a requeued job finds its run folder by it (train.restart)
    )


def make_preemption(checkpointer: Checkpointer, trainer: Trainer, run_dir: Path) -> Preemption:
    """Save on preemption into `checkpointer`: mid-epoch with the epoch's metric states, or the epoch's own checkpoint at its end.

    Under multi-worker the workers agree on the step through TensorFlow's PreemptionCheckpointHandler.
    """
    strategy = trainer.placement.strategy

    def save(epoch: int, step: int | None) -> None:
        if step is None:
            checkpointer.flush()
        else:
            checkpointer.save_mid_epoch(epoch, step, trainer.metric_variables(), strategy)

    multi_worker = trainer.config.runtime.strategy == "multi_worker"
    return Preemption(save, getattr(strategy, "cluster_resolver", None) if multi_worker else None, run_dir)


def mid_epoch_restorer(state: checkpoints.TrainingState, trainer: Trainer, states: CallbackStates) -> ResumeMidEpoch:
    """The callback that puts back a mid-epoch checkpoint's metric and callback states once its epoch has begun."""

    def restore() -> None:
        # Again after the epoch's on_epoch_begin, which ran before the checkpoint too: a LearningRateScheduler
        # would set the rate a second time, a callback drawing random numbers would draw them again.
        checkpoint.restore_variables(trainer.state_variables(), state)
        restore_metrics(state, trainer.metric_variables(state.meta.get("metrics")), trainer.placement.strategy)
        states.restore(state)

    return ResumeMidEpoch(state.epoch, restore)


def saved_at(checkpointer: Checkpointer | None) -> dict[str, int | None]:
    """run.json's fields for the newest checkpoint this process wrote: `checkpoint_epoch`, and `checkpoint_step` for a mid-epoch one."""
    if checkpointer is None:
        return {"checkpoint_epoch": None}
    return {
        "checkpoint_epoch": checkpointer.last_written,
        **({"checkpoint_step": checkpointer.last_step} if checkpointer.last_step else {}),
    }


def flush_quietly(checkpointer: Checkpointer | None, notes: list[str]) -> None:
    """On interruption, write the last completed epoch's checkpoint if it is still pending."""
    if checkpointer is None:
        return
    try:
        checkpointer.flush()
    except (OSError, KeyboardInterrupt) as exc:
        notes.append(f"could not write the checkpoint of the last completed epoch: {exc}")


def save_model_atomic(model: Any, path: Path) -> None:
    """Save `model.keras` under a temporary name first, so a crash never leaves half a model."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate_and_predict(trainer: Trainer, data: Data, config: Config, run_dir: Path) -> dict[str, float] | None:
    """Score the test split into metrics.json and save a few predictions, when there is test data."""
    if data.test is None:
        return None
    batch = config.evaluate.batch_size or config.train.batch_size
    test_ds = make_dataset(data.test, batch, False, config.seed)
    metrics = trainer.evaluate(test_ds, config.evaluate.steps)
    write_json_atomic(run_dir / METRICS_FILE, metrics)
    if config.evaluate.predict_samples and isinstance(data.test, Split):
        first = data.test.take(slice(0, config.evaluate.predict_samples))
        predictions = trainer.model.predict(first.x, verbose=0)
        write_json_atomic(run_dir / PREDICTIONS_FILE, {"targets": first.y, "predictions": predictions})
    return metrics
