"""Numbers as tensors of a given dtype, at that dtype's precision."""

import numpy as np
import tensorflow as tf

__all__ = ["cast"]


def cast(value, dtype):
  """`value` as a Tensor of `dtype`.

  A Python or NumPy number becomes a constant of `dtype` directly: `tf.cast(0.1,
  tf.float64)` first makes a float32 tensor, so a float64 computation would carry 0.1 at
  float32 precision (7 digits). Tensors and variables are cast as usual.
  """
  if isinstance(value, (bool, int, float, np.number)):
    return tf.constant(value, dtype=dtype)
  return tf.cast(value, dtype)
