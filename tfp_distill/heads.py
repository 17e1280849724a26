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

These are the tf_keras heads (`tfp.layers`, Keras 2). `td.keras3.heads` has the same heads
for Keras 3 models; both are built on the same functions (`td.parameterization`: each head
class here is its parameterization mixed into `DistributionHead`), so a head of either
Keras gives the same distribution from the same params.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import functools

import tensorflow_probability as tfp

from tfp_distill import parameterization as parameterization_lib
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

# The head-independent functions: one definition for both Keras (`td.parameterization`).
get_distribution = parameterization_lib.get_distribution
distribution_parameters = parameterization_lib.distribution_parameters
MAX_LOG_CONCENTRATION = parameterization_lib.MAX_LOG_CONCENTRATION


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

  min_event_size = 1

  def __init__(self, event_size, min_scale=1e-3, convert_to_tensor_fn="mean", **kwargs):
    event_size, min_scale = parameterization_lib.check_head_arguments(
        self, event_size, min_scale, convert_to_tensor_fn)
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
    """params [batch, params_size(event_size)] -> the head's distribution (shape checked)."""
    parameterization_lib.check_params_shape(self, inputs.shape)
    return super().call(inputs, *args, **kwargs)

  def get_config(self):
    """The layer's constructor arguments (Keras' and the head's), for Keras serialization."""
    config = keras.layers.Layer.get_config(self)
    config.update(event_size=self.event_size, min_scale=self.min_scale,
                  convert_to_tensor_fn=self.convert_to_tensor_fn_name)
    return config

  @classmethod
  def from_config(cls, config):
    """The head whose constructor arguments are `config`."""
    return cls(**config)

  @staticmethod
  def params_size(event_size):
    """The size of the flat params the head takes (implemented by each head)."""
    raise NotImplementedError

  @staticmethod
  def new(params, event_size, min_scale=1e-3):
    """The distribution of flat params [batch, params_size(event_size)] (each head)."""
    raise NotImplementedError


@keras.utils.register_keras_serializable(package="tfp_distill")
class NormalHead(parameterization_lib.NormalParameterization, DistributionHead):
  """Diagonal Normal over an event of size E (tfpl.IndependentNormal with a floor).

  ```none
  params = [loc (E), raw_scale (E)]         params_size(E) = 2 E
  v = prod_e N(loc_e, (softplus(raw_scale_e) + min_scale)^2)
  ```
  (`parameterization.NormalParameterization`, shared with `td.keras3.heads.NormalHead`.)

  Args: see `DistributionHead`.

  #### Examples

  ```python
  Head = td.heads.NormalHead
  params = keras.layers.Dense(Head.params_size(2))(features)   # [batch, 4]
  v = Head(2)(params)       # batch [batch], event [2]
  ```
  """


@keras.utils.register_keras_serializable(package="tfp_distill")
class MultivariateNormalTriLHead(parameterization_lib.MultivariateNormalTriLParameterization,
                                 DistributionHead):
  """Full-covariance Normal over an event of size E (tfpl.MultivariateNormalTriL).

  ```none
  params = [loc (E), tril (E (E + 1) / 2)]   params_size(E) = E + E (E + 1) / 2
  v = N(loc, L L^T),  L = FillScaleTriL(diag: softplus + min_scale)(tril)
      (fill_triangular(tril) with its diagonal d -> softplus(d) + min_scale)
  ```
  (`parameterization.MultivariateNormalTriLParameterization`.)

  Args: see `DistributionHead`.
  """


@keras.utils.register_keras_serializable(package="tfp_distill")
class NormalPredictiveHead(parameterization_lib.NormalPredictiveParameterization,
                           DistributionHead):
  """Normal over y for mixture distillation, parameterized like a heteroscedastic member.

  ```none
  params = [mu (E), rho (E)]                 params_size(E) = 2 E
  q(y) = prod_e N(y_e; mu_e, softplus(rho_e) + min_variance)
  ```

  Here `min_scale` is the variance floor `min_variance` of
  `families.HeteroscedasticNormal` (the head's output is that family's predictive).

  Args: see `DistributionHead`.
  """


@keras.utils.register_keras_serializable(package="tfp_distill")
class DirichletHead(parameterization_lib.DirichletParameterization, DistributionHead):
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


@keras.utils.register_keras_serializable(package="tfp_distill")
class CategoricalHead(parameterization_lib.CategoricalParameterization, DistributionHead):
  """One-hot Categorical over K classes from logits (mixture distillation, soft targets).

  ```none
  params = logits (K)      params_size(K) = K
  q(y) = OneHotCategorical(logits);  mean = softmax(logits)
  ```

  `min_scale` is unused (kept for the common head signature). Pairs with
  `losses.MixtureKL(CategoricalLogits(K))` or `losses.KnowledgeDistillation`.

  Args: see `DistributionHead`.
  """
