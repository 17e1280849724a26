"""Tests of tfp_distill.metrics against independent NumPy/SciPy references."""

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from tfp_distill import metrics

DTYPES = [np.float32, np.float64]
MODES = ["eager", "function"]
# Tolerances of a float32 / float64 computation against a float64 reference.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


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
  np.testing.assert_allclose(_numpy(out), ref_rmse(y, p), **TOL[dtype])


def test_rmse_numpy_and_list_inputs():
  y = np.array([1.0, 2.0, 4.0])
  out = metrics.rmse(y, [1.0, 1.0, 1.0])   # float64 array wins over the Python list.
  assert tf.is_tensor(out) and out.dtype == tf.float64
  np.testing.assert_allclose(out.numpy(), np.sqrt(10.0 / 3.0), rtol=1e-12, atol=0)
  out = metrics.rmse([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
  assert out.dtype == tf.float32
  np.testing.assert_allclose(out.numpy(), np.sqrt(10.0 / 3.0), rtol=1e-6, atol=0)


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
  np.testing.assert_allclose(_numpy(out), ref_gaussian_nll(y, mean, variance), **TOL[dtype])


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
  np.testing.assert_allclose(
      _numpy(out), ref_gaussian_mixture_nll(y, means, variances), **TOL[dtype])


def test_gaussian_mixture_nll_far_tail_is_finite():
  # Every member puts ~exp(-5000) density on y: a naive log(mean(exp)) would give inf.
  y = np.array([100.0, -100.0])
  means = np.array([[0.0, 1.0], [0.0, -1.0]])
  variances = np.ones((2, 2))
  out = metrics.gaussian_mixture_nll(y, means, variances)
  np.testing.assert_allclose(
      out.numpy(), ref_gaussian_mixture_nll(y, means, variances), rtol=1e-12, atol=0)
  out32 = metrics.gaussian_mixture_nll(*(np.float32(a) for a in (y, means, variances)))
  assert np.isfinite(out32.numpy())
  np.testing.assert_allclose(
      out32.numpy(), ref_gaussian_mixture_nll(y, means, variances), rtol=1e-5, atol=0)


def test_gaussian_mixture_nll_one_member_is_gaussian_nll():
  y, mean, variance = _data(np.float64, seed=4)
  mixture = metrics.gaussian_mixture_nll(y, mean[:, None], variance[:, None])
  single = metrics.gaussian_nll(y, mean, variance)
  np.testing.assert_allclose(mixture.numpy(), single.numpy(), rtol=1e-12, atol=1e-12)


def test_gaussian_mixture_nll_identical_members_is_gaussian_nll():
  y, mean, variance = _data(np.float64, seed=5)
  mixture = metrics.gaussian_mixture_nll(
      y, np.tile(mean[:, None], [1, 4]), np.tile(variance[:, None], [1, 4]))
  single = metrics.gaussian_nll(y, mean, variance)
  np.testing.assert_allclose(mixture.numpy(), single.numpy(), rtol=1e-12, atol=1e-12)


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
  np.testing.assert_allclose(_numpy(fractions), ref_f, rtol=1e-6, atol=0)
  np.testing.assert_allclose(_numpy(curve), ref_c, **TOL[dtype])
  # Nothing removed at fraction 0: the curve starts at exactly 1 (up to rounding).
  np.testing.assert_allclose(_numpy(curve)[0], 1.0, rtol=1e-6, atol=0)


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
  np.testing.assert_allclose(_numpy(fractions), ref_f, rtol=1e-6, atol=0)
  np.testing.assert_allclose(_numpy(error), model - oracle, **TOL[dtype])
  out = _call(mode, metrics.ause, errors, uncertainty, num_fractions=20)
  assert out.dtype == dtype and out.shape == ()
  np.testing.assert_allclose(_numpy(out), ref_ause(errors, uncertainty, 20), **TOL[dtype])


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
  np.testing.assert_allclose(fractions.numpy(), [0, 0.25, 0.5, 0.75], rtol=0, atol=1e-7)
  np.testing.assert_allclose(model.numpy(), [1, 4 / 3, 5 / 4, 1 / 2], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(oracle.numpy(), [1, 2 / 3, 1 / 4, 0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(error.numpy(), [0, 2 / 3, 1, 1 / 2], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
      metrics.ause(errors, uncertainty, 4).numpy(), 23 / 48, rtol=1e-6, atol=1e-7)


def test_ties_are_broken_by_a_stable_sort():
  # u = [0.5, 0.5, 0.1, 0.1]: stable order keeps indices 0, 1, 2, 3 -> sorted e [1, 4, 0, 3]
  #   kept means [8/4, 7/3, 3/2, 3] / 2 = [1, 7/6, 3/4, 3/2]
  errors = np.array([1.0, 4.0, 0.0, 3.0])
  _, curve = metrics.sparsification_curve(errors, [0.5, 0.5, 0.1, 0.1], 4)
  np.testing.assert_allclose(curve.numpy(), [1, 7 / 6, 3 / 4, 3 / 2], rtol=1e-12, atol=0)
  # Constant uncertainty removes points in index order.
  _, curve = metrics.sparsification_curve(errors, np.zeros(4), 4)
  np.testing.assert_allclose(curve.numpy(), [1, 7 / 6, 3 / 4, 3 / 2], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_oracle_curve_is_non_increasing(dtype):
  rng = np.random.default_rng(7)
  errors = (rng.standard_t(df=3, size=200) ** 2).astype(dtype)
  _, curve = metrics.sparsification_curve(errors, np.zeros(200), 100, oracle=True)
  # Removing the largest remaining error never increases the mean; allow rounding only.
  assert np.all(np.diff(curve.numpy()) <= 1e-6), np.diff(curve.numpy()).max()
  np.testing.assert_allclose(curve.numpy()[0], 1.0, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_ause_of_oracle_ordering_is_zero(dtype, mode):
  rng = np.random.default_rng(8)
  errors = rng.exponential(size=64).astype(dtype)
  out = _call(mode, metrics.ause, errors, errors)
  np.testing.assert_allclose(_numpy(out), 0.0, rtol=0, atol=0)
  # Any increasing function of the errors orders the points the same way.
  out = _call(mode, metrics.ause, errors, np.sqrt(errors) + 3)
  np.testing.assert_allclose(_numpy(out), 0.0, rtol=0, atol=1e-12)
  _, error = _call(mode, metrics.sparsification_error, errors, errors)
  np.testing.assert_allclose(_numpy(error), np.zeros(100), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ause_of_random_ordering_is_positive(dtype):
  rng = np.random.default_rng(9)
  errors = rng.exponential(size=100).astype(dtype)
  uncertainty = rng.uniform(size=100).astype(dtype)
  _, error = metrics.sparsification_error(errors, uncertainty)
  # The oracle minimises the kept mean for every fraction.
  assert np.all(error.numpy() >= -1e-6)
  out = metrics.ause(errors, uncertainty).numpy()
  np.testing.assert_allclose(out, ref_ause(errors, uncertainty, 100), **TOL[dtype])
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
  np.testing.assert_allclose(curve.numpy(), [1.0, 1.0 / 1.5], rtol=1e-6, atol=0)
  _, curve = metrics.sparsification_curve(errors, np.array([2, 1]), 2)
  np.testing.assert_allclose(curve.numpy(), [1.0, 2.0 / 1.5], rtol=1e-6, atol=0)


def test_sparsification_dynamic_batch_in_tf_function():
  spec = tf.TensorSpec([None], tf.float64)
  fn = tf.function(lambda e, u: metrics.ause(e, u, 10), input_signature=[spec, spec],
                   autograph=False)
  rng = np.random.default_rng(10)
  for batch in (3, 40):
    errors, uncertainty = rng.exponential(size=batch), rng.uniform(size=batch)
    np.testing.assert_allclose(fn(errors, uncertainty).numpy(),
                               ref_ause(errors, uncertainty, 10), rtol=1e-10, atol=1e-12)
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
  np.testing.assert_allclose(_numpy(out), ref, **TOL[dtype])
  perfect = _call(mode, metrics.pearson_correlation, a, 3 * a + 1)
  np.testing.assert_allclose(_numpy(perfect), 1.0, rtol=1e-6, atol=0)
  anti = _call(mode, metrics.pearson_correlation, a, -a)
  np.testing.assert_allclose(_numpy(anti), -1.0, rtol=1e-6, atol=0)


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
  np.testing.assert_allclose(_numpy(out), ref, **TOL[dtype])
  # Hand-worked: |[1.1, 1.5] - [1, 2]| / [1, 2] = [0.1, 0.25] -> mean 0.175.
  np.testing.assert_allclose(
      metrics.mean_relative_error([1.1, 1.5], [1.0, 2.0]).numpy(), 0.175, rtol=1e-6, atol=0)


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
