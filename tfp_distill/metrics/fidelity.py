"""How faithfully one model's per-example uncertainties follow another's (a student's
against its ensemble's): one function, defined for every input, used by every report.

```none
pearson      linear correlation                    None when either side is constant
spearman     rank correlation (average ranks)      None when either side is constant
mean_ratio   mean(estimate) / mean(reference)      the size: 1 = same magnitude
relative_l1  sum|estimate - reference| / sum|reference|
sym_relative_error  mean_n |e_n - r_n| / (|e_n| + |r_n|), 0/0 counted as 0   in [0, 1]
```
`mean_relative_error` (|e - r| / |r| per example) is undefined where the reference is 0
(members that agree exactly, e.g. all saying probability 1.0); the two relative errors
above are defined there: `sym_relative_error` for every example, `relative_l1` whenever
the reference is not all zeros.
"""

import numpy as np

from tfp_distill.metrics import regression

__all__ = ["uncertainty_fidelity"]


def _finite_or_none(value):
  value = float(value)
  return value if np.isfinite(value) else None


def uncertainty_fidelity(estimate, reference):
  """Agreement of per-example uncertainties [n] with a reference's: rank, scale, error.

  Args:
    estimate: float array [n] (e.g. a student's epistemic uncertainty), finite, >= 0 is
      not required.
    reference: float array [n] (e.g. the ensemble's), the same shape.

  Returns:
    dict of Python floats (None where undefined, see the module docstring): "pearson",
    "spearman", "mean_ratio", "relative_l1", "sym_relative_error", and "n".

  Raises:
    ValueError: shapes differ, the inputs are empty, or hold NaN/Inf.

  #### Examples

  ```python
  u = td.predict_uncertainty(student, family, x)
  v = td.predict_uncertainty(ensemble, family, x)
  td.metrics.uncertainty_fidelity(u["epistemic"], v["epistemic"])["spearman"]
  ```
  """
  e = np.asarray(estimate, np.float64).reshape(-1)
  r = np.asarray(reference, np.float64).reshape(-1)
  if e.shape != r.shape:
    raise ValueError(f"uncertainty_fidelity: estimate has {e.size} values and reference "
                     f"{r.size}; they must match.")
  if e.size == 0:
    raise ValueError("uncertainty_fidelity: empty inputs.")
  if not (np.all(np.isfinite(e)) and np.all(np.isfinite(r))):
    raise ValueError("uncertainty_fidelity: the inputs must be finite (no NaN/Inf).")
  constant = np.ptp(e) == 0 or np.ptp(r) == 0
  out = {"n": int(e.size)}
  if constant:
    out["pearson"] = out["spearman"] = None
  else:
    out["pearson"] = _finite_or_none(regression.pearson_correlation(e, r))
    out["spearman"] = _finite_or_none(regression.spearman_correlation(e, r))
  mean_r = np.mean(r)
  out["mean_ratio"] = _finite_or_none(np.mean(e) / mean_r) if mean_r != 0 else (
      1.0 if np.mean(e) == 0 else None)
  total = np.sum(np.abs(r))
  out["relative_l1"] = (_finite_or_none(np.sum(np.abs(e - r)) / total) if total > 0
                        else (0.0 if np.all(e == 0) else None))
  scale = np.abs(e) + np.abs(r)
  ratio = np.divide(np.abs(e - r), scale, out=np.zeros_like(scale), where=scale > 0)
  out["sym_relative_error"] = float(np.mean(ratio))
  return out
