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


# ---------------------------------------------------------------------------------------
# Classification: entropy decomposition
# ---------------------------------------------------------------------------------------

from scipy import special  # noqa: E402

CLASSES = td.families.CategoricalLogits(4)


def _entropy(p):
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _numpy_terms(p):
  """Decomposition of probability vectors p [draws, batch, K] in NumPy."""
  p_bar = p.mean(0)
  total = _entropy(p_bar)
  aleatoric = _entropy(p).mean(0)
  log_p = np.log(p)
  epkl = (p * log_p).sum(-1).mean(0) - (p_bar * log_p.mean(0)).sum(-1)
  return {"prediction": p_bar, "total": total, "aleatoric": aleatoric,
          "epistemic": total - aleatoric, "epkl": epkl}


def test_dirichlet_closed_form_matches_numpy_sampling():
  rng = np.random.default_rng(0)
  alpha = rng.uniform(0.5, 6.0, size=(5, 4))
  dist = td.heads.DirichletHead.new(np.log(alpha - 1e-3), 4, min_scale=1e-3)
  u = td.decompose(dist, CLASSES)
  draws = np.stack([rng.dirichlet(a, size=400_000) for a in alpha], axis=1)
  reference = _numpy_terms(draws)
  # 4e5 draws: the standard error of each sample mean is < 1e-3 nats here.
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    np.testing.assert_allclose(u[key].numpy(), reference[key], atol=4e-3, err_msg=key)
  np.testing.assert_allclose(u["prediction"].numpy(), alpha / alpha.sum(-1, keepdims=True),
                             rtol=1e-6)
  np.testing.assert_allclose(u["epkl"].numpy(), 3.0 / alpha.sum(-1), rtol=1e-6)


def test_dirichlet_closed_form_equals_library_monte_carlo():
  alpha = np.random.default_rng(1).uniform(0.3, 4.0, size=(6, 4))
  dist = td.heads.DirichletHead.new(np.log(alpha), 4, min_scale=1e-9)
  exact = td.decompose(dist, CLASSES, method="closed_form")
  mc = td.decompose(dist, CLASSES, method="monte_carlo", num_samples=100_000, seed=3)
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    np.testing.assert_allclose(mc[key].numpy(), exact[key].numpy(), atol=1e-2, err_msg=key)


@pytest.mark.parametrize("reference_class", [False, True])
@pytest.mark.parametrize("antithetic", [False, True])
def test_logit_normal_monte_carlo_matches_numpy(reference_class, antithetic):
  family = td.families.CategoricalLogits(4, reference_class=reference_class)
  p_size = family.params_size
  rng = np.random.default_rng(2)
  params = rng.normal(size=(3, td.heads.MultivariateNormalTriLHead.params_size(p_size)))
  dist = td.heads.MultivariateNormalTriLHead.new(params, p_size, min_scale=0.05)
  loc, tril = dist.loc.numpy(), dist.scale.to_dense().numpy()
  eps = rng.normal(size=(200_000, 3, p_size))
  logits = loc + np.einsum("bij,sbj->sbi", tril, eps)
  if reference_class:
    logits = np.concatenate([logits, np.zeros_like(logits[..., :1])], axis=-1)
  reference = _numpy_terms(special.softmax(logits, -1))
  u = td.decompose(dist, family, num_samples=20_000, seed=5, antithetic=antithetic)
  # 2e4 library samples; standard errors measured over 8 seeds: <= 3.3e-3 nats for the
  # entropies, <= 1.2e-2 for EPKL (a mean of log-ratios with heavier tails). Bounds at
  # 6 and 4 standard errors.
  for key, atol in (("total", 2e-2), ("aleatoric", 2e-2), ("epistemic", 2e-2),
                    ("epkl", 5e-2)):
    np.testing.assert_allclose(u[key].numpy(), reference[key], atol=atol, err_msg=key)
  np.testing.assert_allclose(u["prediction"].numpy(), reference["prediction"], atol=1e-2)


def test_logit_normal_point_mass_has_no_epistemic_part():
  loc = np.array([[2.0, -1.0, 0.5, 0.0]], np.float32)
  dist = td.heads.NormalHead.new(np.concatenate([loc, np.full_like(loc, -30.0)], -1), 4,
                                 min_scale=1e-6)
  u = td.decompose(dist, CLASSES, num_samples=64)
  p = special.softmax(loc.astype(np.float64), -1)
  np.testing.assert_allclose(u["epistemic"].numpy(), 0.0, atol=1e-5)
  np.testing.assert_allclose(u["total"].numpy(), _entropy(p), rtol=1e-5)
  np.testing.assert_allclose(u["aleatoric"].numpy(), _entropy(p), rtol=1e-5)


def test_ensemble_entropy_decomposition_matches_pairwise_kl():
  rng = np.random.default_rng(3)
  z = rng.normal(scale=2.0, size=(4, 6, 4))
  u = td.decompose_ensemble(z, CLASSES)
  p = special.softmax(z, -1)                                      # [batch, M, K]
  reference = _numpy_terms(np.transpose(p, [1, 0, 2]))
  pairwise = np.mean([[np.sum(p[:, i] * (np.log(p[:, i]) - np.log(p[:, j])), -1)
                       for j in range(6)] for i in range(6)], axis=(0, 1))
  np.testing.assert_allclose(reference["epkl"], pairwise, rtol=1e-10)
  for key in ("total", "aleatoric", "epistemic", "epkl"):
    np.testing.assert_allclose(u[key].numpy(), reference[key], rtol=1e-10, err_msg=key)
  centred = td.families.CategoricalLogits(4, reference_class=True)
  np.testing.assert_allclose(td.decompose_ensemble(centred.params(z), centred)["total"],
                             reference["total"], rtol=1e-10)


def test_categorical_student_has_prediction_and_total():
  logits = np.array([[1.0, 2.0, 3.0, 4.0]])
  u = td.decompose(td.heads.CategoricalHead.new(logits, 4), CLASSES)
  assert set(u) == {"prediction", "total"}
  np.testing.assert_allclose(u["total"].numpy(), _entropy(special.softmax(logits, -1)),
                             rtol=1e-10)


def test_classification_decompose_errors():
  normal = td.heads.NormalHead.new(np.zeros((2, 8)), 4)
  with pytest.raises(ValueError, match="no closed form"):
    td.decompose(normal, CLASSES, method="quadrature")
  with pytest.raises(ValueError, match="over its 3 logits"):
    td.decompose(normal, td.families.CategoricalLogits(4, reference_class=True))
  with pytest.raises(ValueError, match="Dirichlet over 4 classes"):
    td.decompose(td.heads.DirichletHead.new(np.zeros((2, 4)), 4),
                 td.families.CategoricalLogits(5))
  with pytest.raises(ValueError, match="at least 2"):
    td.decompose_ensemble(np.zeros((2, 1, 4)), CLASSES)
