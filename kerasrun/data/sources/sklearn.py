"""`source: sklearn`: a real dataset bundled with scikit-learn."""

from __future__ import annotations

import numpy as np

from kerasrun.config import SklearnData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.sources.base import Where, split_test


def read(spec: SklearnData, where: Where) -> Data:
    """A real dataset bundled with scikit-learn, split into train/test with the config's seed."""
    import sklearn.datasets

    loader = getattr(sklearn.datasets, f"load_{spec.name}")
    x, y = loader(return_X_y=True)
    return split_test(Split(x.astype(np.float32), y.astype(np.int64)), spec.test_fraction, spec.stratify, where)
