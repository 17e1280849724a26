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
