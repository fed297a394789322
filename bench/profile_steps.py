"""Where one epoch's time goes: kerasrun (configs/mnist_mlp.yaml) against the hand-tuned plain script (spe 32).

    python bench/profile_steps.py [--rounds 3] [--epochs 5] [--loop auto] [--data-dir ../shared/data]

Each round runs both programs in fresh processes, alternating which goes first. Inside each, Keras's
CallbackList and the training loop are wrapped with timers (class-level wrappers, so Keras's own
choice of dispatching batch-end hooks on a thread is unchanged): the compiled chunk calls (the steps
and the input pipeline they read from), kerasrun's eager read of the metric results, iterator
creation, each callback hook (total per callback), Keras's callback dispatch, and what is left of the
epoch. Epochs 2.. are averaged (steady state; epoch 1 includes tracing). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)


class Profile:
    """Seconds per (epoch, label), with the epoch boundaries taken from CallbackList.on_epoch_begin."""

    def __init__(self) -> None:
        self.epoch = -1
        self.seconds: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.marks: list[float] = []  # epoch starts, then the end of training
        self.events: list[tuple[float, str]] = []  # (time, what began or ended), for --gaps

    def add(self, label: str, seconds: float) -> None:
        """Count `seconds` against the current epoch."""
        self.seconds[self.epoch][label] += seconds
        self.counts[self.epoch][label] += 1

    def timed(self, label: str | Callable[..., str], function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, timed under `label` (or label(*args))."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            name = label(*args, **kwargs) if callable(label) else label
            self.events.append((start, f"begin {name}"))
            try:
                return function(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.events.append((end, f"end {name}"))
                self.add(name, end - start)

        wrapper.__dict__.update(function.__dict__)  # keeps Keras's `_is_default` marks: async dispatch stays as it was
        return wrapper

    def report(self) -> dict[str, Any]:
        """Per epoch: wall time and seconds per label."""
        walls = [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]
        gaps = sorted(((b[0] - a[0], a[1], b[1]) for a, b in zip(self.events[:-1], self.events[1:], strict=True)), reverse=True)
        return {
            "gaps": [{"seconds": g, "after": a, "before": b} for g, a, b in gaps[:8]],
            "epochs": [{"wall_s": wall, "seconds": dict(self.seconds[e]), "counts": dict(self.counts[e])} for e, wall in enumerate(walls)],
        }


PROFILE = Profile()


def watch_garbage_collector() -> None:
    """Count the garbage collector's pauses (per generation) against the epoch they fall in."""
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            PROFILE.add(f"garbage collection, generation {info['generation']}", time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)


def patch_callback_list(keras: Any) -> None:
    """Time every CallbackList hook (dispatch + all callbacks) and mark epoch boundaries."""
    cls = keras.callbacks.CallbackList
    for hook in HOOKS:
        original = getattr(cls, hook)

        def make(hook: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def timed_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
                if hook == "on_epoch_begin":
                    PROFILE.epoch += 1
                    PROFILE.marks.append(time.perf_counter())
                start = time.perf_counter()
                try:
                    return original(self, *args, **kwargs)
                finally:
                    PROFILE.add(f"CallbackList.{hook} (all callbacks)", time.perf_counter() - start)
                    if hook == "on_train_end":
                        PROFILE.marks.append(start)
                        PROFILE.epoch = -1  # the test evaluation after fit is not an epoch's

            return timed_hook

        setattr(cls, hook, make(hook, original))
    original_init = cls.__init__

    def init(self: Any, callbacks: Any = None, *args: Any, **kwargs: Any) -> None:
        original_init(self, callbacks, *args, **kwargs)
        for callback in self.callbacks:  # each callback's own overridden hooks
            for hook in HOOKS:
                method = getattr(callback, hook)
                if not getattr(method, "_is_default", False) and not getattr(method, "_profiled", False):
                    wrapped = PROFILE.timed(f"  {type(callback).__name__}.{hook}", method)
                    wrapped._profiled = True  # type: ignore[attr-defined]
                    setattr(callback, hook, wrapped)
        # Re-decide async dispatch on the wrapped hooks: the wrappers keep `_is_default`, so the decision is Keras's own.
        self._configure_async_dispatch(self.callbacks)

    cls.__init__ = init


def patch_iterators(tf: Any) -> None:
    """Time making a tf.data iterator (each epoch's pass starts with one)."""
    cls = tf.data.Dataset
    cls.__iter__ = PROFILE.timed("iter(dataset): a new pass", cls.__iter__)


def child_kerasrun(epochs: int, loop: str) -> None:
    """kerasrun train in this process, with the timers in place."""
    from kerasrun._tf import keras, tf
    from kerasrun.train.trainers import custom

    patch_callback_list(keras)
    patch_iterators(tf)
    watch_garbage_collector()
    loop_cls: Any = custom.CustomLoop
    loop_cls.call = PROFILE.timed(
        lambda self, training, *a: "compiled chunk: train steps + input" if training else "compiled chunk: validation steps + input",
        loop_cls.call,
    )
    loop_cls.logs = PROFILE.timed("metric results read eagerly (loop.logs)", loop_cls.logs)
    loop_cls.reset = PROFILE.timed("reset metrics (loop.reset)", loop_cls.reset)
    patch_keras_functions(keras)
    from kerasrun.cli import main

    with tempfile.TemporaryDirectory() as runs:
        sys.argv = ["kerasrun", "train", str(REPO / "configs" / "mnist_mlp.yaml"), "--runs-dir", runs, "--progress", "none"]
        sys.argv += ["--set", f"train.epochs={epochs}", "--set", f"train.loop={loop}", "--set", "output.curves=false"]
        try:
            main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        [run] = [p for p in Path(runs).iterdir() if p.is_dir()]
        info = json.loads((run / "run.json").read_text())
    print(json.dumps({"program": "kerasrun", "loop": info["loop"], "fit_s": info["timings"]["fit_s"], **PROFILE.report()}))


def patch_keras_functions(keras: Any) -> None:
    """Time Keras fit's compiled train/test function calls (the chunk: steps + the input they read)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    for name, label in (
        ("make_train_function", "compiled chunk: train steps + input"),
        ("make_test_function", "compiled chunk: validation steps + input"),
    ):
        original = getattr(TensorFlowTrainer, name)

        def make(original: Callable[..., Any], label: str, attr: str) -> Callable[..., Any]:
            def wrapped(self: Any, force: bool = False) -> Any:
                result = original(self, force)
                function = getattr(self, attr)
                if function is not None and not getattr(function, "_profiled", False):
                    timed = PROFILE.timed(label, function)
                    timed._profiled = True  # type: ignore[attr-defined]
                    setattr(self, attr, timed)
                return result

            return wrapped

        setattr(TensorFlowTrainer, name, make(original, label, name.removeprefix("make_")))


def child_plain(epochs: int, spe: int) -> None:
    """bench/plain_mnist_mlp.py in this process, with the timers in place."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras
    import tensorflow as tf

    patch_callback_list(keras)
    patch_iterators(tf)
    watch_garbage_collector()
    patch_keras_functions(keras)
    sys.path.insert(0, str(REPO / "bench"))
    import plain_mnist_mlp

    sys.argv = ["plain_mnist_mlp.py", "--spe", str(spe), "--epochs", str(epochs)]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        plain_mnist_mlp.main()
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    print(json.dumps({"program": f"plain spe {spe}", "fit_s": result["fit_s"], **PROFILE.report()}))


def run_child(args: list[str], env: dict[str, str], kerasrun_path: Path | None = None) -> dict[str, Any]:
    """One program in a fresh process (kerasrun imported from `kerasrun_path` when given); its JSON report."""
    if kerasrun_path is not None:
        env = {**env, "PYTHONPATH": str(kerasrun_path.resolve())}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{args} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def steady(report: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Mean wall time and seconds per label over epochs 2.. (the steady state)."""
    epochs = report["epochs"][1:]
    labels = {label for e in epochs for label in e["seconds"]}
    per = {label: statistics.mean(e["seconds"].get(label, 0.0) for e in epochs) for label in labels}
    return statistics.mean(e["wall_s"] for e in epochs), per


def main() -> None:
    """Alternate kerasrun and the tuned plain script; print where a steady epoch's time goes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--spe", type=int, default=32, help="the plain script's steps_per_execution (default 32)")
    parser.add_argument("--loop", default="auto", help="kerasrun's train.loop (default auto)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--before", type=Path, help="a checkout of kerasrun before a change: profiled too, as `kerasrun before`")
    parser.add_argument("--child", choices=["kerasrun", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "kerasrun":
        return child_kerasrun(args.epochs, args.loop)
    if args.child == "plain":
        return child_plain(args.epochs, args.spe)
    env = {**os.environ, "KERASRUN_DATA_DIR": str(args.data_dir.resolve()), "TF_CPP_MIN_LOG_LEVEL": "2"}
    common = ["--epochs", str(args.epochs)]
    programs = {
        "kerasrun": ["--child", "kerasrun", "--loop", args.loop, *common],
        "plain": ["--child", "plain", "--spe", str(args.spe), *common],
    }
    paths: dict[str, Path | None] = {"kerasrun": None, "plain": None}
    if args.before is not None:
        programs["kerasrun before"] = programs["kerasrun"]
        paths["kerasrun before"] = args.before
    names = list(programs)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    loads = []
    for index in range(args.rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]  # every program takes every place in turn
        loads.append(os.getloadavg())
        for name in order:
            results[name].append(run_child(programs[name], env, paths[name]))
        walls = ", ".join(f"{name} {steady(results[name][-1])[0]:.3f} s" for name in order)
        print(f"round {index + 1} (load {loads[-1][0]:.2f}): steady epoch {walls}", flush=True)
    for name in names:
        rounds = [steady(r) for r in results[name]]
        labels = sorted(
            {label for _, per in rounds for label in per}, key=lambda label: -statistics.median(p.get(label, 0) for _, p in rounds)
        )
        wall = statistics.median(w for w, _ in rounds)
        print(f"\n{name} ({results[name][0].get('loop', 'fit')}): steady epoch, median of {args.rounds} rounds")
        print("| where | ms per epoch (median) | rounds | share |")
        print("| --- | ---: | --- | ---: |")
        print(f"| **whole epoch (wall)** | {wall * 1e3:.1f} | {', '.join(f'{w * 1e3:.0f}' for w, _ in rounds)} | 100 % |")
        for label in labels:
            values = [p.get(label, 0.0) for _, p in rounds]
            if label.startswith("  "):
                label = "&nbsp;&nbsp;" + label.strip()
            print(
                f"| {label} | {statistics.median(values) * 1e3:.1f} | {', '.join(f'{v * 1e3:.1f}' for v in values)} | {statistics.median(values) / wall * 100:.1f} % |"
            )
        top = [label for label in labels if not label.startswith("  ")]
        rest = [w - sum(p.get(label, 0.0) for label in top) for w, p in rounds]
        print(
            f"| everything else (Python between the calls) | {statistics.median(rest) * 1e3:.1f} | {', '.join(f'{v * 1e3:.1f}' for v in rest)} | {statistics.median(rest) / wall * 100:.1f} % |"
        )
        fits = ", ".join(f"{r['fit_s']:.2f}" for r in results[name])
        print(f"fit_s: {fits}")
    print(f"\nload average (1/5/15 min) per round: {'; '.join(' '.join(f'{x:.2f}' for x in load) for load in loads)}")
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "profile_latest.json").write_text(json.dumps({"loads": loads, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
