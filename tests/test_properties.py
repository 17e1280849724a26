"""Property-based tests (Hypothesis) of the families, heads, losses, decompositions, metrics.

Arrays come from `values`: a seeded random bulk at a drawn centre and scale, plus up to 16
entries placed by Hypothesis (`hypothesis.extra.numpy.arrays`). A [16, 32, 1000] array
then costs a few draws, not half a million, and a failure still shrinks to a few entries.

Tolerances are worst-case rounding bounds in units of the dtype's machine epsilon `eps`:
a sum or mean of n terms is off by at most n eps sum|terms| whatever order TF adds in
(recursive summation; Higham, Accuracy and Stability of Numerical Algorithms, 2002, eq
4.4), and TF's softplus is within 5 eps of log(1 + e^x) on [-50, 50] (measured: 3.8 eps in
float32, 4.4 eps in float64). Each test says which terms its bound counts.

Profiles (tests/conftest.py): "ci" (the default: 25 derandomized examples a test) and
"thorough" (`pytest --hypothesis-profile thorough`: 300 random examples a test).
"""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

import tfp_distill as td
from tfp_distill._keras import keras

DTYPES = st.sampled_from([np.float32, np.float64])
BATCH = st.integers(1, 16)
MEMBERS = st.integers(1, 32)
SPREAD_MEMBERS = st.integers(2, 32)       # where the members' spread must exist
EVENTS = st.integers(1, 8)
CLASSES = st.sampled_from([2, 3, 10, 100, 1000])   # few large-K cases keep the time bounded
LOGIT_BOUND = 1e4
MEAN_BOUND = 1e6
RHO_BOUND = 50.


def _eps(dtype):
  return float(np.finfo(dtype).eps)


@st.composite
def values(draw, shape, bound):
  """A float64 array [shape] in [-bound, bound]: seeded bulk plus Hypothesis' entries."""
  shape = tuple(shape)
  size = math.prod(shape)
  centre = draw(st.sampled_from([0., bound, -bound]) | st.floats(-bound, bound))
  scale = draw(st.sampled_from([0., 1., bound]) | st.floats(0., 2. * bound))
  seed = draw(st.integers(0, 2 ** 32 - 1))
  x = np.random.default_rng(seed).uniform(-1., 1., size) * scale + centre
  count = draw(st.integers(0, min(size, 16)))
  where = draw(hnp.arrays(np.int64, count, elements=st.integers(0, size - 1)))
  x[where] = draw(hnp.arrays(np.float64, count, elements=st.floats(-bound, bound)))
  return np.clip(x, -bound, bound).reshape(shape)


@st.composite
def regression_ensembles(draw, members=MEMBERS):
  """(z [batch, members, 2 E] of a drawn dtype, HeteroscedasticNormal(E, c))."""
  dtype = draw(DTYPES)
  batch, m, e = draw(BATCH), draw(members), draw(EVENTS)
  mu = draw(values((batch, m, e), MEAN_BOUND))
  rho = draw(values((batch, m, e), RHO_BOUND))
  family = td.families.HeteroscedasticNormal(e, draw(st.floats(1e-6, 1.)))
  return np.concatenate([mu, rho], axis=-1).astype(dtype), family


@st.composite
def classification_ensembles(draw, members=MEMBERS, bound=LOGIT_BOUND):
  """(logits [batch, members, K or K - 1] of a drawn dtype, CategoricalLogits(K, ref))."""
  dtype = draw(DTYPES)
  k, reference = draw(CLASSES), draw(st.booleans())
  centred = reference and draw(st.booleans())   # members give K - 1 centred logits
  batch, m = draw(BATCH), draw(members)
  logits = draw(values((batch, m, k - 1 if centred else k), bound))
  return logits.astype(dtype), td.families.CategoricalLogits(k, reference)


def _numpy(u):
  return {key: value.numpy().astype(np.float64) for key, value in u.items()}


def _assert_within(actual, expected, tol, what):
  """|actual - expected| <= tol elementwise (tol broadcasts), with the worst case shown."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  excess = np.abs(actual - expected) - tol
  assert np.all(excess <= 0), (
      f"{what}: off by up to {np.max(excess):.3g} beyond its tolerance "
      f"(actual {actual.ravel()[:4]}, expected {np.asarray(expected).ravel()[:4]})")


def _full_log_probs(z, family):
  """float64 log-softmax [batch, members, K] of members' logits (a 0 logit appended for
  the reference class to K - 1 centred logits)."""
  z = z.astype(np.float64)
  if z.shape[-1] == family.num_classes - 1:
    z = np.concatenate([z, np.zeros_like(z[..., :1])], axis=-1)
  return special.log_softmax(z, axis=-1)


# ----------------------------------------------------------------------------------------
# Decompositions: finiteness, the law of total variance, the entropy bounds (1, 2, 3).
# ----------------------------------------------------------------------------------------


def _regression_bounds(z, family):
  """float64 references and rounding bounds of decompose_ensemble for Normal members."""
  e, m, eps = family.event_size, z.shape[1], _eps(z.dtype)
  z64 = z.astype(np.float64)
  mu, rho = z64[..., :e], z64[..., e:]
  floor = family.min_variance
  aleatoric = (np.logaddexp(0., rho) + floor).mean(1).sum(-1)
  epistemic = mu.var(1).sum(-1)
  # The mean is off by at most delta = (m + 2) eps max|mu|; a two-pass variance about a
  # mean off by delta is var + delta^2 exactly, then its squares and sums round relatively
  # by (m + e + 4) eps. Both sides round (the float64 reference too), hence the 2.
  # TF's CPU kernels flush subnormals to zero: `tiny` (the smallest normal) more per term.
  tiny = float(np.finfo(z.dtype).tiny)
  delta = (m + 2) * eps * np.abs(mu).max(1) + tiny                # [batch, e]
  return {
      "prediction": mu.mean(1)[..., 0] if e == 1 else mu.mean(1),
      "aleatoric": aleatoric, "epistemic": epistemic,
      "prediction_tol": 2 * (delta[..., 0] if e == 1 else delta),
      # softplus (5 eps), the floor (1), the mean over m and the sum over e: positive
      # terms (the floor is added in the dtype: test_float64_floors_keep_float64_precision).
      "aleatoric_tol": 2 * (m + e + 8) * eps * aleatoric,
      "epistemic_tol": 2 * ((delta ** 2).sum(-1) + e * tiny
                            + (m + e + 4) * eps * (epistemic + (delta ** 2).sum(-1))),
  }


@given(regression_ensembles())
def test_regression_decomposition_is_finite_and_the_law_of_total_variance(case):
  z, family = case
  if z.shape[1] < 2:
    with pytest.raises(ValueError, match="needs at least 2"):
      td.decompose_ensemble(z, family)
    return
  got = td.decompose_ensemble(z, family)
  assert all(v.dtype == z.dtype for v in got.values())
  u = _numpy(got)
  assert all(np.all(np.isfinite(v)) for v in u.values())
  eps = _eps(z.dtype)
  # total is one addition of the two returned terms (eps / 2), re-added here in float64
  # (eps / 2 more in float64).
  _assert_within(u["total"], u["aleatoric"] + u["epistemic"],
                 eps * (u["aleatoric"] + u["epistemic"]), "total - (aleatoric + epistemic)")
  assert np.all(u["epistemic"] >= 0)     # a mean of squares: no tolerance
  assert np.all(u["aleatoric"] > 0)      # softplus >= 0 plus a floor > 0 held by the dtype
  ref = _regression_bounds(z, family)
  for key in ("prediction", "aleatoric", "epistemic"):
    _assert_within(u[key], ref[key], ref[key + "_tol"], key)


def _entropy_tol(k, m, dtype):
  """Rounding bound on an entropy of K classes averaged over m members.

  log_softmax rounds each log p by eps (|log p| + 2 log K + 2), so each term p log p by
  eps p (1 + |log p|)(|log p| + 2 log K + 2), which sums over K classes to at most
  3 eps (2 + log K)^2 (sum_k p log^2 p <= (2 + log K)^2 for 2 <= K <= 1e7); the sums over
  K classes and m members add (K + m) eps (1 + log K). (K + m + 8) eps (2 + log K)^2
  covers both.
  """
  return (k + m + 8) * _eps(dtype) * (2. + math.log(k)) ** 2


@given(classification_ensembles())
def test_classification_decomposition_is_finite_and_within_the_entropy_bounds(case):
  z, family = case
  k, m = family.num_classes, z.shape[1]
  if m < 2:
    with pytest.raises(ValueError, match="needs at least 2"):
      td.decompose_ensemble(z, family)
    return
  u = _numpy(td.decompose_ensemble(z, family))
  assert all(np.all(np.isfinite(v)) for v in u.values())
  eps, tol = _eps(z.dtype), _entropy_tol(k, m, z.dtype)
  p = u["prediction"]
  # A mean over m of K softmax outputs, each within a few eps relatively: their sum is 1
  # within (K + m + 8) eps.
  _assert_within(p.sum(-1), 1., (k + m + 8) * eps, "sum of the prediction")
  assert np.all(p >= 0) and np.all(p <= 1 + (k + m + 8) * eps)
  assert np.all(u["epistemic"] >= -tol)                      # mutual information >= 0
  assert np.all(u["total"] >= u["aleatoric"] - 2 * tol)      # H[E p] >= E H[p], both round
  assert np.all(u["total"] <= math.log(k) + tol)             # H <= log K
  assert np.all(u["aleatoric"] >= -tol)
  # The float64 references, within the same bounds.
  log_p = _full_log_probs(z, family)
  p64 = np.exp(log_p)
  p_bar = p64.mean(1)
  total = -special.xlogy(p_bar, p_bar).sum(-1)
  aleatoric = -(p64 * log_p).sum(-1).mean(1)
  _assert_within(u["total"], total, tol, "total")
  _assert_within(u["aleatoric"], aleatoric, tol, "aleatoric")
  # EPKL = sum_k E[p log p] - sum_k p_bar E[log p]: the second sum weighs |log p| (up to
  # 2e4 nats for logits of 1e4), so its bound is relative to sum_k p_bar E|log p|.
  weight = aleatoric + (p_bar * np.abs(log_p).mean(1)).sum(-1)
  assert np.all(u["epkl"] >= -(k + m + 8) * eps * (weight + 1))


# ----------------------------------------------------------------------------------------
# Identical members (4) and permuted members (5).
# ----------------------------------------------------------------------------------------


@st.composite
def _identical(draw, ensembles):
  z, family = draw(ensembles(members=st.just(1)))
  return np.repeat(z, draw(SPREAD_MEMBERS), axis=1), family


@given(_identical(regression_ensembles))
def test_identical_regression_members_have_no_epistemic_variance(case):
  z, family = case
  u = _numpy(td.decompose_ensemble(z, family))
  # The mean of m copies of x is x only within (m + 2) eps |x|: the variance about it is
  # at most that squared (e.g. 0.0625 for x = 1e6 in float32 with 7 members), summed over E.
  e, m, eps = family.event_size, z.shape[1], _eps(z.dtype)
  delta = (m + 2) * eps * np.abs(z[:, 0, :e].astype(np.float64))
  _assert_within(u["epistemic"], 0., (delta ** 2).sum(-1), "epistemic of identical members")
  _assert_within(u["total"], u["aleatoric"], (delta ** 2).sum(-1) + eps * u["total"],
                 "total - aleatoric")


@given(_identical(classification_ensembles))
def test_identical_classification_members_have_no_mutual_information(case):
  z, family = case
  k, m = family.num_classes, z.shape[1]
  u = _numpy(td.decompose_ensemble(z, family))
  # p_bar is the mean of m copies of p: equal to p within (m + 2) eps relatively, so
  # H[p_bar] - H[p] <= (m + 2) eps sum_k p (1 + |log p|) <= (m + 2) eps (1 + log K).
  eps = _eps(z.dtype)
  tol = 2 * (m + 2) * eps * (1. + math.log(k))
  _assert_within(u["epistemic"], 0., tol, "mutual information of identical members")
  # EPKL: KL(p || p) = 0 exactly; the two sums it is computed from weigh |log p|.
  log_p = _full_log_probs(z[:, :1], family)[:, 0]
  weight = (np.exp(log_p) * np.abs(log_p)).sum(-1)
  _assert_within(u["epkl"], 0., 2 * (k + m + 8) * eps * (weight + 1), "epkl")


@st.composite
def _permuted(draw, ensembles):
  z, family = draw(ensembles(members=SPREAD_MEMBERS))
  order = draw(st.permutations(range(z.shape[1])))
  return z, z[:, order], family


@given(_permuted(regression_ensembles))
def test_regression_decomposition_ignores_the_order_of_the_members(case):
  z, permuted, family = case
  a = _numpy(td.decompose_ensemble(z, family))
  b = _numpy(td.decompose_ensemble(permuted, family))
  ref = _regression_bounds(z, family)     # each side within these bounds of the reference
  for key in ("prediction", "aleatoric", "epistemic"):
    _assert_within(a[key], b[key], 2 * ref[key + "_tol"], key)


@given(_permuted(classification_ensembles))
def test_classification_decomposition_ignores_the_order_of_the_members(case):
  z, permuted, family = case
  a = _numpy(td.decompose_ensemble(z, family))
  b = _numpy(td.decompose_ensemble(permuted, family))
  k, m, eps = family.num_classes, z.shape[1], _eps(z.dtype)
  tol = 2 * _entropy_tol(k, m, z.dtype)
  _assert_within(a["prediction"], b["prediction"], 2 * (m + 2) * eps, "prediction")
  for key in ("total", "aleatoric", "epistemic"):
    _assert_within(a[key], b[key], tol, key)
  log_p = _full_log_probs(z, family)
  weight = (np.exp(log_p) * np.abs(log_p)).sum(-1).mean(1) + (
      np.exp(log_p).mean(1) * np.abs(log_p).mean(1)).sum(-1)
  _assert_within(a["epkl"], b["epkl"], 2 * (k + m + 8) * eps * (weight + 1), "epkl")


# ----------------------------------------------------------------------------------------
# Losses: finite (1), unchanged by the members' order (5).
# ----------------------------------------------------------------------------------------


def _normal_student(draw, dtype, batch, size, loc_bound=MEAN_BOUND):
  """A diagonal NormalHead over `size` params: loc up to loc_bound, raw scale in +-50."""
  min_scale = draw(st.sampled_from([1e-6, 1e-3, 1.]))
  params = np.concatenate([draw(values((batch, size), loc_bound)),
                           draw(values((batch, size), RHO_BOUND))], -1).astype(dtype)
  return td.heads.NormalHead.new(params, size, min_scale)


def _normal_nll_terms(z, dist):
  """float64 -log N(z_m; loc, scale) per member, [batch, members]."""
  params = td.heads.distribution_parameters(dist)
  loc, scale = (params[key].numpy().astype(np.float64)[:, None] for key in ("loc", "scale"))
  r = (z.astype(np.float64) - loc) / scale
  return (0.5 * np.log(2 * np.pi) + np.log(scale) + 0.5 * r ** 2).sum(-1)


@st.composite
def normal_students(draw, members=MEMBERS):
  """(z [batch, members, P], a NormalHead distribution over P = 1..8 params)."""
  dtype, batch, m, size = draw(DTYPES), draw(BATCH), draw(members), draw(EVENTS)
  z = draw(values((batch, m, size), MEAN_BOUND)).astype(dtype)
  return z, _normal_student(draw, dtype, batch, size)


@given(normal_students())
def test_ensemble_nll_of_a_normal_student_is_finite(case):
  z, dist = case
  loss = td.losses.ensemble_nll(z, dist).numpy()
  assert loss.dtype == z.dtype and loss.shape == z.shape[:1] and np.all(np.isfinite(loss))
  # (2e6 / 1e-6)^2 / 2 = 2e24 at most: far inside float32's range.
  terms = _normal_nll_terms(z, dist)                                # [batch, members]
  # TFP forms r = z/s - loc/s, off by eps size, size = (|z| + |loc|) / s; 0.5 r^2 is then
  # off by eps (|r| size + r^2), log s by eps (|log s| + 1); the mean adds (m + 2) eps.
  eps, m = _eps(z.dtype), z.shape[1]
  params = td.heads.distribution_parameters(dist)
  loc, scale = (params[key].numpy().astype(np.float64)[:, None] for key in ("loc", "scale"))
  r = np.abs(z.astype(np.float64) - loc) / scale
  size = (np.abs(z.astype(np.float64)) + np.abs(loc)) / scale
  term_tol = eps * (r * size + r ** 2 + np.abs(np.log(scale)) + 4).sum(-1)
  _assert_within(loss, terms.mean(1),
                 term_tol.mean(1) + (m + 2) * eps * np.abs(terms).mean(1), "nll")


@st.composite
def tril_students(draw):
  """(z [batch, members, E], a MultivariateNormalTriLHead distribution, E = 1..8)."""
  dtype, batch, m, e = draw(DTYPES), draw(BATCH), draw(MEMBERS), draw(EVENTS)
  size = td.heads.MultivariateNormalTriLHead.params_size(e)
  params = np.concatenate([draw(values((batch, e), MEAN_BOUND)),
                           draw(values((batch, size - e), RHO_BOUND))], -1).astype(dtype)
  dist = td.heads.MultivariateNormalTriLHead.new(params, e, draw(st.sampled_from([1e-3, 1.])))
  return draw(values((batch, m, e), MEAN_BOUND)).astype(dtype), dist


@given(tril_students())
def test_ensemble_nll_of_a_full_covariance_student_is_never_nan(case):
  z, dist = case
  loss = td.losses.ensemble_nll(z, dist).numpy()
  assert not np.any(np.isnan(loss))
  # Finite unless the exact value (float64) leaves the dtype's range: off-diagonals of 50
  # over diagonals of 1e-3 make |L^-1| reach (5e4)^7 / 1e-3 for E = 8, and the quadratic
  # form the square of that, far beyond float32 (and float64): then +inf is the
  # correctly rounded value.
  loc = dist.loc.numpy().astype(np.float64)
  tril = dist.scale.to_dense().numpy().astype(np.float64)
  # Forward substitution (no pivoting): before, NumPy's LU solve called a triangular
  # scale with off-diagonals of 50 over diagonals of 1e-3 singular (hypothesis found one
  # on 2026-12-07). Overflow gives inf: not representable, so only "no NaN" is checked.
  from scipy import linalg
  diag = np.abs(np.diagonal(tril, axis1=-2, axis2=-1))
  exact = np.full(len(tril), np.inf)
  with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    for b in range(len(tril)):
      if np.all(np.isfinite(tril[b])) and np.all(diag[b] > 0):
        r = linalg.solve_triangular(tril[b], (z[b].astype(np.float64) - loc[b]).T,
                                    lower=True, check_finite=False)          # [E, members]
        exact[b] = (0.5 * (r ** 2).sum(0)).mean() + np.log(diag[b]).sum()
  representable = np.isfinite(exact) & (np.abs(exact) < 1e-3 * np.finfo(z.dtype).max)
  assert np.all(np.isfinite(loss[representable]))


@st.composite
def dirichlet_students(draw, members=MEMBERS, bound=LOGIT_BOUND):
  """(logits [batch, members, K], a DirichletHead distribution, temperature, smoothing)."""
  z, family = draw(classification_ensembles(members=members, bound=bound))
  k, batch = family.num_classes, z.shape[0]
  z = _full_log_probs(z, family).astype(z.dtype) if z.shape[-1] != k else z
  params = draw(values((batch, k), bound)).astype(z.dtype)
  dist = td.heads.DirichletHead.new(params, k, draw(st.sampled_from([1e-6, 1e-3, 1.])))
  return z, dist, draw(st.floats(1., 20.)), draw(st.sampled_from([0., 1e-4, 0.1]))


@given(dirichlet_students(), st.sampled_from([None, "float64"]))
def test_dirichlet_losses_are_finite(case, compute_dtype):
  z, dist, temperature, smoothing = case
  for fn in (td.losses.dirichlet_nll, td.losses.proxy_dirichlet_cost,
             td.losses.proxy_dirichlet_kl):
    loss = fn(z, dist, temperature=temperature, smoothing=smoothing,
              compute_dtype=compute_dtype).numpy()
    assert loss.dtype == z.dtype and np.all(np.isfinite(loss)), fn.__name__
  assert np.all(np.isfinite(td.losses.predictive_kl(z, dist).numpy()))
  for target in ("ensemble", "proxy", "proxy_kl"):
    loss = td.losses.DirichletNLL(temperature, smoothing, target=target,
                                  compute_dtype=compute_dtype, predictive_weight=0.5)
    assert np.isfinite(loss(z, dist).numpy()), target


@given(classification_ensembles(), st.floats(0.05, 20.), st.data())
def test_soft_target_losses_are_finite(case, temperature, data):
  z, family = case
  k, batch = family.num_classes, z.shape[0]
  logits = data.draw(values((batch, k), LOGIT_BOUND)).astype(z.dtype)
  kl = td.losses.soft_target_kl(z, logits, family, temperature).numpy()
  assert np.all(np.isfinite(kl))
  # KL >= 0 up to rounding: l / T and s / T round by eps |l| / T (2e5 eps for T = 0.05),
  # which moves every log-probability by up to 2 eps max|l, s| / T; the KL weighs that by
  # p_bar (summing to 1), its terms p_bar |log p_bar - log q| round relatively, and its
  # sums add (K + m) eps.
  eps, m = _eps(z.dtype), z.shape[1]
  heated = special.log_softmax(_full_log_probs(z, family) / temperature, axis=-1)
  log_p_bar = special.logsumexp(heated, axis=1) - np.log(m)
  log_q = special.log_softmax(logits.astype(np.float64) / temperature, axis=-1)
  size = (np.abs(z).max() + np.abs(logits).max()) / temperature
  weight = (np.exp(log_p_bar) * np.abs(log_p_bar - log_q)).sum(-1)
  tol = temperature ** 2 * (k + m + 8) * eps * (4 * size + weight + 2 * math.log(k) + 2)
  assert np.all(kl >= -tol)
  student = td.heads.CategoricalHead.new(logits, k)
  assert np.all(np.isfinite(td.losses.predictive_kl(z, student, family).numpy()))
  loss = td.losses.KnowledgeDistillation(temperature, family=family)(z, logits)
  assert np.isfinite(loss.numpy())
  assert np.isfinite(td.losses.MixtureKL(family)(z, student).numpy())


@given(regression_ensembles(), st.data())
def test_mixture_cross_entropy_and_ensemble_nll_loss_are_finite(case, data):
  z, family = case
  e, batch = family.event_size, z.shape[0]
  params = np.concatenate([data.draw(values((batch, e), MEAN_BOUND)),
                           data.draw(values((batch, e), RHO_BOUND))], -1).astype(z.dtype)
  student = td.heads.NormalPredictiveHead.new(params, e, family.min_variance)
  assert np.all(np.isfinite(td.losses.mixture_cross_entropy(z, student, family).numpy()))
  assert np.isfinite(td.losses.MixtureKL(family)(z, student).numpy())
  over_z = _normal_student(data.draw, z.dtype, batch, family.params_size)
  assert np.isfinite(td.losses.EnsembleNLL(family)(z, over_z).numpy())


@st.composite
def _permutation(draw, m):
  return list(draw(st.permutations(range(m))))


@given(normal_students(members=SPREAD_MEMBERS), st.data())
def test_ensemble_nll_ignores_the_order_of_the_members(case, data):
  z, dist = case
  order = data.draw(_permutation(z.shape[1]))
  a = td.losses.ensemble_nll(z, dist).numpy()
  b = td.losses.ensemble_nll(z[:, order], dist).numpy()
  # Only the mean over members depends on the order: 2 (m + 2) eps sum|terms| / m, with
  # each term's own rounding (8 eps) the same in both orders.
  terms = np.abs(_normal_nll_terms(z, dist))
  _assert_within(a, b, 2 * (z.shape[1] + 10) * _eps(z.dtype) * terms.mean(1), "ensemble_nll")


@given(dirichlet_students(members=SPREAD_MEMBERS), st.data())
def test_dirichlet_nll_and_soft_target_kl_ignore_the_order_of_the_members(case, data):
  z, dist, temperature, smoothing = case
  order = data.draw(_permutation(z.shape[1]))
  k, m, eps = z.shape[-1], z.shape[1], _eps(z.dtype)
  log_p = special.log_softmax(z.astype(np.float64) / temperature, axis=-1)
  if smoothing:
    log_p = np.logaddexp(log_p + np.log1p(-smoothing), np.log(smoothing / k))
  a = td.losses.dirichlet_nll(z, dist, temperature=temperature, smoothing=smoothing)
  b = td.losses.dirichlet_nll(z[:, order], dist, temperature=temperature,
                              smoothing=smoothing)
  # Only 1/M sum_m log pi_m depends on the order; it enters as sum_k (alpha_k - 1) times
  # it, alpha = concentration^(1 / T), all scaled by T^2.
  alpha = dist.concentration.numpy().astype(np.float64) ** (1. / temperature)
  tol = 2 * (m + 4) * eps * temperature ** 2 * (
      np.abs(alpha - 1.) * np.abs(log_p).mean(1)).sum(-1)
  _assert_within(a.numpy(), b.numpy(), tol, "dirichlet_nll")
  # soft_target_kl: log p_bar is a logsumexp over members, (m + 2) eps in absolute terms;
  # the KL weighs it by p_bar (|log p_bar - log q| + 1).
  logits = tf.math.log(tf.convert_to_tensor(dist.concentration))
  a = td.losses.soft_target_kl(z, logits, temperature=temperature).numpy()
  b = td.losses.soft_target_kl(z[:, order], logits, temperature=temperature).numpy()
  heated = special.log_softmax(z.astype(np.float64) / temperature, axis=-1)
  log_p_bar = special.logsumexp(heated, axis=1) - np.log(m)
  log_q = special.log_softmax(logits.numpy().astype(np.float64) / temperature, axis=-1)
  weight = (np.exp(log_p_bar) * (np.abs(log_p_bar - log_q) + 1.)).sum(-1)
  _assert_within(a, b, 4 * (m + 4) * eps * temperature ** 2 * weight, "soft_target_kl")


# ----------------------------------------------------------------------------------------
# Closed-form minima (6).
# ----------------------------------------------------------------------------------------


def _softplus_inverse(x):
  return x + np.log(-np.expm1(-x))


def _gradient(fn, params):
  params = tf.Variable(params)
  with tf.GradientTape() as tape:
    loss = fn(params)
  return loss.numpy().astype(np.float64), tape.gradient(loss, params).numpy().astype(
      np.float64)


@given(DTYPES, BATCH, SPREAD_MEMBERS, EVENTS, st.sampled_from([1e-6, 1e-3, 1.]), st.data())
def test_ensemble_nll_is_stationary_at_the_gaussian_mle(dtype, batch, m, e, min_scale, data):
  z = data.draw(values((batch, m, e), MEAN_BOUND)).astype(dtype)
  z64 = z.astype(np.float64)
  z_bar, sd = z64.mean(1), z64.std(1)
  # loc = the members' mean (the MLE of a Gaussian's mean); where the spread is wider
  # than the floor, the scale too is the MLE sqrt(1/M sum (z - z_bar)^2).
  fits = sd > 2 * min_scale
  raw = np.where(fits, _softplus_inverse(np.maximum(sd - min_scale, 1e-300)), 0.)
  params = np.concatenate([z_bar, raw], -1).astype(dtype)
  _, grad = _gradient(
      lambda p: tf.reduce_sum(
          td.losses.ensemble_nll(z, td.heads.NormalHead.new(p, e, min_scale))), params)
  eps = _eps(dtype)
  loc = params[:, :e].astype(np.float64)
  raw = params[:, e:].astype(np.float64)
  s = np.logaddexp(0., raw) + min_scale
  # TFP forms (z/s - loc/s): each residual is off by eps (|z| + |loc|) / s, and loc by
  # eps |z_bar| / 2 from its rounding; d/dloc = -mean(z/s - loc/s) / s then sums m of them.
  size = (np.abs(z64).max(1) + np.abs(loc)) / s                   # [batch, e], in units of s
  _assert_within(grad[:, :e], 0., (m + 6) * eps * 2 * size / s, "d loss / d loc")
  # d/ds = (1 - R) / s with R = mean(residual^2) = 1 at the MLE; R is off relatively by 2x
  # the residuals' error over their size (1 at the MLE) plus s's own rounding (softplus 5
  # eps, raw's rounding eps |raw| / 2, the floor's addition), and m eps for the mean.
  # Through the chain rule d/draw = d/ds * sigmoid(raw).
  tol = special.expit(raw) / s * eps * (4 * size + 2 * (8 + np.abs(raw)) + m + 6)
  _assert_within(np.where(fits, grad[:, e:], 0.), 0., tol, "d loss / d raw scale")


@given(regression_ensembles(members=SPREAD_MEMBERS))
def test_mixture_cross_entropy_is_stationary_at_the_moment_match(case):
  z, family = case
  e, m, eps = family.event_size, z.shape[1], _eps(z.dtype)
  z64 = z.astype(np.float64)
  mu = z64[..., :e]
  var = np.logaddexp(0., z64[..., e:]) + family.min_variance
  mu_bar, spread = mu.mean(1), (var + (mu - mu.mean(1, keepdims=True)) ** 2).mean(1)
  # The student's floor is half the members' floor, so the mixture's variance (>= the
  # members' floor) is always reachable: var_s = softplus(rho_s) + floor = spread.
  floor = family.min_variance / 2
  params = np.concatenate([mu_bar, _softplus_inverse(spread - floor)], -1).astype(z.dtype)
  _, grad = _gradient(
      lambda p: tf.reduce_sum(td.losses.mixture_cross_entropy(
          z, td.heads.NormalPredictiveHead.new(p, e, floor), family)), params)
  rho_s = params[:, e:].astype(np.float64)
  var_s = np.logaddexp(0., rho_s) + floor
  # d/dmu_s = (mu_s - mu_bar) / var_s: TF's mean of mu is off by (m + 2) eps max|mu| and
  # mu_s by its rounding eps |mu_bar| / 2.
  delta = (m + 3) * eps * np.abs(mu).max(1)
  _assert_within(grad[:, :e], 0., delta / var_s, "d loss / d mu")
  # d/dvar_s = (var_s - spread' - (mu_bar' - mu_s)^2) / (2 var_s^2), spread' = spread +
  # delta^2 (two-pass) within (m + 6) eps, var_s within softplus (5 eps) + rho's rounding
  # (eps |rho| / 2) + sqrt and square (2 eps); times dvar/drho = sigmoid(rho).
  num = (m + 16 + np.abs(rho_s)) * eps * spread + 2 * delta ** 2
  _assert_within(grad[:, e:], 0., special.expit(rho_s) * num / (2 * var_s ** 2), "d / d rho")


def _soft_target_tol(m, k, dtype, temperature, max_logit):
  """|KL| and sum_k |dKL / ds_k| at the student's optimum, up to rounding.

  log_softmax(s / T) rounds each log q by eps (2 max|s| / T + 2 log K + 2), log p_bar
  by (m + 4) eps, and the KL weighs both by p_bar (summing to 1); T^2 scales the KL, T the
  gradient T (q - p_bar).
  """
  return _eps(dtype) * (2 * max_logit / temperature + 2 * math.log(k) + m + 8) * 2


@given(classification_ensembles(members=SPREAD_MEMBERS, bound=20.), st.floats(1., 10.))
def test_soft_target_kl_vanishes_at_the_ensemble_mean(case, temperature):
  z, family = case
  # |logits| <= 20 and T >= 1: every p_bar_k >= e^-40 / K, so log p_bar is exact enough to
  # be the student's logits s = T log p_bar_T, where KL(p_bar_T || q_T) = 0.
  k, m = family.num_classes, z.shape[1]
  temperature = float(np.float32(temperature))   # the library casts T through float32
  log_p = special.log_softmax(_full_log_probs(z, family) / temperature, axis=-1)
  logits = temperature * (special.logsumexp(log_p, axis=1) - np.log(m))
  logits = logits.astype(z.dtype)
  loss, grad = _gradient(
      lambda s: td.losses.soft_target_kl(z, s, family, temperature), logits)
  tol = _soft_target_tol(m, k, z.dtype, temperature, np.abs(logits).max())
  _assert_within(loss, 0., temperature ** 2 * tol, "KL at the ensemble mean")
  _assert_within(np.abs(grad).sum(-1), 0., temperature * tol, "its gradient")


@given(classification_ensembles(members=SPREAD_MEMBERS, bound=20.))
def test_predictive_kl_of_a_categorical_student_vanishes_at_the_ensemble_mean(case):
  z, family = case
  k, m = family.num_classes, z.shape[1]
  log_p = _full_log_probs(z, family)
  logits = (special.logsumexp(log_p, axis=1) - np.log(m)).astype(z.dtype)
  loss, grad = _gradient(
      lambda s: td.losses.predictive_kl(z, td.heads.CategoricalHead.new(s, k), family),
      logits)
  tol = _soft_target_tol(m, k, z.dtype, 1., np.abs(logits).max())
  _assert_within(loss, 0., tol, "KL at the ensemble mean")
  _assert_within(np.abs(grad).sum(-1), 0., tol, "its gradient")


@given(classification_ensembles(members=SPREAD_MEMBERS, bound=3.),
       st.sampled_from([1e3, 1e5]))
def test_predictive_kl_of_a_dirichlet_student_vanishes_at_the_ensemble_mean(case, precision):
  z, family = case
  # alpha = precision p_bar: the Dirichlet's mean is p_bar. |logits| <= 3 keeps every
  # precision p_bar_k >= 1e3 e^-6 / 1000 > 100 x the floor 1e-5, and log alpha <= 30.
  k, m, floor = family.num_classes, z.shape[1], 1e-5
  p_bar = np.exp(_full_log_probs(z, family)).mean(1)
  params = np.log(precision * p_bar - floor).astype(z.dtype)
  loss, grad = _gradient(
      lambda s: td.losses.predictive_kl(z, td.heads.DirichletHead.new(s, k, floor), family),
      params)
  # As the categorical student, with |log alpha| in place of |s| (exp and log round it by
  # eps |log alpha|).
  tol = 2 * _soft_target_tol(m, k, z.dtype, 1., np.abs(params).max())
  _assert_within(loss, 0., tol, "KL at the ensemble mean")
  _assert_within(np.abs(grad).sum(-1), 0., tol, "its gradient")


# ----------------------------------------------------------------------------------------
# Config round trips (7).
# ----------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
REDUCTIONS = st.sampled_from([keras.losses.Reduction.AUTO, keras.losses.Reduction.NONE,
                              keras.losses.Reduction.SUM,
                              keras.losses.Reduction.SUM_OVER_BATCH_SIZE])
REGRESSION_FAMILIES = st.builds(td.families.HeteroscedasticNormal, EVENTS,
                                st.floats(1e-8, 1e3))
CLASSIFICATION_FAMILIES = st.builds(td.families.CategoricalLogits, st.integers(2, 1000),
                                    st.booleans())
FAMILIES = REGRESSION_FAMILIES | CLASSIFICATION_FAMILIES
WEIGHTS = st.floats(0., 1e3)
# Temperatures live in float32 variables: drawn where float32 holds them (normal floats);
# test_temperatures_float32_cannot_hold_are_rejected covers the rest.
TEMPERATURES = st.floats(1e-3, 1e3)


@st.composite
def ensemble_nll_losses(draw):
  family = draw(st.none() | FAMILIES)
  classification = isinstance(family, td.families.CategoricalLogits)
  return td.losses.EnsembleNLL(
      family, label_weight=draw(WEIGHTS) if family else 0.,
      num_quadrature_points=draw(st.integers(1, 100)),
      num_label_samples=draw(st.integers(1, 1000)),
      predictive_weight=draw(WEIGHTS) if classification else 0.,
      reduction=draw(REDUCTIONS), name=draw(NAMES))


@st.composite
def dirichlet_nll_losses(draw):
  family = draw(st.none() | CLASSIFICATION_FAMILIES)
  return td.losses.DirichletNLL(
      temperature=draw(st.floats(1., 1e3)),
      smoothing=draw(st.floats(0., 1., exclude_max=True)), family=family,
      label_weight=draw(WEIGHTS) if family else 0.,
      target=draw(st.sampled_from(["ensemble", "proxy", "proxy_kl"])),
      proxy_offset=draw(st.floats(0., 1e3)),
      compute_dtype=draw(st.sampled_from([None, "float32", "float64"])),
      predictive_weight=draw(WEIGHTS), reduction=draw(REDUCTIONS), name=draw(NAMES))


LOSSES = (ensemble_nll_losses()
          | dirichlet_nll_losses()
          | st.builds(td.losses.MixtureKL, FAMILIES, reduction=REDUCTIONS, name=NAMES)
          | st.builds(td.losses.KnowledgeDistillation, TEMPERATURES, st.floats(0., 1.),
                      st.none() | CLASSIFICATION_FAMILIES, reduction=REDUCTIONS,
                      name=NAMES))


def _assert_round_trips(obj):
  config = obj.get_config()
  assert type(obj).from_config(config).get_config() == config
  assert json.loads(json.dumps(config)) == config    # JSON values only (STYLE.md rule 7)


@given(LOSSES)
def test_loss_configs_round_trip(loss):
  _assert_round_trips(loss)
  again = keras.losses.deserialize(keras.losses.serialize(loss))
  assert type(again) is type(loss) and again.get_config() == loss.get_config()


HEADS = [td.heads.NormalHead, td.heads.MultivariateNormalTriLHead,
         td.heads.NormalPredictiveHead, td.heads.DirichletHead, td.heads.CategoricalHead]


@given(st.sampled_from(HEADS), EVENTS, st.floats(1e-8, 10.),
       st.sampled_from(["mean", "sample", "mode"]), NAMES,
       st.sampled_from([None, "float32", "float64"]), st.booleans())
def test_head_configs_round_trip(cls, event_size, min_scale, convert, name, dtype,
                                 trainable):
  kwargs = dict(min_scale=min_scale, convert_to_tensor_fn=convert, name=name, dtype=dtype,
                trainable=trainable)
  if event_size < 2 and cls in (td.heads.DirichletHead, td.heads.CategoricalHead):
    with pytest.raises(ValueError, match="classes"):
      cls(event_size, **kwargs)
    return
  _assert_round_trips(cls(event_size, **kwargs))


@given(st.sampled_from([td.losses.KnowledgeDistillation, td.losses.DirichletNLL]),
       st.sampled_from([1e39, 1e300, 1e-46, 1e-300]))
def test_temperatures_float32_cannot_hold_are_rejected(cls, temperature):
  # float32 (the temperature's tf.Variable) overflows to inf above 3.4e38 and flushes
  # below 1.4e-45 to 0: either would make the loss inf or NaN at the first step. They are
  # rejected up front, naming the argument.
  with pytest.raises(ValueError, match="temperature"):
    cls(temperature=temperature)


@given(FAMILIES)
def test_family_configs_round_trip(family):
  _assert_round_trips(family)
  assert td.families.get(td.families.serialize(family)) == family


# ----------------------------------------------------------------------------------------
# Metrics: finite and in range (1, 8).
# ----------------------------------------------------------------------------------------


@st.composite
def class_predictions(draw):
  """(labels [batch], probs [batch, K] of a drawn dtype, normalised?), batch 1..64."""
  dtype, k, batch = draw(DTYPES), draw(CLASSES), draw(st.integers(1, 64))
  labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, k - 1)))
  normalised = draw(st.booleans())
  if normalised:
    probs = special.softmax(draw(values((batch, k), LOGIT_BOUND)), axis=-1)
  else:     # any entries in [0, 1]: accuracy and ECE take unnormalised rows too
    probs = np.abs(np.tanh(draw(values((batch, k), 3.))))
  return labels, probs.astype(dtype), normalised


@given(class_predictions(), st.integers(1, 20), st.sampled_from(["equal_width", "quantile"]))
def test_classification_metrics_are_finite_and_in_range(case, num_bins, binning):
  labels, probs, normalised = case
  k, eps = probs.shape[-1], _eps(probs.dtype)
  accuracy = td.metrics.accuracy(labels, probs).numpy()
  assert 0. <= accuracy <= 1.
  # A count over B, divided once: k / B within eps.
  assert abs(accuracy * len(labels) - round(accuracy * len(labels))) <= len(labels) * eps
  ece = td.metrics.expected_calibration_error(labels, probs, num_bins, binning).numpy()
  assert 0. <= ece <= 1.
  nll = td.metrics.categorical_nll(labels, probs).numpy()
  # At most -log(epsilon); 1e-12 held by float32 is within 6e-8 of it relatively (6e-8
  # nats), and the log and mean round by 4 eps of 27.6 nats.
  assert 0. <= nll <= -math.log(1e-12) * (1 + 4 * eps) + 1e-7
  if normalised:
    # Rows sum to 1 within K eps, so sum_k (p_k - y_k)^2 <= (sum p)^2 + 1 <= 2 + 2 K eps,
    # and its sum and mean round by (K + B) eps more.
    brier = td.metrics.brier_score(labels, probs).numpy()
    assert 0. <= brier <= 2. + 4 * (k + len(labels) + 2) * eps


@st.composite
def ranked(draw):
  """(binary labels [batch], scores [batch] of a drawn dtype, ties and +-inf included)."""
  dtype, batch = draw(DTYPES), draw(st.integers(1, 64))
  labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, 1)))
  if draw(st.booleans()):    # many ties
    elements = st.sampled_from([-np.inf, -1., 0., 1., np.inf])
  else:
    elements = st.floats(width=32 if dtype == np.float32 else 64, allow_nan=False)
  return labels, draw(hnp.arrays(dtype, batch, elements=elements))


@given(ranked())
def test_auroc_is_in_range_and_antisymmetric(case):
  labels, scores = case
  if labels.min() == labels.max():
    with pytest.raises(ValueError, match="both classes"):
      td.metrics.auroc(labels, scores)
    return
  a = td.metrics.auroc(labels, scores).numpy()
  b = td.metrics.auroc(labels, -scores).numpy()
  assert 0. <= a <= 1. and 0. <= b <= 1.
  # Ties count 1/2 on both sides, so a + b = 1 with or without ties; the float64 area is
  # cast to the dtype once (eps / 2 each).
  assert abs(a + b - 1.) <= 2 * _eps(scores.dtype)
  # Swapping the classes is the same as negating the scores.
  assert td.metrics.auroc(1 - labels, scores).numpy() == b
  assert 0. <= td.metrics.aupr(labels, scores).numpy() <= 1.


@st.composite
def paired(draw, bound=MEAN_BOUND):
  """(a, b) [n], n = 2..64, of one drawn dtype, neither constant in that dtype."""
  dtype, n = draw(DTYPES), draw(st.integers(2, 64))
  a = draw(values((n,), bound)).astype(dtype)
  b = draw(values((n,), bound)).astype(dtype)
  # Constant vectors have no correlation (NaN, documented). Spreads below 1e-15 underflow
  # when squared in float32: test_pearson_correlation_is_scale_invariant covers those.
  assume(np.ptp(a.astype(np.float64)) > 1e-15 and np.ptp(b.astype(np.float64)) > 1e-15)
  return a, b


@given(paired())
def test_correlations_are_symmetric_and_in_range(case):
  a, b = case
  for fn in (td.metrics.pearson_correlation, td.metrics.spearman_correlation):
    r = fn(a, b).numpy()
    assert np.isfinite(r) and -1. <= r <= 1., fn.__name__
    assert fn(b, a).numpy() == r, fn.__name__
    # With itself: 1 within rounding of the n-term inner product of unit vectors.
    assert abs(fn(a, a).numpy() - 1.) <= 4 * (len(a) + 2) * _eps(a.dtype), fn.__name__


@given(DTYPES, st.integers(-40, 40))
@example(np.float32, 20)
@example(np.float64, -20)
def test_pearson_correlation_is_scale_invariant(dtype, power):
  with np.errstate(over="ignore"):   # 10^312 is inf: such scales are skipped below
    scale = np.float64(10.) ** (power * (1 if dtype == np.float32 else 8))
  # Below the smallest normal number TF's CPU kernels flush to zero (no scale left).
  with np.errstate(over="ignore"):   # a scale beyond the dtype's range: skipped
    too_large = not np.isfinite(np.asarray(3 * scale, dtype))
  if too_large or np.asarray(scale, dtype) < np.finfo(dtype).tiny:
    return
  a = (np.array([0., 1., 2.]) * scale).astype(dtype)
  assert abs(td.metrics.pearson_correlation(a, a).numpy() - 1.) <= 8 * _eps(dtype)


@given(st.floats(1e-6, 1.))
@example(0.1)
def test_float64_floors_keep_float64_precision(floor):
  # softplus(0) = log 2 is exact in TF's float64 (checked), and adding the floor rounds
  # once: 2 eps covers both.
  variance = td.families.HeteroscedasticNormal(1, floor).variance_from_rho(
      tf.zeros([1], tf.float64)).numpy()
  np.testing.assert_allclose(variance, math.log(2.) + floor, rtol=2 * 2. ** -52, atol=0)
  scale = td.heads.NormalHead.new(np.zeros((1, 2)), 1, floor).distribution.scale.numpy()
  np.testing.assert_allclose(scale, math.log(2.) + floor, rtol=2 * 2. ** -52, atol=0)


@given(DTYPES, st.integers(2, 64), st.data())
def test_regression_metrics_are_finite(dtype, n, data):
  y = data.draw(values((n,), MEAN_BOUND)).astype(dtype)
  mean = data.draw(values((n,), MEAN_BOUND)).astype(dtype)
  # Variances in [1e-6, 1e6]: (2e6)^2 / 1e-6 = 4e18 stays inside float32.
  variance = np.exp(data.draw(values((n,), math.log(1e6)))).astype(dtype)
  assert np.isfinite(td.metrics.gaussian_nll(y, mean, variance).numpy())
  members = np.stack([mean, y], -1)
  assert np.isfinite(td.metrics.gaussian_mixture_nll(
      y, members, np.stack([variance, variance], -1)).numpy())
  errors = np.square(y.astype(np.float64) - mean).astype(dtype)
  ause = td.metrics.ause(errors, variance, num_fractions=data.draw(st.integers(1, 50)))
  # The sparsification error is >= 0 in exact arithmetic (the oracle keeps the smallest
  # errors); its curves are normalised means, rounded by (n + 4) eps of their size (<= n).
  assert np.isfinite(ause.numpy()) and ause.numpy() >= -4 * (n + 4) * n * _eps(dtype)
  assert np.isfinite(td.metrics.rmse(y, mean).numpy())
  # References of at least 1e-3: |2e6| / 1e-40 would be beyond float32 exactly.
  reference = np.where(np.abs(mean) < 1e-3, 1., mean).astype(dtype)
  mre = td.metrics.mean_relative_error(y, reference).numpy()
  assert np.isfinite(mre) and mre >= 0.


@given(st.sampled_from([np.float32, np.float64]),
       hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 5)),
                  elements=st.floats(-0.5, 1.5) | st.just(np.nan) | st.just(np.inf)))
def test_classification_metrics_give_a_value_or_a_clear_error(dtype, probs):
  labels = np.arange(len(probs)) % probs.shape[1]
  probs = probs.astype(dtype)
  for fn in (td.metrics.accuracy, td.metrics.brier_score, td.metrics.categorical_nll,
             td.metrics.expected_calibration_error):
    try:
      value = fn(labels, probs).numpy()
    except ValueError as e:
      assert fn.__name__ in str(e) and "probs" in str(e)
      assert not (np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1)))
    else:
      assert np.isfinite(value), fn.__name__
