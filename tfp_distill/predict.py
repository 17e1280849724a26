"""`predict_uncertainty`: inputs to prediction and uncertainty in one compiled, batched call.

```none
x (array or tf.data.Dataset) ─► batches ─► ┌ model(x) ─► decompose / decompose_ensemble ┐ ─► NumPy
                                           └────────── one tf.function (optional XLA) ──┘
```

A student of either Keras (its output a tf_keras head's distribution, or a Keras 3 head's
parameters) is decomposed with `td.decompose`; a `td.Ensemble`, a BatchEnsemble student
or any model returning member parameters z [batch, members, params] with
`td.decompose_ensemble`. The model, the decomposition and the Monte Carlo draws run in
one graph, traced once per model, settings and input shape (any batch size) and reused by
later calls: the speed of a hand-written `tf.function` without writing one.
"""

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfp_distill import _keras3
from tfp_distill import parameterization as parameterization_lib
from tfp_distill import uncertainty
from tfp_distill._keras import keras

__all__ = ["finite_rows", "model_output", "nan_rows", "predict_uncertainty"]

# Attribute holding {(settings, input spec): concrete function} on the model itself, so
# that the compiled functions live and die with their model.
_CACHE_ATTRIBUTE = "_tfp_distill_predict_functions"


def _is_distribution(value):
  try:
    parameterization_lib.get_distribution(value)
  except TypeError:
    return False
  return True


def _input_spec(model):
  """The model's input TensorSpec [batch, ...] when it has one functional input, else None."""
  for candidate in (model, *(getattr(model, "members", None) or [])[:1]):
    inputs = getattr(candidate, "inputs", None)
    if inputs and len(inputs) == 1:
      return tf.TensorSpec([None] + list(inputs[0].shape[1:]), inputs[0].dtype)
  return None


def model_output(model, x):
  """model(x) in inference mode: a tf_keras head's distribution, a Keras 3 head's
  parameters (marked with their distribution, `td.parameterization.mark`), or z.

  Args:
    model: a Keras model of either Keras, or any callable.
    x: Tensor [batch, ...].

  Returns:
    what the model returns.
  """
  if isinstance(model, keras.layers.Layer):
    return model(x, training=False)
  if not _keras3.is_keras3_object(model):
    return model(x)
  out = model(x, training=False)
  if tf.is_tensor(out) and not parameterization_lib.is_distribution_like(out):
    from tfp_distill.keras3 import heads as heads3
    head = heads3.find_head(model)
    if head is not None:   # its output was copied on the way out: mark the copy
      out = parameterization_lib.mark(tf.identity(out), head.distribution)
  return out


def finite_rows(x):
  """bool Tensor [batch]: whether every value of each row of x is finite (always True
  for integer inputs)."""
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    return tf.ones(tf.shape(x)[:1], tf.bool)
  finite = tf.math.is_finite(x)
  return tf.reduce_all(finite, axis=list(range(1, x.shape.rank))) if x.shape.rank > 1 \
      else finite


def nan_rows(outputs, ok):
  """Each Tensor of a dict with the rows where `ok` [batch] is False set to NaN."""
  out = {}
  for key, value in outputs.items():
    mask = tf.reshape(ok, [-1] + [1] * (value.shape.rank - 1))
    out[key] = tf.where(mask, value, tf.constant(np.nan, value.dtype))
  return out


def _decomposition(model, family, num_samples, seed, method, num_points, antithetic,
                   common_noise):
  """The graph body: x [batch, ...] -> dict of float32 Tensors (rows of x holding NaN or
  Inf give NaN, whatever the model's kernels make of them), plus "_finite" [batch]."""

  def body(x):
    ok = finite_rows(x)
    out = model_output(model, x)
    if _is_distribution(out):
      u = uncertainty.decompose(out, family, num_samples=num_samples, seed=seed,
                                method=method, num_points=num_points, antithetic=antithetic,
                                common_noise=common_noise)
    elif tf.is_tensor(out) and out.shape.rank == 3:
      family.check_params(out, what="predict_uncertainty: the model's output z")
      u = uncertainty.decompose_ensemble(out, family)
    else:
      shape = list(out.shape) if tf.is_tensor(out) else type(out).__name__
      raise ValueError(
          "predict_uncertainty: the model's output fits neither a student head nor the "
          f"members' layout for {family!r}: got {shape}. A student must end in a "
          "tfp_distill head (a distribution over z); an ensemble must return z of shape "
          f"[batch, members, {family.params_size}] (e.g. td.Ensemble).")
    u = nan_rows({k: tf.cast(v, tf.float32) if v.dtype != tf.float64 else v
                  for k, v in u.items()}, ok)
    u["_finite"] = ok
    return u

  return body


def _compiled(model, family, spec, settings, jit_compile):
  """The cached concrete function for this model, settings and input spec."""
  key = (repr(family), settings, jit_compile, tuple(spec.shape.as_list()), spec.dtype.name)
  per_model = getattr(model, _CACHE_ATTRIBUTE, None)
  if per_model is None:
    per_model = {}
    try:   # object.__setattr__: Keras must not track the cache as part of the model
      object.__setattr__(model, _CACHE_ATTRIBUTE, per_model)
    except (AttributeError, TypeError):   # no attributes (a builtin): compile every call
      pass
  if key not in per_model:
    body = _decomposition(model, family, *settings)
    per_model[key] = tf.function(body, jit_compile=jit_compile).get_concrete_function(spec)
  return per_model[key]


def _seed_key(seed):
  if isinstance(seed, (int, np.integer)):
    return int(seed)
  return tuple(int(s) for s in np.asarray(seed).reshape(-1))


def _batches_of_array(x, batch_size, dtype):
  x = np.asarray(x)
  if x.ndim == 0 or len(x) == 0:
    raise ValueError(f"predict_uncertainty: x is empty (shape {x.shape}); expected "
                     "[n, ...] with n >= 1.")
  if dtype is not None and x.dtype != dtype.as_numpy_dtype and (
      np.issubdtype(x.dtype, np.floating) or dtype.is_floating):
    x = x.astype(dtype.as_numpy_dtype)
  elif dtype is None and x.dtype == np.float64:
    x = x.astype(np.float32)
  if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
    raise ValueError(f"predict_uncertainty: x must be numeric, got dtype {x.dtype}.")
  spec = tf.TensorSpec([None] + list(x.shape[1:]), tf.as_dtype(x.dtype))
  return spec, (x[i:i + batch_size] for i in range(0, len(x), batch_size)), -(
      -len(x) // batch_size)


def _batches_of_dataset(ds, batch_size, expected):
  spec = ds.element_spec
  if isinstance(spec, tuple):   # (x, y, ...) as Keras datasets yield: keep x
    ds = ds.map(lambda *e: e[0])
    spec = spec[0]
  if isinstance(spec, dict) or not isinstance(spec, tf.TensorSpec):
    raise ValueError("predict_uncertainty: a Dataset must yield x or (x, ...) tuples of "
                     f"Tensors, got elements of {spec}.")
  if expected is not None and spec.shape.rank == expected.shape.rank - 1:
    ds = ds.batch(batch_size)   # unbatched examples
    spec = ds.element_spec
  if expected is not None and expected.dtype.is_floating and spec.dtype != expected.dtype:
    ds = ds.map(lambda t: tf.cast(t, expected.dtype))
  spec = tf.TensorSpec([None] + spec.shape.as_list()[1:], ds.element_spec.dtype)
  size = int(ds.cardinality())
  return spec, ds.prefetch(tf.data.AUTOTUNE), (size if size > 0 else None)


def predict_uncertainty(model, family, x, batch_size=1024, num_samples=100, seed=0,
                        method=None, num_points=40, antithetic=False, common_noise=True,
                        jit_compile=False, verbose=0, nonfinite="raise"):
  """Prediction and total / aleatoric / epistemic uncertainty of a student or an ensemble.

  One compiled graph per model, settings and input shape runs the model and the
  decomposition (`td.decompose` for a student, `td.decompose_ensemble` for members'
  outputs) on each batch; it is built on the first call and reused afterwards.

  Args:
    model: a student (a tf_keras or Keras 3 model ending in a `td.heads` or
      `td.keras3.heads` head), or a model returning members' parameters z [batch,
      members, params] (`td.Ensemble`, a BatchEnsemble student), or any callable doing
      either.
    family: the members' family (`td.families.HeteroscedasticNormal` or
      `td.families.CategoricalLogits`).
    x: array [n, ...], or a `tf.data.Dataset` of batches of x (or of (x, ...) tuples,
      whose first component is used); a Dataset of single examples is batched when the
      model's input rank tells so.
    batch_size: int >= 1, examples per compiled call (arrays, unbatched Datasets).
    num_samples: int, Monte Carlo samples (a Gaussian over logits; regression with
      method="monte_carlo").
    seed: int or int [2], stateless Monte Carlo seed.
    method, num_points, antithetic, common_noise: as `td.decompose` (with common noise,
      the default, every example uses the same draws: the result for an example does not
      depend on the batch size or on the other examples).
    jit_compile: bool, compile the graph with XLA.
    verbose: 0 silent, 1 a progress bar over batches.
    nonfinite: what a row of x holding NaN or Inf gives: "raise" (the default, a
      ValueError naming the first such row and their count) or "nan" (NaN in every
      output of that row, the other rows as usual). Never plausible numbers: a network's
      fused kernels can turn NaN inputs into finite outputs, so rows are checked.

  Returns:
    dict of NumPy arrays with the keys of `td.decompose` / `td.decompose_ensemble`:
      "prediction" [n] or [n, E] (regression), [n, classes] (classification); "total",
      "aleatoric", "epistemic" [n] ("epkl" for classification; a mixture-distilled
      student has "prediction" and "total" only).

  Raises:
    ValueError: for an empty input, batch_size < 1, num_samples < 1, a model whose
      output fits neither a head nor the family's member layout, or (nonfinite="raise")
      inputs holding NaN or Inf.

  #### Examples

  ```python
  u = td.predict_uncertainty(student, family, x_test)      # {"prediction": [n, K], ...}
  v = td.predict_uncertainty(ensemble, family, x_test)     # the teacher, same keys
  ```
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
      batch_size < 1):
    raise ValueError(f"predict_uncertainty: batch_size must be an int >= 1, got "
                     f"{batch_size!r}.")
  batch_size = int(batch_size)
  if nonfinite not in ("raise", "nan"):
    raise ValueError(f"predict_uncertainty: nonfinite must be 'raise' or 'nan', got "
                     f"{nonfinite!r}.")
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or (
      num_samples < 1):
    raise ValueError(f"predict_uncertainty: num_samples must be an int >= 1, got "
                     f"{num_samples!r} (0 samples would give NaN for every example).")
  expected = _input_spec(model)
  if isinstance(x, tf.data.Dataset):
    spec, batches, count = _batches_of_dataset(x, batch_size, expected)
  else:
    spec, batches, count = _batches_of_array(
        x, batch_size, expected.dtype if expected is not None else None)
  settings = (int(num_samples), _seed_key(seed), method, int(num_points), bool(antithetic),
              bool(common_noise))
  fn = _compiled(model, family, spec, settings, bool(jit_compile))
  if verbose:
    batches = tqdm(batches, total=count, desc="predict_uncertainty", unit="batch",
                   leave=False)
  parts = [{k: v.numpy() for k, v in fn(tf.convert_to_tensor(batch)).items()}
           for batch in batches]
  if not parts:
    raise ValueError("predict_uncertainty: the Dataset yielded no batches.")
  out = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
  finite = out.pop("_finite")
  if nonfinite == "raise" and not finite.all():
    bad = np.flatnonzero(~finite)
    raise ValueError(f"predict_uncertainty: {len(bad)} input row(s) hold NaN or Inf, the "
                     f"first is row {int(bad[0])}; pass nonfinite='nan' to get NaN for "
                     "those rows and results for the others.")
  return out
