"""Memory TensorFlow can borrow: aligned NumPy arrays, shared with tf.data instead of copied."""

from __future__ import annotations

from typing import Any

import numpy as np

# Arrays from this size on are shared with TensorFlow instead of copied (see share_with_tensorflow).
SHARE_MIN_BYTES = 1 << 20
TENSOR_ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES of TensorFlow's x86-64 builds (Tensor::IsAligned)


def cast_aligned(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`x.astype(dtype)`, into memory TensorFlow can share when the dtype is numeric."""
    if dtype.kind not in "fiub" or dtype.itemsize == 0:
        return x.astype(dtype)  # strings, objects, ...: as NumPy casts them (never shared)
    out = empty_aligned(x.shape, dtype)
    out[...] = x
    return out


def share_with_tensorflow(array: np.ndarray) -> Any:
    """A tensor over the array's own memory (DLPack), falling back to TensorFlow's copy.

    `tf.convert_to_tensor` copies into fresh 4 KiB pages; for MNIST's 157 MB that alone cost
    0.4-0.8 s of page faults here, more than a whole training epoch. NumPy's buffer is already
    resident, so the tensor borrows it. TensorFlow assumes tensors never change: kerasrun never
    writes into loaded arrays (not made read-only, since NumPy refuses DLPack export of those).
    """
    from kerasrun._tf import tf

    array = np.asarray(array)
    if array.nbytes < SHARE_MIN_BYTES or array.dtype.kind not in "fiu":
        return tf.convert_to_tensor(array)
    if not array.flags.c_contiguous or array.ctypes.data % TENSOR_ALIGNMENT:
        array = cast_aligned(array, array.dtype)  # TensorFlow's kernels need aligned, contiguous memory
    try:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    except (BufferError, TypeError, ValueError, tf.errors.OpError):  # e.g. read-only or big-endian arrays
        return tf.convert_to_tensor(array)


def empty_aligned(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array starting on a TENSOR_ALIGNMENT boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + TENSOR_ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % TENSOR_ALIGNMENT
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)
