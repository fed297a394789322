"""`source: synthetic`: seeded generated data (Gaussian blobs per class, in a seeded mixed order, or random arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasrun.config.data import SyntheticData
from kerasrun.data.arrays import Arrays, Data, Split
from kerasrun.data.sources.base import Where, keras_order, split_test
from kerasrun.errors import ConfigError


def read(spec: SyntheticData, where: Where) -> Data:
    """Seeded generated data: Gaussian blobs per class, or random arrays."""
    rng = np.random.default_rng(where.seed)
    x: Arrays
    y: Arrays
    if spec.generator == "blobs":
        assert spec.samples_per_class is not None  # check_generator_keys requires it for blobs
        means = np.asarray(spec.means, dtype=np.float64)
        cov = np.asarray(spec.cov, dtype=np.float64)
        if cov.shape != (means.shape[1], means.shape[1]):
            raise ConfigError(
                where.problem(("cov",), f"covariance must be {means.shape[1]}x{means.shape[1]} to match the means, got {cov.shape}")
            )
        x = np.concatenate([rng.multivariate_normal(m, cov, size=spec.samples_per_class) for m in means]).astype(np.float32)
        y = np.repeat(np.arange(len(means)), spec.samples_per_class).astype(np.int64)
        order = keras_order(len(y), where.seed)  # generated class by class: mixed before any split
        x, y = x[order], y[order]
    else:
        assert spec.x_shape is not None and spec.samples is not None  # check_generator_keys requires them for random
        x = map_shapes(spec.x_shape, lambda shape: rng.standard_normal((spec.samples, *shape)).astype(np.float32))
        if isinstance(spec.classes, dict) or isinstance(spec.y_shape, dict):
            # Several outputs: float targets by shape, integer class targets by count, each named.
            # A dict beside a plain list/int (e.g. classes: {a: 2}, y_shape: [2]) passes the schema and raises
            # AttributeError here; the ignores below keep that behaviour rather than hide it.
            y = {
                name: rng.standard_normal((spec.samples, *shape)).astype(np.float32)
                for name, shape in (spec.y_shape or {}).items()  # type: ignore[union-attr]  # see above
            }
            y |= {
                name: rng.integers(0, count, size=spec.samples).astype(np.int64)
                for name, count in (spec.classes or {}).items()  # type: ignore[union-attr]  # see above
            }
        elif spec.classes is not None:
            y = rng.integers(0, spec.classes, size=spec.samples).astype(np.int64)
        else:
            assert spec.y_shape is not None  # check_generator_keys requires classes or y_shape
            y = rng.standard_normal((spec.samples, *spec.y_shape)).astype(np.float32)
    if spec.test_fraction:
        return split_test(Split(x, y), spec.test_fraction, stratify=False, where=where)
    return Data(Split(x, y))


def map_shapes(shapes: Any, make: Any) -> Any:
    """make(shape) for one shape, or for each of a {name: shape} mapping."""
    return {name: make(shape) for name, shape in shapes.items()} if isinstance(shapes, dict) else make(shapes)
