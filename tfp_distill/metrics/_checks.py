"""Input conversion and validation shared by the metrics of `tfp_distill.metrics`.

Converts arguments to Tensors of one common float dtype (`_to_float`), class labels
(`_to_labels`) and ranking scores (`_to_scores`), and checks shapes statically (raising
`ValueError`) or with graph assertions, and values eagerly (`ValueError`) or with graph
assertions (`tf.errors.InvalidArgumentError`), as the "Dtypes" and "Validation"
paragraphs of the `tfp_distill.metrics` docstring describe. Private: nothing here is
public API.
"""

import numbers

import numpy as np
import tensorflow as tf

__all__ = []


# ----------------------------------------------------------------------------------------
# Conversion and validation helpers.
# ----------------------------------------------------------------------------------------


def _float_dtype(values):
  """The common float dtype of `values` (see the `tfp_distill.metrics` docstring)."""
  tensor_dtypes = []
  array_dtypes = []
  for value in values:
    if tf.is_tensor(value):
      tensor_dtypes.append(tf.as_dtype(value.dtype))
    elif isinstance(value, (np.ndarray, np.generic)):
      try:
        array_dtypes.append(tf.as_dtype(value.dtype))
      except TypeError:
        pass
  for group in (tensor_dtypes, array_dtypes):
    floats = [d for d in group if d.is_floating]
    if floats:
      return max(floats, key=lambda d: d.size)
  return tf.float32


def _to_float(fn_name, **named):
  """Converts keyword arguments to Tensors of one common float dtype, in order."""
  dtype = _float_dtype(named.values())
  out = []
  for name, value in named.items():
    try:
      x = tf.convert_to_tensor(value, dtype_hint=dtype)
    except (TypeError, ValueError) as e:
      raise TypeError(
          f"{fn_name}: `{name}` must be a real-valued array or Tensor, got "
          f"{type(value).__name__}: {e}") from None
    if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype == tf.bool):
      raise TypeError(
          f"{fn_name}: `{name}` must be real-valued, got dtype {x.dtype.name}.")
    out.append(tf.cast(x, dtype) if x.dtype != dtype else x)
  return out


def _shape_str(x):
  return str(x.shape.as_list()) if x.shape.rank is not None else "<unknown rank>"


def _check_rank(fn_name, name, x, ranks, expected):
  """Raises ValueError unless `x` has a statically known rank in `ranks`."""
  if x.shape.rank is None:
    raise ValueError(
        f"{fn_name}: `{name}` must have a statically known rank; expected shape "
        f"{expected}.")
  if x.shape.rank not in ranks:
    raise ValueError(
        f"{fn_name}: `{name}` must have shape {expected}, got shape {_shape_str(x)} "
        f"(rank {x.shape.rank}).")


def _check_shapes_equal(message, a_shape, b_shape, a_dynamic, b_dynamic):
  """Static check of two (partial) shapes; returns a graph assertion if not static.

  Args:
    message: str, the error message.
    a_shape, b_shape: tf.TensorShape of equal rank.
    a_dynamic, b_dynamic: callables returning the dynamic shapes, int32 Tensors.

  Returns:
    A list with a graph assertion when the shapes are not both fully defined (empty
    otherwise).

  Raises:
    ValueError: if the static shapes are incompatible.
  """
  if a_shape.rank != b_shape.rank or not a_shape.is_compatible_with(b_shape):
    raise ValueError(message)
  if a_shape.is_fully_defined() and b_shape.is_fully_defined():
    return []
  return [tf.debugging.assert_equal(a_dynamic(), b_dynamic(), message=message)]


def _check_nonempty(fn_name, name, x, expected, min_size=1):
  """Raises ValueError if `x` statically has fewer than `min_size` elements.

  Returns a list with a graph assertion when the number of elements is not static.
  """
  size = x.shape.num_elements()
  message = (f"{fn_name}: `{name}` must have shape {expected} with at least {min_size} "
             f"element(s)")
  if size is not None:
    if size < min_size:
      raise ValueError(f"{message}; got shape {_shape_str(x)} ({size} elements).")
    return []
  return [tf.debugging.assert_greater_equal(tf.size(x), min_size, message=message + ".")]


def _check_values(x, assertion, message):
  """Runs a value assertion: ValueError eagerly, a graph assertion otherwise.

  Args:
    x: Tensor.
    assertion: callable (x, message) -> assertion, e.g. `tf.debugging.assert_all_finite`.
    message: str.

  Returns:
    `x`, with a control dependency on the assertion when building a graph.

  Raises:
    ValueError: eagerly, if the assertion fails.
  """
  if tf.executing_eagerly():
    try:
      assertion(x, message)
    except tf.errors.InvalidArgumentError:
      raise ValueError(message) from None
    return x
  check = assertion(x, message)
  if check is None:
    return x
  with tf.control_dependencies([check]):
    return tf.identity(x)


def _finite(fn_name, name, x):
  return _check_values(
      x, tf.debugging.assert_all_finite,
      f"{fn_name}: `{name}` must be finite, but it contains NaN or Inf values.")


def _positive(fn_name, name, x):
  return _check_values(
      x, lambda t, m: tf.debugging.assert_positive(t, message=m),
      f"{fn_name}: `{name}` must be strictly positive.")


def _with_deps(x, assertions):
  if not assertions:
    return x
  with tf.control_dependencies(assertions):
    return tf.identity(x)


def _check_same_shape(fn_name, a_name, a, b_name, b, expected):
  message = (f"{fn_name}: `{a_name}` and `{b_name}` must have the same shape {expected}; "
             f"got shapes {_shape_str(a)} and {_shape_str(b)}.")
  return _check_shapes_equal(message, a.shape, b.shape,
                             lambda: tf.shape(a), lambda: tf.shape(b))


def _check_num_fractions(fn_name, num_fractions):
  if isinstance(num_fractions, (bool, np.bool_)) or not isinstance(
      num_fractions, numbers.Integral):
    raise TypeError(
        f"{fn_name}: `num_fractions` must be a Python int >= 1 (it sets the output shape "
        f"[fractions]), got {num_fractions!r} of type {type(num_fractions).__name__}.")
  if num_fractions < 1:
    raise ValueError(
        f"{fn_name}: `num_fractions` must be >= 1 (the outputs have shape "
        f"[fractions] = [num_fractions]), got {num_fractions}.")
  return int(num_fractions)


# ----------------------------------------------------------------------------------------
# Classification: validation helpers.
# ----------------------------------------------------------------------------------------

_BINNINGS = ("equal_width", "quantile")


def _check_num_bins(fn_name, num_bins):
  if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, numbers.Integral):
    raise TypeError(
        f"{fn_name}: `num_bins` must be a Python int >= 1 (it sets the output shape "
        f"[bins]), got {num_bins!r} of type {type(num_bins).__name__}.")
  if num_bins < 1:
    raise ValueError(
        f"{fn_name}: `num_bins` must be >= 1 (the per-bin outputs have shape [bins] = "
        f"[num_bins]), got {num_bins}.")
  return int(num_bins)


def _check_binning(fn_name, binning):
  if not isinstance(binning, str) or binning not in _BINNINGS:
    raise ValueError(
        f"{fn_name}: `binning` must be 'equal_width' or 'quantile', got {binning!r}.")
  return binning


def _to_labels(fn_name, name, labels):
  """Converts labels to a Tensor of integer, float or bool dtype (no value checks)."""
  try:
    x = tf.convert_to_tensor(labels)
  except (TypeError, ValueError) as e:
    raise TypeError(
        f"{fn_name}: `{name}` must be an integer array or Tensor, got "
        f"{type(labels).__name__}: {e}") from None
  if x.dtype == tf.bool:
    return tf.cast(x, tf.int64)
  if not (x.dtype.is_integer or x.dtype.is_floating):
    raise TypeError(
        f"{fn_name}: `{name}` must hold integer labels, got dtype {x.dtype.name}.")
  return x


def _to_scores(fn_name, **named):
  """Converts score arguments to Tensors of one dtype, kept exact for sorting.

  int64 if every argument is integer (or bool), else the common float dtype of the
  `tfp_distill.metrics` docstring.
  """
  tensors = []
  for name, value in named.items():
    try:
      x = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as e:
      raise TypeError(
          f"{fn_name}: `{name}` must be a real-valued array or Tensor, got "
          f"{type(value).__name__}: {e}") from None
    if x.dtype == tf.bool:
      x = tf.cast(x, tf.int64)
    if not (x.dtype.is_integer or x.dtype.is_floating):
      raise TypeError(
          f"{fn_name}: `{name}` must be real-valued, got dtype {x.dtype.name}.")
    tensors.append(x)
  if all(x.dtype.is_integer for x in tensors):
    return [tf.cast(x, tf.int64) for x in tensors]
  dtype = _float_dtype(named.values())
  return [tf.cast(x, dtype) if x.dtype != dtype else x for x in tensors]


def _not_nan(fn_name, name, x):
  """Value check that a float Tensor has no NaN (+-inf are allowed: they sort fine)."""
  if not x.dtype.is_floating:
    return x
  return _check_values(
      x, lambda t, m: tf.debugging.assert_equal(
          tf.reduce_any(tf.math.is_nan(t)), False, message=m),
      f"{fn_name}: `{name}` must not contain NaN values.")


def _check_class_labels(fn_name, name, labels, classes, classes_str, probs_name):
  """Value checks of class indices; returns int64 labels [batch]."""
  if labels.dtype.is_floating:
    labels = _finite(fn_name, name, labels)
    labels = _check_values(
        labels, lambda t, m: tf.debugging.assert_equal(t, tf.round(t), message=m),
        f"{fn_name}: `{name}` must hold integer class indices, but it has non-integer "
        f"values.")
  message = (f"{fn_name}: `{name}` must hold class indices in [0, classes) = "
             f"[0, {classes_str}), the classes of `{probs_name}` [batch, classes]; got a "
             f"label out of range (too many classes in the labels, or fewer columns in "
             f"`{probs_name}` than classes?).")
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_non_negative(t, message=m), message)
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_less(
          t, tf.cast(classes, t.dtype), message=m), message)
  return tf.cast(labels, tf.int64)


def _classification_inputs(fn_name, labels, probs, probs_name="probs", probabilities=True,
                           labels_name="labels", allow_empty=False):
  """Validates class labels [batch] and probabilities (or logits) [batch, classes].

  Returns:
    labels: int64 Tensor [batch].
    probs: float Tensor [batch, classes], of the float dtype of `probs`.
  """
  (probs,) = _to_float(fn_name, **{probs_name: probs})
  labels = _to_labels(fn_name, labels_name, labels)
  probs_expected = "[batch, classes]"
  _check_rank(fn_name, probs_name, probs, (2,), probs_expected)
  _check_rank(fn_name, labels_name, labels, (1,),
              "[batch] (integer class indices; for one-hot labels pass their argmax)")
  message = (f"{fn_name}: `{labels_name}` [batch] and `{probs_name}` [batch, classes] "
             f"must have the same batch size; got shapes {_shape_str(labels)} and "
             f"{_shape_str(probs)}.")
  deps = _check_shapes_equal(message, labels.shape, probs.shape[:1],
                             lambda: tf.shape(labels), lambda: tf.shape(probs)[:1])
  if not allow_empty:
    deps += _check_nonempty(fn_name, labels_name, labels, "[batch]")
  classes = tf.compat.dimension_value(probs.shape[1])
  classes_message = (f"{fn_name}: `{probs_name}` must have shape [batch, classes] with "
                     f"classes >= 1")
  if classes is not None and classes < 1:
    raise ValueError(f"{classes_message}; got shape {_shape_str(probs)}.")
  if classes is None:
    deps.append(tf.debugging.assert_positive(tf.shape(probs)[1],
                                             message=classes_message + "."))
  labels = _with_deps(labels, deps)
  probs = _with_deps(probs, deps)
  labels = _check_class_labels(
      fn_name, labels_name, labels, classes if classes is not None else tf.shape(probs)[1],
      str(classes) if classes is not None else "classes", probs_name)
  probs = _finite(fn_name, probs_name, probs)
  if probabilities:
    probs = _check_values(
        probs, lambda t, m: tf.debugging.assert_non_negative(t, message=m),
        f"{fn_name}: `{probs_name}` must hold probabilities in [0, 1], but it has "
        f"negative entries.")
    probs = _check_values(
        probs, lambda t, m: tf.debugging.assert_less_equal(
            t, tf.ones([], t.dtype), message=m),
        f"{fn_name}: `{probs_name}` must hold probabilities in [0, 1], but it has entries "
        f"greater than 1.")
  return labels, probs


def _binary_inputs(fn_name, labels, scores):
  """Validates binary labels [batch] (1 = positive) and real scores [batch]."""
  labels = _to_labels(fn_name, "labels", labels)
  (scores,) = _to_scores(fn_name, scores=scores)
  _check_rank(fn_name, "labels", labels, (1,), "[batch]")
  _check_rank(fn_name, "scores", scores, (1,), "[batch]")
  deps = _check_same_shape(fn_name, "labels", labels, "scores", scores, "[batch]")
  deps += _check_nonempty(fn_name, "labels", labels, "[batch]")
  labels = _with_deps(labels, deps)
  scores = _not_nan(fn_name, "scores", _with_deps(scores, deps))
  labels = _check_values(
      labels, lambda t, m: tf.debugging.assert_equal(
          tf.reduce_all((t == 0) | (t == 1)), True, message=m),
      f"{fn_name}: `labels` must be binary, 0 (negative) or 1 (positive), shape [batch].")
  return tf.cast(labels, tf.int64), scores
