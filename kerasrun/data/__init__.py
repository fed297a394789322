"""Data: a config's `data` section → checked, preprocessed, split and weighted arrays or datasets → tf.data pipelines.

One module per job: `sources/` (one reader per `data.source`), `checks` (the data contract),
`preprocess`, `splits` (validation data), `weights` (class and sample weights), `pipeline`
(tf.data batches in a seeded per-epoch order), `memory` (arrays TensorFlow borrows), `load`
(the order these run in). What the rest of kerasrun uses is re-exported here.
"""

from kerasrun.data.arrays import Arrays, Data, Split, as_arrays, input_sample_shape, leaves, map_arrays, name_lists
from kerasrun.data.load import load_data
from kerasrun.data.memory import TENSOR_ALIGNMENT, cast_aligned, empty_aligned, share_with_tensorflow
from kerasrun.data.pipeline import make_dataset
from kerasrun.data.preprocess import preprocess, scale_aligned
from kerasrun.data.stream import Stream

__all__ = [
    "TENSOR_ALIGNMENT",
    "Arrays",
    "Data",
    "Split",
    "Stream",
    "as_arrays",
    "cast_aligned",
    "empty_aligned",
    "input_sample_shape",
    "leaves",
    "load_data",
    "make_dataset",
    "map_arrays",
    "name_lists",
    "preprocess",
    "scale_aligned",
    "share_with_tensorflow",
]
