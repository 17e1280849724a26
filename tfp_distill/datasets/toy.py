"""The heteroscedastic sinusoid of the general distillation framework's toy study.

```none
x ~ U[low, high]
y = sin(x) + eps,   eps ~ N(0, 0.15 / (1 + exp(-x)))        (eq 17 of [1])
```
0.15 times the logistic function is the *variance* of the noise, so the noise grows from
almost nothing on the left to a standard deviation of sqrt(0.15) ~ 0.39 on the right. The
data set is that of Gustafsson et al. [2]; [1] trains on x in [-3, 3] and evaluates on
[-5, 5].

Data loaders know no model: everything here is NumPy.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531 (section 4.1, eq 17).
[2]: Gustafsson, Danelljan, Schon. Evaluating scalable Bayesian deep learning methods for
     robust computer vision. 2019. arXiv:1906.01620.
"""

import numpy as np

__all__ = ["grid", "sinusoid", "sinusoid_mean", "sinusoid_noise_variance"]

#: Largest noise variance of eq 17 (reached as x -> +inf).
NOISE_SCALE = 0.15


def sinusoid_mean(x):
  """The noise-free function E[y | x] = sin(x).

  Args:
    x: float array [...] (e.g. [n] or [n, 1]).

  Returns:
    float array, the same shape as x.
  """
  x = np.asarray(x)
  return np.sin(x.astype(np.float64)).astype(np.result_type(x.dtype, np.float32))


def sinusoid_noise_variance(x):
  """The noise variance Var[y | x] = 0.15 / (1 + exp(-x)) of eq 17.

  Computed as 0.15 exp(-log(1 + exp(-x))), which neither overflows nor underflows to a
  warning for large |x|.

  Args:
    x: float array [...] (e.g. [n] or [n, 1]).

  Returns:
    float array, the same shape as x, in (0, 0.15).
  """
  x = np.asarray(x)
  variance = NOISE_SCALE * np.exp(-np.logaddexp(0., -x.astype(np.float64)))
  return variance.astype(np.result_type(x.dtype, np.float32))


def sinusoid(num_samples, low=-3., high=3., seed=0):
  """Draws (x, y) from the heteroscedastic sinusoid.

  ```none
  x ~ U[low, high],  y = sin(x) + sqrt(0.15 / (1 + exp(-x))) * n,  n ~ N(0, 1)
  ```

  Args:
    num_samples: int >= 1, n.
    low: float, lower end of the input interval.
    high: float > low, upper end.
    seed: int, seed of `np.random.default_rng`; the draw is a function of it.

  Returns:
    x: float32 array [n, 1] (one feature, ready for a Keras model).
    y: float32 array [n].

  Raises:
    ValueError: if num_samples < 1 or the interval is empty or not finite.

  #### Examples

  ```python
  x, y = td.datasets.sinusoid(1000, -3., 3., seed=0)   # [1000, 1], [1000]
  ```
  """
  num_samples = int(num_samples)
  if num_samples < 1:
    raise ValueError(f"sinusoid: num_samples must be >= 1, got {num_samples}.")
  if not (np.isfinite(low) and np.isfinite(high) and high > low):
    raise ValueError(f"sinusoid: need finite low < high, got low={low}, high={high}.")
  rng = np.random.default_rng(seed)
  x = rng.uniform(low, high, size=num_samples)
  noise = rng.standard_normal(num_samples)
  y = np.sin(x) + np.sqrt(sinusoid_noise_variance(x)) * noise
  return x[:, np.newaxis].astype(np.float32), y.astype(np.float32)


def grid(low, high, num):
  """Evenly spaced inputs on [low, high], both ends included, as a model input.

  Args:
    low: float.
    high: float >= low.
    num: int >= 1, number of points.

  Returns:
    x: float32 array [num, 1].

  Raises:
    ValueError: if num < 1 or high < low.
  """
  num = int(num)
  if num < 1:
    raise ValueError(f"grid: num must be >= 1, got {num}.")
  if not high >= low:
    raise ValueError(f"grid: need low <= high, got low={low}, high={high}.")
  return np.linspace(low, high, num, dtype=np.float64)[:, np.newaxis].astype(np.float32)
