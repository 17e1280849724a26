"""Tests of tfp_distill.metrics against independent NumPy/SciPy references."""

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from tfp_distill import metrics
from tfp_distill._keras import keras

import tolerance

DTYPES = [np.float32, np.float64]
MODES = ["eager", "function"]
# Tolerances are rounding bounds from tests/tolerance.py: eps of the dtype times the
# magnitude, times the count of roundings each comment names (a mean of n terms: n + 1).


def _assert_float64_then_cast(actual, desired, dtype, ulps64, scale=None, err_msg=""):
  """A float64 computation, within ulps64 float64 eps of `scale` (default max|desired|),
  returned in `dtype` (one more rounding: 1 eps of max|desired|)."""
  np.testing.assert_allclose(actual, desired, rtol=0, err_msg=err_msg, atol=(
      tolerance.atol(desired, dtype=dtype, ulps=1)
      + tolerance.atol(desired, dtype=np.float64, ulps=ulps64, scale=scale)))


def _call(mode, fn, *args, **kwargs):
  """Calls fn(*args, **kwargs) eagerly or inside a tf.function, with Tensor args."""
  args = [tf.constant(a) for a in args]
  if mode == "function":

    def wrapped(*a):
      return fn(*a, **kwargs)

    return tf.function(wrapped, autograph=False)(*args)
  return fn(*args, **kwargs)


def _numpy(x):
  assert tf.is_tensor(x), type(x)
  return x.numpy()


# ----------------------------------------------------------------------------------------
# NumPy / SciPy references.
# ----------------------------------------------------------------------------------------


def ref_rmse(y, p):
  y, p = np.float64(y), np.float64(p)
  return np.sqrt(np.mean((y - p) ** 2))


def ref_gaussian_nll(y, mean, variance):
  y, mean, variance = np.float64(y), np.float64(mean), np.float64(variance)
  lp = scipy.stats.norm.logpdf(y, loc=mean, scale=np.sqrt(variance))
  return -np.mean(lp.reshape(len(y), -1).sum(axis=1))


def ref_gaussian_mixture_nll(y, means, variances):
  y, means, variances = np.float64(y), np.float64(means), np.float64(variances)
  lp = scipy.stats.norm.logpdf(y[:, None], loc=means, scale=np.sqrt(variances))
  if lp.ndim == 3:
    lp = lp.sum(axis=-1)
  members = means.shape[1]
  return -np.mean(scipy.special.logsumexp(lp, axis=1) - np.log(members))


def ref_sparsification_curve(errors, uncertainty, num_fractions, oracle=False):
  """Loop-based sparsification: remove the most uncertain points one fraction at a time."""
  errors = np.asarray(errors, np.float64)
  key = errors if oracle else np.asarray(uncertainty)
  n = len(errors)
  # Stable descending sort: among equal keys the lower index comes first.
  order = sorted(range(n), key=lambda j: -key[j])
  full_mean = np.mean(errors)
  fractions, curve = [], []
  for i in range(num_fractions):
    removed = math.floor(Fraction(i, num_fractions) * n)
    kept = [errors[j] for j in order[removed:]]
    assert kept
    fractions.append(i / num_fractions)
    curve.append(np.mean(kept) / full_mean)
  return np.array(fractions), np.array(curve)


def ref_ause(errors, uncertainty, num_fractions):
  f, model = ref_sparsification_curve(errors, uncertainty, num_fractions)
  _, oracle = ref_sparsification_curve(errors, uncertainty, num_fractions, oracle=True)
  s = model - oracle
  return sum((f[i + 1] - f[i]) * (s[i] + s[i + 1]) / 2 for i in range(num_fractions - 1))


def _data(dtype, seed=0, batch=37):
  rng = np.random.default_rng(seed)
  y = rng.normal(size=batch).astype(dtype)
  prediction = (y + rng.normal(scale=0.5, size=batch)).astype(dtype)
  variance = rng.uniform(0.1, 2.0, size=batch).astype(dtype)
  return y, prediction, variance


# ----------------------------------------------------------------------------------------
# rmse, gaussian_nll, gaussian_mixture_nll.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("event", [None, 3])
def test_rmse(dtype, mode, event):
  rng = np.random.default_rng(1)
  shape = (11,) if event is None else (11, event)
  y = rng.normal(size=shape).astype(dtype)
  p = rng.normal(size=shape).astype(dtype)
  out = _call(mode, metrics.rmse, y, p)
  assert out.dtype == dtype and out.shape == ()
  # (y - p)^2: 3 eps of each term; their mean over n entries n + 1 (positive terms, so of
  # the mean itself); the square root halves a relative error and adds 1.
  tolerance.assert_close(_numpy(out), ref_rmse(y, p), dtype=dtype, ulps=(3 + y.size + 1) / 2 + 1)


def test_rmse_numpy_and_list_inputs():
  y = np.array([1.0, 2.0, 4.0])
  out = metrics.rmse(y, [1.0, 1.0, 1.0])   # float64 array wins over the Python list.
  assert tf.is_tensor(out) and out.dtype == tf.float64
  # Squares and their sum are exact (0, 1, 9); the division by 3 and the root round.
  tolerance.assert_close(out.numpy(), np.sqrt(10.0 / 3.0), dtype=np.float64, ulps=2)
  out = metrics.rmse([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
  assert out.dtype == tf.float32
  tolerance.assert_close(out.numpy(), np.sqrt(10.0 / 3.0), dtype=np.float32, ulps=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("event", [None, 2])
def test_gaussian_nll(dtype, mode, event):
  rng = np.random.default_rng(2)
  shape = (13,) if event is None else (13, event)
  y = rng.normal(size=shape).astype(dtype)
  mean = rng.normal(size=shape).astype(dtype)
  variance = rng.uniform(0.05, 3.0, size=shape).astype(dtype)
  out = _call(mode, metrics.gaussian_nll, y, mean, variance)
  assert out.dtype == dtype and out.shape == ()
  # Gaussian log densities of the given variances (tolerance.normal_log_density_bound,
  # the scale's only rounding its log), averaged over the batch (n + 1 more).
  event = (-1, 1) if y.ndim == 1 else y.shape
  ulps, magnitude = tolerance.normal_log_density_bound(
      *(np.reshape(a, event) for a in (y, mean, np.sqrt(np.float64(variance)))), 1)
  tolerance.assert_close(_numpy(out), ref_gaussian_nll(y, mean, variance), dtype=dtype,
                         ulps=ulps + len(y) + 1, scale=magnitude.mean())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("event", [None, 2])
def test_gaussian_mixture_nll(dtype, mode, event):
  rng = np.random.default_rng(3)
  batch, members = 9, 5
  y_shape = (batch,) if event is None else (batch, event)
  m_shape = (batch, members) if event is None else (batch, members, event)
  y = rng.normal(size=y_shape).astype(dtype)
  # Widely spread members, so that the logsumexp matters.
  means = rng.normal(scale=4.0, size=m_shape).astype(dtype)
  variances = rng.uniform(0.01, 2.0, size=m_shape).astype(dtype)
  out = _call(mode, metrics.gaussian_mixture_nll, y, means, variances)
  assert out.dtype == dtype and out.shape == ()
  ulps, scale = _mixture_nll_bound(y, means, variances)
  tolerance.assert_close(_numpy(out), ref_gaussian_mixture_nll(y, means, variances),
                         dtype=dtype, ulps=ulps, scale=scale)


def _mixture_nll_bound(y, means, variances):
  """(ulps, scale) of gaussian_mixture_nll: each member's log density within its bound
  (tolerance.normal_log_density_bound), the logsumexp over M members M + 3 eps of
  |logsumexp| + log M + 1 (its weights sum to 1, so it passes the members' errors on at
  most as large), - log M, and the mean over the batch (n + 1)."""
  y, means, variances = np.float64(y), np.float64(means), np.float64(variances)
  if means.ndim == 2:
    y, means, variances = y[:, None], means[..., None], variances[..., None]
  batch, members = means.shape[:2]
  ulps, magnitude = tolerance.normal_log_density_bound(
      y[:, None], means, np.sqrt(variances), 1)                    # [batch, members]
  lp = scipy.stats.norm.logpdf(y[:, None], means, np.sqrt(variances)).sum(-1)
  lse = np.abs(scipy.special.logsumexp(lp, axis=1))
  return (ulps + members + 3 + batch + 1,
          np.mean(magnitude.max(1) + lse + np.log(members) + 1))


def test_gaussian_mixture_nll_far_tail_is_finite():
  # Every member puts ~exp(-5000) density on y: a naive log(mean(exp)) would give inf.
  y = np.array([100.0, -100.0])
  means = np.array([[0.0, 1.0], [0.0, -1.0]])
  variances = np.ones((2, 2))
  out = metrics.gaussian_mixture_nll(y, means, variances)
  ulps, scale = _mixture_nll_bound(y, means, variances)     # exact inputs in float32 too
  tolerance.assert_close(out.numpy(), ref_gaussian_mixture_nll(y, means, variances),
                         dtype=np.float64, ulps=ulps, scale=scale)
  out32 = metrics.gaussian_mixture_nll(*(np.float32(a) for a in (y, means, variances)))
  assert np.isfinite(out32.numpy())
  tolerance.assert_close(out32.numpy(), ref_gaussian_mixture_nll(y, means, variances),
                         dtype=np.float32, ulps=ulps, scale=scale)


def test_gaussian_mixture_nll_one_member_is_gaussian_nll():
  y, mean, variance = _data(np.float64, seed=4)
  mixture = metrics.gaussian_mixture_nll(y, mean[:, None], variance[:, None])
  single = metrics.gaussian_nll(y, mean, variance)
  # Each within its bound of the float64 reference: twice it of each other.
  ulps, scale = _mixture_nll_bound(y, mean[:, None], variance[:, None])
  tolerance.assert_close(mixture.numpy(), single.numpy(), dtype=np.float64, ulps=2 * ulps,
                         scale=scale)


def test_gaussian_mixture_nll_identical_members_is_gaussian_nll():
  y, mean, variance = _data(np.float64, seed=5)
  means, variances = np.tile(mean[:, None], [1, 4]), np.tile(variance[:, None], [1, 4])
  mixture = metrics.gaussian_mixture_nll(y, means, variances)
  single = metrics.gaussian_nll(y, mean, variance)
  # Each within its bound of the float64 reference: twice it of each other.
  ulps, scale = _mixture_nll_bound(y, means, variances)
  tolerance.assert_close(mixture.numpy(), single.numpy(), dtype=np.float64, ulps=2 * ulps,
                         scale=scale)


# ----------------------------------------------------------------------------------------
# Sparsification.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("oracle", [False, True])
@pytest.mark.parametrize("batch, num_fractions", [(1, 10), (5, 100), (37, 7), (100, 100)])
def test_sparsification_curve(dtype, mode, oracle, batch, num_fractions):
  rng = np.random.default_rng(batch)
  errors = (rng.normal(size=batch) ** 2).astype(dtype)
  uncertainty = (errors + rng.uniform(0, 1, size=batch)).astype(dtype)
  fractions, curve = _call(mode, metrics.sparsification_curve, errors, uncertainty,
                           num_fractions=num_fractions, oracle=oracle)
  assert fractions.dtype == dtype and curve.dtype == dtype
  assert fractions.shape == (num_fractions,) and curve.shape == (num_fractions,)
  ref_f, ref_c = ref_sparsification_curve(errors, uncertainty, num_fractions, oracle)
  # i / F: one rounding. The curve: a kept sum and the full sum of <= n positive errors
  # (n eps each, in any order: a reverse cumsum), two means and their quotient.
  tolerance.assert_close(_numpy(fractions), ref_f, dtype=dtype, ulps=1, scale=ref_f)
  tolerance.assert_close(_numpy(curve), ref_c, dtype=dtype, ulps=_curve_ulps(batch),
                         scale=ref_c)
  # Nothing removed at fraction 0: the curve starts at 1, the same sum over itself (two
  # divisions by n, which a graph may fold into products, and the quotient: 3 eps).
  tolerance.assert_close(_numpy(curve)[0], 1.0, dtype=dtype, ulps=3)


def _curve_ulps(n):
  """eps of a sparsification curve entry, relative to it: two sums of <= n positive
  terms (n eps each), two divisions by counts and their quotient (3)."""
  return 2 * n + 3


def _ause_ulps(n, num_fractions):
  """eps of AUSE relative to the mean of model + oracle curves: each difference within
  _curve_ulps of model + oracle, and the trapezoid's F terms (F + 3)."""
  return _curve_ulps(n) + num_fractions + 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_sparsification_error_and_ause(dtype, mode):
  rng = np.random.default_rng(6)
  errors = rng.exponential(size=50).astype(dtype)
  uncertainty = rng.uniform(size=50).astype(dtype)
  fractions, error = _call(mode, metrics.sparsification_error, errors, uncertainty,
                           num_fractions=20)
  _, model = ref_sparsification_curve(errors, uncertainty, 20)
  ref_f, oracle = ref_sparsification_curve(errors, uncertainty, 20, oracle=True)
  tolerance.assert_close(_numpy(fractions), ref_f, dtype=dtype, ulps=1, scale=ref_f)
  # Two curves' bounds, and their difference's rounding: of model + oracle.
  tolerance.assert_close(_numpy(error), model - oracle, dtype=dtype, ulps=_curve_ulps(50) + 1,
                         scale=model + oracle)
  out = _call(mode, metrics.ause, errors, uncertainty, num_fractions=20)
  assert out.dtype == dtype and out.shape == ()
  tolerance.assert_close(_numpy(out), ref_ause(errors, uncertainty, 20), dtype=dtype,
                         ulps=_ause_ulps(50, 20), scale=np.mean(model + oracle))


def test_hand_worked_four_points():
  # errors e = [1, 4, 0, 3], uncertainty u = [0.1, 0.2, 0.4, 0.3], F = 4 fractions
  # f = [0, 1/4, 1/2, 3/4], removed k = floor(f * 4) = [0, 1, 2, 3]; mean(e) = 8/4 = 2.
  # Model order (u descending): indices 2, 3, 1, 0 -> sorted errors [0, 3, 4, 1]
  #   kept means [8/4, 8/3, 5/2, 1] / 2  = [1, 4/3, 5/4, 1/2]
  # Oracle order (e descending): sorted errors [4, 3, 1, 0]
  #   kept means [8/4, 4/3, 1/2, 0] / 2  = [1, 2/3, 1/4, 0]
  # Sparsification error = [0, 2/3, 1, 1/2]
  # AUSE = 1/4 * [(0 + 2/3)/2 + (2/3 + 1)/2 + (1 + 1/2)/2] = 1/4 * 23/12 = 23/48
  errors = [1.0, 4.0, 0.0, 3.0]
  uncertainty = [0.1, 0.2, 0.4, 0.3]
  fractions, model = metrics.sparsification_curve(errors, uncertainty, num_fractions=4)
  _, oracle = metrics.sparsification_curve(errors, uncertainty, 4, oracle=True)
  _, error = metrics.sparsification_error(errors, uncertainty, 4)
  np.testing.assert_array_equal(fractions.numpy(), [0, 0.25, 0.5, 0.75])   # exact in binary
  # float32 (list inputs): the curve bound (_curve_ulps, n = 4) of each value; the error
  # and AUSE of model + oracle (max 7/3).
  bound = dict(dtype=np.float32, ulps=_curve_ulps(4))
  tolerance.assert_close(model.numpy(), [1, 4 / 3, 5 / 4, 1 / 2], **bound)
  tolerance.assert_close(oracle.numpy(), [1, 2 / 3, 1 / 4, 0], **bound)
  tolerance.assert_close(error.numpy(), [0, 2 / 3, 1, 1 / 2], **bound, scale=7 / 3)
  tolerance.assert_close(metrics.ause(errors, uncertainty, 4).numpy(), 23 / 48,
                         dtype=np.float32, ulps=_ause_ulps(4, 4), scale=7 / 3)


def test_ties_are_broken_by_a_stable_sort():
  # u = [0.5, 0.5, 0.1, 0.1]: stable order keeps indices 0, 1, 2, 3 -> sorted e [1, 4, 0, 3]
  #   kept means [8/4, 7/3, 3/2, 3] / 2 = [1, 7/6, 3/4, 3/2]
  errors = np.array([1.0, 4.0, 0.0, 3.0])
  _, curve = metrics.sparsification_curve(errors, [0.5, 0.5, 0.1, 0.1], 4)
  want = np.array([1, 7 / 6, 3 / 4, 3 / 2])
  tolerance.assert_close(curve.numpy(), want, dtype=np.float64, ulps=_curve_ulps(4),
                         scale=want)
  # Constant uncertainty removes points in index order.
  _, curve = metrics.sparsification_curve(errors, np.zeros(4), 4)
  tolerance.assert_close(curve.numpy(), want, dtype=np.float64, ulps=_curve_ulps(4),
                         scale=want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_oracle_curve_is_non_increasing(dtype):
  rng = np.random.default_rng(7)
  errors = (rng.standard_t(df=3, size=200) ** 2).astype(dtype)
  _, curve = metrics.sparsification_curve(errors, np.zeros(200), 100, oracle=True)
  # Removing the largest remaining error never increases the mean; allow rounding only:
  # two neighbours, each within _curve_ulps of itself.
  rounding = tolerance.atol(dtype=dtype, ulps=2 * _curve_ulps(200), scale=curve.numpy().max())
  assert np.all(np.diff(curve.numpy()) <= rounding), np.diff(curve.numpy()).max()
  tolerance.assert_close(curve.numpy()[0], 1.0, dtype=dtype, ulps=3)   # a sum over itself


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_ause_of_oracle_ordering_is_zero(dtype, mode):
  rng = np.random.default_rng(8)
  errors = rng.exponential(size=64).astype(dtype)
  out = _call(mode, metrics.ause, errors, errors)
  np.testing.assert_allclose(_numpy(out), 0.0, rtol=0, atol=0)
  # Any increasing function of the errors orders the points the same way.
  out = _call(mode, metrics.ause, errors, np.sqrt(errors) + 3)
  # (In float32, sqrt + 3 may tie two errors the oracle orders: rounding-sized AUSE.)
  tolerance.assert_close(_numpy(out), 0.0, dtype=dtype, ulps=_ause_ulps(64, 100), scale=2.)
  _, error = _call(mode, metrics.sparsification_error, errors, errors)
  np.testing.assert_allclose(_numpy(error), np.zeros(100), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ause_of_random_ordering_is_positive(dtype):
  rng = np.random.default_rng(9)
  errors = rng.exponential(size=100).astype(dtype)
  uncertainty = rng.uniform(size=100).astype(dtype)
  _, error = metrics.sparsification_error(errors, uncertainty)
  _, model = ref_sparsification_curve(errors, uncertainty, 100)
  _, oracle = ref_sparsification_curve(errors, uncertainty, 100, oracle=True)
  # The oracle minimises the kept mean for every fraction (up to the curves' rounding).
  assert np.all(error.numpy() >= -tolerance.atol(dtype=dtype, ulps=_curve_ulps(100) + 1,
                                                 scale=model + oracle))
  out = metrics.ause(errors, uncertainty).numpy()
  tolerance.assert_close(out, ref_ause(errors, uncertainty, 100), dtype=dtype,
                         ulps=_ause_ulps(100, 100), scale=np.mean(model + oracle))
  assert out > 0.05, out
  # The reversed (worst) ordering is worse still.
  worst = metrics.ause(errors, -errors).numpy()
  assert worst > out, (worst, out)


def test_ause_single_fraction_is_zero_and_all_zero_errors():
  np.testing.assert_allclose(
      metrics.ause([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], num_fractions=1).numpy(), 0.0,
      rtol=0, atol=0)
  _, curve = metrics.sparsification_curve(np.zeros(5), np.arange(5.0), 5)
  np.testing.assert_allclose(curve.numpy(), np.zeros(5), rtol=0, atol=0)


def test_uncertainty_keeps_its_own_dtype_for_sorting():
  # float64 uncertainties that collide in float32 must not be cast to errors' dtype.
  errors = np.array([1.0, 2.0], np.float32)
  uncertainty = np.array([1.0, 1.0 + 1e-12])
  _, curve = metrics.sparsification_curve(errors, uncertainty, 2)
  bound = dict(dtype=np.float32, ulps=_curve_ulps(2))
  tolerance.assert_close(curve.numpy(), [1.0, 1.0 / 1.5], **bound)
  _, curve = metrics.sparsification_curve(errors, np.array([2, 1]), 2)
  tolerance.assert_close(curve.numpy(), [1.0, 2.0 / 1.5], **bound)


def test_sparsification_dynamic_batch_in_tf_function():
  spec = tf.TensorSpec([None], tf.float64)
  fn = tf.function(lambda e, u: metrics.ause(e, u, 10), input_signature=[spec, spec],
                   autograph=False)
  rng = np.random.default_rng(10)
  for batch in (3, 40):
    errors, uncertainty = rng.exponential(size=batch), rng.uniform(size=batch)
    _, model = ref_sparsification_curve(errors, uncertainty, 10)
    _, oracle = ref_sparsification_curve(errors, uncertainty, 10, oracle=True)
    tolerance.assert_close(fn(errors, uncertainty).numpy(), ref_ause(errors, uncertainty, 10),
                           dtype=np.float64, ulps=_ause_ulps(batch, 10),
                           scale=np.mean(model + oracle))
  with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
    fn(np.ones(3), np.ones(4))
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
    fn(np.ones(0), np.ones(0))


# ----------------------------------------------------------------------------------------
# pearson_correlation, mean_relative_error.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_pearson_correlation(dtype, mode):
  rng = np.random.default_rng(11)
  a = rng.normal(size=30).astype(dtype)
  b = (0.5 * a + rng.normal(size=30)).astype(dtype)
  out = _call(mode, metrics.pearson_correlation, a, b)
  assert out.dtype == dtype and out.shape == ()
  ref = scipy.stats.pearsonr(np.float64(a), np.float64(b))[0]
  # Centred by their means (n + 1 eps of max|x|, while the spread is of order max|x|),
  # scaled, n products summed, two norms and a quotient: _correlation_ulps of 1.
  bound = dict(dtype=dtype, ulps=_correlation_ulps(30), scale=1.)
  tolerance.assert_close(_numpy(out), ref, **bound)
  perfect = _call(mode, metrics.pearson_correlation, a, 3 * a + 1)   # 3 a + 1 rounds too
  tolerance.assert_close(_numpy(perfect), 1.0, **bound)
  anti = _call(mode, metrics.pearson_correlation, a, -a)
  tolerance.assert_close(_numpy(anti), -1.0, **bound)


def _correlation_ulps(n):
  """eps of a correlation of n pairs (relative to 1): the means (n + 1, each centred
  entry's error of the data's size, which is the spread's here), the products' sum (n)
  and the norms' (2 n, halved by their roots), a quotient: 4 n + 8 covers them."""
  return 4 * n + 8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_spearman_correlation_matches_scipy_with_ties(dtype, mode):
  rng = np.random.default_rng(13)
  for n in (2, 7, 200):
    a = rng.integers(0, 4, size=n).astype(dtype)             # many ties
    b = (a + rng.normal(size=n)).astype(dtype)
    if np.ptp(a) == 0:
      a[0] += 1
    out = _call(mode, metrics.spearman_correlation, a, b)
    assert out.dtype == dtype and out.shape == ()
    ref = scipy.stats.spearmanr(np.float64(a), np.float64(b)).statistic
    # A float64 correlation of the (exact) ranks, returned in dtype.
    _assert_float64_then_cast(_numpy(out), ref, dtype, _correlation_ulps(n), scale=1.)
  # Invariant under strictly increasing maps of either argument (pearson is not).
  a = rng.lognormal(sigma=2.0, size=50).astype(dtype)
  b = (a * rng.uniform(0.5, 2.0, size=50)).astype(dtype)
  rho = _numpy(_call(mode, metrics.spearman_correlation, a, b))
  rho_log = _numpy(_call(mode, metrics.spearman_correlation, np.log(a), b ** 3))
  # The same ranks: the same float64 correlation (twice its bound), cast.
  _assert_float64_then_cast(rho, rho_log, dtype, 2 * _correlation_ulps(50), scale=1.)
  _assert_float64_then_cast(_numpy(_call(mode, metrics.spearman_correlation, a, -a)), -1.0,
                            dtype, _correlation_ulps(50), scale=1.)


def test_spearman_correlation_errors():
  with pytest.raises(ValueError, match="same shape"):
    metrics.spearman_correlation(np.ones(4), np.ones(3))
  with pytest.raises(ValueError, match="at least 2"):
    metrics.spearman_correlation([1.0], [2.0])
  with pytest.raises(ValueError, match="NaN or Inf"):
    metrics.spearman_correlation([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
  assert np.isnan(metrics.spearman_correlation(np.ones(5), np.arange(5.0)).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_mean_relative_error(dtype, mode):
  rng = np.random.default_rng(12)
  reference = rng.uniform(0.5, 2.0, size=25).astype(dtype) * rng.choice([-1, 1], size=25)
  reference = reference.astype(dtype)
  estimate = (reference + rng.normal(scale=0.1, size=25)).astype(dtype)
  out = _call(mode, metrics.mean_relative_error, estimate, reference)
  assert out.dtype == dtype and out.shape == ()
  ref = np.mean(np.abs(np.float64(estimate) - reference) / np.abs(np.float64(reference)))
  # Each term a difference (1 eps of |e| + |r|) and a quotient (1), the mean of n = 25
  # (n + 1): relative to the mean of (|e| + |r|) / |r|.
  scale = np.mean((np.abs(np.float64(estimate)) + np.abs(reference)) / np.abs(reference))
  tolerance.assert_close(_numpy(out), ref, dtype=dtype, ulps=25 + 3, scale=scale)
  # Hand-worked: |[1.1, 1.5] - [1, 2]| / [1, 2] = [0.1, 0.25] -> mean 0.175. float32
  # inputs (1.1 rounds): the same bound with n = 2, relative to (2.1 + 1.75) / 2.
  tolerance.assert_close(metrics.mean_relative_error([1.1, 1.5], [1.0, 2.0]).numpy(), 0.175,
                         dtype=np.float32, ulps=2 + 3, scale=(2.1 + 1.75) / 2)


def test_uncertainty_fidelity_matches_numpy_and_scipy():
  """td.metrics.uncertainty_fidelity, the one fidelity every report uses, against NumPy and
  SciPy in float64 (its inputs are cast to float64 first)."""
  rng = np.random.default_rng(3)
  reference = rng.lognormal(size=60).astype(np.float32)
  estimate = (reference * rng.lognormal(sigma=0.5, size=60)).astype(np.float32)
  got = metrics.uncertainty_fidelity(estimate, reference)
  e, r = np.float64(estimate), np.float64(reference)
  assert set(got) == {"pearson", "spearman", "mean_ratio", "relative_l1",
                      "sym_relative_error", "n"} and got["n"] == 60
  # float64 on either side: Pearson from means, n = 60 products and norms (4 n + 8 eps
  # of 1); Spearman on exact ranks (the same, of 1); the ratio of two means of 60 (2 (60 +
  # 1) + 1); sums of 60 terms and a quotient (2 (60 + 1) + 1) of sum|e - r| / sum|r| and
  # of the mean of 60 ratios in [0, 1].
  f64 = dict(dtype=np.float64, scale=1.)
  tolerance.assert_close(got["pearson"], np.corrcoef(e, r)[0, 1], ulps=2 * (4 * 60 + 8),
                         **f64)
  tolerance.assert_close(got["spearman"], scipy.stats.spearmanr(e, r).statistic,
                         ulps=2 * (4 * 60 + 8), **f64)
  tolerance.assert_close(got["mean_ratio"], e.mean() / r.mean(), dtype=np.float64,
                         ulps=2 * (2 * 61 + 1), scale=e.mean() / r.mean())
  l1 = np.abs(e - r).sum() / r.sum()
  tolerance.assert_close(got["relative_l1"], l1, dtype=np.float64, ulps=2 * (2 * 61 + 1),
                         scale=l1)
  tolerance.assert_close(got["sym_relative_error"],
                         np.mean(np.abs(e - r) / (np.abs(e) + np.abs(r))),
                         ulps=2 * (60 + 4), **f64)


def test_uncertainty_fidelity_where_other_errors_are_undefined():
  # Members that agree exactly: a zero reference. The relative L1 is defined whenever the
  # reference is not all zeros, the symmetric error always (0/0 counted as 0); the mean
  # relative error |e - r| / |r| is not (a division by 0).
  got = metrics.uncertainty_fidelity([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])
  assert got["relative_l1"] == 0.5 / 2.0 and got["mean_ratio"] == 1.5 / 2.0
  assert got["sym_relative_error"] == (0.0 + 0.5 / 1.5 + 0.0) / 3
  # Constant inputs have no correlation: None, not NaN (reports are strict JSON).
  constant = metrics.uncertainty_fidelity([0.2, 0.2, 0.2], [0.1, 0.5, 0.9])
  assert constant["pearson"] is None and constant["spearman"] is None
  zeros = metrics.uncertainty_fidelity([0.0, 0.0], [0.0, 0.0])
  assert zeros["relative_l1"] == 0.0 and zeros["mean_ratio"] == 1.0
  assert metrics.uncertainty_fidelity([1.0, 0.0], [0.0, 0.0])["relative_l1"] is None
  for bad, match in ((([1.0, 2.0], [1.0]), "must match"), (([], []), "empty"),
                     (([np.nan, 1.0], [1.0, 1.0]), "finite")):
    with pytest.raises(ValueError, match=match):
      metrics.uncertainty_fidelity(*bad)


# ----------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------

_E = np.ones(4)
_M = np.ones((4, 3))

BAD_CALLS = {
    "rmse batch mismatch": (lambda: metrics.rmse(np.ones(4), np.ones(5)), r"same shape"),
    "rmse empty": (lambda: metrics.rmse(np.ones(0), np.ones(0)), r"\[batch\]"),
    "rmse rank 3": (lambda: metrics.rmse(np.ones((2, 2, 2)), np.ones((2, 2, 2))),
                    r"\[batch\] or \[batch, event\]"),
    "nll variance mismatch": (lambda: metrics.gaussian_nll(_E, _E, np.ones(3)),
                              r"`variance` must have the same shape"),
    "nll empty": (lambda: metrics.gaussian_nll(np.ones(0), np.ones(0), np.ones(0)),
                  r"at least 1"),
    "nll zero variance": (lambda: metrics.gaussian_nll(_E, _E, np.zeros(4)),
                          r"strictly positive"),
    "mixture batch mismatch": (
        lambda: metrics.gaussian_mixture_nll(np.ones(5), _M, _M), r"\[batch, members\]"),
    "mixture event mismatch": (
        lambda: metrics.gaussian_mixture_nll(
            np.ones((4, 2)), np.ones((4, 3, 5)), np.ones((4, 3, 5))),
        r"\[batch, members, event\]"),
    "mixture means rank": (lambda: metrics.gaussian_mixture_nll(_E, _E, _E),
                           r"\[batch, members\]"),
    "mixture variances mismatch": (
        lambda: metrics.gaussian_mixture_nll(_E, _M, np.ones((4, 2))), r"same shape"),
    "mixture no members": (
        lambda: metrics.gaussian_mixture_nll(_E, np.ones((4, 0)), np.ones((4, 0))),
        r"members >= 1"),
    "mixture empty": (
        lambda: metrics.gaussian_mixture_nll(np.ones(0), np.ones((0, 3)), np.ones((0, 3))),
        r"at least 1"),
    "curve batch mismatch": (lambda: metrics.sparsification_curve(_E, np.ones(3)),
                             r"same shape \[batch\]"),
    "curve empty": (lambda: metrics.sparsification_curve(np.ones(0), np.ones(0)),
                    r"\[batch\]"),
    "curve rank 2": (lambda: metrics.sparsification_curve(_M, _M), r"\[batch\]"),
    "curve num_fractions 0": (lambda: metrics.sparsification_curve(_E, _E, 0),
                              r"num_fractions.*>= 1"),
    "error num_fractions -1": (lambda: metrics.sparsification_error(_E, _E, -1),
                               r"num_fractions.*>= 1"),
    "ause num_fractions 0": (lambda: metrics.ause(_E, _E, num_fractions=0),
                             r"ause: `num_fractions`"),
    "ause batch mismatch": (lambda: metrics.ause(_E, np.ones(5)), r"same shape \[batch\]"),
    "curve negative errors": (lambda: metrics.sparsification_curve(-_E, _E),
                              r"non-negative"),
    "pearson mismatch": (lambda: metrics.pearson_correlation(_E, np.ones(3)),
                         r"same shape \[batch\]"),
    "pearson one element": (lambda: metrics.pearson_correlation([1.0], [2.0]),
                            r"at least 2"),
    "mre mismatch": (lambda: metrics.mean_relative_error(_E, np.ones(3)), r"same shape"),
    "mre empty": (lambda: metrics.mean_relative_error(np.ones(0), np.ones(0)),
                  r"at least 1"),
    "mre zero reference": (lambda: metrics.mean_relative_error(_E, [1.0, 0.0, 1.0, 1.0]),
                           r"no zero entries"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_invalid_inputs_raise_value_error(case):
  call, match = BAD_CALLS[case]
  with pytest.raises(ValueError, match=match):
    call()


def test_non_integer_num_fractions_raises_type_error():
  for bad in (10.0, True, "10"):
    with pytest.raises(TypeError, match="num_fractions"):
      metrics.sparsification_curve(_E, _E, bad)


NON_FINITE_CALLS = {
    "rmse": lambda x: metrics.rmse(x, _E),
    "rmse prediction": lambda x: metrics.rmse(_E, x),
    "gaussian_nll mean": lambda x: metrics.gaussian_nll(_E, x, _E),
    "gaussian_nll variance": lambda x: metrics.gaussian_nll(_E, _E, x),
    "gaussian_mixture_nll": lambda x: metrics.gaussian_mixture_nll(x, _M, _M),
    "sparsification_curve": lambda x: metrics.sparsification_curve(x, _E),
    "sparsification_error uncertainty": lambda x: metrics.sparsification_error(_E, x),
    "ause": lambda x: metrics.ause(x, _E),
    "pearson_correlation": lambda x: metrics.pearson_correlation(x, np.arange(4.0)),
    "mean_relative_error": lambda x: metrics.mean_relative_error(_E, x),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE_CALLS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_raise_value_error_eagerly(case, bad):
  x = np.array([1.0, 2.0, bad, 3.0])
  with pytest.raises(ValueError, match="must be finite"):
    NON_FINITE_CALLS[case](x)


@pytest.mark.parametrize("fn", [metrics.rmse, metrics.ause, metrics.pearson_correlation])
def test_non_finite_inputs_raise_in_tf_function(fn):
  graph_fn = tf.function(fn, autograph=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be finite"):
    graph_fn(tf.constant([1.0, np.nan, 3.0]), tf.constant([1.0, 2.0, 4.0]))


# ----------------------------------------------------------------------------------------
# Classification: NumPy references.
# ----------------------------------------------------------------------------------------


def _class_data(dtype, seed, batch=50, classes=4, scale=2.0):
  rng = np.random.default_rng(seed)
  probs = scipy.special.softmax(rng.normal(scale=scale, size=(batch, classes)), axis=-1)
  labels = rng.integers(0, classes, size=batch)
  return labels, probs.astype(dtype)


def ref_accuracy(labels, probs):
  return np.mean(np.argmax(probs, axis=-1) == labels)


def ref_categorical_nll(labels, probs, epsilon=1e-12):
  p = np.float64(probs)[np.arange(len(labels)), labels]
  return -np.mean(np.log(np.maximum(p, epsilon)))


def ref_brier(labels, probs):
  one_hot = np.eye(probs.shape[1])[labels]
  return np.mean(np.sum((np.float64(probs) - one_hot) ** 2, axis=1))


def ref_quantile_edges(confidence, num_bins):
  """Inverted-CDF quantiles in exact integers: for i = 1..B-1 the smallest confidence c
  with #{confidence <= c} / n >= i / B."""
  values = np.sort(confidence)
  at_most = np.searchsorted(values, values, side="right")   # #{confidence <= values[j]}
  n = len(values)
  return np.array([values[np.argmax(at_most * num_bins >= i * n)]
                   for i in range(1, num_bins)])


def ref_calibration(labels, probs, num_bins, binning="equal_width"):
  """Loop over explicit (lower, upper] bins; returns (ece, confidence, accuracy, count)."""
  dtype = probs.dtype.type
  confidence = np.float64(probs.max(axis=1))   # exact copy of the float32/64 values.
  correct = np.argmax(probs, axis=1) == labels
  if binning == "equal_width":
    # i / B rounded to the dtype of probs, as the implementation does.
    interior = np.arange(1, num_bins, dtype=dtype) / dtype(num_bins)
  else:
    interior = ref_quantile_edges(confidence, num_bins)
  edges = np.concatenate([[-np.inf], np.float64(interior), [np.inf]])
  ece, conf, acc, count = 0.0, [], [], []
  for lower, upper in zip(edges[:-1], edges[1:]):
    member = (confidence > lower) & (confidence <= upper)
    n_i = member.sum()
    count.append(n_i)
    if n_i == 0:
      conf.append(0.0)
      acc.append(0.0)
      continue
    conf.append(confidence[member].mean())
    acc.append(correct[member].mean())
    ece += n_i / len(labels) * abs(acc[-1] - conf[-1])
  return ece, np.array(conf), np.array(acc), np.array(count)


def ref_auroc_pairs(labels, scores):
  """Brute force over all (positive, negative) pairs, ties counting 1/2."""
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


def ref_roc_and_average_precision(labels, scores):
  """Loop over the distinct thresholds, descending: (fpr, tpr, average precision)."""
  labels = np.asarray(labels)
  positives, negatives = (labels == 1).sum(), (labels == 0).sum()
  fpr, tpr, ap, recall_prev = [0.0], [0.0], 0.0, 0.0
  for t in np.unique(scores)[::-1]:
    predicted = scores >= t
    tp = (predicted & (labels == 1)).sum()
    fp = (predicted & (labels == 0)).sum()
    fpr.append(fp / negatives)
    tpr.append(tp / positives)
    recall = tp / positives
    ap += (recall - recall_prev) * tp / (tp + fp)
    recall_prev = recall
  return np.array(fpr), np.array(tpr), ap


# ----------------------------------------------------------------------------------------
# accuracy, categorical_nll, categorical_nll_from_logits, brier_score.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_accuracy_nll_brier(dtype, mode):
  labels, probs = _class_data(dtype, seed=20)
  rng = np.random.default_rng(21)
  logits = rng.normal(scale=3.0, size=probs.shape).astype(dtype)

  def all_four(labels, probs, logits):   # one trace per case in "function" mode.
    return (metrics.accuracy(labels, probs), metrics.brier_score(labels, probs),
            metrics.categorical_nll(labels, probs),
            metrics.categorical_nll_from_logits(labels, logits))

  *outs, out = _call(mode, all_four, labels, probs, logits)
  # Means over n = 50 examples (n + 1 eps of the mean |term|) of: 0/1 (exact), a sum of
  # K = 4 squared differences (3 + K eps, positive terms), a log (2 eps of |log p| + 1).
  n, k = probs.shape
  p = np.float64(probs)
  label_p = p[np.arange(n), labels]
  scales = [1., None, np.mean(np.abs(np.log(label_p)) + 1)]
  for out_i, ref, ulps, scale in zip(outs, [ref_accuracy, ref_brier, ref_categorical_nll],
                                     [n + 1, n + 1 + 3 + k, n + 1 + 2], scales):
    assert out_i.dtype == dtype and out_i.shape == (), ref.__name__
    tolerance.assert_close(_numpy(out_i), ref(labels, probs), dtype=dtype, ulps=ulps,
                           scale=scale, err_msg=ref.__name__)
  assert out.dtype == dtype and out.shape == ()
  log_p = scipy.special.log_softmax(np.float64(logits), axis=1)[np.arange(n), labels]
  ref = -np.mean(log_p)
  # Log-softmax entries (eps (|log p| + 2 log K + 2), see test_properties) and their mean.
  tolerance.assert_close(_numpy(out), ref, dtype=dtype, ulps=n + 2,
                         scale=np.mean(np.abs(log_p) + 2 * np.log(k) + 2))


def test_accuracy_hand_worked_and_argmax_ties():
  # Rows 0 and 1 are right, row 2 is wrong; row 3 is a tie [0.5, 0.5], argmax -> class 0.
  probs = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]
  np.testing.assert_allclose(metrics.accuracy([0, 1, 1, 0], probs).numpy(), 0.75,
                             rtol=0, atol=0)
  np.testing.assert_allclose(metrics.accuracy([0, 1, 1, 1], probs).numpy(), 0.5,
                             rtol=0, atol=0)
  # Brier of row [0.9, 0.1] with label 0: 0.1^2 + 0.1^2 = 0.02; perfect one-hot: 0.
  # float32 (list inputs): 0.9 and 0.1 round, two squared differences and their sum: 5
  # eps of the terms (0.01 each), + 1 for the inputs' rounding carried by the square.
  tolerance.assert_close(metrics.brier_score([0], [[0.9, 0.1]]).numpy(), 0.02,
                         dtype=np.float32, ulps=6)
  np.testing.assert_allclose(metrics.brier_score([1], [[0.0, 1.0]]).numpy(), 0.0,
                             rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_is_finite_for_exact_zeros_and_huge_logits(dtype):
  probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype)
  out = metrics.categorical_nll([1, 1], probs)   # row 0 puts exactly 0 on its label.
  # Clipped at 1e-12: (-log(1e-12) + -log(1)) / 2: the clip rounds 1e-12 to the dtype (1
  # eps relative, so 1 eps absolute of the log), the log (2 eps) and the mean (3).
  bound = dict(dtype=dtype, ulps=6)
  tolerance.assert_close(out.numpy(), -np.log(1e-12) / 2, **bound)
  out = metrics.categorical_nll([1, 1], probs, epsilon=1e-3)
  tolerance.assert_close(out.numpy(), -np.log(1e-3) / 2, **bound)
  # Perfect predictions: exactly 0.
  np.testing.assert_allclose(metrics.categorical_nll([0, 1], probs).numpy(), 0.0,
                             rtol=0, atol=0)
  logits = np.array([[1e4, -1e4], [1e4, -1e4], [-1e4, 1e4]], dtype)
  out = metrics.categorical_nll_from_logits([0, 1, 1], logits)
  # -log_softmax: 0, 2e4, 0 -> mean 2e4 / 3: log-softmax entries within
  # eps (|log p| + 2 log K + 2) of 2e4, and a mean of 3 (4).
  assert np.isfinite(out.numpy())
  tolerance.assert_close(out.numpy(), 2e4 / 3, dtype=dtype, ulps=1 + 4,
                         scale=2e4 + 2 * np.log(2) + 2)


# ----------------------------------------------------------------------------------------
# Calibration.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("binning", ["equal_width", "quantile"])
@pytest.mark.parametrize("num_bins", [1, 4, 15])
@pytest.mark.parametrize("batch", [3, 200])
def test_ece_and_calibration_curve_match_numpy(dtype, binning, num_bins, batch):
  labels, probs = _class_data(dtype, seed=30 + batch, batch=batch)
  ref_ece, ref_conf, ref_acc, ref_count = ref_calibration(labels, probs, num_bins, binning)
  ece = metrics.expected_calibration_error(labels, probs, num_bins, binning)
  assert ece.dtype == dtype and ece.shape == ()
  # Sums are accumulated in float64 from the dtype's values: float32 differs by the final
  # rounding of the result. In float64: per-bin sums of n confidences (n eps of them),
  # the gaps |acc - conf| (relative to acc + conf <= 2) and the sum over bins:
  # _ece_ulps64 of 2.
  _assert_float64_then_cast(ece.numpy(), ref_ece, dtype, _ece_ulps64(batch, num_bins),
                            scale=2.)
  conf, acc, count = metrics.calibration_curve(labels, probs, num_bins, binning)
  assert conf.dtype == dtype and acc.dtype == dtype and count.dtype == tf.int64
  assert conf.shape == (num_bins,) and acc.shape == (num_bins,) and count.shape == (num_bins,)
  np.testing.assert_array_equal(count.numpy(), ref_count)
  # A bin's mean confidence (n + 1 eps of it) and accuracy (a count over a count: 1).
  _assert_float64_then_cast(conf.numpy(), ref_conf, dtype, batch + 1)
  _assert_float64_then_cast(acc.numpy(), ref_acc, dtype, 1)
  # ECE is the count-weighted gap of the curve: NumPy sums the bins in `dtype` (B + 3 eps
  # of acc + conf <= 2), on values within the bounds above.
  tolerance.assert_close(
      np.sum(count.numpy() / batch * np.abs(acc.numpy() - conf.numpy())), ece.numpy(),
      dtype=dtype, ulps=num_bins + 3 + 2 * 2, scale=2.)


def _ece_ulps64(n, num_bins):
  """float64 eps of an ECE of n examples in B bins, relative to 2 (acc + conf): the
  bins' confidence sums (n in all), their gaps and the weighted sum over bins (B + 4)."""
  return n + num_bins + 4


def test_quantile_bins_hold_equal_counts_and_match_numpy_quantiles():
  # No ties, n = 1000 = 4 * 250: numpy's inverted-CDF quantiles give the same edges and
  # every bin holds exactly 250 examples.
  labels, probs = _class_data(np.float64, seed=31, batch=1000)
  confidence = probs.max(axis=1)
  edges = np.quantile(confidence, [0.25, 0.5, 0.75], method="inverted_cdf")
  np.testing.assert_array_equal(edges, ref_quantile_edges(confidence, 4))
  _, _, count = metrics.calibration_curve(labels, probs, 4, "quantile")
  np.testing.assert_array_equal(count.numpy(), [250, 250, 250, 250])
  # n = 10 in 3 bins: floor or ceil of 10 / 3 (ceil(10/3) = 4, ceil(20/3) = 7 -> 4, 3, 3).
  _, _, count = metrics.calibration_curve(labels[:10], probs[:10], 3, "quantile")
  np.testing.assert_array_equal(count.numpy(), [4, 3, 3])


def test_ece_hand_worked_example_pins_the_bin_edges():
  # 4 equal-width bins (0, .25], (.25, .5], (.5, .75], (.75, 1]; 0 goes in the first.
  #   row  probs                    label  conf  argmax  correct  bin
  #   a    [0.5, 0.3, 0.2, 0]       0      0.5   0       1        1  (edge .5 -> lower)
  #   b    [0.1, 0.6, 0.3, 0]       2      0.6   1       0        2
  #   c    [0, 0, 0, 1]             3      1.0   3       1        3
  #   d    [0.75, 0.25, 0, 0]       1      0.75  0       0        2  (edge .75 -> lower)
  #   e    [0, 0, 0, 0]             0      0.0   0       1        0  (conf 0 -> first)
  #   f    [0.25, 0.25, 0.25, 0.25] 0      0.25  0       1        0  (edge .25 -> lower)
  # bin 0: e, f  conf sum 0.25, correct 2 -> |2 - 0.25|   = 1.75
  # bin 1: a     conf sum 0.5,  correct 1 -> |1 - 0.5|    = 0.5
  # bin 2: b, d  conf sum 1.35, correct 0 -> |0 - 1.35|   = 1.35
  # bin 3: c     conf sum 1.0,  correct 1 -> 0
  # ECE = (1.75 + 0.5 + 1.35 + 0) / 6 = 0.6. (With [lower, upper) bins it would be 2.6/6.)
  # Quantile, 3 bins: sorted conf [0, .25, .5, .6, .75, 1], edges = the ceil(6/3) = 2nd
  # and ceil(12/3) = 4th smallest = .25, .6 -> bins {e, f}, {a, b}, {d, c}:
  # (|2 - .25| + |1 - 1.1| + |1 - 1.75|) / 6 = 2.6 / 6.
  probs = np.array([[0.5, 0.3, 0.2, 0], [0.1, 0.6, 0.3, 0], [0, 0, 0, 1],
                    [0.75, 0.25, 0, 0], [0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
  labels = [0, 2, 3, 1, 0, 0]
  for dtype in DTYPES:
    p = probs.astype(dtype)
    # The inputs round to dtype (0.1, 0.3, 0.6, ...: 1 eps each), then the float64
    # bound of an ECE of 6 examples in B bins and the final cast.
    np.testing.assert_allclose(metrics.expected_calibration_error(labels, p, 4).numpy(),
                               0.6, rtol=0, atol=tolerance.atol(dtype=dtype, ulps=1 + 2,
                                                                scale=2.)
                               + tolerance.atol(dtype=np.float64,
                                                ulps=_ece_ulps64(6, 4), scale=2.))
    conf, acc, count = metrics.calibration_curve(labels, p, 4)
    np.testing.assert_array_equal(count.numpy(), [2, 1, 2, 1])
    # Means of <= 2 rounded confidences: 1 eps each, the sum and the division, the cast.
    tolerance.assert_close(conf.numpy(), [0.125, 0.5, 0.675, 1.0], dtype=dtype, ulps=4)
    np.testing.assert_allclose(acc.numpy(), [1, 1, 0, 1], rtol=0, atol=0)
    np.testing.assert_allclose(
        metrics.expected_calibration_error(labels, p, 3, "quantile").numpy(), 2.6 / 6,
        rtol=0, atol=tolerance.atol(dtype=dtype, ulps=1 + 2, scale=2.)
        + tolerance.atol(dtype=np.float64, ulps=_ece_ulps64(6, 3), scale=2.))
    _, _, count = metrics.calibration_curve(labels, p, 3, "quantile")
    np.testing.assert_array_equal(count.numpy(), [2, 2, 2])


def test_quantile_bins_keep_ties_together():
  # Confidences [.9, .9, .9, .9, .9, .6]: 3 quantile edges at the 2nd and 4th smallest
  # (.9, .9) -> bin 0 holds all six, bins 1 and 2 are empty (ECE = one global bin).
  probs = np.array([[0.9, 0.1]] * 5 + [[0.6, 0.4]])
  labels = np.array([0, 0, 0, 1, 1, 0])
  _, _, count = metrics.calibration_curve(labels, probs, 3, "quantile")
  np.testing.assert_array_equal(count.numpy(), [6, 0, 0])
  # acc = 4/6, conf = (4.5 + 0.6) / 6 = 0.85.
  # float64: the ECE bound of 6 examples in 3 bins.
  tolerance.assert_close(
      metrics.expected_calibration_error(labels, probs, 3, "quantile").numpy(),
      0.85 - 4 / 6, dtype=np.float64, ulps=_ece_ulps64(6, 3), scale=2.)


def _calibrated_data(rng, n, classes):
  """Top-class confidence c ~ U(1/classes + .05, 1), correct with probability c."""
  confidence = rng.uniform(1 / classes + 0.05, 1.0, size=n)
  predicted = rng.integers(0, classes, size=n)
  probs = np.tile(((1 - confidence) / (classes - 1))[:, None], [1, classes])
  probs[np.arange(n), predicted] = confidence
  correct = rng.uniform(size=n) < confidence
  other = (predicted + rng.integers(1, classes, size=n)) % classes
  return np.where(correct, predicted, other), probs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("binning, num_bins", [("equal_width", 15), ("quantile", 4),
                                               ("quantile", 15)])
def test_ece_calibrated_is_small_and_random_is_large(dtype, binning, num_bins):
  rng = np.random.default_rng(40)
  labels, probs = _calibrated_data(rng, 200_000, 10)
  ece = metrics.expected_calibration_error(labels, probs.astype(dtype), num_bins, binning)
  # Within-bin accuracy is unbiased for the mean confidence; the noise per bin is
  # ~sqrt(c(1-c)/n_i) <= sqrt(.25 / 13000) ~ 0.004 even with 15 bins, so ECE ~ 0.003.
  assert ece.numpy() < 0.01, ece.numpy()
  # Random logits, random labels: confidence ~0.8, accuracy ~0.1 -> ECE ~0.7.
  logits = rng.normal(scale=4.0, size=(5000, 10))
  probs = scipy.special.softmax(logits, axis=-1).astype(dtype)
  labels = rng.integers(0, 10, size=5000)
  ece = metrics.expected_calibration_error(labels, probs, num_bins, binning)
  assert ece.numpy() > 0.2, ece.numpy()


@pytest.mark.parametrize("binning", ["equal_width", "quantile"])
def test_calibration_in_tf_function_with_dynamic_shapes(binning):
  spec = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)]
  ece_fn = tf.function(lambda l, p: metrics.expected_calibration_error(l, p, 5, binning),
                       input_signature=spec, autograph=False)
  curve_fn = tf.function(lambda l, p: metrics.calibration_curve(l, p, 5, binning),
                         input_signature=spec, autograph=False)
  for batch, classes in [(7, 3), (120, 5)]:
    labels, probs = _class_data(np.float32, seed=batch, batch=batch, classes=classes)
    ref_ece, ref_conf, ref_acc, ref_count = ref_calibration(labels, probs, 5, binning)
    # As in test_ece_and_calibration_curve_match_numpy.
    _assert_float64_then_cast(ece_fn(labels.astype(np.int32), probs).numpy(), ref_ece,
                              np.float32, _ece_ulps64(batch, 5), scale=2.)
    conf, acc, count = curve_fn(labels.astype(np.int32), probs)
    np.testing.assert_array_equal(count.numpy(), ref_count)
    _assert_float64_then_cast(conf.numpy(), ref_conf, np.float32, batch + 1)
    _assert_float64_then_cast(acc.numpy(), ref_acc, np.float32, 1)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"class indices in \[0, classes\)"):
    ece_fn(np.array([0, 3], np.int32), np.full((2, 3), 0.3, np.float32))
  with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
    ece_fn(np.array([0, 1, 2], np.int32), np.full((2, 3), 0.3, np.float32))
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
    ece_fn(np.zeros([0], np.int32), np.zeros((0, 3), np.float32))
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be finite"):
    ece_fn(np.array([0, 1], np.int32), np.array([[np.nan, 0.5], [0.5, 0.5]], np.float32))


# ----------------------------------------------------------------------------------------
# Streaming ExpectedCalibrationError.
# ----------------------------------------------------------------------------------------


def _batches(n, sizes):
  edges = np.cumsum([0] + sizes)
  assert edges[-1] == n
  return list(zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_streaming_ece_equals_one_shot(dtype, mode):
  labels, probs = _class_data(dtype, seed=50, batch=500, classes=5)
  metric = metrics.ExpectedCalibrationError(num_bins=10)
  update = metric.update_state
  if mode == "function":   # one trace for all the uneven batch sizes.

    def update_fn(y_true, y_pred):
      metric.update_state(y_true, y_pred)   # Keras' wrapper returns an Operation.

    update = tf.function(
        update_fn, input_signature=[tf.TensorSpec([None, 1], tf.int64),
                                    tf.TensorSpec([None, 5], dtype)], autograph=False)
  for start, stop in _batches(500, [1, 0, 37, 300, 162]):   # includes an empty batch.
    update(labels[start:stop, None], probs[start:stop])
  one_shot = metrics.expected_calibration_error(labels, probs, 10)
  # The metric's result is float32; its float64 state sums what one-shot sums, in other
  # groups: both within the float64 ECE bound, each cast once (float32; dtype).
  np.testing.assert_allclose(metric.result().numpy(), one_shot.numpy(), rtol=0, atol=(
      tolerance.atol(one_shot.numpy(), dtype=np.float32, ulps=1)
      + tolerance.atol(one_shot.numpy(), dtype=dtype, ulps=1)
      + tolerance.atol(dtype=np.float64, ulps=2 * _ece_ulps64(500, 10), scale=2.)))
  metric.reset_state()
  np.testing.assert_allclose(metric.result().numpy(), 0.0, rtol=0, atol=0)


def test_streaming_ece_from_logits_and_sample_weight():
  rng = np.random.default_rng(51)
  logits = rng.normal(scale=3.0, size=(60, 4))
  labels = rng.integers(0, 4, size=60)
  probs = scipy.special.softmax(logits, axis=-1)
  metric = metrics.ExpectedCalibrationError(num_bins=8, from_logits=True)
  metric.update_state(labels[:25], logits[:25])
  metric.update_state(labels[25:], logits[25:])
  # The metric's float32 softmax of K = 4 (K + 3 eps of each confidence) moves each bin's
  # mean confidence, so the ECE, by that much (as long as no confidence sits within
  # rounding of a bin edge, which would move it by a whole example); + the float64 sums
  # and the final cast.
  ref = ref_calibration(labels, probs, 8)[0]
  np.testing.assert_allclose(metric.result().numpy(), ref, rtol=0, atol=(
      tolerance.atol(dtype=np.float32, ulps=4 + 3 + 1, scale=1.)
      + tolerance.atol(dtype=np.float64, ulps=_ece_ulps64(60, 8), scale=2.)))
  # Integer weights equal repeating the examples (weight 0 drops one).
  weights = rng.integers(0, 4, size=60)
  metric = metrics.ExpectedCalibrationError(num_bins=8)
  metric.update_state(labels[:30], probs[:30], sample_weight=weights[:30, None])
  metric.update_state(labels[30:], probs[30:], sample_weight=weights[30:])
  ref = ref_calibration(np.repeat(labels, weights), np.repeat(probs, weights, axis=0), 8)
  # float64 probabilities rounded to the metric's float32 (1 eps of each confidence), the
  # float64 weighted sums (as many terms as the repeated examples) and the final cast.
  np.testing.assert_allclose(metric.result().numpy(), ref[0], rtol=0, atol=(
      tolerance.atol(dtype=np.float32, ulps=1 + 1, scale=1.)
      + tolerance.atol(dtype=np.float64, ulps=_ece_ulps64(weights.sum(), 8), scale=2.)))


def test_streaming_ece_config_round_trip_and_keras_model(tmp_path):
  metric = metrics.ExpectedCalibrationError(num_bins=7, from_logits=True, name="my_ece")
  config = metric.get_config()
  assert config == {"num_bins": 7, "from_logits": True, "name": "my_ece"}
  clone = metrics.ExpectedCalibrationError.from_config(config)
  assert clone.get_config() == config
  restored = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(metric))
  assert type(restored) is metrics.ExpectedCalibrationError
  assert restored.get_config() == config
  # In a compiled model (graph mode, uneven last batch) and after save/load.
  rng = np.random.default_rng(52)
  x = rng.normal(size=(45, 2)).astype(np.float32)
  y = rng.integers(0, 3, size=(45, 1))
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
  model.compile(loss="sparse_categorical_crossentropy",
                metrics=[metrics.ExpectedCalibrationError(num_bins=5)])
  result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
  probs = model.predict(x, verbose=0)
  expected = metrics.expected_calibration_error(y[:, 0], probs, 5).numpy()
  # evaluate() computes the probabilities again: Dense(3) on 2 inputs and a softmax of 3,
  # (2 + 2) + (3 + 3) eps of each confidence (unless one sits within rounding of a bin
  # edge), + the float64 sums and the final casts.
  atol = (tolerance.atol(dtype=np.float32, ulps=10 + 2, scale=1.)
          + tolerance.atol(dtype=np.float64, ulps=2 * _ece_ulps64(45, 5), scale=2.))
  np.testing.assert_allclose(result["ece"], expected, rtol=0, atol=atol)
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  reloaded = loaded.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
  np.testing.assert_allclose(reloaded["ece"], expected, rtol=0, atol=atol)


# ----------------------------------------------------------------------------------------
# AUROC, AUPR, ROC curve, detection.
# ----------------------------------------------------------------------------------------


def _binary_data(seed, n=80, tied=False):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, size=n)
  labels[:2] = [0, 1]
  if tied:   # few distinct values: heavy ties within and across classes.
    scores = rng.integers(0, 5, size=n) + labels
  else:
    scores = rng.normal(size=n) + labels
  return labels, scores


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
@pytest.mark.parametrize("mode, tied", [("eager", False), ("eager", True),
                                        ("function", True)])   # traces are slow.
def test_auroc_aupr_roc_match_references(dtype, mode, tied):
  labels, scores = _binary_data(60, tied=tied)
  scores = scores.astype(dtype)
  out_dtype = np.float32 if dtype == np.int64 else dtype

  def all_three(labels, scores):   # one trace per case in "function" mode.
    return (metrics.auroc(labels, scores), metrics.aupr(labels, scores),
            metrics.roc_curve(labels, scores))

  auroc, aupr, (fpr, tpr) = _call(mode, all_three, labels, scores)
  assert auroc.dtype == out_dtype and auroc.shape == ()
  # AUROC: exact integer counts, one float64 division (the reference's too), a cast.
  _assert_float64_then_cast(_numpy(auroc), ref_auroc_pairs(labels, scores), out_dtype, 2)
  pos, neg = np.float64(scores[labels == 1]), np.float64(scores[labels == 0])
  u = scipy.stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
  _assert_float64_then_cast(_numpy(auroc), u / (len(pos) * len(neg)), out_dtype, 2)
  ref_fpr, ref_tpr, ref_ap = ref_roc_and_average_precision(labels, scores)
  assert aupr.dtype == out_dtype and aupr.shape == ()
  # AP: a float64 sum of <= n = 80 positive terms (recall step x precision) on either
  # side, n + 3 eps of it each; a cast.
  _assert_float64_then_cast(_numpy(aupr), ref_ap, out_dtype, 2 * (80 + 3))
  assert fpr.dtype == out_dtype and tpr.dtype == out_dtype
  # Count over count: one float64 division on either side, a cast.
  _assert_float64_then_cast(_numpy(fpr), ref_fpr, out_dtype, 2)
  _assert_float64_then_cast(_numpy(tpr), ref_tpr, out_dtype, 2)
  # The trapezoid area under the curve is the AUROC: NumPy's trapezoid in out_dtype over
  # <= n + 1 points (n + 4 eps of the area's positive terms, <= 1), on the rounded rates.
  tolerance.assert_close(np.trapezoid(_numpy(tpr), _numpy(fpr)), _numpy(auroc),
                         dtype=out_dtype, ulps=80 + 4 + 4, scale=1.)


def test_auroc_aupr_match_sklearn_if_available():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  for tied in (False, True):
    labels, scores = _binary_data(61, n=300, tied=tied)
    scores = np.float64(scores)
    # scikit-learn: a float64 trapezoid / step sum over <= n = 300 thresholds of rates it
    # divides in float64 (n + 4 eps of the area, <= 1); ours as above.
    tolerance.assert_close(metrics.auroc(labels, scores).numpy(),
                           sklearn_metrics.roc_auc_score(labels, scores), dtype=np.float64,
                           ulps=300 + 4 + 2, scale=1.)
    tolerance.assert_close(metrics.aupr(labels, scores).numpy(),
                           sklearn_metrics.average_precision_score(labels, scores),
                           dtype=np.float64, ulps=2 * (300 + 4), scale=1.)


def test_auroc_aupr_hand_worked():
  # labels [0, 1, 1, 0], scores [.1, .5, .5, .5]: each positive beats .1 (1) and ties the
  # negative .5 (1/2) -> AUROC = 2 * 1.5 / (2 * 2) = 3/4. Thresholds .5, .1:
  # (TP, FP) = (2, 1), (2, 2) -> R = 1, 1; P = 2/3, 1/2 -> AP = 1 * 2/3 + 0 * 1/2 = 2/3.
  # ROC: (0, 0), (1/2, 1), (1, 1).
  labels, scores = [0, 1, 1, 0], np.array([0.1, 0.5, 0.5, 0.5])
  np.testing.assert_allclose(metrics.auroc(labels, scores).numpy(), 0.75, rtol=0, atol=0)
  # float64: a sum of two terms and a division by the positives, 4 eps.
  tolerance.assert_close(metrics.aupr(labels, scores).numpy(), 2 / 3, dtype=np.float64,
                         ulps=4)
  fpr, tpr = metrics.roc_curve(labels, scores)
  np.testing.assert_allclose(fpr.numpy(), [0, 0.5, 1], rtol=0, atol=0)
  np.testing.assert_allclose(tpr.numpy(), [0, 1, 1], rtol=0, atol=0)
  # Perfect, reversed and constant rankings; infinite scores sort fine; bool labels.
  np.testing.assert_allclose(metrics.auroc([0, 0, 1], [1, 2, 3]).numpy(), 1.0, rtol=0,
                             atol=0)
  np.testing.assert_allclose(metrics.auroc([0, 0, 1], [3, 2, 1]).numpy(), 0.0, rtol=0,
                             atol=0)
  np.testing.assert_allclose(metrics.auroc([0, 1, 1], [7, 7, 7]).numpy(), 0.5, rtol=0,
                             atol=0)
  np.testing.assert_allclose(
      metrics.auroc([False, True, True], [-np.inf, np.inf, 0.0]).numpy(), 1.0, rtol=0,
      atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_misclassification_and_ood_detection(dtype):
  labels, probs = _class_data(dtype, seed=70, batch=120)
  uncertainty = -probs.max(axis=1)          # negative confidence: higher = less certain.
  out = metrics.misclassification_detection(labels, probs, uncertainty)
  assert set(out) == {"auroc", "aupr"}
  wrong = (np.argmax(probs, axis=1) != labels).astype(int)
  _, _, ref_ap = ref_roc_and_average_precision(wrong, uncertainty)
  # As in test_auroc_aupr_roc_match_references: AUROC 2 float64 eps, AP 2 (n + 3), n = 120.
  for key, ref, ulps in [("auroc", ref_auroc_pairs(wrong, uncertainty), 2),
                         ("aupr", ref_ap, 2 * (120 + 3))]:
    assert out[key].dtype == dtype and out[key].shape == ()
    _assert_float64_then_cast(out[key].numpy(), ref, dtype, ulps, err_msg=key)
  rng = np.random.default_rng(71)
  in_scores = rng.normal(size=40).astype(dtype)
  out_scores = (rng.normal(size=25) + 1).astype(dtype)
  out = metrics.ood_detection(in_scores, out_scores)
  labels = np.r_[np.zeros(40, int), np.ones(25, int)]
  scores = np.r_[in_scores, out_scores]
  _, _, ref_ap = ref_roc_and_average_precision(labels, scores)
  for key, ref, ulps in [("auroc", ref_auroc_pairs(labels, scores), 2),
                         ("aupr", ref_ap, 2 * (65 + 3))]:
    assert out[key].dtype == dtype and out[key].shape == ()
    _assert_float64_then_cast(out[key].numpy(), ref, dtype, ulps, err_msg=key)


def test_detection_in_tf_function_with_dynamic_shapes():
  spec = tf.TensorSpec([None], tf.float64)
  auroc_fn = tf.function(metrics.auroc, input_signature=[tf.TensorSpec([None], tf.int64),
                                                          spec], autograph=False)
  ood_fn = tf.function(metrics.ood_detection, input_signature=[spec, spec],
                       autograph=False)
  for n in (5, 50):
    labels, scores = _binary_data(n, n=n, tied=True)
    scores = np.float64(scores)
    # float64 AUROC: one division on either side.
    tolerance.assert_close(auroc_fn(labels, scores).numpy(), ref_auroc_pairs(labels, scores),
                           dtype=np.float64, ulps=2)
    out = ood_fn(scores[:3], scores[3:])
    ref_labels = np.r_[np.zeros(3, int), np.ones(n - 3, int)]
    tolerance.assert_close(out["auroc"].numpy(), ref_auroc_pairs(ref_labels, scores),
                           dtype=np.float64, ulps=2)
  with pytest.raises(tf.errors.InvalidArgumentError, match="both classes"):
    auroc_fn(np.ones(4, np.int64), np.arange(4.0))
  with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
    auroc_fn(np.array([0, 1]), np.arange(3.0))
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
    ood_fn(np.zeros(0), np.arange(3.0))


# ----------------------------------------------------------------------------------------
# Classification errors.
# ----------------------------------------------------------------------------------------

_L = np.array([0, 1, 2, 1])
_P = np.full((4, 3), 1 / 3)

CLASSIFICATION_BAD_CALLS = {
    "one-hot labels": (lambda: metrics.accuracy(np.eye(3)[[0, 1, 2, 1]], _P), r"one-hot"),
    "probs rank 1": (lambda: metrics.brier_score(_L, np.ones(4)),
                     r"`probs` must have shape \[batch, classes\]"),
    "batch mismatch": (lambda: metrics.categorical_nll(_L, _P[:3]), r"same batch size"),
    "label too large": (lambda: metrics.accuracy([0, 1, 3, 1], _P),
                        r"class indices in \[0, classes\) = \[0, 3\)"),
    "negative label": (lambda: metrics.expected_calibration_error([0, -1, 2, 1], _P),
                       r"\[0, 3\)"),
    "classes mismatch": (lambda: metrics.calibration_curve(_L, _P[:, :2]), r"\[0, 2\)"),
    "non-integer labels": (lambda: metrics.accuracy([0.0, 1.5, 2.0, 1.0], _P),
                           r"integer class indices"),
    "nan probs": (lambda: metrics.expected_calibration_error(
        _L, np.where(np.eye(4, 3) > 0, np.nan, _P)), r"`probs` must be finite"),
    "probs above 1": (lambda: metrics.brier_score(_L, _P + 0.7), r"in \[0, 1\]"),
    "negative probs": (lambda: metrics.categorical_nll(_L, _P - 0.5), r"in \[0, 1\]"),
    "empty batch": (lambda: metrics.expected_calibration_error(np.zeros(0, int),
                                                               np.zeros((0, 3))),
                    r"at least 1"),
    "zero classes": (lambda: metrics.accuracy(_L, np.zeros((4, 0))), r"classes >= 1"),
    "num_bins 0": (lambda: metrics.expected_calibration_error(_L, _P, 0),
                   r"`num_bins` must be >= 1"),
    "bad binning": (lambda: metrics.calibration_curve(_L, _P, binning="uniform"),
                    r"'equal_width' or 'quantile'"),
    "bad epsilon": (lambda: metrics.categorical_nll(_L, _P, epsilon=-1.0), r"epsilon"),
    "inf logits": (lambda: metrics.categorical_nll_from_logits(_L, _P + np.inf),
                   r"`logits` must be finite"),
    "auroc one class": (lambda: metrics.auroc([1, 1, 1], [0.1, 0.2, 0.3]),
                        r"both classes"),
    "aupr one class": (lambda: metrics.aupr([0, 0], [0.1, 0.2]), r"both classes"),
    "roc one class": (lambda: metrics.roc_curve([0, 0], [0.1, 0.2]), r"both classes"),
    "auroc non-binary": (lambda: metrics.auroc([0, 1, 2], [0.1, 0.2, 0.3]),
                         r"must be binary"),
    "auroc nan scores": (lambda: metrics.auroc([0, 1], [0.1, np.nan]), r"NaN"),
    "auroc size mismatch": (lambda: metrics.auroc([0, 1], [0.1, 0.2, 0.3]),
                            r"same shape \[batch\]"),
    "auroc empty": (lambda: metrics.auroc(np.zeros(0, int), np.zeros(0)), r"at least 1"),
    "auroc scores rank 2": (lambda: metrics.aupr([0, 1], [[0.1, 0.2]]), r"\[batch\]"),
    "misclassification all correct": (
        lambda: metrics.misclassification_detection([0, 1], np.eye(2), [0.1, 0.2]),
        r"both misclassified and correctly classified"),
    "misclassification size": (
        lambda: metrics.misclassification_detection(_L, _P, np.ones(3)),
        r"`uncertainty` must have the same shape"),
    "ood empty": (lambda: metrics.ood_detection(np.zeros(0), [1.0]), r"\[batch_in\]"),
    "ood rank 2": (lambda: metrics.ood_detection([1.0], np.ones((2, 2))),
                   r"\[batch_out\]"),
    "metric label out of range": (
        lambda: metrics.ExpectedCalibrationError().update_state([[0], [3]], _P[:2]),
        r"`y_true` must hold class indices"),
    "metric probs rank": (
        lambda: metrics.ExpectedCalibrationError().update_state([0, 1], [0.5, 0.5]),
        r"`y_pred` must have shape \[batch, classes\]"),
    "metric negative weight": (
        lambda: metrics.ExpectedCalibrationError().update_state([0, 1], _P[:2],
                                                                [1.0, -1.0]),
        r"non-negative"),
    "metric num_bins": (lambda: metrics.ExpectedCalibrationError(num_bins=0), r">= 1"),
}


@pytest.mark.parametrize("case", sorted(CLASSIFICATION_BAD_CALLS))
def test_classification_invalid_inputs_raise_value_error(case):
  call, match = CLASSIFICATION_BAD_CALLS[case]
  with pytest.raises(ValueError, match=match):
    call()


def test_non_integer_num_bins_raises_type_error():
  for bad in (15.0, True, "15"):
    with pytest.raises(TypeError, match="num_bins"):
      metrics.expected_calibration_error(_L, _P, bad)
  with pytest.raises(TypeError, match="num_bins"):
    metrics.ExpectedCalibrationError(num_bins=2.5)


def test_classification_names_are_public():
  for name in ["accuracy", "categorical_nll", "categorical_nll_from_logits", "brier_score",
               "expected_calibration_error", "calibration_curve", "ExpectedCalibrationError",
               "roc_curve", "auroc", "aupr", "misclassification_detection",
               "ood_detection"]:
    assert name in metrics.__all__ and callable(getattr(metrics, name)), name


# ---------------------------------------------------------------------------------------
# Temperature scaling and DEE
# ---------------------------------------------------------------------------------------


def test_deep_ensemble_equivalent_against_hand_values():
  curve = [0.50, 0.40, 0.35, 0.33]        # NLL of deep ensembles of 1, 2, 3, 4 members
  # 0.37 lies between sizes 2 (0.40) and 3 (0.35): 2 + (0.40 - 0.37) / (0.40 - 0.35) = 2.6.
  # float64 interpolation: two differences of values ~0.4 (each 1 eps of 0.4, the
  # decimal inputs 1 more), a quotient and a sum: within 16 eps of their sizes
  # (0.4 / 0.05 = 8 times the result's unit, so relative to 8 + the result 3).
  def approx(value):
    return pytest.approx(value, rel=0, abs=tolerance.atol(dtype=np.float64, ulps=16,
                                                          scale=8 + 3))
  assert metrics.deep_ensemble_equivalent(0.37, curve) == approx(2.6)
  assert metrics.deep_ensemble_equivalent(0.40, curve) == approx(2.0)
  assert metrics.deep_ensemble_equivalent(0.45, curve) == approx(1.5)
  assert metrics.deep_ensemble_equivalent(0.60, curve) == 1.0     # worse than one member
  assert metrics.deep_ensemble_equivalent(0.30, curve) == float("inf")
  with pytest.raises(ValueError, match="deep_ensemble_equivalent"):
    metrics.deep_ensemble_equivalent(float("nan"), curve)


def test_temperature_scaling_recovers_a_known_temperature():
  rng = np.random.default_rng(0)
  true_logits = rng.normal(scale=3.0, size=(20000, 5))
  p = np.exp(true_logits - true_logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  labels = np.array([rng.choice(5, p=row) for row in p])
  # The model reports logits 2x too sharp: the best temperature is 2 (within sampling
  # noise of 2e4 labels, a few percent).
  t = metrics.optimal_temperature(labels, 2.0 * true_logits)
  assert t == pytest.approx(2.0, rel=0.05)
  # Calibrated NLL is never worse than the raw NLL, and equals it at T = 1.
  raw = float(metrics.categorical_nll_from_logits(labels, 2.0 * true_logits))
  # Two float64 means of n = 2e4 log-softmax entries (TF's and NumPy's): each within
  # (n + 2) eps of mean(|log p| + 2 log K + 2).
  log_p = scipy.special.log_softmax(2.0 * true_logits, axis=1)[np.arange(20000), labels]
  rounding = tolerance.atol(dtype=np.float64, ulps=2 * (20000 + 2),
                            scale=np.mean(np.abs(log_p) + 2 * np.log(5) + 2))
  assert metrics.calibrated_nll(labels, 2.0 * true_logits) <= raw + rounding
  assert metrics.calibrated_nll(labels, 2.0 * true_logits, 1.0) == pytest.approx(
      raw, rel=0, abs=rounding)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
    metrics.optimal_temperature(np.full(3, 5), true_logits[:3])


def test_cross_validated_nll_fits_on_one_half_and_scores_the_other():
  rng = np.random.default_rng(8)
  logits = rng.normal(size=(400, 5)) * 3
  labels = np.array([rng.choice(5, p=np.exp(l / 3) / np.exp(l / 3).sum()) for l in logits])
  got = metrics.cross_validated_nll(labels, logits, repeats=2, seed=4)
  order_rng = np.random.default_rng(4)
  total = 0.
  for _ in range(2):
    order = order_rng.permutation(400)
    a, b = order[:200], order[200:]
    for fit, score in ((a, b), (b, a)):
      t = metrics.optimal_temperature(labels[fit], logits[fit])
      total += metrics.calibrated_nll(labels[score], logits[score], t) * 200
  # The library sums the same four float64 values in the same order: at most the sum's
  # and the division's rounding (5 eps).
  assert got == pytest.approx(total / 800, rel=0, abs=tolerance.atol(
      total / 800, dtype=np.float64, ulps=5))
  # Over-confident logits (true T = 3): the fitted T helps a lot over T = 1 ...
  assert got < metrics.categorical_nll(labels, scipy.special.softmax(logits, axis=-1)) - 0.3
  # ... and held-out fitting cannot beat fitting on the scored examples by much.
  assert got >= metrics.calibrated_nll(labels, logits) - 0.01
  with pytest.raises(ValueError, match=">= 2 examples"):
    metrics.cross_validated_nll(labels[:1], logits[:1])
