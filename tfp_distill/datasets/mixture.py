"""A K-class Gaussian mixture with known Bayes posterior, for the many-classes study.

```none
directions g_c ~ N(0, I_D), c < K + K_ood          (one draw per data set and seed)
scale s: the Bayes-optimal accuracy on the K training classes is `bayes_accuracy`
means    mu_c = s g_c;  classes 0..K-1 in distribution, K..K+K_ood-1 held out (OOD)
x | c    ~ N(mu_c, I_D),  classes balanced (floor or ceil of n / K examples each)
p(c | x) = softmax_c(-|x - mu_c|^2 / 2) over the K training classes      (Bayes)
```

Why this construction:
- The scale is chosen per K so that the Bayes-optimal accuracy (and with it the data
  uncertainty) is the same for every K: only the number of classes changes, not how
  much the classes overlap. With a fixed scale, 1000 classes in 32 dimensions overlap far
  more than 10 (the number of close neighbours of a class grows with K).
- Out-of-distribution points come from components the members never saw, drawn from the
  same prior as the training classes: novel classes, near the training data, not a
  broader cloud that any density estimate would flag. Their labels are the components'
  indices, all >= K.
- The unlabeled pool is more draws from the K training classes without their labels:
  inputs on which the ensemble can be queried beyond its own training set (members fit
  their training points, so their disagreement shows mostly elsewhere).

Data loaders know no model: everything here is NumPy.
"""

import dataclasses

import numpy as np

__all__ = ["MixtureData", "balanced_labels", "bayes_log_posterior", "calibrate_scale",
           "gaussian_mixture"]


@dataclasses.dataclass(frozen=True)
class MixtureData:
  """The splits of one draw of `gaussian_mixture`.

  Attributes:
    x_train: float32 [num_train, dim]; y_train: int64 [num_train] in [0, K).
    x_unlabeled: float32 [num_unlabeled, dim], more in-distribution inputs, no labels.
    x_test: float32 [num_test, dim]; y_test: int64 [num_test] in [0, K).
    x_ood: float32 [num_ood, dim]; y_ood: int64 [num_ood] in [K, K + num_ood_classes),
      the held-out component of each point.
    means: float64 [K, dim], the training classes' means.
    ood_means: float64 [num_ood_classes, dim], the held-out components' means.
    scale: float, s (the means are s times standard normal directions).
    probe_accuracy: float, the Bayes-optimal accuracy on the calibration probe.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_unlabeled: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  x_ood: np.ndarray
  y_ood: np.ndarray
  means: np.ndarray
  ood_means: np.ndarray
  scale: float
  probe_accuracy: float

  @property
  def num_classes(self):
    """K, the number of mixture components (classes)."""
    return len(self.means)


def balanced_labels(num_samples, num_classes, rng, offset=0):
  """Labels in [offset, offset + K), each class floor or ceil of n / K times, shuffled.

  Args:
    num_samples: int >= 0, n.
    num_classes: int >= 1, K.
    rng: `np.random.Generator`.
    offset: int, the first label.

  Returns:
    int64 array [n].
  """
  labels = np.arange(num_samples, dtype=np.int64) % num_classes
  return rng.permutation(labels) + offset


def bayes_log_posterior(x, means):
  """log p(c | x) of the mixture with unit isotropic covariance and equal priors.

  ```none
  log p(c | x) = -|x - mu_c|^2 / 2 - logsumexp_c' (-|x - mu_c'|^2 / 2)
  ```

  Args:
    x: float array [n, dim].
    means: float array [K, dim].

  Returns:
    float64 array [n, K], each row a log-probability vector.
  """
  x = np.asarray(x, np.float64)
  means = np.asarray(means, np.float64)
  # -|x - mu|^2 / 2 up to the per-row constant -|x|^2 / 2, which the softmax drops.
  scores = x @ means.T - 0.5 * np.sum(np.square(means), axis=1)
  scores -= np.max(scores, axis=1, keepdims=True)
  return scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))


def _bayes_accuracy(scale, directions, labels, noise):
  means = scale * directions
  x = means[labels] + noise
  return float(np.mean(np.argmax(bayes_log_posterior(x, means), axis=1) == labels))


def calibrate_scale(directions, bayes_accuracy, num_probe=4000, seed=0, iterations=40):
  """The scale s for which the Bayes-optimal accuracy of means s * directions is a target.

  The accuracy is estimated on `num_probe` probe points (balanced labels, fixed noise:
  common random numbers, so the estimate grows with s) and s is found by bisection.
  The probe's standard error is about sqrt(a (1 - a) / num_probe), 0.005 for a = 0.9 and
  4000 points.

  Args:
    directions: float array [K, dim], K >= 2.
    bayes_accuracy: float in (1 / K, 1), the target.
    num_probe: int >= 1, probe points.
    seed: int or sequence of ints, the probe's seed.
    iterations: int, bisection steps.

  Returns:
    (scale, accuracy): floats, the scale and the probe's accuracy at that scale.

  Raises:
    ValueError: for a target outside (1 / K, 1) or K < 2.
  """
  directions = np.asarray(directions, np.float64)
  k = len(directions)
  if k < 2:
    raise ValueError(f"calibrate_scale: need at least 2 classes, got {k}.")
  if not 1. / k < bayes_accuracy < 1.:
    raise ValueError(f"calibrate_scale: bayes_accuracy must be in (1 / K, 1) = "
                     f"({1. / k:.4g}, 1), got {bayes_accuracy}.")
  rng = np.random.default_rng(seed)
  labels = balanced_labels(num_probe, k, rng)
  noise = rng.standard_normal((num_probe, directions.shape[1]))
  low, high = 0., 1.
  while _bayes_accuracy(high, directions, labels, noise) < bayes_accuracy:
    low, high = high, 2. * high
    if high > 1e6:
      raise ValueError("calibrate_scale: the target accuracy is out of reach (the probe "
                       "has too few points for it?).")
  for _ in range(iterations):
    middle = 0.5 * (low + high)
    if _bayes_accuracy(middle, directions, labels, noise) < bayes_accuracy:
      low = middle
    else:
      high = middle
  return high, _bayes_accuracy(high, directions, labels, noise)


def _sample(means, labels, rng):
  return (means[labels] + rng.standard_normal(means[labels].shape)).astype(np.float32)


def gaussian_mixture(num_classes, num_train, num_test, num_unlabeled=0, num_ood=0,
                     num_ood_classes=0, dim=32, bayes_accuracy=0.9, num_probe=4000,
                     seed=0):
  """Draws the means and the splits of a K-class Gaussian mixture (see the module doc).

  The draw is a function of (seed, num_classes, num_ood_classes, dim, bayes_accuracy,
  num_probe); each split has its own random stream, so changing the size of one split
  changes no other.

  Args:
    num_classes: int >= 2, K.
    num_train, num_test, num_unlabeled, num_ood: int >= 0, split sizes (train >= 1).
    num_ood_classes: int >= 0, held-out components (>= 1 when num_ood > 0).
    dim: int >= 1, D.
    bayes_accuracy: float in (1 / K, 1), the Bayes-optimal accuracy the scale is set to.
    num_probe: int, probe points of `calibrate_scale`.
    seed: int >= 0.

  Returns:
    `MixtureData`.

  Raises:
    ValueError: for sizes out of range.

  #### Examples

  ```python
  data = gaussian_mixture(100, num_train=20000, num_test=10000, num_ood=10000,
                          num_ood_classes=100, seed=0)
  data.x_train.shape, data.y_ood.min()        # (20000, 32), 100
  ```
  """
  num_classes, dim = int(num_classes), int(dim)
  if num_classes < 2:
    raise ValueError(f"gaussian_mixture: num_classes must be >= 2, got {num_classes}.")
  if dim < 1 or int(num_train) < 1 or min(num_test, num_unlabeled, num_ood,
                                           num_ood_classes) < 0:
    raise ValueError("gaussian_mixture: need dim >= 1, num_train >= 1 and non-negative "
                     f"sizes, got dim={dim}, num_train={num_train}, num_test={num_test}, "
                     f"num_unlabeled={num_unlabeled}, num_ood={num_ood}, "
                     f"num_ood_classes={num_ood_classes}.")
  if num_ood > 0 and num_ood_classes < 1:
    raise ValueError("gaussian_mixture: num_ood > 0 needs num_ood_classes >= 1.")
  streams = np.random.SeedSequence([int(seed), num_classes, int(num_ood_classes), dim])
  directions, probe, train, unlabeled, test, ood = (
      np.random.default_rng(s) for s in streams.spawn(6))
  g = directions.standard_normal((num_classes + num_ood_classes, dim))
  scale, probe_accuracy = calibrate_scale(g[:num_classes], bayes_accuracy, num_probe,
                                          seed=probe)
  means = scale * g
  means, ood_means = means[:num_classes], means[num_classes:]
  y_train = balanced_labels(num_train, num_classes, train)
  y_unlabeled = balanced_labels(num_unlabeled, num_classes, unlabeled)
  y_test = balanced_labels(num_test, num_classes, test)
  y_ood = balanced_labels(num_ood, max(num_ood_classes, 1), ood, offset=num_classes)
  all_means = np.concatenate([means, ood_means], axis=0)
  return MixtureData(
      x_train=_sample(means, y_train, train), y_train=y_train,
      x_unlabeled=_sample(means, y_unlabeled, unlabeled),
      x_test=_sample(means, y_test, test), y_test=y_test,
      x_ood=_sample(all_means, y_ood, ood), y_ood=y_ood,
      means=means, ood_means=ood_means, scale=float(scale),
      probe_accuracy=float(probe_accuracy))
