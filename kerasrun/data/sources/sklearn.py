"""`source: sklearn`: a real dataset bundled with scikit-learn."""

from __future__ import annotations

import numpy as np

from kerasrun.config.data import SklearnData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.sources.base import Where, keras_order, split_test

REGRESSION = ("diabetes",)  # datasets whose target is a number, not a class


def read(spec: SklearnData, where: Where) -> Data:
    """A real dataset bundled with scikit-learn, in a seeded order, split into train/test with the config's seed."""
    import sklearn.datasets

    loader = getattr(sklearn.datasets, f"load_{spec.name}")
    x, y = loader(return_X_y=True)
    order = keras_order(len(y), where.seed)  # some (iris, wine) come sorted by class: mixed before any split
    x, y = x[order], y[order]
    regression = spec.name in REGRESSION
    targets = y.astype(np.float32) if regression else y.astype(np.int64)
    # A continuous target has no classes to stratify by.
    return split_test(Split(x.astype(np.float32), targets), spec.test_fraction, spec.stratify and not regression, where)
