"""Tests for tfp_distill.uncertainty: closed forms, quadrature vs Monte Carlo, ensembles."""

import numpy as np
import pytest
from scipy import integrate
from scipy import stats

import tfp_distill as td

FAMILY = td.families.HeteroscedasticNormal(event_size=1, min_variance=1e-3)


def _softplus(x):
  return np.logaddexp(0.0, x)


def _student_dist(head_cls, event, batch=5, seed=0, dtype=np.float64):
  params = np.random.default_rng(seed).normal(size=(batch, head_cls.params_size(2 * event)))
  return head_cls.new(params.astype(dtype), 2 * event, min_scale=0.05)


@pytest.mark.parametrize("head_cls", [td.heads.NormalHead, td.heads.MultivariateNormalTriLHead])
def test_quadrature_aleatoric_matches_scipy_integral(head_cls):
  dist = _student_dist(head_cls, 1)
  u = td.decompose(dist, FAMILY)
  loc, sd = dist.mean().numpy(), dist.stddev().numpy()
  expected = [integrate.quad(lambda r, b=b: (_softplus(r) + 1e-3) * stats.norm.pdf(
      r, loc[b, 1], sd[b, 1]), -np.inf, np.inf, epsabs=1e-13)[0] for b in range(5)]
  np.testing.assert_allclose(u["aleatoric"].numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(u["epistemic"].numpy(), sd[:, 0] ** 2, rtol=1e-12)
  np.testing.assert_allclose(u["prediction"].numpy(), loc[:, 0], rtol=0, atol=0)
  np.testing.assert_allclose(u["total"].numpy(), u["aleatoric"] + u["epistemic"], rtol=1e-12)


@pytest.mark.parametrize("event", [1, 2])
def test_closed_form_equals_monte_carlo(event):
  family = td.families.HeteroscedasticNormal(event_size=event, min_variance=1e-3)
  dist = _student_dist(td.heads.MultivariateNormalTriLHead, event, seed=event)
  exact = td.decompose(dist, family)
  mc = td.decompose(dist, family, method="monte_carlo", num_samples=200_000, seed=4)
  # 200k samples: the relative standard error of a sample variance is sqrt(2/n) = 0.3%,
  # and of the mean of softplus(rho) (a positive variable with a CV below ~1) under 0.3%;
  # 2% is over 5 sigma.
  for key in ("aleatoric", "epistemic", "total"):
    np.testing.assert_allclose(mc[key].numpy(), exact[key].numpy(), rtol=0.02)
  sd = dist.stddev().numpy()[:, :event]
  np.testing.assert_allclose(mc["prediction"].numpy().reshape(5, -1),
                             exact["prediction"].numpy().reshape(5, -1),
                             atol=float(5 * sd.max() / np.sqrt(200_000)))
  assert exact["prediction"].shape == ((5,) if event == 1 else (5, event))
  assert exact["total"].shape == (5,)


def test_monte_carlo_is_a_function_of_the_seed():
  dist = _student_dist(td.heads.NormalHead, 1)
  a = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=1)
  b = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=1)
  c = td.decompose(dist, FAMILY, method="monte_carlo", num_samples=50, seed=2)
  np.testing.assert_array_equal(a["aleatoric"].numpy(), b["aleatoric"].numpy())
  assert not np.allclose(a["aleatoric"].numpy(), c["aleatoric"].numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decompose_ensemble_is_the_law_of_total_variance(dtype):
  rng = np.random.default_rng(5)
  z = rng.normal(size=(6, 10, 2)).astype(dtype)
  u = td.decompose_ensemble(z, FAMILY)
  mu, var = z[..., 0], _softplus(z[..., 1]) + 1e-3
  # Variance of the equally weighted Gaussian mixture: E[y^2] - E[y]^2.
  mixture_var = np.mean(var + mu ** 2, axis=1) - np.mean(mu, axis=1) ** 2
  # TF's float64 softplus differs from log(1 + e^x) by ~5e-11 relative.
  rtol = 1e-5 if dtype == np.float32 else 1e-9
  np.testing.assert_allclose(u["total"].numpy(), mixture_var, rtol=rtol)
  np.testing.assert_allclose(u["aleatoric"].numpy(), var.mean(1), rtol=rtol)
  np.testing.assert_allclose(u["epistemic"].numpy(), mu.var(1), rtol=rtol, atol=1e-7)
  np.testing.assert_allclose(u["prediction"].numpy(), mu.mean(1), rtol=rtol, atol=1e-7)
  assert u["total"].dtype == dtype


def test_mixture_student_has_only_a_total():
  params = np.random.default_rng(6).normal(size=(4, 2))
  dist = td.heads.NormalPredictiveHead.new(params, 1)
  u = td.decompose(dist, FAMILY)
  assert set(u) == {"prediction", "total"}
  np.testing.assert_allclose(u["total"].numpy(), dist.variance().numpy()[:, 0], rtol=1e-12)


def test_errors():
  with pytest.raises(ValueError, match="at least 2"):
    td.decompose_ensemble(np.zeros((3, 1, 2)), FAMILY)
  with pytest.raises(ValueError, match="params_size=2"):
    td.decompose_ensemble(np.zeros((3, 4, 3)), FAMILY)
  with pytest.raises(ValueError, match="members, params"):
    td.decompose_ensemble(np.zeros((3, 2)), FAMILY)
  dist = _student_dist(td.heads.NormalHead, 2)       # event 4: fits neither 2 nor 1
  with pytest.raises(ValueError, match="event size 4"):
    td.decompose(dist, FAMILY)
  with pytest.raises(ValueError, match="method"):
    td.decompose(_student_dist(td.heads.NormalHead, 1), FAMILY, method="exact")
