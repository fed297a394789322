"""Image-folder fixtures written at test time from the real MNIST (never committed): PNGs, one subfolder per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image_folder(images: np.ndarray, labels: np.ndarray, root: Path, fmt: str = "png") -> Path:
    """Write uint8 images (n, h, w[, c]) as root/<label>/<index>.<fmt> with TensorFlow's encoders; root."""
    from kerasrun._tf import tf

    encode = {"png": tf.io.encode_png, "jpg": tf.io.encode_jpeg}[fmt]
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = image if image.ndim == 3 else image[..., None]
        (folder / f"{index:05d}.{fmt}").write_bytes(encode(pixels).numpy())
    return root


def mnist_sample(path: Path, per_class: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of each digit of MNIST's train or test split, in index order."""
    with np.load(path) as data:
        x, y = data[f"x_{split}"], data[f"y_{split}"]
    index = np.sort(np.concatenate([np.flatnonzero(y == digit)[:per_class] for digit in range(10)]))
    return x[index], y[index]
