"""`train.loop: custom`: a compiled tf.GradientTape loop that gives exactly the numbers `model.fit` gives.

It mirrors Keras 3's TensorFlow trainer step for step: one training-mode forward pass per step, the loss
from `model.compute_loss` (regularization and `add_loss` terms, sample weights, `loss_weights`),
`optimizer.scale_loss` for mixed precision, `optimizer.apply`, a batch-size-weighted loss tracker,
compiled metrics through `model.compute_metrics`, several steps per `tf.function` call, and callbacks
through `keras.callbacks.CallbackList`. A user step (`train.step: module:function`) can replace the
loss and gradient computation while this loop keeps everything else.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from kerasrun import keras_private
from kerasrun._tf import keras, tf
from kerasrun.data.arrays import Split
from kerasrun.data.feed import ArrayFeed, gather_batch
from kerasrun.train.trainers.base import Trainer, cap_steps, evaluate_model

StepFn = Callable[..., Mapping[str, Any]]


def unpack(data: Any) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) from a dataset element of 1, 2 or 3 parts."""
    if not isinstance(data, tuple):
        return data, None, None
    return (tuple(data) + (None, None))[:3]


def batch_size_of(x: Any) -> Any:
    """The number of samples in a batch (the first dimension of the first input), as Keras weighs it."""
    first = next(t for t in tf.nest.flatten(x) if t is not None)
    return tf.shape(first)[0]


def unscale_for_replicas(loss: Any) -> Any:
    """Keras scales a replica's loss by 1/replicas so gradients sum to the global mean; the tracker wants it whole."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def check_step_signature(step: Any) -> str | None:
    """None when `step(model, x, y, sample_weight, training=...)` can be called; else what is wrong."""
    if not callable(step):
        return f"expected a function, got {type(step).__name__}"
    try:
        inspect.signature(step).bind(None, None, None, None, training=True)
    except TypeError as exc:
        return f"must accept (model, x, y, sample_weight, training): {exc}"
    except ValueError:
        return None  # builtins without a signature: trust them
    return None


def convert_user_step(step: StepFn) -> StepFn:
    """The user's step with AutoGraph applied (tensor-dependent `if`/`for` work as in a tf.function).

    AutoGraph converts what a converted function calls, whatever it is (function, bound method,
    functools.partial, callable object), so the step is called from a small converted wrapper.
    """

    def call_user_step(model: Any, x: Any, y: Any, sample_weight: Any, training: bool) -> Mapping[str, Any]:
        return step(model, x, y, sample_weight, training=training)

    return tf.autograph.to_graph(call_user_step)


class CustomLoop:
    """Trains a compiled model with kerasrun's own compiled loop (or a user step) and Keras callbacks."""

    def __init__(self, model: Any, steps_per_execution: int, step: StepFn | None = None, strategy: Any = None) -> None:
        self.model = model
        self.steps_per_execution = steps_per_execution
        # User code gets AutoGraph, as inside a tf.function; the loop's own code needs none (see run_chunk).
        self.user_step = convert_user_step(step) if step is not None else None
        self.strategy = strategy  # under tf.distribute, each step runs on every replica with strategy.run
        self.pipeline: int | None = None  # multi-worker, sharded by file: this worker's input pipeline id (its training data is its own)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.user_trackers: dict[str, Any] = {}
        self.chunk_logs: dict[str, Any] | None = None  # what the last compiled chunk since the last reset returned
        # autograph=False: converting this module's functions (and what they call) took ~1 s per run.
        self.train_chunk = tf.function(self.run_train_chunk, reduce_retracing=True, autograph=False)
        self.test_chunk = tf.function(self.run_test_chunk, reduce_retracing=True, autograph=False)
        # In-memory data on one device: the call gathers its own batches (an ArrayFeed; no tf.data iterator).
        self.feed_chunks: dict[bool, Any] = {}  # training? -> its compiled chunk (feed_chunk)
        # Under a strategy, one step per call: TF 2.21 fails on optionals of distributed iterators inside loops.
        self.train_replicated = tf.function(
            lambda data: self.strategy.run(self.train_step, args=(data,)), reduce_retracing=True, autograph=False
        )
        self.test_replicated = tf.function(
            lambda data: self.strategy.run(self.test_step, args=(data,)), reduce_retracing=True, autograph=False
        )

    # ---------------------------------------------------------------- one step

    def train_step(self, data: Any) -> None:
        """One optimisation step, exactly as `Model.fit` does it."""
        x, y, sample_weight = unpack(data)
        if self.user_step is not None:
            self.record_user_logs(self.user_step(self.model, x, y, sample_weight, training=True), x)
            return
        model = self.model
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = keras_private.compute_loss(model, x, y, y_pred, sample_weight, training=True)
            self.loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=batch_size_of(x))
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_weights)
        model.optimizer.apply(gradients, model.trainable_weights)
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data: Any) -> None:
        """One evaluation step (training=False), exactly as `Model.evaluate` does it."""
        x, y, sample_weight = unpack(data)
        if self.user_step is not None:
            self.record_user_logs(self.user_step(self.model, x, y, sample_weight, training=False), x)
            return
        y_pred = self.model(x, training=False)
        loss = keras_private.compute_loss(self.model, x, y, y_pred, sample_weight, training=False)
        self.loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=batch_size_of(x))
        self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def record_user_logs(self, logs: Any, x: Any) -> None:
        """Average each scalar a user step returns over the epoch, weighted by batch size like the loss."""
        if not isinstance(logs, Mapping) or not logs:
            raise TypeError(f"train.step must return a mapping of names to scalars, got {type(logs).__name__}")
        for name, value in logs.items():
            value = tf.convert_to_tensor(value)
            if value.shape.rank not in (0, None) and value.shape.num_elements() != 1:
                raise TypeError(f"train.step returned `{name}` with shape {value.shape}; expected a scalar")
            if name not in self.user_trackers:
                self.user_trackers[name] = keras.metrics.Mean(name=name)
            self.user_trackers[name].update_state(tf.reshape(value, []), sample_weight=batch_size_of(x))

    # ---------------------------------------------------------------- several steps per call

    def run_chunk(self, step: Callable[[Any], None], iterator: Any, steps: Any) -> Any:
        """Run up to `steps` steps from `iterator` inside one graph; return how many ran."""

        def more(done: Any, has_data: Any) -> Any:
            return tf.logical_and(has_data, done < steps)

        def one_step(done: Any, has_data: Any) -> tuple[Any, Any]:
            optional = iterator.get_next_as_optional()

            def run() -> Any:
                step(optional.get_value())  # its variable updates run before the count (automatic control dependencies)
                return done + 1

            has_value = optional.has_value()
            return tf.cond(has_value, run, lambda: done), has_value

        done, _ = tf.while_loop(more, one_step, (tf.constant(0), tf.constant(True)))
        # The logs after the chunk, read in the same graph (automatic control dependencies order the reads after the
        # steps' updates), as fit's train function returns them: reading them eagerly cost ~1.5 ms per call (#21).
        return done, self.logs()

    def run_feed_chunk(self, step: Callable[[Any], None], parts: Any, order: Any, bounds: Any) -> Any:
        """Run one step per row of `bounds` on the rows of `parts` it cuts from `order` (see ArrayFeed), inside one graph."""

        def one_step(done: Any) -> Any:
            step(gather_batch(parts, order, bounds[done]))  # its variable updates run before the count
            return done + 1

        (done,) = tf.while_loop(lambda done: done < tf.shape(bounds)[0], one_step, (tf.constant(0),))
        return done, self.logs()

    def run_train_feed_chunk(self, parts: Any, order: Any, bounds: Any) -> Any:
        """`run_feed_chunk` of training steps (traced once by tf.function)."""
        return self.run_feed_chunk(self.train_step, parts, order, bounds)

    def run_test_feed_chunk(self, parts: Any, order: Any, bounds: Any) -> Any:
        """`run_feed_chunk` of evaluation steps (traced once by tf.function)."""
        return self.run_feed_chunk(self.test_step, parts, order, bounds)

    def feed_chunk(self, training: bool, feed: ArrayFeed) -> Any:
        """The compiled chunk of training (or test) steps over ArrayFeeds shaped like `feed`'s, for every call's shapes.

        Its signature leaves the rows, the order's length (one pass, or two when a call crosses into the
        next) and the steps per call open: tracing again for the short last call of an epoch or a
        pass-crossing call would trace the whole step again (~0.5 s here). (tf.function still traces a
        second time when the first trace made variables: the train.step check, before the optimizer is built.)
        """
        if training not in self.feed_chunks:
            rows = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), feed.parts)
            signature = (rows, tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2], tf.int64))
            run = self.run_train_feed_chunk if training else self.run_test_feed_chunk
            self.feed_chunks[training] = tf.function(run, input_signature=signature, autograph=False)
        return self.feed_chunks[training]

    def call(self, training: bool, iterator: Any, steps: int) -> int:
        """Run up to `steps` steps; return how many ran (0 when the data has run out)."""
        if isinstance(iterator, FeedAt):  # never runs out: a feed is an endless stream of passes
            order, bounds = iterator.feed.chunk(iterator.first, steps)
            chunk = self.feed_chunk(training, iterator.feed)
            done, logs = chunk(iterator.feed.parts, order, tf.constant(bounds))
            self.chunk_logs = logs
            return int(done)
        if self.strategy is None:
            chunk = self.train_chunk if training else self.test_chunk
            done, logs = chunk(iterator, tf.constant(steps))
            if int(done) > 0:
                self.chunk_logs = logs
            return int(done)
        replicated = self.train_replicated if training else self.test_replicated
        for done in range(steps):
            try:
                data = next(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                return done
            replicated(data)
        return steps

    def run_train_chunk(self, iterator: Any, steps: Any) -> Any:
        """`run_chunk` of training steps (traced once by tf.function)."""
        return self.run_chunk(self.train_step, iterator, steps)

    def run_test_chunk(self, iterator: Any, steps: Any) -> Any:
        """`run_chunk` of evaluation steps (traced once by tf.function)."""
        return self.run_chunk(self.test_step, iterator, steps)

    # ---------------------------------------------------------------- logs

    def reset(self) -> None:
        """Reset every tracker and compiled metric, as fit does at each epoch and evaluation."""
        self.chunk_logs = None
        self.model.reset_metrics()
        self.loss_tracker.reset_state()
        for tracker in self.user_trackers.values():
            tracker.reset_state()

    def current_logs(self) -> dict[str, Any]:
        """The logs as they are now: those the last chunk since the last reset returned, else read eagerly."""
        return self.chunk_logs if self.chunk_logs is not None else self.logs()

    def logs(self) -> dict[str, Any]:
        """Current loss and metric values, keyed as fit keys them."""
        if self.user_step is not None:
            return {name: tracker.result() for name, tracker in self.user_trackers.items()}
        logs = self.model.get_metrics_result()
        logs["loss"] = self.loss_tracker.result()  # the model's own tracker is fit's; this loop keeps its own
        return logs

    def distribute(self, dataset: Any, own: bool = False) -> Any:
        """The dataset as the loop reads it: split across replicas under a strategy (batch = global batch).

        `own`: the dataset is already this worker's share, in per-replica batches (`pipeline` set by read_by_worker).
        """
        if dataset is None or self.strategy is None:
            return dataset
        if not own:
            return self.strategy.experimental_distribute_dataset(dataset)

        def this_worker(context: Any) -> Any:
            if context.input_pipeline_id != self.pipeline:  # the share was cut for another worker: never train on it
                raise RuntimeError(
                    f"tf.distribute numbers this worker's input pipeline {context.input_pipeline_id}, kerasrun {self.pipeline}"
                )
            return dataset

        return self.strategy.distribute_datasets_from_function(this_worker)

    def trace(self, dataset: Any, feed: ArrayFeed | None = None) -> None:
        """Trace the training chunk the run will call, without running it, so a bad user step fails before any folder exists.

        With an ArrayFeed (in-memory data on one device; make_custom_loop makes none under a strategy)
        that is the feed's chunk, whose trace the run then reuses; otherwise the chunk that reads `dataset`.
        """
        if feed is not None:
            self.feed_chunk(True, feed).get_concrete_function()
            return
        self.build(dataset)
        iterator = iter(self.distribute(dataset))
        if self.strategy is None:
            self.train_chunk.get_concrete_function(iterator, tf.constant(1))
        else:
            self.train_replicated.get_concrete_function(next(iterator))

    def build(self, dataset: Any) -> None:
        """Under a strategy, create optimizer and metric variables before any step is traced.

        Without one, they are created on the first trace, as in fit (after the model's own lazily
        built weights exist, which matters for subclassed models).
        """
        if self.strategy is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        if self.strategy is not None and not getattr(self, "metrics_built", False):
            # tf.function may not create distributed variables while tracing: build the compiled metrics
            # eagerly on one batch (inference mode, so no random state moves), then clear them. Zeros shaped
            # like the data do: reading a batch of the shuffled stream would fill its whole buffer (#19 item 8).
            probe = placeholder_batch(dataset.element_spec)
            x, y, sample_weight = unpack(probe if probe is not None else next(iter(dataset)))
            self.model.compute_metrics(x, y, self.model(x, training=False), sample_weight=sample_weight)
            self.reset()
            self.metrics_built = True

    # ---------------------------------------------------------------- epochs

    def evaluate(self, dataset: Any, steps: int | None, callbacks: Any, feed: ArrayFeed | None = None) -> dict[str, float]:
        """Run the test steps over `dataset` (or its ArrayFeed: one pass), with test callbacks, and return the logs."""
        self.reset()
        callbacks.on_test_begin()
        if feed is not None:
            steps = feed.per_pass if steps is None else min(steps, feed.per_pass)
        iterator, step = None if feed is not None else iter(self.distribute(dataset)), 0
        while steps is None or step < steps:
            chunk = self.steps_per_execution if steps is None else min(self.steps_per_execution, steps - step)
            callbacks.on_test_batch_begin(step)
            done = self.call(False, FeedAt(feed, step) if feed is not None else iterator, chunk)
            if done == 0:
                break
            step += done
            callbacks.on_test_batch_end(step - 1, self.current_logs())
            if done < chunk:
                break
        logs = {k: float(v) for k, v in self.current_logs().items()}
        callbacks.on_test_end(logs)
        return logs

    def fit(
        self,
        train_ds: Any,
        val_ds: Any,
        epochs: int,
        initial_epoch: int,
        callbacks: list[Any],
        steps_per_epoch: int | None,
        validation_steps: int | None,
        one_pass: bool = False,
        start_step: int = 0,
        feeds: tuple[ArrayFeed | None, ArrayFeed | None] = (None, None),
    ) -> Any:
        """Epochs of training and validation, with fit's callback order and `model.stop_training`.

        `one_pass`: `train_ds` is an endless stream of passes and an epoch is one pass of
        `steps_per_epoch` batches (see EpochBatches). `start_step`: the first epoch resumes after that many steps.
        `feeds`: the training and validation data as ArrayFeeds, read instead of the datasets' iterators.
        """
        model = self.model
        self.build(train_ds)
        batches = EpochBatches(
            self.distribute(train_ds, own=self.pipeline is not None),
            steps_per_epoch,
            int(train_ds.cardinality()),
            one_pass,
            start_step,
            feeds[0],
        )
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=False, verbose=0, epochs=epochs, steps=batches.num_batches, model=model
        )
        model.stop_training = False
        callback_list.on_train_begin()
        epoch_logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            self.reset()
            callback_list.on_epoch_begin(epoch)
            for begin, chunk, iterator in batches.chunks(self.steps_per_execution, epoch):
                callback_list.on_train_batch_begin(begin)
                if self.call(True, iterator, batches.steps_to_run(begin, chunk)) == 0:
                    batches.exhausted()  # the data ran out before the epoch's steps: as fit, start afresh
                    break
                callback_list.on_train_batch_end(begin + chunk - 1, self.current_logs())  # fit reports the chunk's last step
                if model.stop_training:
                    break
            epoch_logs = {k: float(v) for k, v in self.current_logs().items()}
            if val_ds is not None:
                val_logs = self.evaluate(val_ds, validation_steps, callback_list, feeds[1])
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
        model.optimizer.finalize_variable_values(model.trainable_weights)
        callback_list.on_train_end(logs=epoch_logs)
        return model.history


class EpochBatches:
    """Which iterator each chunk of an epoch reads from, as Keras's EpochIterator does with kerasrun's pipelines.

    Without steps_per_epoch, every epoch starts a fresh iterator (kerasrun's pipelines read the epoch
    when a pass starts); with it, the training pipeline is an endless stream and one iterator
    serves the whole run. `one_pass` marks kerasrun's own such stream of whole passes (the config
    sets no steps_per_epoch): its epoch is one pass, so the last call of an epoch runs only the
    pass's remaining steps, as with a fresh iterator that runs out. With an ArrayFeed (which must be such a
    stream), each chunk reads its batches from the feed instead, by their number in the run.
    """

    def __init__(
        self,
        dataset: Any,
        steps_per_epoch: int | None,
        cardinality: int,
        one_pass: bool = False,
        start_step: int = 0,
        feed: ArrayFeed | None = None,
    ) -> None:
        self.dataset = dataset
        self.feed = feed
        self.steps_per_epoch = steps_per_epoch
        self.num_batches = steps_per_epoch or (cardinality if cardinality > 0 else None)
        self.iterator: Any = None
        self.one_pass = one_pass
        self.start_step = start_step  # the first epoch's steps already done (a mid-epoch resume): their batches are skipped

    def steps_to_run(self, begin: int, chunk: int) -> int:
        """How many of a chunk's steps to run: all, except at the end of a one-pass epoch read from an endless stream."""
        if self.one_pass and self.num_batches is not None:
            return min(chunk, self.num_batches - begin)
        return chunk

    def exhausted(self) -> None:
        """The data ran out mid-epoch: the next epoch starts a new pass."""
        self.iterator = None

    def chunks(self, per_call: int, epoch: int) -> Any:
        """Yield (first step, steps for this call, iterator) for epoch `epoch`."""
        first, self.start_step = self.start_step, 0
        if self.feed is not None and self.steps_per_epoch is not None:
            for step in range(first, self.steps_per_epoch, per_call):
                yield step, per_call, FeedAt(self.feed, epoch * self.steps_per_epoch + step)
            return
        if self.iterator is None or self.steps_per_epoch is None:
            self.iterator = iter(self.dataset)
            skip_batches(self.iterator, first)
        if self.num_batches is None:  # unknown length: read until the data runs out
            step = first
            while True:
                yield step, per_call, self.iterator
                step += per_call
        for step in range(first, self.num_batches, per_call):
            yield step, per_call, self.iterator


class FeedAt:
    """Where a call reads from an ArrayFeed: the run's batch number its first step reads."""

    def __init__(self, feed: ArrayFeed, first: int) -> None:
        self.feed = feed
        self.first = first


def placeholder_batch(spec: Any) -> Any:
    """Zeros (empty strings) shaped like a batch of one of `spec`; None unless every part is a tensor known but for its batch size."""
    parts = tf.nest.flatten(spec)
    if not all(isinstance(part, tf.TensorSpec) and part.shape.rank and None not in part.shape[1:] for part in parts):
        return None
    shapes = [[1, *part.shape[1:]] for part in parts]
    values = [
        tf.fill(shape, "") if part.dtype == tf.string else tf.zeros(shape, part.dtype) for part, shape in zip(parts, shapes, strict=True)
    ]
    return tf.nest.pack_sequence_as(spec, values)


def skip_batches(iterator: Any, count: int) -> None:
    """Read past `count` batches (a resumed epoch's steps already done); a pass that ends sooner is left ended."""
    for _ in range(count):
        try:
            next(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            return


class CustomTrainer(Trainer):
    """`train.loop: custom`: the compiled GradientTape loop above (or a user step), with Keras callbacks."""

    name = "custom"

    def __init__(self, model: Any, config: Any, placement: Any, loop: CustomLoop) -> None:
        super().__init__(model, config, placement)
        self.loop = loop
        self.pass_steps: int | None = None  # set when the training data is read as one stream of passes
        self.worker_steps: int | None = None  # set when each worker reads its own share (read_by_worker)
        self.feeds: tuple[ArrayFeed | None, ArrayFeed | None] = (None, None)  # set by read_in_graph

    def read_by_worker(self, steps: int, pipeline: int) -> None:
        """The training data is this worker's own endless stream of per-replica batches; every epoch is `steps` global steps."""
        self.worker_steps = steps
        self.loop.pipeline = pipeline

    def one_stream_steps(self, split: Any, batch_size: int) -> int | None:
        """For array data on one device: one pass per epoch, read from one endless stream (one iterator for the run).

        Tearing down each epoch's tf.data iterator blocked the main thread for 0.3-1.3 s per epoch
        on this 2-core machine (bench/README.md, #21); the stream's pass p has exactly the batches
        of a fresh pass in epoch p (make_dataset), so the numbers are the same.
        """
        if self.placement.strategy is not None or not isinstance(split, Split) or len(split) == 0:
            return None
        self.pass_steps = math.ceil(len(split) / batch_size)
        return self.pass_steps

    def read_in_graph(self, make_feeds: Callable[[], tuple[ArrayFeed | None, ArrayFeed | None]]) -> None:
        """Read in-memory data through ArrayFeeds (on one device; the training data streamed as make_dataset's `steps_per_epoch` does)."""
        if self.placement.strategy is None:
            self.feeds = make_feeds()

    def fit(self, train_ds: Any, val_ds: Any, callbacks: list[Any], initial_epoch: int, start_step: int = 0) -> None:
        """Train with the compiled loop, steps capped as fit caps them."""
        spec = self.config.train
        one_pass = spec.steps_per_epoch is None and self.pass_steps is not None
        steps = self.pass_steps if one_pass else self.worker_steps or cap_steps(spec.steps_per_epoch, train_ds)
        validation_steps = cap_steps(spec.validation_steps, val_ds)
        self.loop.fit(train_ds, val_ds, spec.epochs, initial_epoch, callbacks, steps, validation_steps, one_pass, start_step, self.feeds)

    def metric_variables(self, names: list[str] | None = None) -> list[Any]:
        """The compiled metrics' variables and the loop's own trackers' (a user step's, created as a checkpoint names them)."""
        if self.loop.user_step is not None:
            for name in names or []:
                tracker = name.split("/")[0]
                if tracker not in self.loop.user_trackers:  # created by the first step otherwise: restored before it
                    with self.placement.scope():
                        self.loop.user_trackers[tracker] = keras.metrics.Mean(name=tracker)
            return [v for tracker in self.loop.user_trackers.values() for v in tracker.variables]
        return [*self.model.metrics_variables, *self.loop.loss_tracker.variables]

    def evaluate(self, dataset: Any, steps: int | None) -> dict[str, float]:
        """The loop's own evaluation under multi-worker (Keras's fails there), else `model.evaluate` (the same numbers)."""
        if self.config.runtime.strategy == "multi_worker":
            return self.loop.evaluate(dataset, steps, keras.callbacks.CallbackList([], model=self.model))
        return evaluate_model(self.model, dataset, steps)
