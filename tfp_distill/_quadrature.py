"""Numerical helpers (internal): Gauss-Hermite quadrature, stateless seeds."""

import numpy as np
import tensorflow as tf

__all__ = ["normal_nodes", "stateless_seed"]


def normal_nodes(loc, scale, num_points=20):
  """Nodes and log-weights for E[f(X)], X ~ N(loc, scale^2).

  ```none
  E[f(X)] ~= sum_i w_i / sqrt(pi) * f(loc + sqrt(2) * scale * x_i)
  ```
  exact for polynomials of degree < 2 * num_points.

  Args:
    loc: float Tensor [...].
    scale: float Tensor [...], broadcastable with loc.
    num_points: int, number of nodes.

  Returns:
    nodes: float Tensor [num_points, ...].
    log_weights: float Tensor [num_points] (normalised: logsumexp = 0).
  """
  x, w = np.polynomial.hermite.hermgauss(int(num_points))
  dtype = tf.convert_to_tensor(loc).dtype
  shape = [-1] + [1] * tf.convert_to_tensor(loc).shape.rank
  x = tf.reshape(tf.constant(x, dtype), shape)
  nodes = loc + np.sqrt(2.) * scale * x
  log_weights = tf.constant(np.log(w) - 0.5 * np.log(np.pi), dtype)
  return nodes, log_weights


def stateless_seed(seed):
  """An int or an int Tensor [2] -> int32 Tensor [2] for stateless RNG ops.

  Unlike `tfp.random.sanitize_seed`, an int maps to a fixed seed [seed, 0] (sanitize_seed
  draws a new stateless seed from a stateful op on every call).
  """
  if isinstance(seed, (int, np.integer)):
    return tf.constant([int(seed), 0], tf.int32)
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank != 1 or seed.shape[0] != 2:
    raise ValueError(f"A seed must be an int or an int Tensor of shape [2], got {seed!r}.")
  return tf.cast(seed, tf.int32)
