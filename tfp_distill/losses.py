"""Distillation losses: pure functions of tensors, with thin Keras `Loss` wrappers.

Targets `z` are the ensemble members' parameters, batch-first: [batch, members, params].
Inside `keras.Model.fit` the targets may also come as a dict
`{"ensemble": z, "label": y}` (see `td.teacher_targets`), in which case the optional
labelled term of eq 19-20 of [1] is added.

#### References

Classification (members of `families.CategoricalLogits` give logits):
- `EnsembleNLL(family)`: a Gaussian over the members' logits (centred on the reference
  class when the family has one), eq 7 and 9 of [1];
- `DirichletNLL`: EnD^2 [2], a Dirichlet over the members' (heated, smoothed) probability
  vectors, or the proxy-Dirichlet target of [3];
- `MixtureKL(family)` and `KnowledgeDistillation`: soft-target distillation of the
  ensemble's mean probabilities (Hinton et al. 2015; eq 5 and 23 of [1]); with a
  BatchEnsemble student ([batch, E, K] logits) member i learns from teacher i
  (`member_kl`, `member_cross_entropy`; the students of [4]).

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.

[3]: Ryabinin, Malinin, Gales. Scaling Ensemble Distribution Distillation to Many Classes
     with Proxy Targets. NeurIPS 2021. arXiv:2105.06987.

[4]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021.
     arXiv:2110.14149.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import _quadrature
from tfp_distill import families as families_lib
from tfp_distill import heads as heads_lib
from tfp_distill._keras import keras

tfd = tfp.distributions

__all__ = [
    "ensemble_nll",
    "predictive_log_prob",
    "mixture_cross_entropy",
    "dirichlet_nll",
    "proxy_dirichlet_cost",
    "proxy_dirichlet_kl",
    "proxy_dirichlet_target",
    "soft_target_kl",
    "predictive_kl",
    "member_kl",
    "member_cross_entropy",
    "check_targets",
    "unpack_targets",
    "EnsembleNLL",
    "DirichletNLL",
    "MixtureKL",
    "KnowledgeDistillation",
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


def _member_log_probs(z, num_classes, family, temperature, smoothing, dtype):
  """Heated, smoothed log-probabilities of the members: [batch, members, K], in dtype."""
  z = tf.convert_to_tensor(z)
  if family is not None:
    if not isinstance(family, families_lib.CategoricalLogits):
      raise TypeError(f"Expected a CategoricalLogits family, got {family!r}.")
    if family.num_classes != num_classes:
      raise ValueError(f"The family has {family.num_classes} classes but the student's "
                       f"distribution has {num_classes}.")
    z = family.logits(z)
  if z.shape.rank is not None and z.shape.rank != 3:
    raise ValueError(f"Teacher targets must be logits of shape [batch, members, classes], "
                     f"got shape {list(z.shape)}.")
  size = tf.compat.dimension_value(z.shape[-1])
  if size is not None and size != num_classes:
    raise ValueError(
        f"Teacher targets have {size} logits per member (shape {list(z.shape)}) but the "
        f"student's distribution is over {num_classes} classes. (Members with a reference "
        "class give K - 1 logits: pass their CategoricalLogits family to the loss.)")
  z = tf.cast(z, dtype)
  log_p = tf.nn.log_softmax(z / _dtypes.cast(temperature, dtype), axis=-1)
  if smoothing:
    # pi <- (1 - eps) pi + eps / K, in log space: finite even where pi underflows to 0.
    eps = _dtypes.cast(smoothing, dtype)
    log_p = tf.reduce_logsumexp(tf.stack(
        [log_p + tf.math.log1p(-eps),
         tf.broadcast_to(tf.math.log(eps / num_classes), tf.shape(log_p))]), axis=0)
  return log_p


def _dirichlet(dist):
  dist = heads_lib.get_distribution(dist)
  inner = heads_lib._unwrap(dist)  # pylint: disable=protected-access
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
  log_p = _member_log_probs(z, num_classes, family, temperature, smoothing, dtype)
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
  log_p = _member_log_probs(z, num_classes, family, temperature, smoothing, dtype)
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


def _student_logits(y_pred):
  """Logits [batch, K] from a CategoricalHead distribution or a plain logits Tensor."""
  if isinstance(y_pred, tfd.Distribution) or hasattr(y_pred, "_tfp_distribution"):
    inner = heads_lib._unwrap(heads_lib.get_distribution(y_pred))  # pylint: disable=protected-access
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
  log_p = _member_log_probs(z, num_classes, family, temperature, 0., dtype)
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
  log_p = _member_log_probs(z, num_classes, family, temperature, 0., dtype)
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


def _classification_log_prob(dist, family, labels, num_samples, seed):
  """log q~(y) for a student over logits (Monte Carlo) or a Dirichlet (closed form)."""
  dist = heads_lib.get_distribution(dist)
  inner = heads_lib._unwrap(dist)  # pylint: disable=protected-access
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
  stateless seed (common random numbers across steps, as `_classification_log_prob`).
  """
  dist = heads_lib.get_distribution(dist)
  inner = heads_lib._unwrap(dist)  # pylint: disable=protected-access
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
  inner = heads_lib._unwrap(heads_lib.get_distribution(dist))  # pylint: disable=protected-access
  if not isinstance(inner, (tfd.Dirichlet, tfd.OneHotCategorical, tfd.Categorical)):
    if not isinstance(family, families_lib.CategoricalLogits):
      raise ValueError("predictive_kl of a student over logits needs the members' "
                       "CategoricalLogits family (to map its draws to probabilities).")
  log_q = _student_log_predictive(dist, family, num_samples, seed)
  num_classes = tf.compat.dimension_value(log_q.shape[-1])
  log_p = _member_log_probs(z, num_classes, family, 1.0, 0., log_q.dtype)
  log_p_bar = tf.reduce_logsumexp(log_p, axis=1) - tf.math.log(
      tf.cast(tf.shape(log_p)[1], log_q.dtype))
  return tf.reduce_sum(tf.exp(log_p_bar) * (log_p_bar - log_q), axis=-1)


def _check_weight(name, value):
  if not (np.isfinite(value) and value >= 0):
    raise ValueError(f"{name} must be a finite float >= 0, got {value}.")
  return float(value)


def _family_config(family):
  return None if family is None else families_lib.serialize(family)


@keras.utils.register_keras_serializable(package="tfp_distill")
class EnsembleNLL(keras.losses.Loss):
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

  def __init__(self, family=None, label_weight=0.0, num_quadrature_points=40,
               num_label_samples=64, predictive_weight=0.0,
               reduction=keras.losses.Reduction.AUTO, name="ensemble_nll"):
    super().__init__(reduction=reduction, name=name)
    self.family = None if family is None else families_lib.get(family)
    self.predictive_weight = _check_weight("predictive_weight", predictive_weight)
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
    z, labels = unpack_targets(y_true)
    classification = isinstance(self.family, families_lib.CategoricalLogits)
    if classification:
      inner = heads_lib._unwrap(heads_lib.get_distribution(y_pred))  # pylint: disable=protected-access
      if isinstance(inner, (tfd.Dirichlet, tfd.OneHotCategorical, tfd.Categorical)):
        raise TypeError(
            f"EnsembleNLL fits a Gaussian over the members' logits; a "
            f"{type(inner).__name__} student needs td.losses.DirichletNLL (Dirichlet) or "
            "td.losses.MixtureKL / KnowledgeDistillation (Categorical).")
      z = self.family.params(z)       # centred on the reference class where it has one
    if self.family is not None:
      check_targets(z, heads_lib.get_distribution(y_pred),
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
      log_q = _classification_log_prob(y_pred, self.family, labels,
                                       self.num_label_samples, seed=0)
    else:
      log_q = predictive_log_prob(y_pred, self.family, labels,
                                  num_points=self.num_quadrature_points)
    return self.label_weight * -log_q

  def get_config(self):
    config = super().get_config()
    config.update(family=_family_config(self.family), label_weight=self.label_weight,
                  num_quadrature_points=self.num_quadrature_points,
                  num_label_samples=self.num_label_samples,
                  predictive_weight=self.predictive_weight)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class MixtureKL(keras.losses.Loss):
  """Mixture-distillation baseline: KL(ensemble mixture || student), up to a constant.

  Regression (`HeteroscedasticNormal` members): see `mixture_cross_entropy`; the student's
  last layer is `heads.NormalPredictiveHead`. Classification (`CategoricalLogits`
  members): `soft_target_kl` at T = 1; the student's last layer is
  `heads.CategoricalHead` (or it outputs logits).

  Args:
    family: the members' family.
    reduction, name: as for `keras.losses.Loss`.
  """

  def __init__(self, family, reduction=keras.losses.Reduction.AUTO, name="mixture_kl"):
    super().__init__(reduction=reduction, name=name)
    self.family = families_lib.get(family)

  def call(self, y_true, y_pred):
    z, _ = unpack_targets(y_true)
    if isinstance(self.family, families_lib.CategoricalLogits):
      return soft_target_kl(z, _student_logits(y_pred), self.family)
    return mixture_cross_entropy(z, y_pred, self.family)

  @property
  def label_term_weight(self):
    """0: this loss ignores labels."""
    return 0.

  def get_config(self):
    config = super().get_config()
    config.update(family=_family_config(self.family))
    return config


def _check_temperature(value):
  # The temperature lives in a float32 variable: check the value it will hold (1e39
  # would become inf, 1e-46 zero).
  with np.errstate(over="ignore", under="ignore"):
    stored = np.float32(value) if np.isfinite(value) else np.float32(np.nan)
  if not (np.isfinite(value) and value > 0 and np.isfinite(stored) and stored > 0):
    raise ValueError(f"temperature must be a finite float > 0 that float32 can hold, got "
                     f"{value}.")
  return float(value)


_DIRICHLET_TARGETS = ("ensemble", "proxy", "proxy_kl")


@keras.utils.register_keras_serializable(package="tfp_distill")
class DirichletNLL(keras.losses.Loss):
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

  def __init__(self, temperature=1.0, smoothing=1e-4, family=None, label_weight=0.0,
               target="ensemble", proxy_offset=1.0, compute_dtype=None,
               predictive_weight=0.0, reduction=keras.losses.Reduction.AUTO,
               name="dirichlet_nll"):
    super().__init__(reduction=reduction, name=name)
    self.predictive_weight = _check_weight("predictive_weight", predictive_weight)
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
    self.temperature = tf.Variable(_check_temperature(temperature), trainable=False,
                                   dtype=tf.float32, name="temperature")
    self.smoothing = float(smoothing)
    self.label_weight = float(label_weight)
    self.target = target
    self.proxy_offset = float(proxy_offset)
    self.compute_dtype = None if compute_dtype is None else tf.as_dtype(compute_dtype).name

  def call(self, y_true, y_pred):
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
    return self.label_weight * -_classification_log_prob(y_pred, self.family, labels,
                                                         None, None)

  def get_config(self):
    config = super().get_config()
    config.update(temperature=float(self.temperature.numpy()), smoothing=self.smoothing,
                  family=_family_config(self.family), label_weight=self.label_weight,
                  target=self.target, proxy_offset=self.proxy_offset,
                  compute_dtype=self.compute_dtype,
                  predictive_weight=self.predictive_weight)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class KnowledgeDistillation(keras.losses.Loss):
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

  def __init__(self, temperature=1.0, alpha=1.0, family=None,
               reduction=keras.losses.Reduction.AUTO, name="knowledge_distillation"):
    super().__init__(reduction=reduction, name=name)
    if not 0. <= alpha <= 1.:
      raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    self.temperature = tf.Variable(_check_temperature(temperature), trainable=False,
                                   dtype=tf.float32, name="temperature")
    self.alpha = float(alpha)
    self.family = None if family is None else families_lib.get(family)

  def call(self, y_true, y_pred):
    z, labels = unpack_targets(y_true)
    logits = _student_logits(y_pred)
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
    return (1. - self.alpha) * member_cross_entropy(labels, _student_logits(y_pred))

  def get_config(self):
    config = super().get_config()
    config.update(temperature=float(self.temperature.numpy()), alpha=self.alpha,
                  family=_family_config(self.family))
    return config
