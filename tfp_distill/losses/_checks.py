"""Checks and conversions shared by the losses: target shapes and layouts, member
log-probabilities, argument checks, family configs.

`check_targets` and `unpack_targets` are public (`td.losses`); the other names are shared
by the loss modules of this package only.
"""

import numpy as np
import tensorflow as tf

from tfp_distill import _dtypes
from tfp_distill import families as families_lib

__all__ = ["check_targets", "unpack_targets", "static_event_size", "member_log_probs",
           "check_weight", "check_temperature", "family_config"]


def static_event_size(dist):
  """The static size of the last event axis of `dist` (1 for a scalar event; None if unknown)."""
  return tf.compat.dimension_value(dist.event_shape[-1]) if dist.event_shape.rank else 1


def check_targets(z, dist, expected_params=None):
  """Checks the static shape of teacher targets against a student distribution.

  Args:
    z: float Tensor [batch, members, params].
    dist: tfd.Distribution, batch [batch], event [params].
    expected_params: int or None; the params size the targets must have (defaults to the
      distribution's event size).

  Raises:
    ValueError: if z is not rank 3, or its params axis does not fit the distribution.
  """
  if z.shape.rank is not None and z.shape.rank != 3:
    raise ValueError(
        f"Teacher targets must have shape [batch, members, params], got shape "
        f"{list(z.shape)} (rank {z.shape.rank}).")
  if expected_params is None:
    expected_params = static_event_size(dist)
  params = tf.compat.dimension_value(z.shape[-1])
  if params is not None and expected_params is not None and params != expected_params:
    raise ValueError(
        f"Teacher targets have {params} params per member (shape {list(z.shape)}) but "
        f"the student's head expects {expected_params} (targets of shape "
        f"[batch, members, {expected_params}]). Check the head's event_size against the "
        "members' family.params_size.")
  members = tf.compat.dimension_value(z.shape[1])
  if members is not None and members < 1:
    raise ValueError(f"Teacher targets have no members: shape {list(z.shape)}.")


def unpack_targets(y_true):
  """Returns (z, labels or None) from z or {"ensemble": z, "label": y}."""
  if isinstance(y_true, dict):
    unknown = set(y_true) - {"ensemble", "label"}
    if "ensemble" not in y_true or unknown:
      raise ValueError(
          'Targets given as a dict must have the keys "ensemble" (and optionally '
          f'"label"), got keys {sorted(y_true)}.')
    return tf.convert_to_tensor(y_true["ensemble"]), y_true.get("label")
  return tf.convert_to_tensor(y_true), None


def member_log_probs(z, num_classes, family, temperature, smoothing, dtype):
  """Heated, smoothed log-probabilities of the members: [batch, members, K], in dtype."""
  z = tf.convert_to_tensor(z)
  if family is not None:
    if not isinstance(family, families_lib.CategoricalLogits):
      raise TypeError(f"Expected a CategoricalLogits family, got {family!r}.")
    if family.num_classes != num_classes:
      raise ValueError(f"The family has {family.num_classes} classes but the student's "
                       f"distribution has {num_classes}.")
    z = family.logits(z)
  if z.shape.rank is not None and z.shape.rank != 3:
    raise ValueError(f"Teacher targets must be logits of shape [batch, members, classes], "
                     f"got shape {list(z.shape)}.")
  size = tf.compat.dimension_value(z.shape[-1])
  if size is not None and size != num_classes:
    raise ValueError(
        f"Teacher targets have {size} logits per member (shape {list(z.shape)}) but the "
        f"student's distribution is over {num_classes} classes. (Members with a reference "
        "class give K - 1 logits: pass their CategoricalLogits family to the loss.)")
  z = tf.cast(z, dtype)
  log_p = tf.nn.log_softmax(z / _dtypes.cast(temperature, dtype), axis=-1)
  if smoothing:
    # pi <- (1 - eps) pi + eps / K, in log space: finite even where pi underflows to 0.
    eps = _dtypes.cast(smoothing, dtype)
    log_p = tf.reduce_logsumexp(tf.stack(
        [log_p + tf.math.log1p(-eps),
         tf.broadcast_to(tf.math.log(eps / num_classes), tf.shape(log_p))]), axis=0)
  return log_p


def check_weight(name, value):
  """`value` as a float; raises ValueError (naming `name`) unless it is finite and >= 0."""
  if not (np.isfinite(value) and value >= 0):
    raise ValueError(f"{name} must be a finite float >= 0, got {value}.")
  return float(value)


def family_config(family):
  """The serialized family ({"class_name", "config"}), or None."""
  return None if family is None else families_lib.serialize(family)


def check_temperature(value):
  """`value` as a float; raises ValueError unless it is > 0 and finite in float32."""
  # The temperature lives in a float32 variable: check the value it will hold (1e39
  # would become inf, 1e-46 zero).
  with np.errstate(over="ignore", under="ignore"):
    stored = np.float32(value) if np.isfinite(value) else np.float32(np.nan)
  if not (np.isfinite(value) and value > 0 and np.isfinite(stored) and stored > 0):
    raise ValueError(f"temperature must be a finite float > 0 that float32 can hold, got "
                     f"{value}.")
  return float(value)
