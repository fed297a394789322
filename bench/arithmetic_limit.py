"""The arithmetic limit of one epoch of the seed MLP (configs/mnist_mlp.yaml) on this machine.

    python bench/arithmetic_limit.py [--seconds 2] [--rounds 3]

Limit = matmul FLOPs of one epoch (forward + backward of 50,000 training samples, forward of 10,000
validation samples through 784-64-64-10) / the peak float32 matmul rate this machine's TensorFlow
reaches, measured as the best of `--rounds` tight `tf.matmul` chains inside one tf.function (so no
Python or dispatch cost per matmul) for square sizes 512-2048. Also measures the rate at the model's
own shapes (batch 64), which is what the training steps could reach at best. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import itertools

import tensorflow as tf

LAYERS = [784, 64, 64, 10]  # the seed MLP
TRAIN, VALIDATION, BATCH = 50_000, 10_000, 64


def epoch_flops() -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one epoch: training forward + backward, validation forward."""
    pairs = list(itertools.pairwise(LAYERS))
    forward = sum(2 * a * b for a, b in pairs)  # per sample
    weight_grads = forward  # dL/dW = x^T dL/dy: the same multiply-adds as the forward pass
    input_grads = sum(2 * a * b for a, b in pairs[1:])  # dL/dx for every layer but the first (its input is data)
    train = TRAIN * (forward + weight_grads + input_grads)
    validation = VALIDATION * forward
    return {"per_sample_forward": forward, "train": train, "validation": validation, "total": train + validation}


def matmul_rate(m: int, k: int, n: int, seconds: float) -> float:
    """FLOP/s of a chain of [m,k]x[k,n] matmuls run inside one tf.function for about `seconds`."""
    a = tf.random.normal([m, k]) / k**0.5
    b = tf.random.normal([k, n]) / k**0.5
    square = m == k == n

    @tf.function(autograph=False)
    def chain(a: tf.Tensor, b: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
        def body(i: tf.Tensor, x: tf.Tensor, acc: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            y = tf.matmul(x, b)
            # Square: feed the product back in (a true chain); else accumulate one element so no matmul is pruned.
            return i + 1, (y if square else x), acc + y[0, 0]

        _, x, acc = tf.while_loop(lambda i, x, acc: i < count, body, (tf.constant(0), a, tf.constant(0.0)))
        return acc + x[0, 0]

    chain(a, b, tf.constant(2)).numpy()  # trace and warm up
    count = 2
    while True:
        start = time.perf_counter()
        chain(a, b, tf.constant(count)).numpy()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * m * k * n * count / elapsed
        count = max(count * 2, int(count * seconds / max(elapsed, 1e-6)))


def main() -> None:
    """Measure the peak and the model-shaped matmul rates; print the epoch's limit."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2 s)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per size; the best counts (default 3)")
    args = parser.parse_args()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPUs {os.cpu_count()}; TF {tf.__version__}")
    flops = epoch_flops()
    shapes = {f"{n}x{n} @ {n}x{n}": (n, n, n) for n in (512, 1024, 2048)}
    shapes |= {f"model: {BATCH}x{a} @ {a}x{b}": (BATCH, a, b) for a, b in itertools.pairwise(LAYERS)}
    rates: dict[str, list[float]] = {}
    for name, (m, k, n) in shapes.items():
        rates[name] = [matmul_rate(m, k, n, args.seconds) for _ in range(args.rounds)]
        print(f"{name}: {', '.join(f'{r / 1e9:.1f}' for r in rates[name])} GFLOP/s", flush=True)
    peak_name = max((name for name in shapes if not name.startswith("model")), key=lambda name: max(rates[name]))
    peak = max(rates[peak_name])
    print("\n| quantity | value |")
    print("| --- | ---: |")
    print(
        f"| matmul FLOPs per training sample (forward {flops['per_sample_forward']:,} + weight grads + input grads) | "
        f"{flops['train'] / TRAIN:,.0f} |"
    )
    print(f"| matmul FLOPs per epoch: 50,000 trained + 10,000 validated | {flops['total'] / 1e9:.3f} GFLOP |")
    for name in shapes:
        print(
            f"| float32 matmul rate, {name} (best of {args.rounds}: {', '.join(f'{r / 1e9:.1f}' for r in rates[name])}) | "
            f"{max(rates[name]) / 1e9:.1f} GFLOP/s |"
        )
    print(f"| **arithmetic limit of an epoch** = FLOPs / peak ({peak_name}) | **{flops['total'] / peak:.3f} s** |")
    # Each layer's FLOPs at the rate of its own [64, a] x [a, b] matmul (the backward matmuls have the same sizes, transposed).
    layer_seconds = 0.0
    for index, (a, b) in enumerate(itertools.pairwise(LAYERS)):
        per_sample = 2 * a * b
        layer_flops = TRAIN * per_sample * (3 if index > 0 else 2) + VALIDATION * per_sample
        layer_seconds += layer_flops / max(rates[f"model: {BATCH}x{a} @ {a}x{b}"])
    print(f"| limit at the model's own shapes (each layer's FLOPs at its own batch-64 matmul rate) | {layer_seconds:.3f} s |")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
