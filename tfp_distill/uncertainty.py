"""Uncertainty decomposition: total = aleatoric + epistemic, for students and ensembles.

Regression with variance as the measure (law of total variance, eq 4 and 15 of [1]):

```none
z = [mu, rho] ~ v(z | x),   sigma^2(rho) = softplus(rho) + c
prediction = E_v[mu]
aleatoric  = E_v[sigma^2(rho)]       Gauss-Hermite quadrature over the rho marginal
                                     (40 nodes: ~1e-5 relative error even for
                                     rho marginals with sd ~2) or Monte Carlo
epistemic  = Var_v[mu]               closed form: the head's variance of the mu coordinates
total      = aleatoric + epistemic
```
For an ensemble, v is the empirical distribution of the M members' z. With event size
E > 1 the uncertainties are traces (sums over the event dimensions), so they are [batch].

A mixture-distilled student (a Normal over y) has only a total: its decomposition holds
"prediction" and "total".

Classification with entropy as the measure (p = class probabilities, a draw from v):

```none
prediction = E_v[p]                  [batch, classes]
total      = H[E_v[p]]               entropy of the predictive
aleatoric  = E_v[H[p]]               expected entropy (data uncertainty)
epistemic  = total - aleatoric       mutual information I[y, p] (knowledge uncertainty)
epkl       = E_{p, p' ~ v}[KL(p || p')]   expected pairwise KL
```
A Dirichlet student (EnD^2, [2]) has all of them in closed form:
total = H[alpha / alpha_0], aleatoric = -sum_k alpha_k / alpha_0 (digamma(alpha_k + 1) -
digamma(alpha_0 + 1)), epkl = (K - 1) / alpha_0. A Gaussian over logits is integrated by
Monte Carlo (a tf.function graph; the sample count and stateless seed are arguments, and
antithetic pairs z = loc +- L eps are an option). By default the draws eps are common to
all examples of a batch (common random numbers), so an example's estimate never depends
on the other examples it is batched with, and moment-matched (sample mean 0, sample
covariance I), so their shared error does not move a mean over many examples. A
soft-target (mixture) student, a Categorical over y, has "prediction" and "total". For
an ensemble, v is the empirical distribution of the members.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_distill import _dtypes
from tfp_distill import _quadrature
from tfp_distill import families as families_lib
from tfp_distill import parameterization as parameterization_lib

tfd = tfp.distributions

__all__ = ["decompose", "decompose_ensemble"]

_METHODS = ("quadrature", "monte_carlo", "closed_form")
_XLA = {}   # graph function -> its XLA-compiled twin


def _graph(fn, jit_compile):
  """`fn` (a tf.function) or, with jit_compile, the same body compiled by XLA."""
  if not jit_compile:
    return fn
  if fn not in _XLA:
    _XLA[fn] = tf.function(fn.python_function, jit_compile=True, reduce_retracing=True)
  return _XLA[fn]


def _event(x, event_size):
  """[batch, E] -> [batch] when E == 1."""
  return x[..., 0] if event_size == 1 else x


@tf.function(reduce_retracing=True)
def _normal_quadrature(loc, var, min_variance, event_size, num_points):
  mu_var = var[..., :event_size]
  rho, log_w = _quadrature.normal_nodes(loc[..., event_size:],
                                        tf.sqrt(var[..., event_size:]), num_points)
  sigma2 = tf.math.softplus(rho) + _dtypes.cast(min_variance, loc.dtype)   # [points, batch, E]
  w = tf.reshape(tf.exp(log_w), [-1, 1, 1])
  aleatoric = tf.reduce_sum(tf.reduce_sum(w * sigma2, axis=0), axis=-1)
  epistemic = tf.reduce_sum(mu_var, axis=-1)
  return {"prediction": _event(loc[..., :event_size], event_size),
          "total": aleatoric + epistemic, "aleatoric": aleatoric, "epistemic": epistemic}


def _noise(loc, num_samples, seed, common_noise, antithetic=False):
  """Standard normal draws [samples, batch or 1, P] (one draw shared by all examples).

  With common noise every example uses the same S draws (common random numbers): an
  example's estimate does not depend on the batch it is in, and ranking examples by an
  uncertainty is not blurred by independent noise; the draws cost S P, not S batch P.
  Shared draws also share their error, which averaging over examples cannot remove: a
  mean mutual information over 10,000 images moved by +-4.9% to +-8.3% from seed to
  seed at S = 100 (docs/studies/ood-inputs.md). So the common draws are moment-matched
  (`_moment_matched`): their sample mean is 0 and their sample covariance the identity,
  which left +-1.2% to +-4.3% there.
  """
  rows = tf.ones([1], tf.int32) if common_noise else tf.shape(loc)[:-1]
  size = (num_samples + 1) // 2 if antithetic else num_samples
  shape = tf.concat([[size], rows, tf.shape(loc)[-1:]], axis=0)
  if common_noise:
    eps = tf.random.stateless_normal(shape, seed=seed, dtype=tf.float64)
    # Antithetic pairs +-eps have mean 0 already: match their second moment alone.
    eps = tf.cast(_moment_matched(eps, centre=not antithetic), loc.dtype)
  else:
    eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype)
  if antithetic:
    eps = tf.concat([eps, -eps], axis=0)[:num_samples]
  return eps


def _moment_matched(eps, centre=True):
  """Draws eps [S, 1, P] (float64) made to have sample mean 0 (if `centre`) and sample
  second moment about it the identity: eps' = (eps - mean) L^-T, C = L L^T their sample
  covariance (denominator S). Left as drawn where S < 2 P (too few draws to whiten
  without distorting them)."""
  e = eps[:, 0, :]
  size, dim = tf.shape(e)[0], tf.shape(e)[1]

  def whitened():
    c = e - tf.reduce_mean(e, axis=0, keepdims=True) if centre else e
    cov = tf.matmul(c, c, transpose_a=True) / tf.cast(size, c.dtype)
    chol = tf.linalg.cholesky(cov)
    return tf.transpose(tf.linalg.triangular_solve(chol, tf.transpose(c), lower=True))

  return tf.cond(size >= 2 * dim, whitened, lambda: e)[:, None, :]


def _draw(loc, scale, eps, diagonal):
  """loc + L eps for a Cholesky factor [batch, P, P], or loc + scale * eps for a diagonal
  scale [batch, P] (no [P, P] matrices); eps [samples, batch or 1, P] -> [samples, batch,
  P]. `diagonal` is a Python bool (the graphs relax shapes when they retrace).

  L eps is a broadcasting batched matmul, not an ellipsis einsum: oneDNN's bfloat16
  einsum "...i,mio->m...o" gave wrong rows on CPUs with AMX (see `vectorized.StackedDense`;
  this one's "...ij,s...j->s...i" measured right there), and a head with an explicit
  bfloat16 dtype brings its distribution here in bfloat16."""
  if diagonal:
    return loc + scale * eps
  return loc + tf.linalg.matvec(scale, eps)   # [batch, P, P] x [samples, batch or 1, P]


@tf.function(reduce_retracing=True)
def _normal_monte_carlo(loc, scale, diagonal, min_variance, event_size, num_samples, seed,
                        common_noise):
  z = _draw(loc, scale, _noise(loc, num_samples, seed, common_noise), diagonal)
  mu = z[..., :event_size]
  sigma2 = tf.math.softplus(z[..., event_size:]) + _dtypes.cast(min_variance, loc.dtype)
  aleatoric = tf.reduce_sum(tf.reduce_mean(sigma2, axis=0), axis=-1)
  epistemic = tf.reduce_sum(tf.math.reduce_variance(mu, axis=0), axis=-1)
  return {"prediction": _event(tf.reduce_mean(mu, axis=0), event_size),
          "total": aleatoric + epistemic, "aleatoric": aleatoric, "epistemic": epistemic}


@tf.function(reduce_retracing=True)
def _predictive_normal(loc, var, event_size):
  return {"prediction": _event(loc, event_size), "total": tf.reduce_sum(var, axis=-1)}


def _event_size_of(dist):
  return tf.compat.dimension_value(dist.event_shape[-1]) if dist.event_shape.rank else 1


def _entropy(p):
  """-sum_k p_k log p_k over the last axis (0 log 0 = 0)."""
  return -tf.reduce_sum(tf.math.xlogy(p, p), axis=-1)


def _entropy_terms(log_p, axis):
  """Entropy decomposition of probability vectors exp(log_p) drawn along `axis`."""
  p = tf.exp(log_p)
  # sum_k p_k log p_k per draw; log_p is finite (a log_softmax), so p log p is 0 where p
  # underflows to 0, as xlogy would give.
  neg_entropy = tf.reduce_sum(p * log_p, axis=-1)
  prediction = tf.reduce_mean(p, axis=axis)
  total = _entropy(prediction)
  aleatoric = -tf.reduce_mean(neg_entropy, axis=axis)
  # EPKL = sum_k E[p_k log p_k] - sum_k pbar_k E[log p_k]
  epkl = -aleatoric - tf.reduce_sum(prediction * tf.reduce_mean(log_p, axis=axis), axis=-1)
  return {"prediction": prediction, "total": total, "aleatoric": aleatoric,
          "epistemic": tf.maximum(total - aleatoric, 0.), "epkl": epkl}


@tf.function(reduce_retracing=True)
def _dirichlet_closed_form(alpha):
  alpha_0 = tf.reduce_sum(alpha, axis=-1, keepdims=True)
  prediction = alpha / alpha_0
  total = _entropy(prediction)
  aleatoric = -tf.reduce_sum(
      prediction * (tf.math.digamma(alpha + 1.) - tf.math.digamma(alpha_0 + 1.)), axis=-1)
  num_classes = tf.cast(tf.shape(alpha)[-1], alpha.dtype)
  return {"prediction": prediction, "total": total, "aleatoric": aleatoric,
          "epistemic": tf.maximum(total - aleatoric, 0.),
          "epkl": (num_classes - 1.) / alpha_0[..., 0]}


@tf.function(reduce_retracing=True)
def _dirichlet_monte_carlo(alpha, num_samples, seed):
  gamma = tf.random.stateless_gamma(
      tf.concat([[num_samples], tf.shape(alpha)], axis=0), seed=seed, alpha=alpha,
      dtype=alpha.dtype)
  log_gamma = tf.math.log(tf.maximum(gamma, np.finfo(alpha.dtype.as_numpy_dtype).tiny))
  log_p = log_gamma - tf.reduce_logsumexp(log_gamma, axis=-1, keepdims=True)
  return _entropy_terms(log_p, axis=0)


@tf.function(reduce_retracing=True)
def _logit_normal_monte_carlo(loc, scale, diagonal, reference_class, num_samples, seed,
                              antithetic, common_noise):
  eps = _noise(loc, num_samples, seed, common_noise, antithetic)
  logits = _draw(loc, scale, eps, diagonal)                      # [samples, batch, P]
  if reference_class:
    logits = tf.concat([logits, tf.zeros_like(logits[..., :1])], axis=-1)
  return _entropy_terms(tf.nn.log_softmax(logits, axis=-1), axis=0)


@tf.function(reduce_retracing=True)
def _categorical_predictive(logits):
  prediction = tf.nn.softmax(logits, axis=-1)
  return {"prediction": prediction, "total": _entropy(prediction)}


def _decompose_classification(dist, family, num_samples, seed, method, antithetic,
                              jit_compile, common_noise):
  inner = parameterization_lib.unwrap(dist)
  k = family.num_classes
  size = _event_size_of(dist)
  if isinstance(inner, tfd.Dirichlet):
    if size != k:
      raise ValueError(f"decompose: a Dirichlet over {size} classes does not fit {family!r}.")
    alpha = tf.convert_to_tensor(inner.concentration)
    if method in (None, "closed_form", "quadrature"):
      return _graph(_dirichlet_closed_form, jit_compile)(alpha)
    return _graph(_dirichlet_monte_carlo, jit_compile)(
        alpha, int(num_samples), _quadrature.stateless_seed(seed))
  if isinstance(inner, (tfd.OneHotCategorical, tfd.Categorical)):
    logits = inner.logits_parameter()
    if tf.compat.dimension_value(logits.shape[-1]) != k:
      raise ValueError(f"decompose: a Categorical over {logits.shape[-1]} classes does not "
                       f"fit {family!r}.")
    return _graph(_categorical_predictive, jit_compile)(logits)
  if method not in (None, "monte_carlo"):
    raise ValueError(f"decompose: a Gaussian over logits has no closed form; use "
                     f"method='monte_carlo' (or None), got {method!r}.")
  if size != family.params_size:
    raise ValueError(
        f"decompose: the distribution has event size {size}, but {family!r} needs a "
        f"distribution over its {family.params_size} logits (a Dirichlet or Categorical "
        f"head over {k} classes is also accepted).")
  params = parameterization_lib.distribution_parameters(dist)
  scale = params["scale"] if "scale" in params else params["scale_tril"]
  return _graph(_logit_normal_monte_carlo, jit_compile)(
      params["loc"], scale, "scale" in params, family.reference_class, int(num_samples),
      _quadrature.stateless_seed(seed), bool(antithetic), bool(common_noise))


def decompose(distribution, family, num_samples=100, seed=0, method=None, num_points=40,
              antithetic=False, jit_compile=False, common_noise=True):
  """Prediction and total / aleatoric / epistemic uncertainty of a student's output.

  Args:
    distribution: the student's output (a tf_keras head's distribution, or the
      parameters a Keras 3 head returns: `td.parameterization.get_distribution`), a
      tfd.Distribution with batch [batch] and event [family.params_size] (a distribution
      over z), or event [family.event_size] (a mixture-distilled predictive over y); for
      classification also a Dirichlet or a Categorical over the classes.
    family: the members' family (`families.HeteroscedasticNormal` or
      `families.CategoricalLogits`).
    num_samples: int, Monte Carlo samples (method "monte_carlo").
    seed: int or int Tensor [2], stateless seed for Monte Carlo.
    method: None (the exact method where there is one: Gauss-Hermite "quadrature" for
      regression, "closed_form" for a Dirichlet, "monte_carlo" for a Gaussian over
      logits), "quadrature", "closed_form" or "monte_carlo".
    num_points: int, Gauss-Hermite nodes.
    antithetic: bool, antithetic Monte Carlo pairs for a Gaussian over logits.
    jit_compile: bool, run the decomposition graph compiled by XLA (see `tfp-distill
      bench --suite decompose` for when it pays). XLA's stateless random generator gives
      other draws for the same seed: Monte Carlo results then agree within Monte Carlo
      error, not bitwise.
    common_noise: bool, Monte Carlo over z (a Gaussian over logits, regression with
      method="monte_carlo"): True uses the same `num_samples` standard-normal draws for
      every example (common random numbers: an example's result does not depend on the
      batch it is in, and the draws cost samples x params instead of samples x batch x
      params), moment-matched to sample mean 0 and covariance I when num_samples >= 2
      params (their shared error would otherwise move a mean over many examples: up to
      +-8% of a mean mutual information at 100 draws); False draws independently per
      example.

  Returns:
    dict of Tensors. Regression: "prediction" [batch] (E = 1) or [batch, E]; "total",
      "aleatoric", "epistemic" [batch] (only "prediction" and "total" for a predictive
      over y). Classification: "prediction" [batch, classes]; "total", "aleatoric",
      "epistemic", "epkl" [batch] in nats (only "prediction" and "total" for a
      Categorical student).

  Raises:
    ValueError: if the distribution's event size fits neither params_size nor event_size
      of the family, or for an unknown method.
    TypeError: for an unsupported family or distribution.

  #### Examples

  ```python
  u = td.decompose(student(x), td.families.HeteroscedasticNormal())
  u["epistemic"]    # [batch]
  ```
  """
  dist = parameterization_lib.get_distribution(distribution)
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or (
      num_samples < 1):
    raise ValueError(f"decompose: num_samples must be an int >= 1, got {num_samples!r} "
                     "(0 samples would give NaN for every example).")
  if method is not None and method not in _METHODS:
    raise ValueError(f"decompose: method must be None or one of {_METHODS}, got "
                     f"{method!r}.")
  if isinstance(family, families_lib.CategoricalLogits):
    return _decompose_classification(dist, family, num_samples, seed, method, antithetic,
                                     jit_compile, common_noise)
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"decompose: unsupported family {family!r}.")
  if method == "closed_form":
    raise ValueError("decompose: regression students have no 'closed_form' method; use "
                     "'quadrature' or 'monte_carlo'.")
  method = method or "quadrature"
  e = family.event_size
  size = _event_size_of(dist)
  if size == family.event_size and size != family.params_size:
    return _graph(_predictive_normal, jit_compile)(dist.mean(), dist.variance(), e)
  if size != family.params_size:
    raise ValueError(
        f"decompose: the distribution has event size {size}, but {family!r} needs a "
        f"distribution over z (event size params_size={family.params_size}) or over y "
        f"(event size {family.event_size}).")
  params = parameterization_lib.distribution_parameters(dist)
  loc = params["loc"]
  if method == "quadrature":
    var = (tf.square(params["scale"]) if "scale" in params
           else tf.reduce_sum(tf.square(params["scale_tril"]), axis=-1))
    return _graph(_normal_quadrature, jit_compile)(loc, var, family.min_variance, e,
                                                   int(num_points))
  scale = params["scale"] if "scale" in params else params["scale_tril"]
  seed = _quadrature.stateless_seed(seed)
  return _graph(_normal_monte_carlo, jit_compile)(loc, scale, "scale" in params,
                                                  family.min_variance, e, int(num_samples),
                                                  seed, bool(common_noise))


@tf.function(reduce_retracing=True)
def _ensemble_normal(mu, sigma2, event_size):
  prediction = tf.reduce_mean(mu, axis=1)
  aleatoric = tf.reduce_sum(tf.reduce_mean(sigma2, axis=1), axis=-1)
  epistemic = tf.reduce_sum(tf.math.reduce_variance(mu, axis=1), axis=-1)
  return {"prediction": _event(prediction, event_size), "total": aleatoric + epistemic,
          "aleatoric": aleatoric, "epistemic": epistemic}


@tf.function(reduce_retracing=True)
def _ensemble_categorical(log_p):
  return _entropy_terms(log_p, axis=1)


def decompose_ensemble(z, family, jit_compile=False):
  """The ensemble's own decomposition from its members' parameters.

  ```none
  regression:      prediction = 1/M sum_m mu_m
                   aleatoric  = 1/M sum_m sigma_m^2
                   epistemic  = 1/M sum_m (mu_m - prediction)^2
  classification:  prediction = p_bar = 1/M sum_m p_m,  total = H[p_bar]
                   aleatoric  = 1/M sum_m H[p_m],  epistemic = total - aleatoric (MI)
                   epkl       = 1/M^2 sum_{m, m'} KL(p_m || p_m')
  ```

  Args:
    z: float Tensor [batch, members, params], members >= 2.
    family: the members' family.
    jit_compile: bool, run the decomposition graph compiled by XLA.

  Returns:
    dict as `decompose`: "prediction" [batch] or [batch, E] ([batch, classes] for
      classification); "total", "aleatoric", "epistemic" [batch] (and "epkl").

  Raises:
    ValueError: for z not of rank 3, params not fitting the family, or fewer than 2
      members (an ensemble of one member has no spread).
  """
  z = tf.convert_to_tensor(z)
  if not z.dtype.is_floating or z.dtype in (tf.float16, tf.bfloat16):
    z = tf.cast(z, tf.float32)   # integers, or half-precision (mixed-precision) members
  if z.shape.rank != 3:
    raise ValueError(f"decompose_ensemble: z must be [batch, members, params], got shape "
                     f"{list(z.shape)}.")
  family.check_params(z, what="decompose_ensemble: z")
  members = tf.compat.dimension_value(z.shape[1])
  if members is not None and members < 2:
    raise ValueError(
        f"decompose_ensemble: z has {members} member (shape {list(z.shape)}); the "
        "epistemic part is the spread between members and needs at least 2.")
  if isinstance(family, families_lib.CategoricalLogits):
    return _graph(_ensemble_categorical, jit_compile)(family.log_probs(z))
  if not isinstance(family, families_lib.HeteroscedasticNormal):
    raise TypeError(f"decompose_ensemble: unsupported family {family!r}.")
  return _graph(_ensemble_normal, jit_compile)(family.mean(z), family.variance(z),
                                               family.event_size)
