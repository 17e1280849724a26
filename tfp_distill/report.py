"""The report of a distillation: the ensemble beside its student, and a verdict in words.

```none
evaluate(...)  ─► metrics  classification: accuracy, nll, brier, ece
                           regression: rmse, nll, ause
               ─► fidelity of the student's total / aleatoric / epistemic uncertainty to
                  the ensemble's (td.metrics.uncertainty_fidelity: defined everywhere,
                  zero-uncertainty examples included)
               ─► ood      AUROC / AUPR of the epistemic uncertainty (test vs ood inputs)
               ─► speed    td.predict_uncertainty, the ensemble's time over the student's
verdict(report) ─► where the student falls short of the ensemble, beyond the tolerances
                  in VERDICT_TOLERANCES, and what to try
header(config, timings) ─► the keys every report shares: config, versions, date,
                  wall_time_s, timings_s
```
"""

import dataclasses
import datetime
import time

import numpy as np
import tensorflow as tf

from tfp_distill import families as families_lib
from tfp_distill import losses as losses_lib
from tfp_distill import metrics as metrics_lib
from tfp_distill import plots
from tfp_distill import predict as predict_lib
from tfp_distill import uncertainty as uncertainty_lib

__all__ = ["FAR_DISTANCES", "VERDICT_TOLERANCES", "classification_metrics", "evaluate",
           "family_dict", "far_points_block", "fidelity_figure", "format_markdown", "header",
           "regression_metrics", "roc_figure", "speed", "verdict"]

VERDICT_TOLERANCES = {
    "accuracy_drop": 0.02,          # absolute
    "nll_gap_nats": 0.1,            # student NLL above the ensemble's, nats per example
    "nll_gap_relative": 0.1,        # ... and more than 10% above it
    "ece_gap": 0.02,                # absolute
    "rmse_ratio": 1.1,              # student RMSE / ensemble RMSE
    "spearman_epistemic": 0.5,      # rank correlation of the epistemic uncertainty
    "ood_auroc_drop": 0.02,         # absolute
    "magnitude_factor": 1.5,        # mean epistemic uncertainty, student / ensemble
}
"""Where the verdict calls a student short of its ensemble (see `verdict`)."""


def family_dict(family):
  """A family as JSON (`td.families.serialize`)."""
  return families_lib.serialize(family)


def header(config, timings):
  """The keys every report shares: config, versions, date, wall_time_s, timings_s.

  Args:
    config: a dataclass of settings (or a dict).
    timings: dict {stage: seconds}; "total" (if present) is the wall time.
  """
  import tensorflow_probability as tfp
  import tfp_distill
  values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
  return {"config": values,
          "versions": {"tensorflow": tf.__version__,
                       "tensorflow_probability": tfp.__version__,
                       "tfp_distill": tfp_distill.__version__},
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "wall_time_s": float(timings.get("total", sum(timings.values()))),
          "timings_s": {k: float(v) for k, v in timings.items()}}


def classification_metrics(labels, probs):
  """Accuracy, NLL, Brier and ECE (15 equal-width bins) as floats."""
  m = metrics_lib
  return {"accuracy": float(m.accuracy(labels, probs)),
          "nll": float(m.categorical_nll(labels, probs)),
          "brier": float(m.brier_score(labels, probs)),
          "ece": float(m.expected_calibration_error(labels, probs, num_bins=15))}


def regression_metrics(y, u, nll):
  """RMSE, the NLL given, and AUSE (one target) from the decomposition u."""
  y = np.asarray(y).reshape(len(y), -1)
  prediction = np.asarray(u["prediction"]).reshape(len(y), -1)
  out = {"rmse": float(np.sqrt(np.mean(np.square(prediction - y))))}
  if nll is not None:
    out["nll"] = float(nll)
  if y.shape[1] == 1:
    errors = np.abs(prediction[:, 0] - y[:, 0])
    out["ause"] = float(metrics_lib.ause(errors, np.asarray(u["total"])))
  return out


def _ensemble_nll(family, z, y):
  """Mean NLL of y [n] or [n, E] under the members' equal mixture of diagonal Normals."""
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  if family.event_size == 1:
    return float(metrics_lib.gaussian_mixture_nll(
        y[:, 0].astype(np.float32), family.mean(z)[..., 0], family.variance(z)[..., 0]))
  mu = np.asarray(family.mean(z), np.float64)                    # [n, M, E]
  var = np.asarray(family.variance(z), np.float64)
  log_n = -0.5 * (np.log(2 * np.pi * var) + (y[:, None, :] - mu) ** 2 / var).sum(-1)
  top = log_n.max(1, keepdims=True)
  return float(-np.mean(top[:, 0] + np.log(np.exp(log_n - top).mean(1))))


def _student_nll(student, family, method, x, y):
  """Mean NLL of y [n] or [n, E] under the student's predictive."""
  y = np.asarray(y, np.float32).reshape(len(y), -1)
  total = 0.0
  for i in range(0, len(x), 1024):
    dist = student(x[i:i + 1024], training=False)
    part = y[i:i + 1024]
    if not method.epistemic:
      log_p = dist.log_prob(part)
    else:
      log_p = losses_lib.predictive_log_prob(
          dist, family, part[:, 0] if family.event_size == 1 else part)
    total += float(tf.reduce_sum(log_p))
  return -total / len(x)


def _time(fn, repeats=3):
  fn()                                   # warm-up: tracing and compilation
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def speed(ensemble, teacher_family, student, student_family, x, num_samples, seed):
  """`td.predict_uncertainty` seconds of each (best of 3) on x, and their ratio."""
  x = x[:4096]
  ens_s = _time(lambda: predict_lib.predict_uncertainty(ensemble, teacher_family, x))
  stu_s = _time(lambda: predict_lib.predict_uncertainty(
      student, student_family, x, num_samples=num_samples, seed=seed))
  return {"examples": int(len(x)), "ensemble_s": ens_s, "student_s": stu_s,
          "speedup": ens_s / stu_s}


#: Distances (in training-data standard deviations beyond its edge) of the report's far
#: points, when no OOD data is given.
FAR_DISTANCES = (0.0, 1.0, 3.0)


def far_points_block(student_u, teacher, teacher_family, train_x, test_x, u_test):
  """OOD detection and fidelity on synthetic far points (tabular data, no --ood).

  The test rows moved beyond the training rows' range along random directions
  (`td.datasets.far.far_points`), at each of `FAR_DISTANCES`: for the ensemble and the
  student, the AUROC of the epistemic uncertainty (test rows vs far points), its mean
  there, and the student's fidelity to the ensemble's on those points.

  Returns:
    dict {distance (str): {"ensemble": {...}, "student": {...}, "fidelity": {...}}}.
  """
  from tfp_distill.datasets import far as far_lib
  points = far_lib.far_points(train_x, test_x, FAR_DISTANCES, "random", seed=0)
  out = {}
  for d, x_far in points.items():
    u_far = {"student": student_u(x_far),
             "ensemble": predict_lib.predict_uncertainty(teacher, teacher_family, x_far)}
    block = {}
    for name, uf in u_far.items():
      part = "epistemic" if "epistemic" in uf else "total"
      block[name] = {"score": part, "auroc": float(metrics_lib.ood_detection(
          u_test[name][part], uf[part])["auroc"]), "mean": float(np.mean(uf[part]))}
    if "epistemic" in u_far["student"]:
      block["fidelity"] = metrics_lib.uncertainty_fidelity(u_far["student"]["epistemic"],
                                                           u_far["ensemble"]["epistemic"])
    out[f"{d:g}"] = block
  return out


def evaluate(student, student_family, teacher, teacher_family, method, test, ood,
             z_test=None, z_ood=None, num_samples=100, seed=0, train_x=None):
  """The student beside the ensemble on the test (and OOD) data.

  Args:
    student: the trained student.
    student_family: the family `td.decompose` takes for it.
    teacher: a `td.Ensemble` giving `teacher_family`'s z, or None (precomputed outputs).
    teacher_family: the members' (converted) family.
    method: `td.methods.Method`.
    test: a DataSource (labels optional); ood: None or a DataSource.
    z_test, z_ood: None or the members' converted outputs [n, members, params] there
      (used when there is no teacher model).
    num_samples, seed: Monte Carlo settings for students without a closed form.
    train_x: None, or the training inputs: with tabular data, no `ood` and a teacher
      model, the report adds synthetic far points (`far_points_block`).

  Returns:
    dict: "metrics" ({"ensemble": ..., "student": ...}), "fidelity", "ood", "far",
    "speed", "figures" (arrays for `fidelity_figure` / `roc_figure`).
  """
  def student_u(x):
    return predict_lib.predict_uncertainty(student, student_family, x,
                                           num_samples=num_samples, seed=seed)

  def ensemble_u(x, z):
    if z is not None:
      return {k: np.asarray(v)
              for k, v in uncertainty_lib.decompose_ensemble(z, teacher_family).items()}
    if teacher is None:
      return None
    return predict_lib.predict_uncertainty(teacher, teacher_family, x)

  if z_test is None and teacher is not None:
    z_test = teacher.predict_targets(test.x)
  u = {"student": student_u(test.x), "ensemble": ensemble_u(test.x, z_test)}
  metrics = {}
  if test.y is not None:
    for name, uu in u.items():
      if uu is None:
        continue
      if teacher_family.task == "classification":
        metrics[name] = classification_metrics(test.y, uu["prediction"])
      else:
        nll = (_ensemble_nll(teacher_family, z_test, test.y) if name == "ensemble" else
               _student_nll(student, student_family, method, test.x, test.y))
        metrics[name] = regression_metrics(test.y, uu, nll)
  fidelity = {}
  if u["ensemble"] is not None:
    for part in ("total", "aleatoric", "epistemic"):
      if part in u["student"] and part in u["ensemble"]:
        fidelity[part] = metrics_lib.uncertainty_fidelity(u["student"][part],
                                                          u["ensemble"][part])
        fidelity[part]["student_mean"] = float(np.mean(u["student"][part]))
        fidelity[part]["ensemble_mean"] = float(np.mean(u["ensemble"][part]))
  ood_result, roc_panels = {}, {}
  if ood is not None:
    u_ood = {"student": student_u(ood.x),
             "ensemble": ensemble_u(ood.x, z_ood if teacher is None else None)}
    for name, uo in u_ood.items():
      if uo is None:
        continue
      part = "epistemic" if "epistemic" in uo else "total"
      result = metrics_lib.ood_detection(u[name][part], uo[part])
      ood_result[name] = {"score": part, "auroc": float(result["auroc"]),
                          "aupr": float(result["aupr"]),
                          "mean_in": float(np.mean(u[name][part])),
                          "mean_out": float(np.mean(uo[part]))}
      labels = np.concatenate([np.zeros(len(test.x)), np.ones(len(ood.x))])
      fpr, tpr = metrics_lib.roc_curve(labels, np.concatenate([u[name][part], uo[part]]))
      roc_panels.setdefault(f"{ood.name} vs {test.name}", {})[f"{name} ({part})"] = (
          np.asarray(fpr), np.asarray(tpr), float(result["auroc"]))
    # On the OOD inputs: how faithfully the student's uncertainty follows the ensemble's
    # (the same part for both; its rank correlation and size).
    if (u_ood["ensemble"] is not None
        and ood_result["student"]["score"] == ood_result["ensemble"]["score"]):
      part = ood_result["student"]["score"]
      ood_result["fidelity"] = metrics_lib.uncertainty_fidelity(u_ood["student"][part],
                                                                u_ood["ensemble"][part])
  far = {}
  if (ood is None and train_x is not None and test.x.ndim == 2 and u["ensemble"] is not None
      and teacher is not None):
    far = far_points_block(student_u, teacher, teacher_family, train_x, test.x, u)
  timing = None
  if teacher is not None:
    timing = speed(teacher, teacher_family, student, student_family, test.x, num_samples,
                   seed)
  figures = {"fidelity": (u["ensemble"], u["student"]) if fidelity else None,
             "roc": roc_panels or None}
  return {"metrics": metrics, "fidelity": fidelity, "ood": ood_result, "far": far,
          "speed": timing, "figures": figures}


def _off_by(ratio, factor):
  """Whether a student/ensemble ratio of mean uncertainties is outside 1/factor-factor."""
  return not 1 / factor <= ratio <= factor


def _both(student, ensemble):
  """The two means behind a ratio, as '0.0503 against 0.00824' ("" when either is
  unknown), so that a ratio of two near-zero values (members that agree to 1e-6 nats)
  reads as what it is."""
  if student is None or ensemble is None:
    return ""
  return f"{student:.3g} against {ensemble:.3g}"


def verdict(report):
  """Where the student falls short of its ensemble, in words, and what to try.

  Compares the report's blocks against `VERDICT_TOLERANCES`: accuracy, NLL, ECE (or
  RMSE, NLL), the rank correlation and size of the epistemic uncertainty, OOD AUROC; and
  says when the ensemble itself is weak (the sanity check) or training stopped at its
  epoch limit while the held-out loss was still falling.

  Returns:
    dict: "ok" (bool), "shortfalls" (list of str), "advice" (list of str), "summary"
    (str), "tolerances".
  """
  tol = VERDICT_TOLERANCES
  short, advice = [], []
  ens, stu = report.get("ensemble"), report.get("student")
  if ens and stu:
    if "accuracy" in ens:
      drop = ens["accuracy"] - stu["accuracy"]
      if drop > tol["accuracy_drop"]:
        short.append(f"accuracy {stu['accuracy']:.4f} against the ensemble's "
                     f"{ens['accuracy']:.4f} ({drop:.4f} lower)")
      if stu.get("ece") is not None and stu["ece"] - ens["ece"] > tol["ece_gap"]:
        short.append(f"ECE {stu['ece']:.4f} against the ensemble's {ens['ece']:.4f}")
    if "rmse" in ens and ens["rmse"] > 0 and stu["rmse"] / ens["rmse"] > tol["rmse_ratio"]:
      short.append(f"RMSE {stu['rmse']:.4g} against the ensemble's {ens['rmse']:.4g} "
                   f"({stu['rmse'] / ens['rmse']:.2f}x)")
    if ens.get("nll") is not None and stu.get("nll") is not None:
      gap = stu["nll"] - ens["nll"]
      if gap > tol["nll_gap_nats"] and gap > tol["nll_gap_relative"] * abs(ens["nll"]):
        short.append(f"NLL {stu['nll']:.4f} against the ensemble's {ens['nll']:.4f} "
                     f"({gap:.4f} nats higher)")
  epistemic = (report.get("fidelity") or {}).get("epistemic")
  if epistemic:
    rho = epistemic.get("spearman")
    if rho is not None and rho < tol["spearman_epistemic"]:
      short.append(f"its epistemic uncertainty ranks the test examples unlike the "
                   f"ensemble's (Spearman {rho:.3f} < {tol['spearman_epistemic']})")
    ratio = epistemic.get("mean_ratio")
    factor = tol["magnitude_factor"]
    if ratio is not None and _off_by(ratio, factor):
      means = _both(epistemic.get("student_mean"), epistemic.get("ensemble_mean"))
      short.append(f"its mean epistemic uncertainty is {ratio:.3g}x the ensemble's "
                   f"({means + '; ' if means else ''}outside {1 / factor:.3g}x-"
                   f"{factor:.3g}x): a threshold set on the ensemble's cannot be reused on "
                   "the student")
  ood = report.get("ood") or {}
  if "ensemble" in ood and "student" in ood:
    drop = ood["ensemble"]["auroc"] - ood["student"]["auroc"]
    if drop > tol["ood_auroc_drop"]:
      short.append(f"OOD AUROC {ood['student']['auroc']:.3f} against the ensemble's "
                   f"{ood['ensemble']['auroc']:.3f}")
    if (ood["ensemble"]["score"] == ood["student"]["score"] == "epistemic"
        and ood["ensemble"]["mean_out"] > 0):
      ratio = ood["student"]["mean_out"] / ood["ensemble"]["mean_out"]
      if _off_by(ratio, tol["magnitude_factor"]):
        means = _both(ood["student"]["mean_out"], ood["ensemble"]["mean_out"])
        short.append(f"on the OOD inputs its mean epistemic uncertainty is {ratio:.3g}x "
                     f"the ensemble's ({means})")
  for distance, block in (report.get("far") or {}).items():
    ens_far, stu_far = block.get("ensemble", {}), block.get("student", {})
    if ens_far.get("score") == "epistemic" and stu_far.get("score") == "epistemic":
      if ens_far["auroc"] - stu_far["auroc"] > tol["ood_auroc_drop"]:
        short.append(f"on far points {distance} sd beyond the data its epistemic AUROC is "
                     f"{stu_far['auroc']:.3f} against the ensemble's {ens_far['auroc']:.3f}")
      if ens_far["mean"] > 0:
        ratio = stu_far["mean"] / ens_far["mean"]
        if _off_by(ratio, tol["magnitude_factor"]):
          means = _both(stu_far["mean"], ens_far["mean"])
          short.append(f"on far points {distance} sd beyond the data its mean epistemic "
                       f"uncertainty is {ratio:.3g}x the ensemble's ({means})")
  schedule = report.get("schedule") or {}
  history = report.get("history") or {}
  val = history.get("val_loss") or []
  still_falling = (not schedule.get("stopped_early") and len(val) >= 3
                   and val[-1] < min(val[:-1]))
  if short:
    if still_falling:
      advice.append(f"training ended at its limit of {schedule.get('epochs')} epochs with "
                    "the held-out loss still falling: train longer (epochs, min_steps)")
    if report.get("task") == "classification" and report.get("method") == "end2":
      advice.append("method gaussian-logits (a Normal over the logits), or a larger "
                    "student")
    elif report.get("method") == "gaussian-logits-diagonal":
      advice.append("method gaussian-logits (a full-covariance Normal over the logits: "
                    "with Fashion-MNIST members the diagonal one's mutual information was "
                    "7-11x the ensemble's, the full one's 1.3-1.5x)")
    elif report.get("task") == "regression" and report.get("method") != "mvn":
      advice.append("method mvn (a full-covariance Normal over z)")
    off_data = any("OOD" in s or "epistemic" in s or "far points" in s for s in short)
    if off_data:
      used = [k for k in ((report.get("data") or {}).get("extra_inputs") or "").split("+")
              if k in ("far", "box", "marginal", "aux")]
      if used:
        others = [k for k in ("far", "box") if k not in used]
        tries = ([f"{' or '.join(others)} inputs instead"] if others else []) + [
            "other unlabelled data, nearer the OOD inputs (aux)" if "aux" in used
            else "unlabelled data near the OOD inputs (aux)"]
        advice.append(f"this run already distilled on {' and '.join(used)} inputs: try "
                      + ", or ".join(tries))
      else:
        advice.append("distil on inputs away from the training rows too (extra_inputs "
                      "with far or box, or unlabelled data with aux)")
    start = ((schedule.get("temperature") or {}).get("initial") or 1.0)
    if (off_data and report.get("method") == "end2" and start > 1
        and not report.get("temperature_choice")):
      images = (report.get("data") or {}).get("image_inputs")
      advice.append(f"the EnD^2 loss started at temperature {start:g}: a run at temperature "
                    "1 beside it" + (
                        " (the default for images: on seven ensembles of Fashion-MNIST "
                        "members it came nearer the ensemble on MNIST and Animal-MNIST "
                        "together)" if images else
                        " (nearer the ensemble off the data with Fashion-MNIST members; "
                        "on small tabular sets it was not)"))
    if not advice:
      advice.append("a larger student (student), more epochs, or another method")
  check = (report.get("conventions") or {}).get("ensemble_check") or {}
  if check.get("at_chance"):
    short.insert(0, f"the ensemble itself is at chance level ({check.get('said')}): the "
                    "student copies an ensemble that does not predict")
  if short:
    summary = "The student falls short of the ensemble: " + "; ".join(short) + "."
  elif ens and stu:
    summary = "The student matches the ensemble within the stated tolerances."
  else:
    summary = ("No labelled test data: only the uncertainties' fidelity and speed were "
               "compared." if not short else "")
  return {"ok": not short, "shortfalls": short, "advice": advice, "summary": summary,
          "tolerances": dict(tol)}


# ---------------------------------------------------------------------------------------
# Figures and Markdown.


def fidelity_figure(path, ensemble_u, student_u):
  """Scatter plots (log axes) of the student's uncertainties against the ensemble's.

  Examples with zero uncertainty on either side (members that agree exactly) cannot be
  drawn on log axes and are left out of the figure (the report's numbers keep them).

  Args:
    path: str, the PNG file.
    ensemble_u, student_u: dicts of NumPy arrays [n] ("total", "aleatoric",
      "epistemic"; those both have are drawn), as `td.predict_uncertainty` returns.
  """
  parts = [p for p in ("total", "aleatoric", "epistemic")
           if p in ensemble_u and p in student_u]
  panels = {}
  for part in parts:
    e, s = np.asarray(ensemble_u[part]), np.asarray(student_u[part])
    keep = (e > 0) & (s > 0)
    if keep.any():
      panels[part] = (e[keep], s[keep])
  if not panels:
    panels = {part: (np.asarray(ensemble_u[part]), np.asarray(student_u[part]))
              for part in parts}
    return plots.plot_scatter_grid(path, {"test set": panels}, "ensemble", "student",
                                   log=False, title="The student's uncertainties vs the "
                                   "ensemble's")
  return plots.plot_scatter_grid(path, {"test set": panels}, "ensemble", "student",
                                 log=True,
                                 title="The student's uncertainties vs the ensemble's")


def roc_figure(path, panels):
  """ROC curves of OOD detection (see `plots.plot_roc_curves`)."""
  return plots.plot_roc_curves(path, panels, title="OOD detection")


def _number(value, spec=".3f"):
  """A report number as text; None (not finite, or undefined) as "n/a"."""
  return "n/a" if value is None else format(value, spec)


def _times(ratio):
  """A speed ratio with 3 significant digits: 0.245x, 3.81x, 12.4x, 128x."""
  if ratio is None:
    return "n/a"
  return f"{ratio:.3g}x"


def _keras_words(report):
  """", a Keras 3 model" (or tf_keras) for the report's first line; "" if not recorded."""
  return {3: ", a Keras 3 model", 2: ", a tf_keras model"}.get(report.get("student_keras"),
                                                               "")


def temperature_choice_markdown(record):
  """The lines of report.md on temperature="choose" (`td.job.choice`)."""
  proxy = record["proxy"]
  lines = [f"The EnD^2 loss's starting temperature, chosen (temperature='choose'): a "
           f"student at each candidate, scored on {proxy['rows']} held-out training "
           f"images (never fitted) and {proxy['images']} copies of them under "
           f"{len(proxy['corruptions'])} corruptions at severity {proxy['severity']}"
           + (f" (as pixels in [0, {proxy['pixel_scale']}]: {proxy['pixel_scale_by']})"
              if proxy.get("pixel_scale") else "") + "; rule "
           f"`{record['rule']}` among the students within 0.02 nats of the default "
           f"({record['default']:g}) in NLL (against {proxy['nll_against']}):", "",
           "| temperature | AUROC, corrupted (ensemble) | mean MI, student / ensemble | "
           "Spearman | NLL gap | kept |", "|---:|---:|---:|---:|---:|:---:|"]
  for t, s in record["candidates"].items():
    kept = "yes" if float(t) == float(record["chosen"]) else ""
    lines.append(f"| {t} | {_number(s['student_auroc'])} ({_number(s['ensemble_auroc'])}) "
                 f"| {_number(float(np.exp(s['log_mean_ratio'])))} | "
                 f"{_number(s['ood_spearman'])} | {s['nll_gap']:+.4f} | {kept} |")
  return lines + [""]


def format_markdown(report):
  """The report as Markdown: verdict, metrics, fidelity, OOD, speed, decisions, times."""
  sizes = report["data"]["sizes"]
  extra = ("no extra inputs" if not sizes["extra_inputs"] else
           f"{sizes['extra_inputs']} {report['data']['extra_inputs']} inputs")
  verdict_block = report.get("verdict") or {}
  lines = [f"# Distilled student: {report['method']} ({report['task']})", "",
           f"Ensemble of {report['num_members']} members -> {report['student_model']} "
           f"student{_keras_words(report)} ({report.get('method_summary', report['method'])})"
           ". Train "
           f"{report['data']['train']} ({sizes['train']} rows, {extra}, "
           f"{sizes['early_stopping']} rows for early stopping; {report['epochs_run']} "
           f"epochs), test {report['data']['test']} ({sizes['test']}).", ""]
  if verdict_block.get("summary"):
    lines += ["## Verdict", "", verdict_block["summary"], ""]
    lines += [f"- Try: {a}" for a in verdict_block.get("advice", [])]
    if verdict_block.get("advice"):
      lines.append("")
  names = [n for n in ("ensemble", "student") if n in report]
  if names:
    keys = list(report[names[0]])
    lines += ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name in names:
      lines.append(f"| {name} | " + " | ".join(
          _number(report[name].get(k), ".4f") for k in keys) + " |")
    lines.append("")
  if report.get("fidelity"):
    lines += ["Fidelity of the student's uncertainties to the ensemble's (test set; "
              "`td.metrics.uncertainty_fidelity`):", "",
              "| part | Pearson | Spearman | mean, student / ensemble | relative L1 |",
              "|---|---:|---:|---:|---:|"]
    for part, a in report["fidelity"].items():
      lines.append(f"| {part} | {_number(a['pearson'])} | {_number(a['spearman'])} | "
                   f"{_number(a['mean_ratio'])} | {_number(a['relative_l1'])} |")
    lines.append("")
  if report.get("ood"):
    lines += [f"OOD detection of {report['data']['ood']}:", "",
              "| model | score | AUROC | AUPR | mean, test rows | mean, OOD inputs |",
              "|---|---|---:|---:|---:|---:|"]
    for name in ("ensemble", "student"):
      r = report["ood"].get(name)
      if r:
        lines.append(f"| {name} | {r['score']} | {_number(r['auroc'])} | "
                     f"{_number(r['aupr'])} | {_number(r.get('mean_in'))} | "
                     f"{_number(r.get('mean_out'))} |")
    a = report["ood"].get("fidelity")
    if a:
      lines += ["", f"On the OOD inputs, the student's uncertainty against the ensemble's: "
                f"Spearman {_number(a['spearman'])}, Pearson {_number(a['pearson'])}, mean "
                f"ratio {_number(a['mean_ratio'])}."]
    lines.append("")
  if report.get("far"):
    lines += ["Synthetic far points (the test rows moved beyond the training rows' range "
              "along random directions; no --ood was given): AUROC of the epistemic "
              "uncertainty against the test rows, its mean, and the student's rank "
              "correlation to the ensemble there:", "",
              "| beyond the data (sd) | ensemble AUROC | student AUROC | mean, student / "
              "ensemble | Spearman |", "|---:|---:|---:|---:|---:|"]
    for distance, block in report["far"].items():
      ens_far, stu_far = block["ensemble"], block["student"]
      ratio = (stu_far["mean"] / ens_far["mean"]) if ens_far.get("mean") else None
      rho = (block.get("fidelity") or {}).get("spearman")
      lines.append(f"| {distance} | {_number(ens_far['auroc'])} | "
                   f"{_number(stu_far['auroc'])} | {_number(ratio)} | {_number(rho)} |")
    lines.append("")
  if report.get("temperature_choice"):
    lines += temperature_choice_markdown(report["temperature_choice"])
  if report.get("speed"):
    s = report["speed"]
    lines += [f"Speed (`td.predict_uncertainty`, {s['examples']} test inputs, best of 3, "
              f"this machine): ensemble {1000 * s['ensemble_s']:.3g} ms, student "
              f"{1000 * s['student_s']:.3g} ms: the student is **{_times(s['speedup'])}** "
              "the ensemble's speed.", ""]
  lines += ["What was read from the evidence, and the run's log:", ""]
  lines += [f"- {note}" for note in report.get("notes", [])]
  lines += ["", "| stage | seconds |", "|---|---:|"]
  lines += [f"| {k} | {v:.1f} |" for k, v in report["timings_s"].items()]
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  return "\n".join(lines + ["", f"{versions}; {report['date']}.", ""])
