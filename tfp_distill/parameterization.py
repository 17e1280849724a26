"""How a student head's flat params become a distribution: one pair of functions per head.

```none
raw params [batch, params_size]  (a Dense layer's output)
  ─► parameters(raw, E, min_scale)  softplus + floor, exp + floor, the Cholesky diagonal
  ─► [batch, output_size]           the distribution's own parameters, constrained
  ─► distribution(parameters)       tfd.Distribution, batch [batch]
```

Both Keras share these functions, so their heads cannot drift apart: a tf_keras head
(`td.heads`, a `tfp.layers` layer) returns `distribution(parameters(raw))`; a Keras 3 head
(`td.keras3.heads`, whose layers return tensors) returns `parameters(raw)` and everything
that needs the distribution (losses, `td.decompose`, `td.predict_uncertainty`,
`td.export_saved_model`) builds it with `distribution(...)`. A head class is one of the
parameterizations below mixed into a layer of either Keras.

```none
parameterization            raw params (params_size)      parameters (output_size)
Normal                      [loc, raw_scale]   (2 E)      [loc, scale]              (2 E)
MultivariateNormalTriL      [loc, tril]  (E + E(E+1)/2)   [loc, scale_tril entries] (same)
NormalPredictive            [mu, rho]          (2 E)      [mu, scale]               (2 E)
Dirichlet                   s                  (K)        concentration alpha       (K)
Categorical                 logits             (K)        logits                    (K)
```

The parameters are the distribution's own: a Keras 3 student's `predict` gives them,
and `distribution(parameters)` needs nothing else (no event size, no floor). A Keras 3
head's output tensor also carries its `distribution` function (`mark`), which
`get_distribution` follows: `td.decompose(student(x), family)` and the losses take a Keras
3 student's output as they take a tf_keras one's.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import families as families_lib

tfd = tfp.distributions

__all__ = [
    "CONVERT_TO_TENSOR_FNS",
    "CategoricalParameterization",
    "DirichletParameterization",
    "MAX_LOG_CONCENTRATION",
    "MultivariateNormalTriLParameterization",
    "NormalParameterization",
    "NormalPredictiveParameterization",
    "check_head_arguments",
    "check_params_shape",
    "distribution_parameters",
    "get_distribution",
    "is_distribution_like",
    "mark",
    "output_normalization",
    "unwrap",
]

#: What a tf_keras head's output becomes when used as a Tensor.
CONVERT_TO_TENSOR_FNS = ("mean", "sample", "mode")

#: log-concentrations above this are clipped: exp(30) ~ 1e13 keeps lgamma finite in
#: float32 and far beyond any precision an ensemble of M members can support.
MAX_LOG_CONCENTRATION = 30.0

# The attribute of a Keras 3 head's output tensor that holds its `distribution` function.
_DISTRIBUTION_FN = "_tfp_distill_distribution_fn"


def _scale(raw, min_scale):
  return tf.math.softplus(raw) + _dtypes.cast(min_scale, raw.dtype)


def _width(parameters):
  return tf.compat.dimension_value(parameters.shape[-1])


class _Parameterization:
  """What every parameterization has: `new` = `distribution` after `parameters`."""

  min_event_size = 1

  @classmethod
  def new(cls, params, event_size, min_scale=1e-3):
    """The distribution from raw params [..., params_size(E)]: `distribution(parameters(
    params, event_size, min_scale))`."""
    return cls.distribution(cls.parameters(params, event_size, min_scale))


class NormalParameterization(_Parameterization):
  """Diagonal Normal over an event of size E (tfpl.IndependentNormal with a floor).

  ```none
  raw params = [loc (E), raw_scale (E)]      params_size(E) = 2 E
  parameters = [loc (E), scale (E)],  scale = softplus(raw_scale) + min_scale
  v = prod_e N(loc_e, scale_e^2)
  ```
  """

  @staticmethod
  def params_size(event_size):
    """The size of the raw params the head takes (a Dense layer's units): 2 E."""
    return 2 * int(event_size)

  @staticmethod
  def output_size(event_size):
    """The size of `parameters(...)`, what a Keras 3 head outputs: 2 E."""
    return 2 * int(event_size)

  @staticmethod
  def parameters(params, event_size, min_scale=1e-3):
    """[loc, softplus(raw_scale) + min_scale]: float Tensor [..., 2 E] from [..., 2 E]."""
    params = tf.convert_to_tensor(params)
    loc, raw = params[..., :event_size], params[..., event_size:]
    return tf.concat([loc, _scale(raw, min_scale)], axis=-1)

  @staticmethod
  def distribution(parameters):
    """Independent Normal, batch [...], event [E], from [..., 2 E] = [loc, scale]."""
    parameters = tf.convert_to_tensor(parameters)
    e = _width(parameters) // 2
    return tfd.Independent(tfd.Normal(loc=parameters[..., :e], scale=parameters[..., e:]),
                           reinterpreted_batch_ndims=1)


@functools.lru_cache(maxsize=None)
def _fill_index(event_size):
  """int [E, E]: where each entry of the lower triangle sits in a `fill_triangular`
  vector of length E (E + 1) / 2 (entries above the diagonal: 0)."""
  size = event_size * (event_size + 1) // 2
  with tf.init_scope():   # eager even while a graph is traced
    return tfp.math.fill_triangular(tf.range(size)).numpy()


@functools.lru_cache(maxsize=None)
def _diagonal_mask(event_size):
  """bool [E (E + 1) / 2]: which entries of a `fill_triangular` vector are diagonal."""
  size = event_size * (event_size + 1) // 2
  return np.isin(np.arange(size), np.diagonal(_fill_index(event_size)))


class MultivariateNormalTriLParameterization(_Parameterization):
  """Full-covariance Normal over an event of size E (tfpl.MultivariateNormalTriL).

  ```none
  raw params = [loc (E), tril (E (E + 1) / 2)]   params_size(E) = E + E (E + 1) / 2
  parameters = [loc, tril with its diagonal entries d -> softplus(d) + min_scale]
  v = N(loc, L L^T),  L = fill_triangular(parameters[E:])
  ```
  which is `tfb.FillScaleTriL(diag_shift=min_scale)`, written with a static mask: the
  gradients of the bijector (and of diag_part / set_diag) build zeros of a dynamic
  shape, which XLA (jit_compile) cannot compile. Selecting by the mask is exact.
  """

  @staticmethod
  def params_size(event_size):
    """E + E (E + 1) / 2."""
    event_size = int(event_size)
    return event_size + event_size * (event_size + 1) // 2

  @staticmethod
  def output_size(event_size):
    """E + E (E + 1) / 2 (the parameters have the raw params' layout)."""
    return MultivariateNormalTriLParameterization.params_size(event_size)

  @staticmethod
  def parameters(params, event_size, min_scale=1e-3):
    """[loc, tril] with a positive diagonal: float Tensor [..., E + E (E + 1) / 2]."""
    params = tf.convert_to_tensor(params)
    loc, raw = params[..., :event_size], params[..., event_size:]
    tril = tf.where(tf.constant(_diagonal_mask(int(event_size))), _scale(raw, min_scale),
                    raw)
    return tf.concat([loc, tril], axis=-1)

  @staticmethod
  def distribution(parameters):
    """MultivariateNormalTriL, batch [...], event [E], from [..., E + E (E + 1) / 2]."""
    parameters = tf.convert_to_tensor(parameters)
    e = int(round((np.sqrt(9 + 8 * _width(parameters)) - 3) / 2))
    return tfd.MultivariateNormalTriL(
        loc=parameters[..., :e], scale_tril=tfp.math.fill_triangular(parameters[..., e:]))


class NormalPredictiveParameterization(NormalParameterization):
  """Normal over y for mixture distillation, parameterized like a heteroscedastic member.

  ```none
  raw params = [mu (E), rho (E)]             params_size(E) = 2 E
  parameters = [mu, sqrt(softplus(rho) + min_variance)]
  q(y) = prod_e N(y_e; mu_e, softplus(rho_e) + min_variance)
  ```
  Here `min_scale` is the variance floor `min_variance` of
  `families.HeteroscedasticNormal` (the distribution is that family's predictive).
  """

  @staticmethod
  def parameters(params, event_size, min_scale=1e-3):
    """[mu, sqrt(softplus(rho) + min_variance)]: float Tensor [..., 2 E]."""
    family = families_lib.HeteroscedasticNormal(event_size, min_variance=min_scale)
    mu, rho = family.split(tf.convert_to_tensor(params))
    return tf.concat([mu, tf.sqrt(family.variance_from_rho(rho))], axis=-1)


class _ClassParameterization(_Parameterization):
  """One parameter per class, K >= 2 classes."""

  min_event_size = 2

  @staticmethod
  def params_size(event_size):
    """K."""
    return int(event_size)

  @staticmethod
  def output_size(event_size):
    """K."""
    return int(event_size)


class DirichletParameterization(_ClassParameterization):
  """Dirichlet over class-probability vectors (the EnD^2 student).

  ```none
  raw params = s (K logits)                  params_size(K) = K
  parameters = alpha,  alpha_k = exp(min(s_k, 30)) + min_scale
  v = Dirichlet(alpha)
  ```
  """

  @staticmethod
  def parameters(params, event_size, min_scale=1e-3):
    """The concentration alpha [..., K] from logits [..., K]."""
    del event_size
    params = tf.convert_to_tensor(params)
    return tf.exp(tf.minimum(params, MAX_LOG_CONCENTRATION)) + _dtypes.cast(min_scale,
                                                                        params.dtype)

  @staticmethod
  def distribution(parameters):
    """Dirichlet, batch [...], event [K], from its concentration [..., K]."""
    return tfd.Dirichlet(concentration=tf.convert_to_tensor(parameters))


class CategoricalParameterization(_ClassParameterization):
  """One-hot Categorical over K classes from logits (soft targets).

  ```none
  raw params = parameters = logits (K)       params_size(K) = K
  q(y) = OneHotCategorical(logits);  mean = softmax(logits)
  ```
  `min_scale` is unused (kept for the common head signature).
  """

  @staticmethod
  def parameters(params, event_size, min_scale=1e-3):
    """The logits [..., K], unchanged."""
    del event_size, min_scale
    return tf.convert_to_tensor(params)

  @staticmethod
  def distribution(parameters):
    """OneHotCategorical, batch [...], event [K], from logits [..., K]."""
    parameters = tf.convert_to_tensor(parameters)
    return tfd.OneHotCategorical(logits=parameters, dtype=parameters.dtype)


def check_head_arguments(head, event_size, min_scale, convert_to_tensor_fn):
  """Checks a head's constructor arguments (either Keras); returns (event_size, min_scale).

  Raises:
    ValueError: event_size below the head's minimum (1, or 2 classes), min_scale not a
      finite float > 0, or an unknown convert_to_tensor_fn.
  """
  name = type(head).__name__
  event_size = int(event_size)
  if event_size < 1:
    raise ValueError(f"event_size must be >= 1, got {event_size}.")
  if event_size < head.min_event_size:
    raise ValueError(f"{name} needs event_size (classes) >= {head.min_event_size}, got "
                     f"{event_size}.")
  if not (min_scale > 0 and np.isfinite(min_scale)):
    raise ValueError(f"min_scale must be a finite float > 0, got {min_scale}.")
  if convert_to_tensor_fn not in CONVERT_TO_TENSOR_FNS:
    raise ValueError(f"convert_to_tensor_fn must be one of {CONVERT_TO_TENSOR_FNS}, got "
                     f"{convert_to_tensor_fn!r}.")
  return event_size, float(min_scale)


def check_params_shape(head, shape):
  """Raises ValueError unless the last axis of `shape` is the head's params_size."""
  size = tf.compat.dimension_value(tf.TensorShape(shape)[-1])
  expected = head.params_size(head.event_size)
  if size is not None and size != expected:
    name = type(head).__name__
    raise ValueError(
        f"{name}(event_size={head.event_size}) takes params of shape [batch, {expected}] "
        f"(= {name}.params_size({head.event_size})), got shape {list(shape)}.")


def mark(parameters, distribution_fn):
  """Attaches `distribution_fn` to a Keras 3 head's output tensor; returns the tensor.

  `get_distribution` follows it. (Keras 3 passes a layer's output tensor on unchanged
  to the model's output and to a loss of the same dtype.)
  """
  try:
    setattr(parameters, _DISTRIBUTION_FN, distribution_fn)
  except (AttributeError, TypeError):   # a tensor type without attributes: unmarked
    pass
  return parameters


def is_distribution_like(value):
  """Whether `value` is a distribution, a tf_keras head's output or a marked Keras 3 one."""
  return (isinstance(value, tfd.Distribution) or hasattr(value, "_tfp_distribution")
          or callable(getattr(value, _DISTRIBUTION_FN, None)))


def get_distribution(value):
  """The `tfd.Distribution` behind a head's output (of either Keras).

  Args:
    value: a `tfd.Distribution`; the output of a tf_keras head (tfp.layers' tensor-
      coercible distribution, as Keras may pass it to a loss); or the parameters a
      Keras 3 head (`td.keras3.heads`) returned.

  Returns:
    tfd.Distribution.

  Raises:
    TypeError: `value` is none of these (the student does not end in a head).
  """
  if isinstance(value, tfd.Distribution):
    return value
  dist = getattr(value, "_tfp_distribution", None)
  if dist is not None:
    return dist
  distribution_fn = getattr(value, _DISTRIBUTION_FN, None)
  if callable(distribution_fn):
    return distribution_fn(value)
  raise TypeError(
      "Expected the output of a tfp_distill head (a tfd.Distribution, or a Keras 3 "
      f"head's parameters), got {type(value).__name__}. The student's last layer must be "
      "a distribution head, e.g. td.heads.MultivariateNormalTriLHead(event_size) "
      "(tf_keras) or td.keras3.heads.MultivariateNormalTriLHead(event_size) (Keras 3).")


def unwrap(dist):
  """Strips tfp.layers' tensor-coercible wrapper."""
  return getattr(dist, "tensor_distribution", dist)


def distribution_parameters(dist):
  """The parameters of a head's distribution as a dict of Tensors.

  Args:
    dist: a head's output (see `get_distribution`), batch [batch], event [E].

  Returns:
    dict: "loc" [batch, E] and either "scale" [batch, E] (diagonal heads) or
      "scale_tril" [batch, E, E] (full covariance); "concentration" [batch, K]
      (`DirichletHead`); "logits" [batch, K] (`CategoricalHead`).
  """
  dist = unwrap(get_distribution(dist))
  if isinstance(dist, tfd.Dirichlet):
    return {"concentration": tf.convert_to_tensor(dist.concentration)}
  if isinstance(dist, tfd.OneHotCategorical):
    return {"logits": dist.logits_parameter()}
  if isinstance(dist, tfd.MultivariateNormalTriL):
    return {"loc": dist.loc, "scale_tril": dist.scale.to_dense()}
  if isinstance(dist, tfd.Independent) and isinstance(dist.distribution, tfd.Normal):
    return {"loc": dist.distribution.loc, "scale": dist.distribution.scale}
  raise TypeError(f"No parameter export for distribution {type(dist).__name__}.")


def _softplus_inverse(y):
  """x with softplus(x) = y, for y > 0 (float64 NumPy; exact for large y)."""
  y = np.asarray(y, np.float64)
  return y + np.log(-np.expm1(-y))


def _robust_width(values, axis):
  """The standard deviation along `axis`, 1 where it is 0 or not finite (a constant)."""
  width = np.std(values, axis=axis)
  return np.where(np.isfinite(width) & (width > 0), width, 1.0)


def output_normalization(head, z):
  """Where a regression head's raw params start: (mean, variance) of an inverted Keras
  `Normalization` layer between the student's last Dense layer and its head.

  ```none
  raw params = mean + sqrt(variance) * h        (h: the Dense layer's output, O(1))
  ```
  The teacher's targets of a user's regressor are in the units of its y (a price in
  thousands, an energy in kWh): a student whose Dense layer must grow its outputs to
  those units learns slowly and lands far behind its teacher. With this layer an
  untrained student (h ~ 0) predicts the targets' overall location, and the members'
  typical spread, and h moves each raw param by about one of the targets' units:

  - locations: the targets' mean and standard deviation over rows and members;
  - a softplus scale s (`NormalHead`, the Cholesky diagonal of
    `MultivariateNormalTriLHead`): softplus(mean) = the members' root-mean-square spread
    about their row mean, sqrt(variance) = max(that spread, 1) (about one unit of
    log-scale per unit of h);
  - Cholesky entries below the diagonal: mean 0, sqrt(variance) = the row's spread;
  - `NormalPredictiveHead` (over y): the ensemble's predictive mean and variance
    (`families.HeteroscedasticNormal` with the head's floor as `min_variance`).

  Args:
    head: a `NormalHead`, `MultivariateNormalTriLHead` (over the members' z, E = P) or
      `NormalPredictiveHead` (over y, P = 2 E), of either Keras.
    z: float array [rows, members, P], the teacher's targets (what the loss takes).

  Returns:
    (mean, variance): float32 NumPy arrays [params_size(E)].

  Raises:
    ValueError: a head of another kind, or z of another width than the head's event.
  """
  z = np.asarray(z, np.float64)
  if z.ndim != 3:
    raise ValueError(f"output_normalization: z must be [rows, members, P], got shape "
                     f"{list(z.shape)}.")
  name = type(head).__name__
  event_size, min_scale = int(head.event_size), float(head.min_scale)
  if isinstance(head, NormalPredictiveParameterization):
    if z.shape[-1] != 2 * event_size:
      raise ValueError(f"output_normalization: {name}({event_size}) distils members' z "
                       f"[mu, rho] of width {2 * event_size}, got width {z.shape[-1]}.")
    mu = z[..., :event_size]
    var = np.logaddexp(0.0, z[..., event_size:]) + min_scale      # softplus + floor
    mean = mu.mean(axis=1)                                        # [rows, E]
    predictive = (var + (mu - mean[:, None]) ** 2).mean(axis=1).mean(axis=0)
    loc_mean, loc_width = mean.mean(axis=0), _robust_width(mean, axis=0)
    raw = _softplus_inverse(np.maximum(predictive - min_scale, min_scale))
    return _as_normalization(np.concatenate([loc_mean, raw]),
                             np.concatenate([loc_width, np.maximum(predictive, 1.0)]))
  if not isinstance(head, (NormalParameterization, MultivariateNormalTriLParameterization)):
    raise ValueError(f"output_normalization takes a NormalHead, MultivariateNormalTriLHead "
                     f"or NormalPredictiveHead, got {name}.")
  if z.shape[-1] != event_size:
    raise ValueError(f"output_normalization: {name}({event_size}) is over z of width "
                     f"{event_size}, got width {z.shape[-1]}.")
  flat = z.reshape(-1, event_size)
  loc_mean, loc_width = flat.mean(axis=0), _robust_width(flat, axis=0)
  spread = np.sqrt(np.mean(np.var(z, axis=1), axis=0))            # [E]
  spread = np.where(np.isfinite(spread), np.maximum(spread, 2 * min_scale), 1.0)
  diagonal_raw = _softplus_inverse(spread - min_scale)
  if isinstance(head, MultivariateNormalTriLParameterization):
    size = event_size * (event_size + 1) // 2
    filled = _fill_index(event_size)                                # [E, E] -> flat index
    raw_mean, raw_width = np.zeros(size), np.ones(size)
    for i in range(event_size):
      for j in range(i + 1):
        k = filled[i, j]
        if i == j:
          raw_mean[k], raw_width[k] = diagonal_raw[i], max(spread[i], 1.0)
        else:
          raw_width[k] = spread[i]
  else:
    raw_mean, raw_width = diagonal_raw, np.maximum(spread, 1.0)
  return _as_normalization(np.concatenate([loc_mean, raw_mean]),
                           np.concatenate([loc_width, raw_width]))


def _as_normalization(mean, width):
  """(mean, variance) float32 arrays for `Normalization(invert=True)`."""
  return mean.astype(np.float32), np.square(width).astype(np.float32)
