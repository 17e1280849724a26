"""Far points (td.datasets.far) and the distillation inputs that leave the data
(td.targets.far_inputs, box_inputs)."""

import numpy as np
import pytest

import tfp_distill as td
import tolerance


def _data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(500, 4)) * np.array([1.0, 10.0, 0.1, 3.0]) + np.array([0, 5, -1, 2])
  return x.astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)


@pytest.mark.parametrize("directions", ["random", "principal"])
def test_far_points_sit_the_asked_distance_beyond_the_data(directions):
  x, base = _data()
  points = td.datasets.far.far_points(x, base, distances=(0.0, 2.0, 5.0),
                                      directions=directions, seed=3)
  assert sorted(points) == [0.0, 2.0, 5.0]
  mean, sd = x.mean(0).astype(np.float64), x.std(0).astype(np.float64)
  z = (x - mean) / sd
  for d, far in points.items():
    assert far.shape == base.shape and far.dtype == np.float32
    zf = (far - mean) / sd
    # The move is along one direction per row: recover it from d = 0 and d = 5.
    step = (points[5.0] - points[0.0]).astype(np.float64) / sd
    u = step / np.linalg.norm(step, axis=1, keepdims=True)
    along = z @ u.T                                  # the training rows along each u
    beyond = (np.einsum("bf,bf->b", zf, u) - along.max(0)) / along.std(0)
    # float32 points of magnitude up to ~40 (in z units): a few eps of that.
    np.testing.assert_allclose(beyond, d, rtol=0, atol=tolerance.atol(
        dtype=np.float32, ulps=16, scale=40.0))
  # Across the direction the base row is kept.
  step = points[5.0].astype(np.float64) - base
  cross = step - np.einsum("bf,bf->b", step / sd, u)[:, None] * u * sd
  np.testing.assert_allclose(cross, 0.0, atol=tolerance.atol(dtype=np.float32, ulps=64,
                                                             scale=40.0 * sd.max()))


def test_far_points_refuse_bad_input():
  x, base = _data()
  with pytest.raises(ValueError, match="one width"):
    td.datasets.far.far_points(x, base[:, :3])
  with pytest.raises(ValueError, match="distances must be >= 0"):
    td.datasets.far.far_points(x, base, distances=(-1.0,))
  with pytest.raises(ValueError, match="directions must be one of"):
    td.datasets.far.far_points(x, base, directions="diagonal")


def test_far_inputs_and_box_inputs():
  x, _ = _data()
  rng = np.random.default_rng(0)
  far = td.targets.far_inputs(x, 20000, rng, scale=(2.0, 2.0))
  # Noise of 2 feature sd around uniformly drawn rows: the total sd per feature is
  # sqrt(1 + 4) = 2.24 of the data's (20,000 draws: within 3% at 5 standard errors).
  np.testing.assert_allclose(far.std(0) / x.std(0), np.sqrt(5.0), rtol=0.03)
  box = td.targets.box_inputs(x, 20000, rng, expand=0.5)
  low, high = x.min(0), x.max(0)
  width = high - low
  assert np.all(box >= low - 0.5 * width - 1e-3 * width)
  assert np.all(box <= high + 0.5 * width + 1e-3 * width)
  # Uniform on a box twice the data's range: its sd is 2 range / sqrt(12).
  np.testing.assert_allclose(box.std(0), 2 * width / np.sqrt(12), rtol=0.03)
  with pytest.raises(ValueError, match="scale"):
    td.targets.far_inputs(x, 3, rng, scale=(2.0, 1.0))


def test_marginal_inputs_keep_each_feature_and_break_their_ties():
  """Each feature of a marginal input is a value of that feature in the rows, drawn
  uniformly: each feature's distribution is the data's, but two features that go
  together in the rows are independent in the draws."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=500)
  x = np.stack([a, a + 0.1 * rng.normal(size=500), rng.integers(0, 3, 500)], 1)
  x = x.astype(np.float32)
  m = td.targets.marginal_inputs(x, 20000, np.random.default_rng(1))
  assert m.shape == (20000, 3) and m.dtype == np.float32
  for f in range(3):
    assert np.isin(m[:, f], x[:, f]).all()           # only the data's own values
  # The grid feature's shares are the data's: 20,000 draws, 5 standard errors.
  for v in range(3):
    share = (x[:, 2] == v).mean()
    assert abs((m[:, 2] == v).mean() - share) < 5 * np.sqrt(share * (1 - share) / 20000)
  # Features 0 and 1 have correlation 0.99 in the rows, 0 in the draws (5 / sqrt(n)).
  assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] > 0.99
  assert abs(np.corrcoef(m[:, 0], m[:, 1])[0, 1]) < 5 / np.sqrt(20000)
  images = td.targets.marginal_inputs(np.zeros((4, 2, 2, 1), np.float32), 3,
                                      np.random.default_rng(0))
  assert images.shape == (3, 2, 2, 1)
  assert td.targets.marginal_inputs(x, 0, rng).shape == (0, 3)
