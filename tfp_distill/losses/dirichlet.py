"""Dirichlet students: EnD^2 [2] and the proxy-Dirichlet target of [3].

```none
dirichlet_nll           - T^2 1/M sum_m log Dir(pi_m | alpha_T)        (EnD^2, eq 9 of [2])
proxy_dirichlet_target  beta = pi_bar beta_0 + offset                  (Minka's precision)
proxy_dirichlet_cost    the published proxy loss of [3]
proxy_dirichlet_kl      T^2 KL(Dir(alpha_T) || Dir(beta)), undivided
DirichletNLL            the Keras loss over the three, with a temperature variable
```

#### References

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.

[3]: Ryabinin, Malinin, Gales. Scaling Ensemble Distribution Distillation to Many Classes
     with Proxy Targets. NeurIPS 2021. arXiv:2105.06987.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import families as families_lib
from tfp_distill import parameterization as parameterization_lib
from tfp_distill._keras import keras
from tfp_distill.losses._checks import check_temperature
from tfp_distill.losses._checks import check_weight
from tfp_distill.losses._checks import family_config
from tfp_distill.losses._checks import member_log_probs
from tfp_distill.losses._checks import unpack_targets
from tfp_distill.losses.distillation import classification_log_prob
from tfp_distill.losses.distillation import predictive_kl

tfd = tfp.distributions

__all__ = ["dirichlet_nll", "proxy_dirichlet_target", "proxy_dirichlet_kl",
           "proxy_dirichlet_cost", "DirichletNLL"]


def _dirichlet(dist):
  dist = parameterization_lib.get_distribution(dist)
  inner = parameterization_lib.unwrap(dist)
  if not isinstance(inner, tfd.Dirichlet):
    raise TypeError(
        f"This loss needs a Dirichlet student (td.heads.DirichletHead), got "
        f"{type(inner).__name__}.")
  return inner


def _heated_log_concentration(dist, temperature, dtype):
  """log alpha / T, i.e. the student's concentration at temperature T: [batch, K]."""
  log_alpha = tf.math.log(tf.cast(tf.convert_to_tensor(dist.concentration), dtype))
  return log_alpha / _dtypes.cast(temperature, dtype)


def dirichlet_nll(z, dist, family=None, temperature=1.0, smoothing=1e-4,
                  compute_dtype=None):
  """EnD^2: Dirichlet NLL of the members' heated probability vectors ([2], eq 9).

  ```none
  alpha_T = alpha^(1 / T)                         (student: exp(s / T) for exp heads)
  log pi_m = log_softmax(l_m / T);  pi_m <- (1 - eps) pi_m + eps / K
  L = T^2 [ sum_k lgamma(alpha_T,k) - lgamma(alpha_T,0)
            - sum_k (alpha_T,k - 1) 1/M sum_m log pi_m,k ]
    = - T^2 1/M sum_m log Dir(pi_m | alpha_T)
  ```
  Computed from logits in log space; `compute_dtype=tf.float64` runs the lgamma terms in
  double precision and casts the loss back.

  Args:
    z: float Tensor [batch, members, K] (or [batch, members, K - 1] with a reference-class
      `family`), the members' logits.
    dist: Dirichlet from `heads.DirichletHead`, batch [batch], event [K].
    family: `families.CategoricalLogits` or None (z are then K logits).
    temperature: float or scalar Tensor/Variable T >= 1.
    smoothing: float eps in [0, 1), target smoothing toward uniform.
    compute_dtype: None (the student's dtype) or a float dtype.

  Returns:
    loss: float Tensor [batch], in the student's dtype.
  """
  dirichlet = _dirichlet(dist)
  out_dtype = dirichlet.dtype
  dtype = tf.as_dtype(compute_dtype or out_dtype)
  num_classes = tf.compat.dimension_value(dirichlet.event_shape[-1])
  log_p = member_log_probs(z, num_classes, family, temperature, smoothing, dtype)
  mean_log_p = tf.reduce_mean(log_p, axis=1)                      # [batch, K]
  alpha = tf.exp(_heated_log_concentration(dirichlet, temperature, dtype))
  nll = (tf.reduce_sum(tf.math.lgamma(alpha), axis=-1)
         - tf.math.lgamma(tf.reduce_sum(alpha, axis=-1))
         - tf.reduce_sum((alpha - 1.) * mean_log_p, axis=-1))
  return tf.cast(tf.square(_dtypes.cast(temperature, dtype)) * nll, out_dtype)


def _dirichlet_kl(a, b):
  """KL(Dir(a) || Dir(b)) in closed form, [batch] from [batch, K]."""
  a0, b0 = tf.reduce_sum(a, -1), tf.reduce_sum(b, -1)
  return (tf.math.lgamma(a0) - tf.reduce_sum(tf.math.lgamma(a), -1)
          - tf.math.lgamma(b0) + tf.reduce_sum(tf.math.lgamma(b), -1)
          + tf.reduce_sum((a - b) * (tf.math.digamma(a) - tf.math.digamma(a0)[..., None]),
                          -1))


def proxy_dirichlet_target(z, num_classes, family=None, temperature=1.0, smoothing=1e-4,
                           offset=1.0, compute_dtype=tf.float32):
  """The proxy-Dirichlet target of [3]: the ensemble's mean and a precision from its spread.

  ```none
  pi_bar  = 1/M sum_m pi_m
  beta_0  = (K - 1) / (2 sum_k pi_bar_k (log pi_bar_k - 1/M sum_m log pi_m,k) + 1e-8)
          = (K - 1) / (2 * 1/M sum_m KL(pi_bar || pi_m) + 1e-8)   (Minka's estimate)
  beta_k  = pi_bar_k beta_0 + offset
  ```

  Args:
    z: float Tensor [batch, members, K or K - 1], the members' logits.
    num_classes: int K.
    family, temperature, smoothing: as for `dirichlet_nll`.
    offset: float >= 0 added to every target concentration.
    compute_dtype: float dtype of the result.

  Returns:
    beta: float Tensor [batch, K], the target concentrations (no gradient).
  """
  dtype = tf.as_dtype(compute_dtype)
  p_bar, beta_0 = _proxy_statistics(z, num_classes, family, temperature, smoothing, dtype)
  return tf.stop_gradient(p_bar * beta_0[:, None] + _dtypes.cast(offset, dtype))


def _proxy_statistics(z, num_classes, family, temperature, smoothing, dtype):
  """(pi_bar [batch, K], beta_0 [batch]) of the proxy target, without gradients."""
  log_p = member_log_probs(z, num_classes, family, temperature, smoothing, dtype)
  log_p_bar = tf.reduce_logsumexp(log_p, axis=1) - tf.math.log(
      tf.cast(tf.shape(log_p)[1], dtype))                          # [batch, K]
  p_bar = tf.exp(log_p_bar)
  mkl = tf.reduce_sum(p_bar * (log_p_bar - tf.reduce_mean(log_p, axis=1)), axis=-1)
  beta_0 = (num_classes - 1.) / (2. * tf.maximum(mkl, 0.) + 1e-8)
  return tf.stop_gradient(p_bar), tf.stop_gradient(beta_0)


def proxy_dirichlet_kl(z, dist, family=None, temperature=1.0, smoothing=1e-4, offset=1.0,
                       direction="reverse", compute_dtype=None):
  """KL between the student and the proxy target of [3], *not* divided by its precision.

  The published loss is `proxy_dirichlet_cost` (this KL over the target's precision,
  up to terms without alpha). Undivided, examples on which the members agree dominate the
  loss by factors of their precision; kept to reproduce earlier runs (target="proxy_kl").

  ```none
  direction="reverse":  T^2 KL(Dir(alpha_T) || Dir(beta))
  direction="forward":           T^2 KL(Dir(beta) || Dir(alpha_T))
  ```
  with beta from `proxy_dirichlet_target`. Unlike `dirichlet_nll` it does not need the
  members' probabilities to be near a Dirichlet sample, the failure of EnD^2 with many
  classes that [3] analyses.

  When the members agree, beta_0 reaches ~(K - 1) 1e8 and float32 lgamma has absolute
  errors of thousands of nats there (we measured negative "KL" values of -1e3 in a
  float32 run), so this loss computes in float64 unless `compute_dtype` says otherwise.

  Args:
    z, dist, family, temperature, smoothing: as `dirichlet_nll`.
    offset: float, see `proxy_dirichlet_target`.
    direction: "reverse" or "forward".
    compute_dtype: None (float64) or a float dtype for the target and the KL.

  Returns:
    loss: float Tensor [batch].
  """
  if direction not in ("reverse", "forward"):
    raise ValueError(f"direction must be 'reverse' or 'forward', got {direction!r}.")
  dirichlet = _dirichlet(dist)
  out_dtype = dirichlet.dtype
  dtype = tf.as_dtype(compute_dtype or tf.float64)
  num_classes = tf.compat.dimension_value(dirichlet.event_shape[-1])
  beta = proxy_dirichlet_target(z, num_classes, family, temperature, smoothing, offset,
                                dtype)
  alpha = tf.exp(_heated_log_concentration(dirichlet, temperature, dtype))
  kl = _dirichlet_kl(alpha, beta) if direction == "reverse" else _dirichlet_kl(beta, alpha)
  return tf.cast(tf.square(_dtypes.cast(temperature, dtype)) * kl, out_dtype)


def proxy_dirichlet_cost(z, dist, family=None, temperature=1.0, smoothing=1e-4, offset=1.0,
                         compute_dtype=None):
  """Proxy-Dirichlet distillation as published [3] (`rkl_proxy_loss` of the authors' code).

  ```none
  pi_bar, beta_0, beta_k = pi_bar_k beta_0 + offset      (`proxy_dirichlet_target`)
  cost(a) = - sum_k pi_bar_k (digamma(a_k) - digamma(a_0))            expected CE to pi_bar
            - H[Dir(a)] / (beta_0 + K offset)
  H[Dir(a)] = sum_k lgamma(a_k) - lgamma(a_0) - sum_k (a_k - 1)(digamma(a_k) - digamma(a_0))
  L = T^2 cost(alpha_T)
  ```
  Up to terms without a, this is the reverse KL(Dir(a) || Dir(beta)) divided by the
  target's precision sum_k beta_k = beta_0 + K offset (exactly so for offset = 1). The
  division is what makes the loss usable: without it (`proxy_dirichlet_kl`) an example on
  which the members agree (beta_0 ~ 1e7) weighs ~1e7 times more than one on which they
  disagree, and training chases the confident examples.

  Members that agree exactly (MKL = 0), or a single member, give beta_0 = (K - 1) / 1e-8:
  the entropy term then vanishes and the cost is the expected cross-entropy to pi_bar,
  finite.

  Args:
    z, dist, family, temperature, smoothing: as `dirichlet_nll`.
    offset: float, see `proxy_dirichlet_target` (1 in [3]).
    compute_dtype: None (float64) or a float dtype for the digamma / lgamma terms.

  Returns:
    loss: float Tensor [batch].
  """
  dirichlet = _dirichlet(dist)
  out_dtype = dirichlet.dtype
  dtype = tf.as_dtype(compute_dtype or tf.float64)
  num_classes = tf.compat.dimension_value(dirichlet.event_shape[-1])
  p_bar, beta_0 = _proxy_statistics(z, num_classes, family, temperature, smoothing, dtype)
  precision = beta_0 + num_classes * _dtypes.cast(offset, dtype)          # sum_k beta_k
  alpha = tf.exp(_heated_log_concentration(dirichlet, temperature, dtype))
  alpha_0 = tf.reduce_sum(alpha, axis=-1)
  expected_log_p = tf.math.digamma(alpha) - tf.math.digamma(alpha_0)[:, None]
  cross_entropy = -tf.reduce_sum(p_bar * expected_log_p, axis=-1)
  entropy = (tf.reduce_sum(tf.math.lgamma(alpha), axis=-1) - tf.math.lgamma(alpha_0)
             - tf.reduce_sum((alpha - 1.) * expected_log_p, axis=-1))
  cost = cross_entropy - entropy / precision
  return tf.cast(tf.square(_dtypes.cast(temperature, dtype)) * cost, out_dtype)


_DIRICHLET_TARGETS = ("ensemble", "proxy", "proxy_kl")


class DirichletNLLMixin:
  """`DirichletNLL` without its Keras base: arguments, per-example loss, config.

  Mixed into a `Loss` of either Keras: `td.losses.DirichletNLL` (tf_keras) and
  `td.keras3.losses.DirichletNLL` (Keras 3) are this class and their Keras' `Loss`;
  `**kwargs` go to that `Loss` (`reduction`).
  """

  def __init__(self, temperature=1.0, smoothing=1e-4, family=None, label_weight=0.0,
               target="ensemble", proxy_offset=1.0, compute_dtype=None,
               predictive_weight=0.0, name="dirichlet_nll", **kwargs):
    super().__init__(name=name, **kwargs)
    self.predictive_weight = check_weight("predictive_weight", predictive_weight)
    if not 0. <= smoothing < 1.:
      raise ValueError(f"smoothing must be in [0, 1), got {smoothing}.")
    if target not in _DIRICHLET_TARGETS:
      raise ValueError(f"target must be one of {_DIRICHLET_TARGETS}, got {target!r}.")
    if not label_weight >= 0:
      raise ValueError(f"label_weight must be >= 0, got {label_weight}.")
    self.family = None if family is None else families_lib.get(family)
    if label_weight > 0 and self.family is None:
      raise ValueError("label_weight > 0 needs the members' CategoricalLogits family "
                       "(to check the labels).")
    self.temperature = tf.Variable(check_temperature(temperature), trainable=False,
                                   dtype=tf.float32, name="temperature")
    self.smoothing = float(smoothing)
    self.label_weight = float(label_weight)
    self.target = target
    self.proxy_offset = float(proxy_offset)
    self.compute_dtype = None if compute_dtype is None else tf.as_dtype(compute_dtype).name

  def call(self, y_true, y_pred):
    """Targets z [batch, members, params] (or {"ensemble": z, "label": y}) and the Dirichlet
    student -> [batch]: the `target` cost, plus the predictive and label terms if weighted."""
    z, labels = unpack_targets(y_true)
    temperature = tf.convert_to_tensor(self.temperature)
    if self.target == "ensemble":
      loss = dirichlet_nll(z, y_pred, self.family, temperature, self.smoothing,
                           self.compute_dtype)
    elif self.target == "proxy":
      loss = proxy_dirichlet_cost(z, y_pred, self.family, temperature, self.smoothing,
                                  self.proxy_offset, compute_dtype=self.compute_dtype)
    else:
      loss = proxy_dirichlet_kl(z, y_pred, self.family, temperature, self.smoothing,
                                self.proxy_offset, compute_dtype=self.compute_dtype)
    if self.predictive_weight > 0:
      loss += tf.cast(self.predictive_weight * predictive_kl(z, y_pred, self.family),
                      loss.dtype)
    if labels is not None and self.label_weight > 0:
      loss += self.label_term(labels, y_pred)
    return loss

  @property
  def label_term_weight(self):
    """Weight of the labelled term (0: the loss ignores labels)."""
    return self.label_weight

  def label_term(self, labels, y_pred):
    """The weighted labelled term alone, [batch]: label_weight * -log(alpha_y / alpha_0)."""
    return self.label_weight * -classification_log_prob(y_pred, self.family, labels,
                                                         None, None)

  def get_config(self):
    """The loss's constructor arguments (the current temperature), for Keras serialization."""
    config = super().get_config()
    config.update(temperature=float(self.temperature.numpy()), smoothing=self.smoothing,
                  family=family_config(self.family), label_weight=self.label_weight,
                  target=self.target, proxy_offset=self.proxy_offset,
                  compute_dtype=self.compute_dtype,
                  predictive_weight=self.predictive_weight)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class DirichletNLL(DirichletNLLMixin, keras.losses.Loss):
  """EnD^2 loss [2] (or the proxy-Dirichlet KL of [3]) for a `heads.DirichletHead` student.

  ```none
  target="ensemble":  L = dirichlet_nll(z, alpha; T, eps)
  target="proxy":     L = proxy_dirichlet_cost(z, alpha; T, eps, offset)   (as published)
  target="proxy_kl":  L = proxy_dirichlet_kl(z, alpha; T, eps, offset)     (undivided KL)
  + label_weight * ( - log(alpha_y / alpha_0) )       (labelled targets only, T = 1)
  + predictive_weight * KL(p_bar || alpha / alpha_0)    (`predictive_kl`, T = 1)
  ```
  The last term (default off: the papers' losses are the first lines) makes the
  ensemble's predictive a soft target for the Dirichlet's mean; its temperature stays 1
  while the Dirichlet term is annealed.

  The temperature lives in a non-trainable `tf.Variable` (`loss.temperature`) so that
  `callbacks.TemperatureAnnealing` can change it between epochs without retracing the
  training step (a Python float would be frozen into the graph).

  Args:
    temperature: float T >= 1, initial temperature for the student and the members.
    smoothing: float in [0, 1), target smoothing eps toward the uniform vector.
    family: the members' `families.CategoricalLogits` (needed when members give K - 1
      logits, or for labels), or None.
    label_weight: float >= 0, weight of the labelled term.
    target: "ensemble" (EnD^2, Dirichlet NLL of each member), "proxy" (Ryabinin et al.'s
      proxy-Dirichlet cost as published, for many classes), or "proxy_kl" (the reverse
      KL to the proxy target without the division by its precision; this library's
      "proxy" before 2026-11-30, kept to reproduce those runs).
    proxy_offset: float >= 0, offset of the proxy target's concentrations.
    compute_dtype: None or "float64": dtype of the lgamma/digamma terms (None: the
      student's dtype for EnD^2, float64 for the proxy target; see `proxy_dirichlet_kl`).
    predictive_weight: float >= 0, weight of `predictive_kl`.
    reduction, name: as for `keras.losses.Loss`.

  #### Examples

  ```python
  loss = td.losses.DirichletNLL(temperature=10.0)
  student.compile("adam", loss=loss)
  student.fit(targets, epochs=30,
              callbacks=[td.callbacks.TemperatureAnnealing(loss, 10.0, 1.0, 10, 25)])
  ```
  """
