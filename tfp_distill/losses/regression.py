"""Losses of the general framework [1]: the NLL of the members' parameters under the
student's Normal (regression, and Normals over logits), with the optional labelled term.

```none
ensemble_nll          - 1/M sum_m log v(z_m | g(x))                          (eq 7)
predictive_log_prob   log q~(y; g(x)) = log int q(y; z) v(z; g(x)) dz        (eq 14)
EnsembleNLL           the Keras loss: eq 7 (+ eq 19-20 with labels)
```

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _quadrature
from tfp_distill import families as families_lib
from tfp_distill import parameterization as parameterization_lib
from tfp_distill._keras import keras
from tfp_distill.losses._checks import check_targets
from tfp_distill.losses._checks import check_weight
from tfp_distill.losses._checks import family_config
from tfp_distill.losses._checks import static_event_size
from tfp_distill.losses._checks import unpack_targets
from tfp_distill.losses.distillation import classification_log_prob
from tfp_distill.losses.distillation import predictive_kl

tfd = tfp.distributions

__all__ = ["ensemble_nll", "predictive_log_prob", "EnsembleNLL"]


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
  dist = parameterization_lib.get_distribution(dist)
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
  dist = parameterization_lib.get_distribution(dist)
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"predictive_log_prob supports HeteroscedasticNormal, got {family!r}.")
  e = family.event_size
  if static_event_size(dist) != family.params_size:
    raise ValueError(f"The student's distribution has event size "
                     f"{static_event_size(dist)}; {family!r} needs params_size "
                     f"{family.params_size}.")
  y = tf.cast(y, dist.dtype)
  if y.shape.rank == 1:
    y = y[:, tf.newaxis]
  loc = dist.mean()
  m_mu, m_rho = loc[..., :e], loc[..., e:]
  inner = parameterization_lib.unwrap(dist)
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


class EnsembleNLLMixin:
  """`EnsembleNLL` without its Keras base: arguments, per-example loss, config.

  Mixed into a `Loss` of either Keras: `td.losses.EnsembleNLL` (tf_keras) and
  `td.keras3.losses.EnsembleNLL` (Keras 3) are this class and their Keras' `Loss`;
  `**kwargs` go to that `Loss` (`reduction`).
  """

  def __init__(self, family=None, label_weight=0.0, num_quadrature_points=40,
               num_label_samples=64, predictive_weight=0.0, name="ensemble_nll", **kwargs):
    super().__init__(name=name, **kwargs)
    self.family = None if family is None else families_lib.get(family)
    self.predictive_weight = check_weight("predictive_weight", predictive_weight)
    if self.predictive_weight > 0 and not isinstance(self.family,
                                                      families_lib.CategoricalLogits):
      raise ValueError("predictive_weight > 0 needs a CategoricalLogits family (the "
                       "predictive term is a soft target over classes).")
    if not label_weight >= 0:
      raise ValueError(f"label_weight must be >= 0, got {label_weight}.")
    if label_weight > 0 and self.family is None:
      raise ValueError("label_weight > 0 needs the members' family to form q~(y).")
    self.label_weight = float(label_weight)
    self.num_quadrature_points = int(num_quadrature_points)
    self.num_label_samples = int(num_label_samples)

  def call(self, y_true, y_pred):
    """Targets z [batch, members, params] (or {"ensemble": z, "label": y}) and the student
    -> [batch]: `ensemble_nll`, plus the predictive and label terms if weighted."""
    z, labels = unpack_targets(y_true)
    classification = isinstance(self.family, families_lib.CategoricalLogits)
    if classification:
      inner = parameterization_lib.unwrap(parameterization_lib.get_distribution(y_pred))
      if isinstance(inner, (tfd.Dirichlet, tfd.OneHotCategorical, tfd.Categorical)):
        raise TypeError(
            f"EnsembleNLL fits a Gaussian over the members' logits; a "
            f"{type(inner).__name__} student needs td.losses.DirichletNLL (Dirichlet) or "
            "td.losses.MixtureKL / KnowledgeDistillation (Categorical).")
      z = self.family.params(z)       # centred on the reference class where it has one
    if self.family is not None:
      check_targets(z, parameterization_lib.get_distribution(y_pred),
                    expected_params=self.family.params_size)
    loss = ensemble_nll(z, y_pred)
    if self.predictive_weight > 0:
      loss += self.predictive_weight * predictive_kl(
          z, y_pred, self.family, self.num_label_samples, seed=1)
    if labels is not None and self.label_weight > 0:
      loss += self.label_term(labels, y_pred)
    return loss

  @property
  def label_term_weight(self):
    """Weight of the labelled term (0: the loss ignores labels)."""
    return self.label_weight

  def label_term(self, labels, y_pred):
    """The weighted labelled term alone, [batch]: label_weight * -log q~(y | x).

    `Distiller(labels_on="clean")` evaluates it on the student's output for the clean
    input while the distillation term sees the perturbed one.
    """
    if isinstance(self.family, families_lib.CategoricalLogits):
      log_q = classification_log_prob(y_pred, self.family, labels,
                                       self.num_label_samples, seed=0)
    else:
      log_q = predictive_log_prob(y_pred, self.family, labels,
                                  num_points=self.num_quadrature_points)
    return self.label_weight * -log_q

  def get_config(self):
    """The loss's constructor arguments (the family serialized), for Keras serialization."""
    config = super().get_config()
    config.update(family=family_config(self.family), label_weight=self.label_weight,
                  num_quadrature_points=self.num_quadrature_points,
                  num_label_samples=self.num_label_samples,
                  predictive_weight=self.predictive_weight)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class EnsembleNLL(EnsembleNLLMixin, keras.losses.Loss):
  """Keras loss of the general distribution-distillation framework (eq 7, 19-20 of [1]).

  ```none
  L = - 1/M sum_m log v(z_m | g(x))  +  label_weight * ( - log q~(y; g(x)) )
      + predictive_weight * KL(p_bar || q~)                    (classification only)
  ```
  The second term is used only when targets carry labels
  (`{"ensemble": z, "label": y}`) and `label_weight > 0`; it needs the members' family.
  The third (`predictive_kl`, default off: the paper's loss is the first term) adds the
  ensemble's predictive as a soft target for the student's Monte Carlo predictive.

  Classification: the student is a Normal over logits (`NormalHead` or
  `MultivariateNormalTriLHead` with event size `family.params_size`); with a
  `CategoricalLogits(K, reference_class=True)` family the members' K logits are centred
  on the reference class first (eq 9). The labelled term then uses a Monte Carlo
  estimate of q~(y) = E_v[softmax([z, 0])_y] with `num_label_samples` samples drawn with
  a fixed stateless seed (common random numbers across steps).

  Args:
    family: the members' family (needed for the labelled term and for reference-class
      centring), or None.
    label_weight: float >= 0, lambda of eq 20.
    num_quadrature_points: int, Gauss-Hermite nodes for q~ (see `predictive_log_prob`).
    num_label_samples: int, Monte Carlo samples for the classification labelled term
      and the predictive term.
    predictive_weight: float >= 0, weight of `predictive_kl` (classification families).
    reduction, name: as for `keras.losses.Loss`.

  #### Examples

  ```python
  student.compile(optimizer="adam", loss=td.losses.EnsembleNLL())
  student.fit(td.teacher_targets(x, ensemble), epochs=30)
  ```
  """
