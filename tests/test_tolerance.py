"""The tests' rounding-tolerance helper (tests/tolerance.py) against hand values."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfp_distill as td

import tolerance


def test_eps_of_every_float_dtype():
  assert tolerance.eps(np.float64) == 2.0 ** -52
  assert tolerance.eps(tf.float32) == 2.0 ** -23
  assert tolerance.eps("float16") == 2.0 ** -10
  assert tolerance.eps("bfloat16") == tolerance.eps(tf.bfloat16) == 2.0 ** -7


def test_assert_close_bounds_by_ulps_eps_and_scale():
  want = np.array([1.0, -4.0, 0.5])
  step = 4.0 * 2.0 ** -23                        # 1 float32 eps of max|want| = 4
  tolerance.assert_close(want + step, want, dtype=np.float32, ulps=1)
  with pytest.raises(AssertionError, match="1 of 3 entries"):
    tolerance.assert_close(want + [0, 0, 1.5 * step], want, dtype=np.float32, ulps=1)
  # An elementwise scale: entry 0 is allowed 1 eps of 1, entry 1 of 4, entry 2 of 0.5.
  scale = np.abs(want)
  tolerance.assert_close(want + 0.9 * step * scale / 4, want, dtype=np.float32, ulps=1,
                         scale=scale)
  with pytest.raises(AssertionError, match=r"worst at \(2,\)"):
    tolerance.assert_close(want + [0, 0, step / 4], want, dtype=np.float32, ulps=1,
                           scale=scale)
  assert tolerance.atol(want, dtype=np.float32, ulps=3) == 3 * step


def test_assert_close_nans_infinities_and_shapes():
  nan_inf = np.array([np.nan, np.inf, 1.0])
  tolerance.assert_close(nan_inf, nan_inf, dtype=np.float64, ulps=0)
  with pytest.raises(AssertionError):
    tolerance.assert_close([np.nan, np.inf, 1.0], [0.0, np.inf, 1.0], dtype=np.float64,
                           ulps=1)
  with pytest.raises(AssertionError):
    tolerance.assert_close([1.0, -np.inf], [1.0, np.inf], dtype=np.float64, ulps=1)
  with pytest.raises(AssertionError, match="shapes differ"):
    tolerance.assert_close(np.zeros(3), np.zeros(2), dtype=np.float64, ulps=1)
  tolerance.assert_close(np.zeros(3), 0.0, dtype=np.float64, ulps=0)   # a scalar reference


def test_mvn_log_density_is_scipys():
  rng = np.random.default_rng(0)
  tril = np.tril(rng.normal(size=(4, 3, 3)))
  tril[:, np.arange(3), np.arange(3)] = np.abs(tril[:, np.arange(3), np.arange(3)]) + 0.5
  z, loc = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  log_p, magnitude = tolerance.mvn_log_density(z, loc, tril)
  want = [stats.multivariate_normal(loc[i], tril[i] @ tril[i].T).logpdf(z[i]) for i in range(4)]
  # Well conditioned factors (diagonals >= 0.5): SciPy agrees to float64 precision.
  np.testing.assert_allclose(log_p, want, rtol=1e-12)
  assert np.all(magnitude >= np.abs(log_p))


def test_normal_log_density_bound_covers_its_terms():
  z, loc, scale = np.array([[1.0, -2.0]]), np.zeros((1, 2)), np.array([[0.5, 2.0]])
  ulps, magnitude = tolerance.normal_log_density_bound(z, loc, scale, 6)
  assert ulps == 3 * 2 + 3 * 6 + 6
  r = (z - loc) / scale
  np.testing.assert_allclose(magnitude, (r ** 2 / 2 + np.abs(np.log(scale)) + 1).sum(-1))
  assert magnitude[0] >= np.abs(stats.norm.logpdf(z, loc, scale).sum())


def test_model_roundings_counts_fan_ins():
  # Dense(8) on 3 inputs (3 + 2), Dense(4) on 8 (8 + 2), a Dirichlet head (4).
  student = td.models.mlp((3,), [8], 4, head=td.heads.DirichletHead(4), seed=0)
  assert tolerance.model_roundings(student) == 5 + 10 + 4
  # Training adds the backward pass: fan-outs (8, 4) and the batch sums (batch each).
  assert tolerance.model_roundings(student, batch=16) == 5 + 10 + 4 + (8 + 16) + (4 + 16)
