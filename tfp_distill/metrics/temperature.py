"""Temperature scaling and the deep-ensemble equivalent (DEE) of [5].

`optimal_temperature`, `calibrated_nll` and `cross_validated_nll` (temperature scaling of
logits or log-probabilities, the latter with the test-time cross-validation of [5]), and
`deep_ensemble_equivalent` (DEE of [5]). These summarise a few scalars and work in NumPy
float64, returning Python floats.

#### References

Numbered as in the `tfp_distill.metrics` docstring.

[5]: Arsenii Ashukha, Alexander Lyzhov, Dmitry Molchanov, Dmitry Vetrov. Pitfalls of
     In-Domain Uncertainty Estimation and Ensembling in Deep Learning. ICLR 2020.
     arXiv:2002.06470.
"""

import numpy as np

__all__ = [
    "optimal_temperature",
    "calibrated_nll",
    "cross_validated_nll",
    "deep_ensemble_equivalent",
]


# ----------------------------------------------------------------------------------------
# Temperature scaling and the deep-ensemble equivalent (DEE).
# ----------------------------------------------------------------------------------------


def _scaled_nll(labels, logits, temperature):
  z = logits / temperature
  z = z - z.max(axis=-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
  return float(-log_p[np.arange(len(labels)), labels].mean())


def _check_logits(fn_name, labels, logits):
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or len(labels) != len(logits) or len(labels) == 0:
    raise ValueError(f"{fn_name}: expected labels [batch] and logits [batch, classes] with "
                     f"batch >= 1, got {list(labels.shape)} and {list(logits.shape)}.")
  if labels.min() < 0 or labels.max() >= logits.shape[1]:
    raise ValueError(f"{fn_name}: labels must lie in [0, {logits.shape[1]}).")
  if not np.all(np.isfinite(logits)):
    raise ValueError(f"{fn_name}: logits contain NaN or Inf.")
  return labels, logits


def optimal_temperature(labels, logits, low=0.05, high=20.0, tolerance=1e-4):
  """The temperature T minimising the NLL of softmax(logits / T) (temperature scaling).

  Golden-section search over log T in [log low, log high] (the NLL is unimodal in T for
  logits that are not all equal per row). Pass log-probabilities (e.g. the log of an
  ensemble's mean probabilities) as `logits` to calibrate an ensemble as in [5].

  Args:
    labels: int array [batch].
    logits: float array [batch, classes].
    low, high: float > 0, the search interval.
    tolerance: float, width of the final interval in log T.

  Returns:
    float T.
  """
  labels, logits = _check_logits("optimal_temperature", labels, logits)
  a, b = np.log(low), np.log(high)
  ratio = (np.sqrt(5.) - 1.) / 2.
  c, d = b - ratio * (b - a), a + ratio * (b - a)
  fc, fd = (_scaled_nll(labels, logits, np.exp(v)) for v in (c, d))
  while b - a > tolerance:
    if fc < fd:
      b, d, fd = d, c, fc
      c = b - ratio * (b - a)
      fc = _scaled_nll(labels, logits, np.exp(c))
    else:
      a, c, fc = c, d, fd
      d = a + ratio * (b - a)
      fd = _scaled_nll(labels, logits, np.exp(d))
  return float(np.exp((a + b) / 2.))


def calibrated_nll(labels, logits, temperature=None):
  """NLL of softmax(logits / T) with T from `optimal_temperature` (or the one given).

  [5] fits T on the test set itself ("calibrated log-likelihood"); pass a temperature
  fitted on held-out data to avoid that optimism.

  Args:
    labels: int array [batch].
    logits: float array [batch, classes] (or log-probabilities).
    temperature: None or float > 0.

  Returns:
    float, mean NLL in nats.
  """
  labels, logits = _check_logits("calibrated_nll", labels, logits)
  if temperature is None:
    temperature = optimal_temperature(labels, logits)
  if not temperature > 0:
    raise ValueError(f"calibrated_nll: temperature must be > 0, got {temperature}.")
  return _scaled_nll(labels, logits, float(temperature))


def cross_validated_nll(labels, logits, repeats=5, seed=0):
  """Calibrated NLL with test-time cross-validation, as [5] computes it for DEE.

  ```none
  repeat `repeats` times: split the examples at random into halves A, B;
    NLL(B at the T fitted on A) and NLL(A at the T fitted on B)
  return the mean of the 2 * repeats values (each half weighted by its size)
  ```
  The temperature is never fitted on the examples it is scored on.

  Args:
    labels: int array [batch], batch >= 2.
    logits: float array [batch, classes] (or log-probabilities).
    repeats: int >= 1, random splits.
    seed: int, seeds the splits.

  Returns:
    float, mean NLL in nats.
  """
  labels, logits = _check_logits("cross_validated_nll", labels, logits)
  if len(labels) < 2 or int(repeats) < 1:
    raise ValueError(f"cross_validated_nll: need >= 2 examples and repeats >= 1, got "
                     f"{len(labels)} and {repeats}.")
  rng = np.random.default_rng(seed)
  total = 0.
  for _ in range(int(repeats)):
    order = rng.permutation(len(labels))
    halves = order[:len(order) // 2], order[len(order) // 2:]
    for fit, score in (halves, halves[::-1]):
      t = optimal_temperature(labels[fit], logits[fit])
      total += _scaled_nll(labels[score], logits[score], t) * len(score)
  return float(total / (int(repeats) * len(labels)))


def deep_ensemble_equivalent(nll, ensemble_nlls):
  """DEE [5]: the size of a deep ensemble whose (calibrated) NLL equals `nll`.

  ```none
  ensemble_nlls[l - 1] = NLL of a deep ensemble of l members, l = 1..M
  NLL_DE(l) interpolated linearly between integer sizes
  DEE = min { l >= 1 : NLL_DE(l) <= nll }
  ```
  A method no better than one member has DEE = 1; one better than the largest ensemble
  measured has an unknown DEE > M, returned as `inf`. If the curve is not monotone, the
  first crossing counts.

  Args:
    nll: float, the method's (calibrated) NLL.
    ensemble_nlls: float array [M], NLL of deep ensembles of sizes 1..M.

  Returns:
    float in [1, M], or inf.
  """
  curve = np.asarray(ensemble_nlls, np.float64).reshape(-1)
  if curve.size == 0 or not np.all(np.isfinite(curve)) or not np.isfinite(nll):
    raise ValueError("deep_ensemble_equivalent: need a finite nll and a non-empty finite "
                     f"ensemble_nlls [M], got {nll!r} and {curve.tolist()}.")
  if nll >= curve[0]:
    return 1.0
  for l in range(1, len(curve)):
    lo, hi = curve[l - 1], curve[l]
    if hi <= nll:
      return float(l + (lo - nll) / (lo - hi))   # sizes l and l + 1, linearly
  return float("inf")
