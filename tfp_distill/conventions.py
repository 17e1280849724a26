"""What a user's members output, and what inputs they expect: detected, reported, converted.

The library's own families fix one convention each (`families.CategoricalLogits`: the
members give logits; `families.HeteroscedasticNormal`: z = [mu, rho] with variance
softplus(rho) + c). Users' members follow many others. This module reads which one from
evidence, says why, and converts every member's output to the library's convention at
the teacher, so every loss, student and metric downstream sees the right distribution:

```none
classification  member output [batch, K]          -> K logits
  logits                                            as they are
  log-probs     log softmax (rows: logsumexp 0)     as they are (log p are logits)
  probs         softmax (rows: >= 0, sum 1)         log(max(p, 1e-8))
  sigmoid       one output p in [0, 1] (binary)     [log(1 - p), log p]  (floored)
  logit         one output l (binary)               [0, l]
regression      member output [batch, 2E] = [mu, s] -> z = [mu, rho], softplus(rho) + c
  softplus      s2 = softplus(s) + c                  as they are
  log-variance  s2 = exp(s)                           rho = softplus^-1(s2 - c)
  log-std       s2 = exp(2 s)
  variance      s2 = s                 (s > 0)
  std           s2 = s^2               (s > 0)
  point         [batch, E] = mu only (trained with MSE): s2 = a noise variance estimated
                from residuals (`estimate_noise_variance`), the same for every input
```
For regression c is min(min_variance, 1e-3 min s2 over the rows seen), so the conversion
is exact on the data (a member's variance below c elsewhere is raised to c).

Evidence, in order: an explicit argument; the last layer of a Keras model (a softmax,
log-softmax or sigmoid activation); the outputs themselves (rows that are probability
vectors; rows whose logsumexp is 0); and for what the outputs cannot tell (the variance
parameterization; a binary output in [0, 1]), the members' likelihood of labelled
training rows under each reading. When the evidence cannot decide, `ConventionError`
says so in one line naming the argument (`--teacher-output`, `--variance`).
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill import families as families_lib
from tfp_distill._keras import keras

__all__ = ["CLASSIFICATION_OUTPUTS", "ConventionError", "IMAGE_SCALES", "OutputConvention",
           "PROBABILITY_FLOOR", "VARIANCES", "classification_skill", "decide_by_likelihood",
           "detect_classification", "detect_regression", "estimate_noise_variance",
           "expected_pixel_scale", "last_activation", "regression_skill"]

CLASSIFICATION_OUTPUTS = ("auto", "logits", "probs", "log-probs")
VARIANCES = ("auto", "softplus", "log-variance", "log-std", "variance", "std", "point")
IMAGE_SCALES = ("auto", "raw", "unit")

PROBABILITY_FLOOR = 1e-8
"""Probabilities are raised to this floor before their log: a class a member gives less
than 1e-8 gets the logit log(1e-8) = -18.4. The softmax of the floored logs moves no
probability by more than K * 1e-8."""

# Rows are probability vectors when their entries are >= -tol and their sums within
# tol of 1; float32 softmax outputs sum to 1 within a few K eps (eps = 1.2e-7).
_SUM_TOL_PER_CLASS = 1e-5
# The likelihood evidence must favour one reading by more than this many standard
# errors of the paired per-row difference, and by more than this many nats per row.
_DECISIVE_SE = 3.0
_DECISIVE_NATS = 0.01


class ConventionError(ValueError):
  """The evidence cannot decide a convention, or contradicts the one given; one line."""

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))


@dataclasses.dataclass
class OutputConvention:
  """How the members' outputs are read, and why.

  Attributes:
    task: "classification" or "regression".
    kind: the convention: a name in `CLASSIFICATION_OUTPUTS` (or "sigmoid", "logit" for a
      one-output binary member) or in `VARIANCES` (or "point").
    decided_by: "argument", "model config", "outputs" or "likelihood".
    reason: str, one sentence of evidence.
    family: the library family of the converted outputs (`CategoricalLogits(K)` or
      `HeteroscedasticNormal(E, c)`).
    details: dict of JSON values (e.g. each reading's NLL on the labelled rows).
    noise_variance: float [E] list or None, the point-prediction members' noise variance.
  """

  task: str
  kind: str
  decided_by: str
  reason: str
  family: object
  details: dict = dataclasses.field(default_factory=dict)
  noise_variance: list | None = None

  def convert(self, z):
    """One member's (or all members') outputs -> the family's z.

    Args:
      z: float array or Tensor [..., outputs] (the members' raw outputs).

    Returns:
      float32 Tensor [..., family.params_size] (classification: [..., K]).
    """
    z = tf.cast(tf.convert_to_tensor(z), tf.float32)
    if self.task == "classification":
      return _to_logits(z, self.kind)
    return _to_softplus_params(z, self.kind, self.family.min_variance,
                               self.noise_variance)

  def as_dict(self):
    """JSON for report.json."""
    out = {"task": self.task, "kind": self.kind, "decided_by": self.decided_by,
           "reason": self.reason, "family": families_lib.serialize(self.family),
           "details": self.details}
    if self.noise_variance is not None:
      out["noise_variance"] = [float(v) for v in self.noise_variance]
    return out

  def describe(self):
    """One line for the log: the convention and why."""
    return f"teacher outputs read as {self.kind} ({self.decided_by}: {self.reason})"


# ---------------------------------------------------------------------------------------
# Conversions (TensorFlow, so the converted teacher runs in a graph).


def _log_floor(p):
  return tf.math.log(tf.maximum(p, PROBABILITY_FLOOR))


def _to_logits(z, kind):
  if kind in ("logits", "log-probs"):
    return z
  if kind == "probs":
    return _log_floor(z)
  if kind == "sigmoid":
    p = tf.clip_by_value(z, 0.0, 1.0)
    return tf.concat([_log_floor(1.0 - p), _log_floor(p)], axis=-1)
  if kind == "logit":
    return tf.concat([tf.zeros_like(z), z], axis=-1)
  raise ValueError(f"Unknown classification output kind {kind!r}.")


def _variance(s, kind, softplus_floor=0.0):
  """The variance s2 that output s means under `kind` (TensorFlow or NumPy in, same out)."""
  lib = tf.math if isinstance(s, tf.Tensor) else np
  if kind == "softplus":
    softplus = tf.math.softplus if lib is tf.math else _np_softplus
    return softplus(s) + softplus_floor
  if kind == "log-variance":
    return lib.exp(s)
  if kind == "log-std":
    return lib.exp(2.0 * s)
  if kind == "variance":
    return s
  if kind == "std":
    return s * s
  raise ValueError(f"Unknown variance parameterization {kind!r}.")


def _np_softplus(s):
  return np.logaddexp(0.0, s)


def _to_softplus_params(z, kind, floor, noise_variance):
  if kind == "point":
    mu = z
    s2 = tf.broadcast_to(tf.constant(noise_variance, tf.float32), tf.shape(mu))
  else:
    e = z.shape[-1] // 2
    mu, s = z[..., :e], z[..., e:]
    if kind == "softplus":                  # already the family's convention
      return z
    s2 = _variance(s, kind)
  # softplus(rho) + c = s2: rho = softplus^-1(s2 - c), s2 raised to 1.0001 c at least.
  excess = tf.maximum(s2 - floor, floor * 1e-4)
  rho = excess + tf.math.log(-tf.math.expm1(-excess))
  return tf.concat([mu, rho], axis=-1)


# ---------------------------------------------------------------------------------------
# Evidence.


def last_activation(member):
  """The activation that ends a Keras model ("softmax", "sigmoid", "log_softmax",
  "linear", ...), or None when it cannot be read (a SavedModel, a callable).

  Reads the last layer: its `activation` attribute (Dense, Conv, Activation), or the
  layer itself when it is a Softmax layer.
  """
  if not (isinstance(member, keras.Model) or _keras3.is_keras3_object(member)):
    return None
  layers = getattr(member, "layers", None)
  if not layers:
    return None
  last = layers[-1]
  if type(last).__name__ == "Softmax":
    return "softmax"
  if hasattr(last, "layers") and last.layers:        # a nested model ends the member
    return last_activation(last)
  activation = getattr(last, "activation", None)
  if activation is None:
    return "linear" if type(last).__name__ in ("Dense", "EinsumDense") else None
  name = getattr(activation, "__name__", None) or type(activation).__name__
  return str(name).lower()


def expected_pixel_scale(member):
  """The pixel scale a Keras model's first layers say it takes: "raw" (0-255) when it
  begins with a Rescaling by about 1/255 or a Normalization whose mean is above 2,
  "unit" ([0, 1]) when it begins with a Normalization whose mean is below 1.5, else None
  (no evidence: the model takes whatever it was trained on)."""
  if not (isinstance(member, keras.Model) or _keras3.is_keras3_object(member)):
    return None
  for layer in list(getattr(member, "layers", []))[:3]:
    name = type(layer).__name__
    if name == "Rescaling":
      scale = np.asarray(getattr(layer, "scale", 1.0), np.float64)
      if np.all(np.abs(scale * 255.0 - 1.0) < 0.05) or np.all(
          np.abs(scale * 127.5 - 1.0) < 0.05):
        return "raw"
      return None
    if name == "Normalization":
      mean = getattr(layer, "mean", None)
      if mean is None:
        return None
      mean = float(np.mean(np.asarray(mean)))
      return "raw" if mean > 2.0 else ("unit" if mean < 1.5 else None)
    if name not in ("InputLayer",):
      return None
  return None


_ACTIVATION_KIND = {"softmax": "probs", "log_softmax": "log-probs", "sigmoid": "sigmoid",
                    "linear": "logits"}


def _output_kind(z):
  """What one member's outputs [n, K] look like: "probs", "log-probs", "logits" (K > 1);
  "unit" (every value in [0, 1]) or "logit" (K = 1)."""
  k = z.shape[-1]
  if k == 1:
    return "unit" if np.all((z >= 0) & (z <= 1)) else "logit"
  tol = _SUM_TOL_PER_CLASS * k
  if np.all(z >= -tol) and np.all(np.abs(z.sum(-1) - 1.0) <= tol):
    return "probs"
  if np.all(z <= tol):
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    if np.all(np.abs(lse) <= tol):
      return "log-probs"
  return "logits"


def _categorical_nll_rows(logits, y):
  """Per-row NLL of labels y [n] under the mean of the members' softmax [n, M, K]."""
  logits = np.asarray(logits, np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  probs = np.exp(log_p).mean(1)                                      # [n, K]
  return -np.log(np.maximum(probs[np.arange(len(y)), y], 1e-300))


def decide_by_likelihood(nll_rows, what, flag):
  """Picks the reading whose per-row NLLs are lowest if the evidence is decisive.

  Decisive: the paired per-row difference to the runner-up averages more than 3 of its
  standard errors and more than 0.01 nats.

  Args:
    nll_rows: {reading: float array [n]} of per-row NLLs (the same rows for each).
    what: str, what is being decided (for the message).
    flag: str, the argument that sets it (for the message).

  Returns:
    (best reading, details dict).

  Raises:
    ConventionError: the best two are too close (the message names `flag`).
  """
  return _decide(nll_rows, what, flag)


def _decide(nll_rows, what, flag):
  """Picks the reading with the lowest mean NLL if the evidence is decisive.

  Args:
    nll_rows: {reading: float array [n]} of per-row NLLs.

  Returns:
    (best, details dict); raises ConventionError when the best two are too close.
  """
  means = {k: float(np.mean(v)) for k, v in nll_rows.items()}
  order = sorted(means, key=means.get)
  details = {"mean_nll": means, "rows": int(len(next(iter(nll_rows.values()))))}
  if len(order) == 1:
    return order[0], details
  best, second = order[0], order[1]
  diff = nll_rows[second] - nll_rows[best]
  se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
  details["margin_nats"] = float(np.mean(diff))
  details["margin_se"] = se
  if np.mean(diff) > max(_DECISIVE_SE * se, _DECISIVE_NATS):
    return best, details
  raise ConventionError(
      f"The {what} cannot be told from the evidence: on {len(diff)} labelled rows the "
      f"members' NLL is {means[best]:.4f} read as {best} and {means[second]:.4f} read as "
      f"{second} (difference {np.mean(diff):.4f} +- {se:.4f} nats). Pass {flag} {best} "
      f"or {flag} {second}.")


def _outputs(z, flag, value, choices):
  """z as float64 [n, members, outputs] and its shape; refuses a value not in choices."""
  if value not in choices:
    raise ConventionError(f"{flag} must be one of {', '.join(choices)}, got {value!r}.")
  z = np.asarray(z, np.float64)
  if z.ndim != 3:
    raise ConventionError(f"The members' outputs must be [rows, members, outputs], got "
                          f"shape {list(z.shape)}.")
  return z, z.shape


def detect_classification(z, y=None, members=None, teacher_output="auto"):
  """How classification members' outputs are to be read.

  Args:
    z: float array [n, members, outputs]: the members' raw outputs on training rows.
    y: None or int array [n] of labels (needed only to tell a one-output member's
      probability from its logit when both fit).
    members: None or the member objects (their last layer is read when they are Keras
      models).
    teacher_output: "auto" or a name in `CLASSIFICATION_OUTPUTS`.

  Returns:
    OutputConvention (family `CategoricalLogits(K)`, K = outputs, or 2 for one output).

  Raises:
    ConventionError: the given convention contradicts the outputs, or the evidence
      cannot decide (names `--teacher-output`).
  """
  z, (n, m, k) = _outputs(z, "--teacher-output", teacher_output, CLASSIFICATION_OUTPUTS)
  flag = "--teacher-output"
  looks = [_output_kind(z[:, j]) for j in range(m)]
  num_classes = 2 if k == 1 else k
  family = families_lib.CategoricalLogits(num_classes)

  def done(kind, by, reason, details=None):
    return OutputConvention("classification", kind, by, reason, family, details or {})

  if teacher_output != "auto":
    kind = teacher_output
    if k == 1:
      kind = {"probs": "sigmoid", "logits": "logit"}.get(kind)
      if kind is None:
        raise ConventionError(f"{flag} log-probs does not fit members with one output; a "
                              "one-output binary member gives a probability (probs) or a "
                              "logit (logits).")
    for j, look in enumerate(looks):
      bad = ((kind in ("probs",) and look != "probs")
             or (kind == "log-probs" and look not in ("log-probs",))
             or (kind == "sigmoid" and look != "unit"))
      if bad:
        raise ConventionError(
            f"{flag} {teacher_output}, but member {j}'s outputs are not "
            f"{'probabilities' if kind in ('probs', 'sigmoid') else 'log-probabilities'} "
            f"(min {z[:, j].min():.4g}, max {z[:, j].max():.4g}, row sums "
            f"{z[:, j].sum(-1).min():.4g}..{z[:, j].sum(-1).max():.4g}).")
    return done(kind, "argument", f"{flag} {teacher_output}")

  configs = [last_activation(member) for member in (members or [])]
  configured = {c for c in configs if c is not None}
  if k > 1:
    kinds = set(looks)
    if len(kinds) > 1:
      raise ConventionError(f"The members' outputs look different: {', '.join(sorted(kinds))} "
                            f"(member by member: {', '.join(looks)}); pass {flag}.")
    kind = looks[0]
    evidence = {"probs": f"every row of every member is >= 0 and sums to 1 (within "
                         f"{_SUM_TOL_PER_CLASS * k:.0e})",
                "log-probs": "every row's logsumexp is 0",
                "logits": "the rows are not probability vectors (negative values, or sums "
                          "other than 1)"}[kind]
    named = sorted(configured)
    if named:
      said = {_ACTIVATION_KIND.get(c, "logits") for c in configured}
      evidence += f"; the members' last activation: {', '.join(named)}"
      if kind == "logits" and said & {"probs", "log-probs"}:
        raise ConventionError(f"The members end in {', '.join(named)} but their outputs "
                              f"are not probability vectors on {n} rows; pass {flag}.")
    return done(kind, "outputs", evidence, {"rows_checked": int(n)})

  # One output per member: a binary classifier's probability or logit.
  said = {_ACTIVATION_KIND.get(c, "logits") for c in configured}
  if "unit" not in looks:
    return done("logit", "outputs", "one output per member with values outside [0, 1]")
  if said == {"sigmoid"}:
    return done("sigmoid", "model config", "one output per member, last activation "
                "sigmoid, values in [0, 1]")
  if said == {"logits"}:
    return done("logit", "model config", "one output per member, last activation linear")
  if y is None:
    raise ConventionError(f"Each member gives one value in [0, 1] per row: a probability "
                          f"or a logit? No labels to tell; pass {flag} probs or {flag} "
                          "logits.")
  rows = {kind: _categorical_nll_rows(_to_logits(tf.constant(z, tf.float32), kind).numpy(),
                                      np.asarray(y))
          for kind in ("sigmoid", "logit")}
  kind, details = _decide(rows, "meaning of the members' one output",
                          flag + " probs|logits")
  return done(kind, "likelihood", f"labelled rows are more likely with the output read as "
              f"{'a probability' if kind == 'sigmoid' else 'a logit'}", details)


def _mixture_nll_rows(mu, s2, y):
  """Per-row NLL of y [n, E] under the members' equal mixture of Normals [n, M, E]."""
  log_n = -0.5 * (np.log(2 * np.pi * s2) + (y[:, None, :] - mu) ** 2 / s2)   # [n, M, E]
  log_n = log_n.sum(-1)                                                     # [n, M]
  top = log_n.max(1, keepdims=True)
  return -(top[:, 0] + np.log(np.exp(log_n - top).mean(1)))


def _calibration(mu, s2, y):
  """Mean over rows of the members' mean (y - mu)^2 / s2, and its standard error.

  Args:
    mu, s2: float arrays [n, members, E]; y: float array [n, E].
  """
  per_row = ((y[:, None, :] - mu) ** 2 / s2).mean(axis=(1, 2))
  se = float(np.std(per_row, ddof=1) / math.sqrt(len(per_row))) if len(per_row) > 1 \
      else math.inf
  return float(per_row.mean()), se


def detect_regression(z, y=None, variance="auto", min_variance=1e-3, noise_variance="auto",
                      noise_rows=None):
  """How regression members' outputs are to be read.

  Args:
    z: float array [n, members, outputs]: the members' raw outputs on training rows
      (outputs = 2 E: a mean and a variance parameter per target; or E: point
      predictions).
    y: None or float array [n] / [n, E] of targets (needed to choose a variance
      parameterization, and to tell point predictions from two-output members).
    variance: "auto" or a name in `VARIANCES`.
    min_variance: float, the floor c of the softplus convention (and the largest floor
      of the converted family).
    noise_variance: "auto" (estimated, see `estimate_noise_variance`) or a float or [E]
      floats: the point-prediction members' noise variance.
    noise_rows: None or (z_rows [r, members, E], y_rows [r] / [r, E]): labelled rows the
      members did not train on, to estimate the noise variance from (default: the rows
      of `z`, `y`, whose residuals are too small if the members trained on them).

  Returns:
    OutputConvention (family `HeteroscedasticNormal(E, c)`).

  Raises:
    ConventionError: the evidence cannot decide, or contradicts `variance` (names
      `--variance`).
  """
  z, (n, m, outputs) = _outputs(z, "--variance", variance, VARIANCES)
  flag = "--variance"
  y2 = None if y is None else np.asarray(y, np.float64).reshape(len(y), -1)
  targets = None if y2 is None else y2.shape[1]
  if targets is not None and outputs not in (targets, 2 * targets):
    raise ConventionError(f"The members give {outputs} values per row for {targets} "
                          f"target(s): expected {targets} (point predictions) or "
                          f"{2 * targets} (a mean and a variance parameter per target).")
  if variance == "point":
    point = True
  elif targets is not None:
    point = outputs == targets
  elif outputs % 2:
    point = True                 # an odd count cannot be (mean, variance) pairs
  elif variance == "auto":
    raise ConventionError(f"No labels: the members' {outputs} outputs could be point "
                          f"predictions of {outputs} targets or a mean and a variance "
                          f"parameter of {outputs // 2}; pass {flag} (point, or one of "
                          f"{', '.join(VARIANCES[1:-1])}).")
  else:
    point = False
  if point:
    e = outputs
    if noise_variance in (None, "auto"):
      source = noise_rows if noise_rows is not None else (z, y2)
      if source[1] is None:
        raise ConventionError("The members give point predictions (one value per "
                              "target) and there are no labelled rows to estimate their "
                              "noise variance from: pass --noise-variance.")
      noise = estimate_noise_variance(np.asarray(source[0], np.float64), source[1])
      how = (f"estimated from the residuals of the ensemble's mean on {len(source[1])} "
             + ("held-out labelled rows" if noise_rows is not None else
                "labelled training rows (too small if the members trained on them: "
                "then set --noise-variance, e.g. to their validation MSE)"))
    else:
      noise = np.broadcast_to(np.asarray(noise_variance, np.float64), (e,)).copy()
      if not (np.all(np.isfinite(noise)) and np.all(noise > 0)):
        raise ConventionError(f"--noise-variance must be > 0, got {noise_variance!r}.")
      how = "given (--noise-variance)"
    floor = float(min(min_variance, 1e-3 * noise.min()))
    family = families_lib.HeteroscedasticNormal(e, floor)
    return OutputConvention(
        "regression", "point", "argument" if variance == "point" else "outputs",
        (f"{flag} point" if variance == "point" else
         f"{outputs} output(s) per member for {targets} target(s)")
        + f": point predictions; aleatoric variance = a noise variance {how}", family,
        {"noise_variance": noise.tolist(), "noise_variance_from": how},
        noise_variance=noise.tolist())
  e = outputs // 2
  s = z[..., e:]
  if variance != "auto":
    if variance in ("variance", "std") and not np.all(s > 0):
      raise ConventionError(f"{flag} {variance}, but the members' second outputs include "
                            f"values <= 0 (min {s.min():.4g}): not a {variance}.")
    kind, by, reason, details = variance, "argument", f"{flag} {variance}", {}
  else:
    if y2 is None:
      raise ConventionError(f"No labelled rows to tell how the members' second output "
                            f"gives the variance: pass {flag} (one of "
                            f"{', '.join(VARIANCES[1:-1])}).")
    candidates = [k for k in VARIANCES[1:-1]
                  if k not in ("variance", "std") or np.all(s > 0)]
    mu = z[..., :e]
    rows, variances = {}, {}
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
      for k in candidates:
        s2 = _variance(s, k, min_variance)
        if not np.all(np.isfinite(s2)) or not np.all(s2 > 0):
          continue
        variances[k] = s2
        rows[k] = _mixture_nll_rows(mu, s2, y2)
    rows = {k: v for k, v in rows.items() if np.all(np.isfinite(v))}
    if not rows:
      raise ConventionError(f"No variance parameterization gives finite likelihoods on "
                            f"the labelled rows: pass {flag}.")
    calibration = {k: _calibration(mu, variances[k], y2) for k in rows}
    try:
      kind, details = _decide(rows, "variance parameterization of the members' second "
                              "output", flag)
      reason = (f"the members' NLL of {len(y2)} labelled training rows is lowest read as "
                f"{kind}")
    except ConventionError:
      order = sorted(rows, key=lambda k: float(np.mean(rows[k])))
      a, b = order[0], order[1]
      gap = float(np.median(np.abs(variances[a] / variances[b] - 1.0)))
      details = {"mean_nll": {k: float(np.mean(v)) for k, v in rows.items()},
                 "median_relative_variance_gap": gap}
      calibrated = [k for k in (a, b) if abs(calibration[k][0] - 1.0)
                    <= _DECISIVE_SE * calibration[k][1]]
      if gap <= 0.01:
        # Too close on the likelihood, and harmless: the readings give the same variances.
        kind = a
        reason = (f"{a} and {b} give the same variances on these rows (median relative "
                  f"difference {gap:.2g}); {a} has the lower NLL")
      elif len(calibrated) == 1:
        # Close on the likelihood (flat near its optimum), but members trained with a
        # Gaussian NLL have E[(y - mu)^2 / s2] = 1 on their training rows under their
        # own reading: a first-order condition, which separates readings the NLL cannot.
        kind = calibrated[0]
        other = b if kind == a else a
        reason = (f"the NLLs are close, but only {kind} makes the members calibrated on "
                  f"their training rows: mean (y - mu)^2 / s2 = "
                  f"{calibration[kind][0]:.3f} +- {calibration[kind][1]:.3f} read as "
                  f"{kind}, {calibration[other][0]:.3f} +- {calibration[other][1]:.3f} "
                  f"as {other}")
      else:
        raise
    details["calibration"] = {k: {"mean_squared_z": float(v[0]), "se": float(v[1])}
                              for k, v in calibration.items()}
    by = "likelihood"
  if kind == "softplus":
    floor = float(min_variance)
  else:
    s2 = _variance(s, kind)
    positive = s2[np.isfinite(s2) & (s2 > 0)]
    floor = float(min(min_variance, 1e-3 * positive.min())) if positive.size else float(
        min_variance)
  family = families_lib.HeteroscedasticNormal(e, floor)
  return OutputConvention("regression", kind, by, reason, family, details)


def estimate_noise_variance(mu, y):
  """The noise variance of point-prediction members from their residuals.

  ```none
  sigma2_noise = mean_rows (y - mean_m mu_m)^2 - mean_rows Var_m[mu_m]      (per target)
  ```
  The squared error of the ensemble's mean is the noise plus the part of the error the
  members' spread already accounts for (their epistemic variance), so that part is taken
  off. Use rows the members were not trained on: on their own training rows the
  residuals are too small.

  Args:
    mu: float array [n, members, E] (or [n, members]).
    y: float array [n] or [n, E].

  Returns:
    float array [E], each at least 1e-6 times the targets' variance (and > 0).
  """
  mu = np.asarray(mu, np.float64)
  if mu.ndim == 2:
    mu = mu[..., None]
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  mean = mu.mean(1)
  spread = mu.var(1).mean(0)
  residual = ((y - mean) ** 2).mean(0)
  floor = np.maximum(1e-6 * y.var(0), 1e-12)
  return np.maximum(residual - spread, floor)


# ---------------------------------------------------------------------------------------
# Skill: is the ensemble better than chance on labelled rows?


def classification_skill(logits, y):
  """Accuracy of the members' mean softmax on labelled rows, against chance.

  Chance is the most frequent class's share (what always answering it scores). The
  ensemble is "at chance" when its accuracy is below chance + max(3 standard errors,
  a tenth of the way from chance to 1).

  Args:
    logits: float array [n, members, K] (converted outputs).
    y: int array [n].

  Returns:
    dict: accuracy, chance, threshold, at_chance (bool), rows.
  """
  logits = np.asarray(logits, np.float64)
  y = np.asarray(y)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p = (p / p.sum(-1, keepdims=True)).mean(1)
  accuracy = float(np.mean(p.argmax(-1) == y))
  counts = np.bincount(y, minlength=logits.shape[-1])
  chance = float(counts.max() / len(y))
  se = math.sqrt(max(chance * (1 - chance), 1e-12) / len(y))
  threshold = chance + max(3 * se, 0.1 * (1 - chance))
  return {"accuracy": accuracy, "chance": chance, "threshold": float(threshold),
          "at_chance": bool(accuracy < threshold), "rows": int(len(y))}


def regression_skill(mean, y):
  """R^2 of the ensemble's mean prediction on labelled rows (<= 0: no skill).

  Args:
    mean: float array [n] or [n, E].
    y: float array [n] or [n, E].

  Returns:
    dict: r2 (averaged over targets), at_chance (bool: r2 <= 0), rows.
  """
  mean = np.asarray(mean, np.float64).reshape(len(y), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  ss_res = ((y - mean) ** 2).sum(0)
  ss_tot = ((y - y.mean(0)) ** 2).sum(0)
  r2 = float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-300)))
  return {"r2": r2, "at_chance": bool(r2 <= 0.0), "rows": int(len(y))}
