"""Data for the seed's multi-input, multi-output model ("Train and evaluate with Keras", "Passing data to
multi-input, multi-output models"): named arrays for each input and output. Used by configs/multi_io.yaml.
"""

from __future__ import annotations

import numpy as np


def seed_data_as_lists(samples: int = 100, test_samples: int = 20, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The same data in Keras's positional form: lists in the model's input and output order."""
    named = seed_data(samples, test_samples, seed)
    order = {"x": ["img_input", "ts_input"], "y": ["score_output", "class_output"]}
    return {key: [value[name] for name in order[key[0]]] for key, value in named.items()}


def seed_data(samples: int = 100, test_samples: int = 20, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Random images (32, 32, 3) and time series (20, 10); score targets (1) and one-hot class targets (5)."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        x = {"img_input": rng.random((n, 32, 32, 3), dtype=np.float32), "ts_input": rng.random((n, 20, 10), dtype=np.float32)}
        classes = rng.integers(0, 5, n)
        y = {"score_output": rng.random((n, 1), dtype=np.float32), "class_output": np.eye(5, dtype=np.float32)[classes]}
        return x, y

    x_train, y_train = make(samples)
    x_test, y_test = make(test_samples)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
