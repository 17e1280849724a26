"""Student distribution heads: Keras layers turning a flat params tensor into tfd objects.

A head follows TFP's `params_size` / `new` pattern (tfp.layers):

```python
params = keras.layers.Dense(Head.params_size(event_size))(features)
student = keras.Model(inputs, Head(event_size)(params))
```

Heads over member parameters z (the higher-order distribution v(z | g(x)) of the general
framework, eq 10 and 13 of [1]):
- `NormalHead`: diagonal Normal over z, event [event_size].
- `MultivariateNormalTriLHead`: full-covariance Normal over z, event [event_size].

Head over the members' probability vectors (EnD^2 of [2]):
- `DirichletHead`: Dirichlet with concentration exp(params) + a floor, event [classes].

Heads over y (the mixture-distillation baselines, appendix A.2 of [1]):
- `NormalPredictiveHead`: Normal over y with variance softplus(rho) + min_variance, i.e. the
  same parameterization as `families.HeteroscedasticNormal`.
- `CategoricalHead`: one-hot Categorical over classes from logits (Hinton soft targets);
  its mean is the vector of class probabilities.

For classification, `NormalHead(K)` / `MultivariateNormalTriLHead(K)` (or K - 1 with a
reference class) are Gaussians over the members' logits ([1], section 3.2).

Unlike `tfp.layers.DistributionLambda`, these heads never pickle a function: `get_config`
returns only JSON values whose keys are the `__init__` arguments (plus Keras' `name`,
`trainable`, `dtype`), so models using them save and load in every Keras format.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import families as families_lib
from tfp_distill._keras import keras

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = [
    "DistributionHead",
    "NormalHead",
    "MultivariateNormalTriLHead",
    "NormalPredictiveHead",
    "DirichletHead",
    "CategoricalHead",
    "distribution_parameters",
    "get_distribution",
]

_CONVERT_FNS = ("mean", "sample", "mode")


def _head_distribution(cls, event_size, min_scale, params):
  return cls.new(params, event_size, min_scale)


class DistributionHead(tfpl.DistributionLambda):
  """Base class of the tfp_distill heads (a `tfp.layers.DistributionLambda`).

  Subclasses implement the static methods `params_size(event_size)` and
  `new(params, event_size, min_scale)`.

  Args:
    event_size: int, the event dimension of the distribution.
    min_scale: float > 0, floor added after a softplus to every scale (stddev or
      Cholesky diagonal).
    convert_to_tensor_fn: one of "mean", "sample", "mode": what the layer's output becomes
      when used as a Tensor.
    **kwargs: Keras layer arguments (`name`, `dtype`, `trainable`). Under a mixed-precision
      policy (`keras.mixed_precision.set_global_policy("mixed_bfloat16")` or
      "mixed_float16") a head without an explicit `dtype` computes in float32: the
      backbone runs in half precision, the distribution, losses and decompositions in
      float32.
  """

  def __init__(self, event_size, min_scale=1e-3, convert_to_tensor_fn="mean", **kwargs):
    event_size = int(event_size)
    if event_size < 1:
      raise ValueError(f"event_size must be >= 1, got {event_size}.")
    if not (min_scale > 0 and np.isfinite(min_scale)):
      raise ValueError(f"min_scale must be a finite float > 0, got {min_scale}.")
    if convert_to_tensor_fn not in _CONVERT_FNS:
      raise ValueError(f"convert_to_tensor_fn must be one of {_CONVERT_FNS}, got "
                       f"{convert_to_tensor_fn!r}.")
    kwargs.pop("make_distribution_fn", None)
    if kwargs.get("dtype") is None and keras.mixed_precision.global_policy().name.startswith(
        "mixed_"):
      kwargs["dtype"] = "float32"
    super().__init__(
        functools.partial(_head_distribution, type(self), event_size, float(min_scale)),
        convert_to_tensor_fn=getattr(tfd.Distribution, convert_to_tensor_fn),
        **kwargs)
    self.event_size = event_size
    self.min_scale = float(min_scale)
    self.convert_to_tensor_fn_name = convert_to_tensor_fn

  def call(self, inputs, *args, **kwargs):
    size = tf.compat.dimension_value(inputs.shape[-1])
    expected = self.params_size(self.event_size)
    if size is not None and size != expected:
      raise ValueError(
          f"{type(self).__name__}(event_size={self.event_size}) takes params of shape "
          f"[batch, {expected}] (= {type(self).__name__}.params_size({self.event_size}))"
          f", got shape {list(inputs.shape)}.")
    return super().call(inputs, *args, **kwargs)

  def get_config(self):
    config = keras.layers.Layer.get_config(self)
    config.update(event_size=self.event_size, min_scale=self.min_scale,
                  convert_to_tensor_fn=self.convert_to_tensor_fn_name)
    return config

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  @staticmethod
  def params_size(event_size):
    raise NotImplementedError

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    raise NotImplementedError


def _scale(raw, min_scale):
  return tf.math.softplus(raw) + _dtypes.cast(min_scale, raw.dtype)


@keras.utils.register_keras_serializable(package="tfp_distill")
class NormalHead(DistributionHead):
  """Diagonal Normal over an event of size E (tfpl.IndependentNormal with a floor).

  ```none
  params = [loc (E), raw_scale (E)]         params_size(E) = 2 E
  v = prod_e N(loc_e, (softplus(raw_scale_e) + min_scale)^2)
  ```

  Args: see `DistributionHead`.

  #### Examples

  ```python
  Head = td.heads.NormalHead
  params = keras.layers.Dense(Head.params_size(2))(features)   # [batch, 4]
  v = Head(2)(params)       # batch [batch], event [2]
  ```
  """

  @staticmethod
  def params_size(event_size):
    return 2 * int(event_size)

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    params = tf.convert_to_tensor(params)
    loc, raw = params[..., :event_size], params[..., event_size:]
    return tfd.Independent(tfd.Normal(loc=loc, scale=_scale(raw, min_scale)),
                           reinterpreted_batch_ndims=1)


@keras.utils.register_keras_serializable(package="tfp_distill")
class MultivariateNormalTriLHead(DistributionHead):
  """Full-covariance Normal over an event of size E (tfpl.MultivariateNormalTriL).

  ```none
  params = [loc (E), tril (E (E + 1) / 2)]   params_size(E) = E + E (E + 1) / 2
  v = N(loc, L L^T),  L = FillScaleTriL(diag: softplus + min_scale)(tril)
      (fill_triangular(tril) with its diagonal d -> softplus(d) + min_scale)
  ```

  Args: see `DistributionHead`.
  """

  @staticmethod
  def params_size(event_size):
    event_size = int(event_size)
    return event_size + event_size * (event_size + 1) // 2

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    params = tf.convert_to_tensor(params)
    loc, raw = params[..., :event_size], params[..., event_size:]
    # tfb.FillScaleTriL(diag_shift=min_scale), written with a static identity mask: the
    # gradients of the bijector (and of diag_part / set_diag) build zeros of a dynamic
    # shape, which XLA (jit_compile) cannot compile. Masking by 0 / 1 is exact.
    tril = tfp.math.fill_triangular(raw)
    eye = tf.eye(event_size, dtype=tril.dtype)
    diag = _scale(tf.reduce_sum(tril * eye, axis=-1), min_scale)          # [..., E]
    scale_tril = tril * (1. - eye) + eye * diag[..., tf.newaxis]
    return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale_tril)


@keras.utils.register_keras_serializable(package="tfp_distill")
class NormalPredictiveHead(DistributionHead):
  """Normal over y for mixture distillation, parameterized like a heteroscedastic member.

  ```none
  params = [mu (E), rho (E)]                 params_size(E) = 2 E
  q(y) = prod_e N(y_e; mu_e, softplus(rho_e) + min_variance)
  ```

  Here `min_scale` is the variance floor `min_variance` of
  `families.HeteroscedasticNormal` (the head's output is that family's predictive).

  Args: see `DistributionHead`.
  """

  @staticmethod
  def params_size(event_size):
    return 2 * int(event_size)

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    family = families_lib.HeteroscedasticNormal(event_size, min_variance=min_scale)
    return family.predictive(params)


#: log-concentrations above this are clipped: exp(30) ~ 1e13 keeps lgamma finite in
#: float32 and far beyond any precision an ensemble of M members can support.
MAX_LOG_CONCENTRATION = 30.0


class _ClassHead(DistributionHead):
  """A head over K >= 2 classes with one parameter per class."""

  def __init__(self, event_size, min_scale=1e-3, convert_to_tensor_fn="mean", **kwargs):
    if int(event_size) < 2:
      raise ValueError(f"{type(self).__name__} needs event_size (classes) >= 2, got "
                       f"{event_size}.")
    super().__init__(event_size, min_scale=min_scale,
                     convert_to_tensor_fn=convert_to_tensor_fn, **kwargs)

  @staticmethod
  def params_size(event_size):
    return int(event_size)


@keras.utils.register_keras_serializable(package="tfp_distill")
class DirichletHead(_ClassHead):
  """Dirichlet over class-probability vectors (the EnD^2 student of [2]).

  ```none
  params = s (K logits)                     params_size(K) = K
  alpha_k = exp(min(s_k, 30)) + min_scale   (min_scale is the concentration floor)
  v = Dirichlet(alpha)
  ```

  The exponential is the parameterization of [2]; the clip and the floor keep lgamma and
  digamma finite for logits of +-1e4. Pairs with `families.CategoricalLogits` members and
  `losses.DirichletNLL`. Converted to a Tensor it is its mean alpha / alpha_0 (the
  predictive class probabilities).

  Args:
    event_size: int, the number of classes K >= 2.
    min_scale: float > 0, the floor added to every concentration.
    convert_to_tensor_fn, **kwargs: see `DistributionHead`.

  #### Examples

  ```python
  params = keras.layers.Dense(td.heads.DirichletHead.params_size(10))(features)
  student = keras.Model(inputs, td.heads.DirichletHead(10)(params))
  ```
  """

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    params = tf.convert_to_tensor(params)
    alpha = tf.exp(tf.minimum(params, MAX_LOG_CONCENTRATION)) + _dtypes.cast(min_scale,
                                                                         params.dtype)
    return tfd.Dirichlet(concentration=alpha)


@keras.utils.register_keras_serializable(package="tfp_distill")
class CategoricalHead(_ClassHead):
  """One-hot Categorical over K classes from logits (mixture distillation, soft targets).

  ```none
  params = logits (K)      params_size(K) = K
  q(y) = OneHotCategorical(logits);  mean = softmax(logits)
  ```

  `min_scale` is unused (kept for the common head signature). Pairs with
  `losses.MixtureKL(CategoricalLogits(K))` or `losses.KnowledgeDistillation`.

  Args: see `DistributionHead`.
  """

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    return tfd.OneHotCategorical(logits=tf.convert_to_tensor(params),
                                 dtype=tf.convert_to_tensor(params).dtype)


def get_distribution(value):
  """The `tfd.Distribution` behind a head's output (as Keras may pass it to a loss)."""
  if isinstance(value, tfd.Distribution):
    return value
  dist = getattr(value, "_tfp_distribution", None)
  if dist is None:
    raise TypeError(
        "Expected the output of a tfp_distill head (a tfd.Distribution), got "
        f"{type(value).__name__}. The student's last layer must be a distribution head, "
        "e.g. td.heads.MultivariateNormalTriLHead(event_size).")
  return dist


def _unwrap(dist):
  """Strips tfp.layers' tensor-coercible wrapper."""
  return getattr(dist, "tensor_distribution", dist)


def distribution_parameters(dist):
  """The parameters of a head's distribution as a dict of Tensors.

  Args:
    dist: `tfd.Distribution` from a tfp_distill head, batch [batch], event [E].

  Returns:
    dict: "loc" [batch, E] and either "scale" [batch, E] (diagonal heads) or
      "scale_tril" [batch, E, E] (full covariance); "concentration" [batch, K]
      (`DirichletHead`); "logits" [batch, K] (`CategoricalHead`).
  """
  dist = _unwrap(get_distribution(dist))
  if isinstance(dist, tfd.Dirichlet):
    return {"concentration": tf.convert_to_tensor(dist.concentration)}
  if isinstance(dist, tfd.OneHotCategorical):
    return {"logits": dist.logits_parameter()}
  if isinstance(dist, tfd.MultivariateNormalTriL):
    return {"loc": dist.loc, "scale_tril": dist.scale.to_dense()}
  if isinstance(dist, tfd.Independent) and isinstance(dist.distribution, tfd.Normal):
    return {"loc": dist.distribution.loc, "scale": dist.distribution.scale}
  raise TypeError(f"No parameter export for distribution {type(dist).__name__}.")
