"""Mixture distillation and knowledge distillation: the student fits the ensemble's
predictive, not the spread of its members.

```none
mixture_cross_entropy   H(mixture of the members' Normals, student's Normal)  (eq 24-31 of [1])
soft_target_kl          T^2 KL(p_bar_T || softmax(s / T))                     (eq 5, 23 of [1])
member_kl               member i of a BatchEnsemble student learns from teacher i   ([4])
member_cross_entropy    labels' cross-entropy, averaged over a student's members
predictive_kl           KL(ensemble predictive || student predictive), any student
MixtureKL, KnowledgeDistillation   the Keras losses
```
`classification_log_prob` (log q~(y) of a classification student) and
`as_student_logits` are shared with the other loss modules.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[4]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021.
     arXiv:2110.14149.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import _quadrature
from tfp_distill import families as families_lib
from tfp_distill import parameterization as parameterization_lib
from tfp_distill._keras import keras
from tfp_distill.losses._checks import check_targets
from tfp_distill.losses._checks import check_temperature
from tfp_distill.losses._checks import family_config
from tfp_distill.losses._checks import member_log_probs
from tfp_distill.losses._checks import static_event_size
from tfp_distill.losses._checks import unpack_targets

tfd = tfp.distributions

__all__ = ["mixture_cross_entropy", "soft_target_kl", "member_kl", "member_cross_entropy",
           "predictive_kl", "MixtureKL", "KnowledgeDistillation", "as_student_logits",
           "classification_log_prob"]


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
  dist = parameterization_lib.get_distribution(dist)
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"mixture_cross_entropy supports HeteroscedasticNormal, got {family!r}.")
  z = tf.convert_to_tensor(z, dtype=dist.dtype)
  check_targets(z, dist, expected_params=family.params_size)
  if static_event_size(dist) != family.event_size:
    raise ValueError(
        f"Mixture distillation needs a student distribution over y (event size "
        f"{family.event_size}, e.g. NormalPredictiveHead({family.event_size})); got event "
        f"size {static_event_size(dist)}.")
  mu, var = family.mean(z), family.variance(z)                # [batch, members, E]
  mu_bar = tf.reduce_mean(mu, axis=1)
  spread = tf.reduce_mean(var + tf.square(mu - mu_bar[:, tf.newaxis]), axis=1)
  mu_s, var_s = dist.mean(), dist.variance()
  h = 0.5 * tf.math.log(2. * np.pi * var_s) + (spread + tf.square(mu_bar - mu_s)) / (
      2. * var_s)
  return tf.reduce_sum(h, axis=-1)


def as_student_logits(y_pred):
  """Logits [batch, K] from a CategoricalHead distribution or a plain logits Tensor."""
  if parameterization_lib.is_distribution_like(y_pred):
    inner = parameterization_lib.unwrap(parameterization_lib.get_distribution(y_pred))
    if isinstance(inner, (tfd.OneHotCategorical, tfd.Categorical)):
      return inner.logits_parameter()
    raise TypeError(f"Soft-target distillation needs a categorical student "
                    f"(td.heads.CategoricalHead) or logits, got {type(inner).__name__}.")
  return tf.convert_to_tensor(y_pred)


def soft_target_kl(z, student_logits, family=None, temperature=1.0):
  """Soft-target distillation: T^2 KL(ensemble mean || student), at temperature T.

  ```none
  p_bar_T = 1/M sum_m softmax(l_m / T),   q_T = softmax(s / T)
  L = T^2 sum_k p_bar_T,k (log p_bar_T,k - log q_T,k)
  ```
  At T = 1 this is the mixture distillation of [1] (eq 5, 23): KL from the ensemble's
  predictive mixture to the student's Categorical.

  Args:
    z: float Tensor [batch, members, K or K - 1], the members' logits.
    student_logits: float Tensor [batch, K].
    family: `families.CategoricalLogits` or None.
    temperature: float or scalar Tensor T > 0.

  Returns:
    loss: float Tensor [batch].
  """
  student_logits = tf.convert_to_tensor(student_logits)
  dtype = student_logits.dtype
  num_classes = tf.compat.dimension_value(student_logits.shape[-1])
  log_p = member_log_probs(z, num_classes, family, temperature, 0., dtype)
  log_p_bar = tf.reduce_logsumexp(log_p, axis=1) - tf.math.log(
      tf.cast(tf.shape(log_p)[1], dtype))
  log_q = tf.nn.log_softmax(student_logits / _dtypes.cast(temperature, dtype), axis=-1)
  kl = tf.reduce_sum(tf.exp(log_p_bar) * (log_p_bar - log_q), axis=-1)
  return tf.square(_dtypes.cast(temperature, dtype)) * kl


def member_kl(z, student_logits, family=None, temperature=1.0):
  """Per-member distillation: member i of the student learns from teacher i ([4], KD).

  ```none
  L = T^2 / E sum_i sum_k p_i,k (log p_i,k - log q_i,k),
      p_i = softmax(l_i / T) (teacher i),  q_i = softmax(s_i / T) (student member i)
  ```

  Args:
    z: float Tensor [batch, M, K or K - 1], the teachers' logits.
    student_logits: float Tensor [batch, E, K] with E == M (a BatchEnsemble's output).
    family: `families.CategoricalLogits` or None.
    temperature: float or scalar Tensor T > 0.

  Returns:
    loss: float Tensor [batch].

  Raises:
    ValueError: the student has a different number of members than the teacher.
  """
  student_logits = tf.convert_to_tensor(student_logits)
  dtype = student_logits.dtype
  if student_logits.shape.rank != 3:
    raise ValueError(f"member_kl needs student logits [batch, members, K], got shape "
                     f"{list(student_logits.shape)}.")
  num_classes = tf.compat.dimension_value(student_logits.shape[-1])
  log_p = member_log_probs(z, num_classes, family, temperature, 0., dtype)
  e, m = (tf.compat.dimension_value(t.shape[1]) for t in (student_logits, log_p))
  if e is not None and m is not None and e != m:
    raise ValueError(f"A per-member student needs one member per teacher: the student has "
                     f"{e} members, the teacher {m}.")
  log_q = tf.nn.log_softmax(student_logits / _dtypes.cast(temperature, dtype), axis=-1)
  kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)     # [batch, E]
  return tf.square(_dtypes.cast(temperature, dtype)) * tf.reduce_mean(kl, axis=-1)


def member_cross_entropy(labels, logits):
  """Cross-entropy of integer labels, averaged over members when logits are [batch, E, K].

  Usable as a Keras loss (`model.compile(loss=td.losses.member_cross_entropy)`) for a
  BatchEnsemble trained on labels alone: every member is trained on every example.

  Args:
    labels: int Tensor [batch] or [batch, 1].
    logits: float Tensor [batch, K] or [batch, E, K].

  Returns:
    loss: float Tensor [batch].
  """
  logits = tf.convert_to_tensor(logits)
  labels = tf.cast(labels, tf.int32)
  if labels.shape.rank == 2:
    labels = tf.squeeze(labels, -1)
  if logits.shape.rank == 3:
    labels = tf.broadcast_to(labels[:, None], tf.shape(logits)[:2])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits), axis=-1)
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def classification_log_prob(dist, family, labels, num_samples, seed):
  """log q~(y) for a student over logits (Monte Carlo) or a Dirichlet (closed form)."""
  dist = parameterization_lib.get_distribution(dist)
  inner = parameterization_lib.unwrap(dist)
  labels = tf.cast(family.check_labels(labels), tf.int32)
  if labels.shape.rank == 2:
    labels = tf.squeeze(labels, -1)
  if isinstance(inner, tfd.Dirichlet):
    log_alpha = tf.math.log(tf.convert_to_tensor(inner.concentration))
    log_mean = log_alpha - tf.reduce_logsumexp(log_alpha, axis=-1, keepdims=True)
    return tf.gather(log_mean, labels, batch_dims=1)
  seed = _quadrature.stateless_seed(seed)
  z = dist.sample(num_samples, seed=seed)                      # [samples, batch, P]
  log_p = family.log_probs(z)                                  # [samples, batch, K]
  picked = tf.gather(log_p, tf.broadcast_to(labels, tf.shape(log_p)[:-1])[..., None],
                     batch_dims=2)[..., 0]
  return tf.reduce_logsumexp(picked, axis=0) - tf.math.log(
      tf.cast(num_samples, picked.dtype))


def _student_log_predictive(dist, family, num_samples, seed):
  """log q~(k | x) [batch, K] of a classification student: closed form or Monte Carlo.

  Dirichlet: log(alpha_k / alpha_0); Categorical: log softmax(s); a Normal over logits:
  log of the mean of softmax over `num_samples` reparameterized draws with a fixed
  stateless seed (common random numbers across steps, as `classification_log_prob`).
  """
  dist = parameterization_lib.get_distribution(dist)
  inner = parameterization_lib.unwrap(dist)
  if isinstance(inner, tfd.Dirichlet):
    log_alpha = tf.math.log(tf.convert_to_tensor(inner.concentration))
    return log_alpha - tf.reduce_logsumexp(log_alpha, axis=-1, keepdims=True)
  if isinstance(inner, (tfd.OneHotCategorical, tfd.Categorical)):
    return tf.nn.log_softmax(inner.logits_parameter(), axis=-1)
  z = dist.sample(num_samples, seed=_quadrature.stateless_seed(seed))   # [S, batch, P]
  log_p = family.log_probs(z)                                            # [S, batch, K]
  return tf.reduce_logsumexp(log_p, axis=0) - tf.math.log(
      tf.cast(num_samples, log_p.dtype))


def predictive_kl(z, dist, family=None, num_samples=64, seed=0):
  """KL(ensemble predictive || student predictive) for classification, [batch].

  ```none
  p_bar = 1/M sum_m softmax(l_m)          (the ensemble's predictive, T = 1)
  q~    = E_{pi ~ student}[pi]            (the student's predictive)
  L     = sum_k p_bar_k (log p_bar_k - log q~_k)
  ```
  The soft-target term of mixture distillation ([1], eq 5), here added to a distribution
  student's loss (`DirichletNLL(predictive_weight=...)`, `EnsembleNLL(...)`): the
  distribution loss fits the spread of the members, this term the prediction they make
  together. For a Dirichlet q~ = alpha / alpha_0 exactly; for a Gaussian over logits it is
  a Monte Carlo mean of softmax over reparameterized draws.

  Args:
    z: float Tensor [batch, members, K or K - 1], the members' logits.
    dist: the student's output (a `DirichletHead`, `CategoricalHead` or a Normal over the
      family's logits).
    family: the members' `families.CategoricalLogits` (required for a Normal over
      logits; for the others None means K plain logits).
    num_samples: int, draws for a Normal over logits.
    seed: int, stateless seed of those draws.

  Returns:
    loss: float Tensor [batch], >= 0.
  """
  inner = parameterization_lib.unwrap(parameterization_lib.get_distribution(dist))
  if not isinstance(inner, (tfd.Dirichlet, tfd.OneHotCategorical, tfd.Categorical)):
    if not isinstance(family, families_lib.CategoricalLogits):
      raise ValueError("predictive_kl of a student over logits needs the members' "
                       "CategoricalLogits family (to map its draws to probabilities).")
  log_q = _student_log_predictive(dist, family, num_samples, seed)
  num_classes = tf.compat.dimension_value(log_q.shape[-1])
  log_p = member_log_probs(z, num_classes, family, 1.0, 0., log_q.dtype)
  log_p_bar = tf.reduce_logsumexp(log_p, axis=1) - tf.math.log(
      tf.cast(tf.shape(log_p)[1], log_q.dtype))
  return tf.reduce_sum(tf.exp(log_p_bar) * (log_p_bar - log_q), axis=-1)


class MixtureKLMixin:
  """`MixtureKL` without its Keras base: arguments, per-example loss, config.

  Mixed into a `Loss` of either Keras: `td.losses.MixtureKL` (tf_keras) and
  `td.keras3.losses.MixtureKL` (Keras 3) are this class and their Keras' `Loss`;
  `**kwargs` go to that `Loss` (`reduction`).
  """

  def __init__(self, family, name="mixture_kl", **kwargs):
    super().__init__(name=name, **kwargs)
    self.family = families_lib.get(family)

  def call(self, y_true, y_pred):
    """Targets z [batch, members, params] (or {"ensemble": z, ...}) and the student's output
    -> [batch]: `soft_target_kl` for CategoricalLogits, else `mixture_cross_entropy`."""
    z, _ = unpack_targets(y_true)
    if isinstance(self.family, families_lib.CategoricalLogits):
      return soft_target_kl(z, as_student_logits(y_pred), self.family)
    return mixture_cross_entropy(z, y_pred, self.family)

  @property
  def label_term_weight(self):
    """0: this loss ignores labels."""
    return 0.

  def get_config(self):
    """The loss's constructor arguments (the family serialized), for Keras serialization."""
    config = super().get_config()
    config.update(family=family_config(self.family))
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class MixtureKL(MixtureKLMixin, keras.losses.Loss):
  """Mixture-distillation baseline: KL(ensemble mixture || student), up to a constant.

  Regression (`HeteroscedasticNormal` members): see `mixture_cross_entropy`; the student's
  last layer is `heads.NormalPredictiveHead`. Classification (`CategoricalLogits`
  members): `soft_target_kl` at T = 1; the student's last layer is
  `heads.CategoricalHead` (or it outputs logits).

  Args:
    family: the members' family.
    reduction, name: as for `keras.losses.Loss`.
  """


class KnowledgeDistillationMixin:
  """`KnowledgeDistillation` without its Keras base: arguments, per-example loss, config.

  Mixed into a `Loss` of either Keras: `td.losses.KnowledgeDistillation` (tf_keras) and
  `td.keras3.losses.KnowledgeDistillation` (Keras 3) are this class and their Keras' `Loss`;
  `**kwargs` go to that `Loss` (`reduction`).
  """

  def __init__(self, temperature=1.0, alpha=1.0, family=None, name="knowledge_distillation",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if not 0. <= alpha <= 1.:
      raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    self.temperature = tf.Variable(check_temperature(temperature), trainable=False,
                                   dtype=tf.float32, name="temperature")
    self.alpha = float(alpha)
    self.family = None if family is None else families_lib.get(family)

  def call(self, y_true, y_pred):
    """Targets z [batch, members, params] (or {"ensemble": z, "label": y}) and student logits
    [batch, K] or [batch, E, K] -> [batch]: alpha times the KL, plus the label term."""
    z, labels = unpack_targets(y_true)
    logits = as_student_logits(y_pred)
    temperature = tf.cast(self.temperature, logits.dtype)
    per_member = logits.shape.rank == 3
    kl = member_kl if per_member else soft_target_kl
    loss = self.alpha * kl(z, logits, self.family, temperature)
    if labels is not None and self.alpha < 1.:
      loss += self.label_term(labels, y_pred)
    return loss

  @property
  def label_term_weight(self):
    """Weight of the labelled term, 1 - alpha (0: the loss ignores labels)."""
    return 1. - self.alpha

  def label_term(self, labels, y_pred):
    """The weighted labelled term alone, [batch]: (1 - alpha) CE(y, softmax(s)).

    `Distiller(labels_on="clean")` evaluates it on the student's logits for the clean
    input while the KL term sees the perturbed one, as Nam et al.'s code does [4].
    """
    return (1. - self.alpha) * member_cross_entropy(labels, as_student_logits(y_pred))

  def get_config(self):
    """The loss's constructor arguments (the current temperature), for Keras serialization."""
    config = super().get_config()
    config.update(temperature=float(self.temperature.numpy()), alpha=self.alpha,
                  family=family_config(self.family))
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class KnowledgeDistillation(KnowledgeDistillationMixin, keras.losses.Loss):
  """Hinton knowledge distillation from an ensemble, with an optional label term.

  ```none
  student logits s [batch, K]:      (the ensemble's mean as one soft target)
    L = alpha T^2 KL(p_bar_T || softmax(s / T)) + (1 - alpha) CE(y, softmax(s))
  student logits s [batch, E, K]:   (a BatchEnsemble: member i learns from teacher i [4])
    L = 1/E sum_i [alpha T^2 KL(softmax(l_i / T) || softmax(s_i / T))
                   + (1 - alpha) CE(y, softmax(s_i))]
  ```
  (`soft_target_kl`, `member_kl`). The label term is used when targets carry labels
  (`{"ensemble": z, "label": y}`) and alpha < 1. The temperature is a non-trainable
  `tf.Variable`, like `DirichletNLL`'s, so `TemperatureAnnealing` can drive it.

  Args:
    temperature: float T > 0.
    alpha: float in [0, 1], weight of the distillation term.
    family: the members' `families.CategoricalLogits`, or None (members give K logits).
    reduction, name: as for `keras.losses.Loss`.
  """
