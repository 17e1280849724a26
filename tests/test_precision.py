"""XLA (jit_compile) and mixed precision agree with float32 without XLA."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance

CLASSES = td.families.CategoricalLogits(4)
REGRESSION = td.families.HeteroscedasticNormal()


@pytest.fixture(name="mixed")
def mixed_fixture():
  """Sets a mixed-precision global policy for the test; restores float32 after it."""
  def use(policy):
    keras.mixed_precision.set_global_policy(policy)
  yield use
  keras.mixed_precision.set_global_policy("float32")


def _data(n=96, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 3)).astype(np.float32)


def _copy_weights(source, target):
  target.set_weights(source.get_weights())
  return target


@pytest.mark.parametrize("head_name", ["mvn", "diagonal", "dirichlet"])
def test_distiller_with_xla_equals_without(head_name):
  """Same init, data order and optimizer: XLA-compiled training ends at the same weights
  up to float32 rounding of fused kernels."""
  x = _data()
  if head_name == "dirichlet":
    family, head, size = CLASSES, td.heads.DirichletHead(4), 4
    loss = td.losses.DirichletNLL(temperature=2.0)
    members = [td.models.mlp((3,), [8], 4, seed=s) for s in range(3)]
  else:
    family = REGRESSION
    head_cls = (td.heads.MultivariateNormalTriLHead if head_name == "mvn"
                else td.heads.NormalHead)
    head, size, loss = head_cls(2), head_cls.params_size(2), td.losses.EnsembleNLL()
    members = [td.models.mlp((3,), [8], 2, seed=s) for s in range(3)]
  teacher = td.Ensemble(members, family=family)
  weights = []
  for jit in (False, True):
    student = td.models.mlp((3,), [8], size, head=head, seed=1)
    distiller = td.Distiller(student, teacher, loss=loss)
    distiller.compile(keras.optimizers.Adam(1e-2), jit_compile=jit)
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), epochs=3,
                            verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    weights.append(student.get_weights())
  for a, b in zip(*weights):
    # 9 Adam steps; XLA fuses the float32 ops of the loss and its gradient differently.
    # Not a rounding bound: Adam divides by each gradient's running RMS, so a rounding-
    # level change of a gradient near 0 can move a step by O(lr = 1e-2); 1e-4 absolute
    # and 1e-3 relative are what such trajectories keep (a training-run comparison).
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_mvn_head_equals_fill_scale_tril():
  """The XLA-friendly Cholesky factor is tfb.FillScaleTriL's (float64)."""
  import tensorflow_probability as tfp
  params = np.random.default_rng(1).normal(size=(7, 2 + 3)).astype(np.float64)
  dist = td.heads.MultivariateNormalTriLHead.new(params, 2, min_scale=1e-3)
  want = tfp.bijectors.FillScaleTriL(diag_shift=np.float64(1e-3))(params[:, 2:])
  # Off the diagonal the values are copied; on it, tf.math.softplus (ours) and the
  # Softplus bijector's, each within 5 eps (tolerance.FUNCTION_ULPS), plus the shift:
  # 2 (5 + 1) float64 eps of each value (measured: equal).
  tolerance.assert_close(dist.scale.to_dense().numpy(), want.numpy(), dtype=np.float64,
                         ulps=2 * (5 + 1), scale=np.abs(want.numpy()))


def test_ensemble_and_decompositions_with_xla():
  x = _data(10)
  members = [td.models.mlp((3,), [8], 4, seed=s) for s in range(3)]
  plain = td.Ensemble(members, family=CLASSES)
  xla = td.Ensemble(members, family=CLASSES, jit_compile=True)
  # Dense(8) on 3 inputs, relu, Dense(4) on 8: dot products of 3 and 8 terms plus biases
  # and the activation, (3 + 2) + 1 + (8 + 2) roundings, eps of the logits' magnitude.
  tolerance.assert_close(xla(x).numpy(), plain(x).numpy(), dtype=np.float32, ulps=16)
  z = plain(x)
  # Entropies of K = 4 classes over m = 3 members: log_softmax, p log p, sums over K and
  # m, and XLA's own exp/log (a few eps each): test_properties' entropy bound
  # (K + m + 8) eps (2 + log K)^2, twice (either side); relative to 1 for the entropies and
  # probabilities, and to max |log p| for epkl (which sums p_bar E[-log p]).
  ulps = 2 * (4 + 3 + 8) * (2. + np.log(4.)) ** 2
  scale = max(1., float(np.abs(CLASSES.log_probs(z)).max()))
  for key, value in td.decompose_ensemble(z, CLASSES, jit_compile=True).items():
    tolerance.assert_close(value.numpy(), td.decompose_ensemble(z, CLASSES)[key].numpy(),
                           dtype=np.float32, ulps=ulps, scale=scale, err_msg=key)
  dirichlet = td.heads.DirichletHead.new(z[:, 0].numpy(), 4)
  # The Dirichlet's closed form: alpha_0 (a sum of K = 4 terms), alpha / alpha_0, and
  # entropies of K terms p log p or p (digamma(alpha + 1) - digamma(alpha_0 + 1)), the
  # digammas a few eps each (XLA's and TF's own approximations): (K + 8) eps, twice (either
  # side), of the terms' scale 1 + 2 |digamma(alpha_0 + 1)|; epkl, (K - 1) / alpha_0, two
  # roundings of its own magnitude.
  alpha_0 = dirichlet.concentration.numpy().sum(-1)
  scale = 1. + 2. * np.abs(special.digamma(alpha_0 + 1.)).max()
  for key, value in td.decompose(dirichlet, CLASSES, jit_compile=True).items():
    tolerance.assert_close(value.numpy(), td.decompose(dirichlet, CLASSES)[key].numpy(),
                           dtype=np.float32, ulps=2 * (4 + 8),
                           scale=None if key == "epkl" else scale, err_msg=key)
  # Monte Carlo: XLA's stateless generator draws other numbers for the same seed. With
  # 20,000 draws the standard error of these entropies (|H| <= log 4) is below 0.01.
  gaussian = td.heads.NormalHead.new(np.concatenate([z[:, 0], z[:, 1]], -1), 4)
  for key, value in td.decompose(gaussian, CLASSES, num_samples=20_000,
                                 jit_compile=True).items():
    np.testing.assert_allclose(
        value.numpy(), td.decompose(gaussian, CLASSES, num_samples=20_000)[key].numpy(),
        atol=0.04)


def test_mixed_precision_student_heads_stay_float32(mixed):
  x = _data(16)
  reference = td.models.mlp((3,), [16], 4, head=td.heads.DirichletHead(4), seed=2)
  mixed("mixed_bfloat16")
  student = _copy_weights(reference, td.models.mlp((3,), [16], 4,
                                                   head=td.heads.DirichletHead(4), seed=2))
  assert student.layers[1].compute_dtype == "bfloat16"
  assert student.layers[-1].compute_dtype == "float32"    # the head
  dist = student(x)
  assert dist.dtype == tf.float32
  got = td.predict_uncertainty(student, CLASSES, x)
  want = td.predict_uncertainty(reference, CLASSES, x)
  # bfloat16 keeps 8 significant bits (relative rounding 2^-8 = 0.4%) in two dense
  # layers: concentrations exp(s) move by a few percent; entropies by ~1e-2 nats.
  for key in ("prediction", "total", "aleatoric", "epistemic"):
    assert got[key].dtype == np.float32
    np.testing.assert_allclose(got[key], want[key], rtol=0.05, atol=0.03, err_msg=key)
  # The head's config carries float32 and round-trips.
  config = student.layers[-1].get_config()
  assert td.heads.DirichletHead.from_config(config).compute_dtype == "float32"


@pytest.mark.parametrize("vectorize", [False, True])
def test_mixed_precision_members_give_float32_targets(mixed, vectorize):
  x = _data(16)
  reference = [td.models.mlp((3,), [16], 2, seed=s) for s in range(3)]
  want = td.Ensemble(reference, family=REGRESSION, vectorize=False)(x).numpy()
  mixed("mixed_bfloat16")
  members = [_copy_weights(r, td.models.mlp((3,), [16], 2, seed=s))
             for s, r in enumerate(reference)]
  z = td.Ensemble(members, family=REGRESSION, vectorize=vectorize)(x)
  assert z.dtype == tf.float32
  # Outputs of order 1 computed in bfloat16: ~1% relative, 0.05 absolute is ~5 roundings.
  np.testing.assert_allclose(z.numpy(), want, rtol=0.05, atol=0.05)


def test_mixed_precision_distillation_trains_like_float32(mixed):
  x = _data(256, seed=3)
  members = [td.models.mlp((3,), [16], 2, seed=s) for s in range(3)]
  teacher = td.Ensemble(members, family=REGRESSION)
  losses = {}
  for policy in ("float32", "mixed_bfloat16"):
    mixed(policy)
    head = td.heads.MultivariateNormalTriLHead
    student = td.models.mlp((3,), [16], head.params_size(2), head=head(2), seed=4)
    distiller = td.Distiller(student, teacher, loss=td.losses.EnsembleNLL())
    distiller.compile(keras.optimizers.Adam(1e-2))
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), epochs=5,
                            verbose=0)
    losses[policy] = history.history["loss"]
  assert np.all(np.isfinite(losses["mixed_bfloat16"]))
  # Both fall from the same start; the half-precision backbone follows the float32 run
  # to within 0.3 nats per epoch (the loss falls by ~2 nats over the five epochs).
  assert losses["float32"][-1] < losses["float32"][0] - 1.0
  np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], atol=0.3)


def test_mixed_precision_vectorized_training(mixed):
  rng = np.random.default_rng(5)
  x = rng.uniform(-2, 2, (128, 1)).astype(np.float32)
  y = np.sin(x[:, 0]).astype(np.float32)
  mixed("mixed_bfloat16")
  ens = td.train_ensemble(lambda s: td.models.mlp((1,), [16], 2, seed=s), (x, y),
                          REGRESSION, num_members=2, epochs=20, batch_size=32,
                          learning_rate=1e-2, verbose=0, vectorize=True)
  nll = ens.history.history["nll"]
  assert ens.training_vectorized and np.all(np.isfinite(nll)) and nll[-1] < nll[0] - 0.5
  assert ens(x).dtype == tf.float32
