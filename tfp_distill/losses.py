"""Distillation losses: pure functions of tensors, with thin Keras `Loss` wrappers.

Targets `z` are the ensemble members' parameters, batch-first: [batch, members, params].
Inside `keras.Model.fit` the targets may also come as a dict
`{"ensemble": z, "label": y}` (see `td.teacher_targets`), in which case the optional
labelled term of eq 19-20 of [1] is added.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _quadrature
from tfp_distill import families as families_lib
from tfp_distill import heads as heads_lib
from tfp_distill._keras import keras

tfd = tfp.distributions

__all__ = [
    "ensemble_nll",
    "predictive_log_prob",
    "mixture_cross_entropy",
    "check_targets",
    "unpack_targets",
    "EnsembleNLL",
    "MixtureKL",
]


def _static_event_size(dist):
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
    expected_params = _static_event_size(dist)
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


def ensemble_nll(z, dist):
  """Negative log-likelihood of the members' parameters under the student (eq 7 of [1]).

  ```none
  L(x) = - 1/M sum_m log v(z_m | g(x))
  ```

  Args:
    z: float Tensor [batch, members, params], the teacher targets.
    dist: tfd.Distribution v(z | g(x)), batch [batch], event [params].

  Returns:
    loss: float Tensor [batch].

  Raises:
    ValueError: if the shapes do not fit (see `check_targets`).
  """
  dist = heads_lib.get_distribution(dist)
  z = tf.convert_to_tensor(z, dtype=dist.dtype)
  check_targets(z, dist)
  log_prob = dist.log_prob(tf.transpose(z, [1, 0, 2]))   # [members, batch]
  return -tf.reduce_mean(log_prob, axis=0)


def predictive_log_prob(dist, family, y, num_points=40, num_samples=64, seed=0):
  """log q~(y; g(x)) = log int q(y; z) v(z; g(x)) dz (eq 14 of [1]), regression.

  For a Normal v over z = [mu, rho] of a `HeteroscedasticNormal` family, mu given rho is
  Normal, so the mu integral is closed form and only rho is integrated:

  ```none
  q~(y) = int N(y; m(rho), S + diag(softplus(rho) + c)) v(rho) drho
  m(rho) = m_mu + C_mr C_rr^-1 (rho - m_rho),  S = C_mm - C_mr C_rr^-1 C_rm
  ```
  with Gauss-Hermite quadrature over rho when the event size is 1 or v is diagonal (40
  nodes by default: ~1e-5 nats even for rho marginals with sd ~2), and Monte Carlo over
  rho otherwise.

  Args:
    dist: tfd.Distribution over z, batch [batch], event [2 E].
    family: `families.HeteroscedasticNormal`.
    y: float Tensor [batch] (E = 1) or [batch, E].
    num_points: int, Gauss-Hermite nodes.
    num_samples: int, Monte Carlo samples of rho (full covariance with E > 1 only).
    seed: int or stateless seed [2] for the Monte Carlo case.

  Returns:
    log_prob: float Tensor [batch].
  """
  dist = heads_lib.get_distribution(dist)
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"predictive_log_prob supports HeteroscedasticNormal, got {family!r}.")
  e = family.event_size
  if _static_event_size(dist) != family.params_size:
    raise ValueError(f"The student's distribution has event size "
                     f"{_static_event_size(dist)}; {family!r} needs params_size "
                     f"{family.params_size}.")
  y = tf.cast(y, dist.dtype)
  if y.shape.rank == 1:
    y = y[:, tf.newaxis]
  loc = dist.mean()
  m_mu, m_rho = loc[..., :e], loc[..., e:]
  inner = heads_lib._unwrap(dist)  # pylint: disable=protected-access
  if isinstance(inner, tfd.Independent):
    # Diagonal v: mu and rho independent in every event dimension.
    var = dist.variance()
    var_mu, var_rho, cov_mr = var[..., :e], var[..., e:], tf.zeros_like(m_mu)
  else:
    cov = dist.covariance()
    c_mm, c_mr, c_rr = cov[..., :e, :e], cov[..., :e, e:], cov[..., e:, e:]
    var_mu, var_rho = tf.linalg.diag_part(c_mm), tf.linalg.diag_part(c_rr)
    cov_mr = tf.linalg.diag_part(c_mr)
  if e == 1 or isinstance(inner, tfd.Independent):
    # Per event dimension: scalar regression of mu_e on rho_e, Gauss-Hermite over rho_e.
    gain = cov_mr / var_rho
    cond_var = tf.maximum(var_mu - gain * cov_mr, 0.)
    rho, log_w = _quadrature.normal_nodes(m_rho, tf.sqrt(var_rho), num_points)
    mean = m_mu + gain * (rho - m_rho)                          # [points, batch, E]
    var = cond_var + family.variance_from_rho(rho)
    log_n = tfd.Normal(mean, tf.sqrt(var)).log_prob(y)         # [points, batch, E]
    log_w = tf.reshape(log_w, [-1, 1, 1])
    return tf.reduce_sum(tf.reduce_logsumexp(log_w + log_n, axis=0), axis=-1)
  seed = _quadrature.stateless_seed(seed)
  rho_dist = tfd.MultivariateNormalTriL(m_rho, tf.linalg.cholesky(c_rr))
  rho = rho_dist.sample(num_samples, seed=seed)                # [samples, batch, E]
  gain = tf.linalg.matrix_transpose(
      tf.linalg.solve(c_rr, tf.linalg.matrix_transpose(c_mr)))  # [batch, E, E]
  cond_cov = c_mm - tf.matmul(gain, c_mr, transpose_b=True)
  mean = m_mu + tf.linalg.matvec(gain, rho - m_rho)
  cov_y = cond_cov + tf.linalg.diag(family.variance_from_rho(rho))
  log_n = tfd.MultivariateNormalTriL(mean, tf.linalg.cholesky(cov_y)).log_prob(y)
  return tf.reduce_logsumexp(log_n, axis=0) - tf.math.log(
      tf.cast(num_samples, dist.dtype))


def mixture_cross_entropy(z, dist, family):
  """Mixture distillation for Normal members, in closed form (eq 24-31 of [1]).

  The cross-entropy of the student's Normal q = N(mu_s, s^2) under the ensemble mixture
  p = 1/M sum_m N(mu_m, sigma_m^2), per event dimension, summed over the event:

  ```none
  H(p, q) = 1/2 log(2 pi s^2)
            + [ 1/M sum_m (sigma_m^2 + (mu_m - mu_bar)^2) + (mu_bar - mu_s)^2 ] / (2 s^2)
  ```
  It differs from KL(p || q) by H(p), which does not depend on the student. (Eq 31 of [1]
  as printed drops the factors 1/2; this is the exact expression.)

  Args:
    z: float Tensor [batch, members, 2 E], the members' parameters.
    dist: Normal over y with batch [batch], event [E] (`heads.NormalPredictiveHead`).
    family: `families.HeteroscedasticNormal` of the members.

  Returns:
    loss: float Tensor [batch].
  """
  dist = heads_lib.get_distribution(dist)
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"mixture_cross_entropy supports HeteroscedasticNormal, got {family!r}.")
  z = tf.convert_to_tensor(z, dtype=dist.dtype)
  check_targets(z, dist, expected_params=family.params_size)
  if _static_event_size(dist) != family.event_size:
    raise ValueError(
        f"Mixture distillation needs a student distribution over y (event size "
        f"{family.event_size}, e.g. NormalPredictiveHead({family.event_size})); got event "
        f"size {_static_event_size(dist)}.")
  mu, var = family.mean(z), family.variance(z)                # [batch, members, E]
  mu_bar = tf.reduce_mean(mu, axis=1)
  spread = tf.reduce_mean(var + tf.square(mu - mu_bar[:, tf.newaxis]), axis=1)
  mu_s, var_s = dist.mean(), dist.variance()
  h = 0.5 * tf.math.log(2. * np.pi * var_s) + (spread + tf.square(mu_bar - mu_s)) / (
      2. * var_s)
  return tf.reduce_sum(h, axis=-1)


def _family_config(family):
  return None if family is None else families_lib.serialize(family)


@keras.utils.register_keras_serializable(package="tfp_distill")
class EnsembleNLL(keras.losses.Loss):
  """Keras loss of the general distribution-distillation framework (eq 7, 19-20 of [1]).

  ```none
  L = - 1/M sum_m log v(z_m | g(x))  +  label_weight * ( - log q~(y; g(x)) )
  ```
  The second term is used only when targets carry labels
  (`{"ensemble": z, "label": y}`) and `label_weight > 0`; it needs the members' family.

  Args:
    family: the members' family (needed only for the labelled term), or None.
    label_weight: float >= 0, lambda of eq 20.
    num_quadrature_points: int, Gauss-Hermite nodes for q~ (see `predictive_log_prob`).
    reduction, name: as for `keras.losses.Loss`.

  #### Examples

  ```python
  student.compile(optimizer="adam", loss=td.losses.EnsembleNLL())
  student.fit(td.teacher_targets(x, ensemble), epochs=30)
  ```
  """

  def __init__(self, family=None, label_weight=0.0, num_quadrature_points=40,
               reduction=keras.losses.Reduction.AUTO, name="ensemble_nll"):
    super().__init__(reduction=reduction, name=name)
    self.family = None if family is None else families_lib.get(family)
    if not label_weight >= 0:
      raise ValueError(f"label_weight must be >= 0, got {label_weight}.")
    if label_weight > 0 and self.family is None:
      raise ValueError("label_weight > 0 needs the members' family to form q~(y).")
    self.label_weight = float(label_weight)
    self.num_quadrature_points = int(num_quadrature_points)

  def call(self, y_true, y_pred):
    z, labels = unpack_targets(y_true)
    if self.family is not None:
      check_targets(z, heads_lib.get_distribution(y_pred),
                    expected_params=self.family.params_size)
    loss = ensemble_nll(z, y_pred)
    if labels is not None and self.label_weight > 0:
      loss += self.label_weight * -predictive_log_prob(
          y_pred, self.family, labels, num_points=self.num_quadrature_points)
    return loss

  def get_config(self):
    config = super().get_config()
    config.update(family=_family_config(self.family), label_weight=self.label_weight,
                  num_quadrature_points=self.num_quadrature_points)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class MixtureKL(keras.losses.Loss):
  """Mixture-distillation baseline: KL(ensemble mixture || student), up to a constant.

  See `mixture_cross_entropy`. The student's last layer is `heads.NormalPredictiveHead`.

  Args:
    family: the members' family (`families.HeteroscedasticNormal`).
    reduction, name: as for `keras.losses.Loss`.
  """

  def __init__(self, family, reduction=keras.losses.Reduction.AUTO, name="mixture_kl"):
    super().__init__(reduction=reduction, name=name)
    self.family = families_lib.get(family)

  def call(self, y_true, y_pred):
    z, _ = unpack_targets(y_true)
    return mixture_cross_entropy(z, y_pred, self.family)

  def get_config(self):
    config = super().get_config()
    config.update(family=_family_config(self.family))
    return config
