"""Member predictive families q(y; z): how a member's output z parameterizes its predictive.

Every ensemble member maps x to a flat parameter vector z [batch, params]; a family says
what distribution over y those parameters describe, how big z is, and which uncertainty
measures it has. The students and losses of tfp_distill are written against families, so a
family is the one place that knows, e.g., that variance = softplus(rho) + min_variance.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531 (eq 9, eq 12, eq 32).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill._keras import keras

tfd = tfp.distributions

__all__ = ["Family", "HeteroscedasticNormal", "CategoricalLogits", "get", "serialize"]


class Family:
  """Base class: a parametric predictive q(y; z) for ensemble members.

  Subclasses define `params_size`, `predictive(z)` and `get_config()`; configs hold only
  JSON values whose keys are exactly the `__init__` arguments.
  """

  #: Name of the task kind: "regression" or "classification".
  task = None

  @property
  def params_size(self):
    """Length of the flat parameter vector z of one member."""
    raise NotImplementedError

  def predictive(self, z):
    """q(y; z) as a `tfd.Distribution` with batch shape z.shape[:-1]."""
    raise NotImplementedError

  def get_config(self):
    """The `__init__` arguments as JSON values (implemented by each family)."""
    raise NotImplementedError

  @classmethod
  def from_config(cls, config):
    """The family whose `__init__` arguments are `config` (the inverse of `get_config`)."""
    return cls(**config)

  def check_params(self, z, what="z"):
    """Raises ValueError if the last axis of `z` is statically not `params_size`."""
    size = tf.compat.dimension_value(tf.TensorShape(z.shape)[-1])
    if size is not None and size != self.params_size:
      raise ValueError(
          f"{what} has {size} parameters on its last axis but {self!r} expects "
          f"params_size={self.params_size} (shape [..., {self.params_size}]); got shape "
          f"{list(z.shape)}.")

  def __eq__(self, other):
    return type(self) is type(other) and self.get_config() == other.get_config()

  def __hash__(self):
    return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

  def __repr__(self):
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
    return f"{type(self).__name__}({args})"


@keras.utils.register_keras_serializable(package="tfp_distill")
class HeteroscedasticNormal(Family):
  """Heteroscedastic Normal member: z = [mu, rho], variance = softplus(rho) + min_variance.

  ```none
  z = [mu_1..mu_E, rho_1..rho_E]                           (params_size = 2 E)
  q(y; z) = prod_e N(y_e; mu_e, softplus(rho_e) + min_variance)     (eq 12, eq 32)
  ```

  Uncertainty measures: `variance(z)` (per event dimension) and the differential entropy
  `entropy(z)` = sum_e 0.5 log(2 pi e sigma_e^2).

  Args:
    event_size: int, dimension E of y.
    min_variance: float > 0, the floor c added to softplus(rho).

  #### Examples

  ```python
  family = td.families.HeteroscedasticNormal(event_size=1, min_variance=1e-3)
  member = keras.Sequential([keras.layers.Dense(50, "relu"),
                             keras.layers.Dense(family.params_size)])
  ```
  """

  task = "regression"

  def __init__(self, event_size=1, min_variance=1e-3):
    event_size = int(event_size)
    if event_size < 1:
      raise ValueError(f"event_size must be >= 1, got {event_size}.")
    if not min_variance > 0 or not np.isfinite(min_variance):
      raise ValueError(f"min_variance must be a finite float > 0, got {min_variance}.")
    self.event_size = event_size
    self.min_variance = float(min_variance)

  @property
  def params_size(self):
    """2 E: z = [mu (E), rho (E)]."""
    return 2 * self.event_size

  def split(self, z):
    """Splits z [..., 2 E] into (mu [..., E], rho [..., E])."""
    z = tf.convert_to_tensor(z)
    self.check_params(z)
    return z[..., :self.event_size], z[..., self.event_size:]

  def variance_from_rho(self, rho):
    """sigma^2 = softplus(rho) + min_variance, same shape as rho."""
    return tf.math.softplus(rho) + _dtypes.cast(self.min_variance, rho.dtype)

  def mean(self, z):
    """mu: [..., E]."""
    return self.split(z)[0]

  def variance(self, z):
    """sigma^2: [..., E]."""
    return self.variance_from_rho(self.split(z)[1])

  def entropy(self, z):
    """Differential entropy of q(y; z), summed over the event: [...]."""
    var = self.variance(z)
    return tf.reduce_sum(0.5 * tf.math.log(2. * np.pi * np.e * var), axis=-1)

  def predictive(self, z):
    """q(y; z): Independent Normal with batch z.shape[:-1] and event [E]."""
    mu, rho = self.split(z)
    return tfd.Independent(
        tfd.Normal(loc=mu, scale=tf.sqrt(self.variance_from_rho(rho))),
        reinterpreted_batch_ndims=1)

  def nll(self, y, z):
    """Negative log-likelihood -log q(y; z) per example.

    Args:
      y: float Tensor [batch] (event_size 1) or [batch, E].
      z: float Tensor [batch, 2 E].

    Returns:
      nll: float Tensor [batch].
    """
    z = tf.convert_to_tensor(z)
    y = tf.cast(y, z.dtype)
    if y.shape.rank == z.shape.rank - 1:
      y = y[..., tf.newaxis]
    return -self.predictive(z).log_prob(y)

  def get_config(self):
    """The `__init__` arguments: event_size and min_variance."""
    return {"event_size": self.event_size, "min_variance": self.min_variance}


@keras.utils.register_keras_serializable(package="tfp_distill")
class CategoricalLogits(Family):
  """Categorical member over K classes parameterized by its logits.

  ```none
  reference_class=False:  z = [l_1 .. l_K]                  params_size = K
  reference_class=True:   z = [l_1 - l_K .. l_{K-1} - l_K]  params_size = K - 1   (eq 9)
  q(y; z) = Categorical(softmax([z, 0]))   (the K-th logit fixed at 0 with a reference)
  ```

  Logits are defined up to an additive constant; with `reference_class=True` the members'
  logits are centred on the last class, which makes z identifiable and is what a Gaussian
  over logits should model ([1], eq 9). Members may output either K logits (they are
  centred by `params(z)`, which every loss applies) or K - 1 logits directly.

  Uncertainty measures: `entropy(z)` of the predictive (in nats).

  Args:
    num_classes: int K >= 2.
    reference_class: bool, use K - 1 logits relative to the last class.

  #### Examples

  ```python
  family = td.families.CategoricalLogits(10, reference_class=True)
  family.params(member_logits)        # [..., 10] -> [..., 9]
  family.logits(z)                    # [..., 9] -> [..., 10], last logit 0
  ```
  """

  task = "classification"

  def __init__(self, num_classes, reference_class=False):
    num_classes = int(num_classes)
    if num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
    self.num_classes = num_classes
    self.reference_class = bool(reference_class)

  @property
  def params_size(self):
    """K logits, or K - 1 with a reference class."""
    return self.num_classes - 1 if self.reference_class else self.num_classes

  def check_params(self, z, what="z"):
    """Raises ValueError unless the last axis of z is params_size (or K, see `params`)."""
    size = tf.compat.dimension_value(tf.TensorShape(z.shape)[-1])
    allowed = {self.params_size, self.num_classes}
    if size is not None and size not in allowed:
      raise ValueError(
          f"{what} has {size} logits on its last axis but {self!r} expects "
          f"{self.num_classes} logits" + (
              f" (or {self.params_size} centred on the reference class)"
              if self.reference_class else "") + f"; got shape {list(z.shape)}.")

  def params(self, z):
    """Members' outputs -> this family's z: K logits are centred when reference_class.

    Args:
      z: float Tensor [..., K] or [..., params_size].

    Returns:
      float Tensor [..., params_size].
    """
    z = tf.convert_to_tensor(z)
    self.check_params(z)
    size = tf.compat.dimension_value(z.shape[-1])
    if self.reference_class and size == self.num_classes:
      return z[..., :-1] - z[..., -1:]
    return z

  def logits(self, z):
    """Full K logits [..., K] from z (a zero appended for the reference class)."""
    z = tf.convert_to_tensor(z)
    self.check_params(z)
    size = tf.compat.dimension_value(z.shape[-1])
    if self.reference_class and size == self.params_size:
      return tf.concat([z, tf.zeros_like(z[..., :1])], axis=-1)
    return z

  def log_probs(self, z):
    """log softmax of the logits: [..., K] (finite for logits of +-1e4)."""
    return tf.nn.log_softmax(self.logits(z), axis=-1)

  def probs(self, z):
    """Class probabilities [..., K]."""
    return tf.nn.softmax(self.logits(z), axis=-1)

  def entropy(self, z):
    """Entropy of q(y; z) in nats: [...]."""
    log_p = self.log_probs(z)
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)

  def predictive(self, z):
    """q(y; z): Categorical with batch z.shape[:-1]."""
    return tfd.Categorical(logits=self.logits(z))

  def check_labels(self, y):
    """Int labels in [0, K); raises ValueError eagerly (graph assertion when traced)."""
    y = tf.convert_to_tensor(y)
    if y.dtype.is_floating:
      y = tf.cast(y, tf.int64)
    if tf.executing_eagerly():
      values = y.numpy()
      if values.size and (values.min() < 0 or values.max() >= self.num_classes):
        raise ValueError(f"Labels must be integers in [0, {self.num_classes}), got values "
                         f"in [{values.min()}, {values.max()}].")
      return y
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(y, message="labels must be >= 0"),
        tf.debugging.assert_less(y, tf.cast(self.num_classes, y.dtype),
                                 message=f"labels must be < {self.num_classes}")]):
      return tf.identity(y)

  def nll(self, y, z):
    """Negative log-likelihood -log q(y; z) per example (softmax cross-entropy).

    Args:
      y: int Tensor [batch] (or [batch, 1]) of labels in [0, K).
      z: float Tensor [batch, K] or [batch, params_size].

    Returns:
      nll: float Tensor [batch].
    """
    z = tf.convert_to_tensor(z)
    y = self.check_labels(y)
    if y.shape.rank == z.shape.rank:
      y = tf.squeeze(y, axis=-1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(y, tf.int32), logits=self.logits(z))

  def get_config(self):
    """The `__init__` arguments: num_classes and reference_class."""
    return {"num_classes": self.num_classes, "reference_class": self.reference_class}


def serialize(family):
  """Family -> JSON-able dict {"class_name", "config"}."""
  return {"class_name": type(family).__name__, "config": family.get_config()}


def get(identifier):
  """Returns a Family from a Family, or from the dict that `serialize` returns."""
  if isinstance(identifier, Family):
    return identifier
  if isinstance(identifier, dict) and "class_name" in identifier:
    classes = {cls.__name__: cls for cls in Family.__subclasses__()}
    if identifier["class_name"] not in classes:
      raise ValueError(f"Unknown family {identifier['class_name']!r}; "
                       f"known: {sorted(classes)}.")
    return classes[identifier["class_name"]].from_config(identifier["config"])
  raise TypeError(f"Expected a tfp_distill family, got {identifier!r}.")
