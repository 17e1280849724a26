"""Keras 3 student heads: layers whose output is the parameters of a distribution.

```none
features ─► Dense(Head.params_size(E)) ─► Head(E) ─► parameters [batch, output_size]
                                                       │ (a tensor: what Keras 3 layers return)
   losses, td.decompose, td.predict_uncertainty ◄──────┘ Head.distribution(parameters)
```

The Keras 3 form of `td.heads`: the same names, constructors, `params_size` and `new`,
and the same functions underneath (`td.parameterization`): a head's layer returns
`parameters(raw, event_size, min_scale)` (the distribution's own parameters: locations
and scales, a Cholesky factor, concentrations or logits), and `distribution(parameters)`
builds the `tfd` distribution wherever one is needed. The output tensor carries its
`distribution` function, so `td.keras3.losses`, `td.decompose(student(x), family)` and
`td.predict_uncertainty(student, ...)` take it as they take a tf_keras head's output;
`student.predict(x)` gives the parameters as NumPy arrays, and `Head.distribution(p)`
turns them into the distribution.

```none
head                          output (parameters)                      output_size
NormalHead(E)                 [loc, scale]                             2 E
MultivariateNormalTriLHead(E) [loc, scale_tril entries (fill_triangular)]  E + E(E+1)/2
NormalPredictiveHead(E)       [mu, scale = sqrt(softplus(rho) + min_variance)]   2 E
DirichletHead(K)              concentration alpha                      K
CategoricalHead(K)            logits                                   K
```

Under a mixed-precision policy a head without an explicit `dtype` computes in float32,
as the tf_keras heads do.

#### Examples

```python
Head = td.keras3.heads.DirichletHead      # with `import keras` (Keras 3)
inputs = keras.Input((2,))
features = keras.layers.Dense(32, activation="relu")(inputs)
student = keras.Model(inputs, Head(3)(keras.layers.Dense(Head.params_size(3))(features)))
alpha = student.predict(x)                  # [n, 3] concentrations
dist = Head.distribution(alpha)             # tfd.Dirichlet, batch [n]
```
"""

from tfp_distill import _keras3
from tfp_distill import parameterization as parameterization_lib

keras = _keras3.tensorflow_module("td.keras3")

__all__ = [
    "CategoricalHead",
    "DirichletHead",
    "DistributionHead",
    "MultivariateNormalTriLHead",
    "NormalHead",
    "NormalPredictiveHead",
    "find_head",
    "student_distribution",
]


class DistributionHead(keras.layers.Layer):
  """Base class of the Keras 3 heads: raw params -> the distribution's parameters.

  Subclasses mix in a `td.parameterization` class, which gives the static
  `params_size(event_size)`, `output_size(event_size)`, `parameters(params, event_size,
  min_scale)`, `distribution(parameters)` and `new(params, event_size, min_scale)`.

  Args:
    event_size: int, the event dimension of the distribution.
    min_scale: float > 0, floor added after a softplus to every scale (stddev or
      Cholesky diagonal; the concentration floor of `DirichletHead`, the variance floor
      of `NormalPredictiveHead`).
    convert_to_tensor_fn: "mean", "sample" or "mode": kept for the signature of the
      tf_keras heads and in the config; a Keras 3 head always outputs its parameters.
    **kwargs: Keras layer arguments (`name`, `dtype`, `trainable`).

  Call:
    inputs: float Tensor [batch, params_size(event_size)].

    Returns the parameters, float Tensor [batch, output_size(event_size)].
  """

  min_event_size = 1

  def __init__(self, event_size, min_scale=1e-3, convert_to_tensor_fn="mean", **kwargs):
    event_size, min_scale = parameterization_lib.check_head_arguments(
        self, event_size, min_scale, convert_to_tensor_fn)
    if kwargs.get("dtype") is None and keras.mixed_precision.global_policy().name.startswith(
        "mixed_"):
      kwargs["dtype"] = "float32"
    super().__init__(**kwargs)
    self.event_size = event_size
    self.min_scale = min_scale
    self.convert_to_tensor_fn = convert_to_tensor_fn

  def call(self, inputs):
    """params [batch, params_size(event_size)] -> the parameters [batch,
    output_size(event_size)], marked with the head's distribution."""
    parameterization_lib.check_params_shape(self, inputs.shape)
    parameters = self.parameters(inputs, self.event_size, self.min_scale)
    return parameterization_lib.mark(parameters, self.distribution)

  def compute_output_shape(self, input_shape):
    """[..., params_size(event_size)] -> [..., output_size(event_size)]."""
    return tuple(input_shape[:-1]) + (self.output_size(self.event_size),)

  def get_config(self):
    """The layer's constructor arguments (Keras' and the head's), for Keras serialization."""
    config = super().get_config()
    config.update(event_size=self.event_size, min_scale=self.min_scale,
                  convert_to_tensor_fn=self.convert_to_tensor_fn)
    return config


@keras.saving.register_keras_serializable(package="tfp_distill")
class NormalHead(parameterization_lib.NormalParameterization, DistributionHead):
  """Diagonal Normal over an event of size E; outputs [batch, 2 E] = [loc, scale].

  The Keras 3 form of `td.heads.NormalHead` (`parameterization.NormalParameterization`).
  Args: see `DistributionHead`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class MultivariateNormalTriLHead(parameterization_lib.MultivariateNormalTriLParameterization,
                                 DistributionHead):
  """Full-covariance Normal over an event of size E; outputs [loc, scale_tril entries].

  The Keras 3 form of `td.heads.MultivariateNormalTriLHead`
  (`parameterization.MultivariateNormalTriLParameterization`). Args: see
  `DistributionHead`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class NormalPredictiveHead(parameterization_lib.NormalPredictiveParameterization,
                           DistributionHead):
  """Normal over y for mixture distillation; outputs [batch, 2 E] = [mu, scale].

  The Keras 3 form of `td.heads.NormalPredictiveHead`; `min_scale` is the variance floor
  (`parameterization.NormalPredictiveParameterization`). Args: see `DistributionHead`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class DirichletHead(parameterization_lib.DirichletParameterization, DistributionHead):
  """Dirichlet over class-probability vectors (EnD^2); outputs the concentration [batch, K].

  The Keras 3 form of `td.heads.DirichletHead` (`parameterization.
  DirichletParameterization`). Args: see `DistributionHead` (event_size: K >= 2).
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class CategoricalHead(parameterization_lib.CategoricalParameterization, DistributionHead):
  """One-hot Categorical over K classes; outputs the logits [batch, K].

  The Keras 3 form of `td.heads.CategoricalHead` (`parameterization.
  CategoricalParameterization`). Args: see `DistributionHead` (event_size: K >= 2).
  """


def find_head(model):
  """The Keras 3 head that makes a student's output, or None.

  The layer that produces a functional model's (single) output, looked for through
  nested models; else the one head among the model's layers.

  Args:
    model: a Keras 3 layer or model.

  Returns:
    a `DistributionHead`, or None.
  """
  if isinstance(model, DistributionHead):
    return model
  outputs = getattr(model, "outputs", None) if isinstance(model, keras.Model) else None
  if outputs and len(outputs) == 1:
    history = getattr(outputs[0], "_keras_history", None)
    operation = getattr(history, "operation", None)
    if operation is not None and operation is not model:
      found = find_head(operation)
      if found is not None:
        return found
  heads = [layer for layer in getattr(model, "_flatten_layers", lambda: [])()
           if isinstance(layer, DistributionHead)]
  return heads[0] if len(heads) == 1 else None


def student_distribution(model, outputs):
  """The distribution of a Keras 3 student's outputs.

  Args:
    model: the Keras 3 student (its output made by a `td.keras3.heads` head).
    outputs: what `model(x)` returned.

  Returns:
    tfd.Distribution, batch [batch].

  Raises:
    TypeError: the model does not end in a td.keras3 head.
  """
  if parameterization_lib.is_distribution_like(outputs):
    return parameterization_lib.get_distribution(outputs)
  head = find_head(model)
  if head is None:
    raise TypeError(f"The Keras 3 model {getattr(model, 'name', model)!r} does not end in "
                    "a td.keras3.heads head (e.g. td.keras3.heads.DirichletHead(K)).")
  return head.distribution(outputs)
