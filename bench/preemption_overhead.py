"""Per-step cost of save-on-preemption while no signal comes (#19 item 2's target: <= 2 % of fit).

    python bench/preemption_overhead.py [--rounds 5] [--epochs 3] [--spe 1]

The seed MLP (784-64-64-10, RMSprop, batch 32) on MNIST's 50,000 training digits with Keras's fit,
`steps_per_execution` 1 by default (a check after every step: the worst case), in one process, the two
arms alternating round by round:
- "without": fit with kerasrun's DivergenceGuard (a per-batch callback every run has, so Keras's
  batch hooks are synchronous in both arms);
- "with": the same, plus kerasrun's PreemptionCheck, inside `Preemption.watching()` (the stop signals
  deferred), exactly as a run with a checkpoint trains.
Each round times the epochs after the first (the first compiles). Reports the median and the fastest
seconds per step of each arm and their ratios. The end-to-end ratio is noisy on a shared 2-core machine
(rounds differ by 20 %), so the script also times what the check adds directly: PreemptionCheck's
on_train_batch_end called 200,000 times, in microseconds per call, against the measured fit step.
Writes bench/results/preemption_overhead.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import datetime
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "preemption_overhead.json"
MNIST = Path(os.environ.get("KERASRUN_DATA_DIR", REPO.parent / "shared" / "data")) / "mnist.npz"


def build(keras: Any, spe: int) -> Any:
    """The seed MLP, compiled as the seed does."""
    keras.utils.set_random_seed(42)
    inputs = keras.Input(shape=(784,))
    x = keras.layers.Dense(64, activation="relu")(inputs)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(
        optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"], steps_per_execution=spe
    )
    return model


def seconds_per_step(arm: str, x: np.ndarray, y: np.ndarray, epochs: int, spe: int) -> float:
    """Median seconds per training step over the epochs after the first, for one arm."""
    import keras

    from kerasrun.train.callbacks.records import DivergenceGuard
    from kerasrun.train.preemption import Preemption, PreemptionCheck

    model = build(keras, spe)
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs=None: ends.append(time.perf_counter()))
    callbacks: list[Any] = [DivergenceGuard(), timer]
    preemption = Preemption(lambda epoch, step: None)
    if arm == "with":
        callbacks.append(PreemptionCheck(preemption))
    steps = len(x) // 32
    with preemption.watching():
        model.fit(x, y, batch_size=32, epochs=epochs, callbacks=callbacks, verbose=0, shuffle=False)
    return statistics.median(b - a for a, b in itertools.pairwise(ends)) / steps


def check_seconds(calls: int = 200_000) -> float:
    """Seconds one PreemptionCheck.on_train_batch_end takes when no signal came (the work a run adds per training call)."""
    from kerasrun.train.preemption import Preemption, PreemptionCheck

    check = PreemptionCheck(Preemption(lambda epoch, step: None))
    check.set_params({"epochs": 1, "steps": calls + 1, "verbose": 0})
    logs = {"loss": 0.5}
    start = time.perf_counter()
    for batch in range(calls):
        check.on_train_batch_end(batch, logs)
    return (time.perf_counter() - start) / calls


def main() -> None:
    """Alternate the arms for --rounds rounds and report the ratio of their medians."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--spe", type=int, default=1)
    args = parser.parse_args()
    with np.load(MNIST, allow_pickle=False) as data:
        x = (data["x_train"][:50000].reshape(-1, 784) / np.float32(255)).astype(np.float32)
        y = data["y_train"][:50000]
    times: dict[str, list[float]] = {"without": [], "with": []}
    for round_ in range(args.rounds):
        for arm in ("without", "with") if round_ % 2 == 0 else ("with", "without"):
            times[arm].append(seconds_per_step(arm, x, y, args.epochs, args.spe))
            print(f"round {round_ + 1} {arm}: {times[arm][-1] * 1e3:.4f} ms/step", flush=True)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    fastest = {arm: min(values) for arm, values in times.items()}
    per_call = check_seconds()
    result = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "epochs": args.epochs,
        "steps_per_execution": args.spe,
        "ms_per_step": {arm: [round(v * 1e3, 4) for v in values] for arm, values in times.items()},
        "median_ms_per_step": {arm: round(v * 1e3, 4) for arm, v in medians.items()},
        "ratio_with_over_without": round(medians["with"] / medians["without"], 4),
        "fastest_ms_per_step": {arm: round(v * 1e3, 4) for arm, v in fastest.items()},
        "fastest_ratio_with_over_without": round(fastest["with"] / fastest["without"], 4),
        "check_us_per_call": round(per_call * 1e6, 3),
        "check_share_of_fastest_step": round(per_call / fastest["without"], 5),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
