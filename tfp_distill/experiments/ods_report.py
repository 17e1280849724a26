"""The ODS study's targets and report (`tfp-distill ods`; the study: ods.py).

```none
runs (method -> one run per seed) ──► paired_difference: metric[method] - metric[base]
                                      per seed, mean and standard error
                                  ──► targets: met / not met beyond 2 standard errors
report ──► format_markdown: the method table, OOD, diversity, the deep-ensemble curve
```
Reports written before td.report.header (and the oldest, before `labels_on`) render as
they are.
"""

import numpy as np

from tfp_distill.experiments import _common

__all__ = ["format_markdown", "labels_of", "paired_difference", "targets"]


def labels_of(num_teachers):
  """Each method's name in tables and figures, for a teacher of `num_teachers` members."""
  e = num_teachers
  return {"batchens": f"BatchEns-{e}", "kd": "+ KD", "kd-gaussian": "+ KD + Gaussian",
          "kd-ods": "+ KD + ODS", "kd-confods": "+ KD + ConfODS",
          "dirichlet": "EnD^2 Dirichlet", "dirichlet-ods": "EnD^2 Dirichlet + ODS",
          "gaussian": "Gaussian over logits", "gaussian-ods": "Gaussian over logits + ODS"}


def paired_difference(runs, base, method, key, cap=None):
  """Mean and standard error over seeds of metric[method] - metric[base], paired by seed.

  Both methods' students of one seed share their initial weights and the order of their
  batches, so the per-seed difference removes most of the seed-to-seed spread.

  Args:
    runs: dict method -> list of saved runs (each with "seed" and "metrics").
    base, method: method names.
    key: metric name.
    cap: optional float; values above it (a DEE beyond the measured curve is inf) are
      set to it first.

  Returns:
    (mean, standard error (nan for one seed), number of seeds both methods ran).
  """
  a = {r["seed"]: r["metrics"][key] for r in runs.get(base, [])}
  b = {r["seed"]: r["metrics"][key] for r in runs.get(method, [])}
  seeds = sorted(set(a) & set(b))
  if not seeds:
    return float("nan"), float("nan"), 0
  values = np.array([[a[s], b[s]] for s in seeds], np.float64)
  if cap is not None:
    values = np.minimum(values, cap)
  diff = values[:, 1] - values[:, 0]
  se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
  return float(np.mean(diff)), se, len(diff)


def _verdict(mean, se, n, sign):
  """'met' / 'not met' beyond 2 standard errors, else 'tie'; one seed: 'one seed only'."""
  if n == 0 or not np.isfinite(mean):
    return "not measured"
  if n < 2:
    return "one seed only: " + ("better" if sign * mean > 0 else "not better")
  if sign * mean > 2 * se:
    return "met"
  if sign * mean < -2 * se:
    return "not met"
  return "tie (within 2 standard errors)"


def _target(runs, base, method, key, sign, cap=None):
  mean, se, n = paired_difference(runs, base, method, key, cap)
  return {"base": base, "method": method, "metric": key, "difference": mean,
          "standard_error": se, "seeds": n, "verdict": _verdict(mean, se, n, sign)}


def targets(runs, num_members):
  """The issue's targets from seed-paired differences, reported whether met or not.

  A target is "met" only when the paired difference is in the wanted direction by more
  than 2 standard errors over seeds, "not met" when it is in the other direction by as
  much, and a tie otherwise.
  """
  out = {}
  if runs.get("kd") and runs.get("kd-confods"):
    out["kd_confods_nll_below_kd"] = _target(runs, "kd", "kd-confods", "nll", -1)
    out["kd_confods_dee_above_kd"] = _target(runs, "kd", "kd-confods", "dee", +1,
                                             cap=num_members)
  improved = []
  for base in ("dirichlet", "gaussian"):
    if runs.get(base) and runs.get(f"{base}-ods"):
      keys = ["nll"] + [k for k in runs[base][0]["metrics"] if k.startswith("ood_auroc_mi_")]
      for key in keys:
        row = _target(runs, base, f"{base}-ods", key, -1 if key == "nll" else +1)
        out[f"{base}_ods_{key}"] = row
        if row["verdict"] == "met":
          improved.append(f"{base}: {key}")
  if any(runs.get(m) for m in ("dirichlet-ods", "gaussian-ods")):
    out["ods_improves_a_distribution_student"] = bool(improved)
    out["ods_improvements"] = improved
  return out


def _cell(value, digits, largest=None):
  """'mean +- std' (std only over >= 2 seeds); a DEE beyond the measured curve: '> M'."""
  mean, std, n = value
  if largest is not None and not np.isfinite(mean):
    return f"> {largest}"
  return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} +- {std:.{digits}f}"


def format_markdown(report):
  """The report as Markdown: the method table, OOD, diversity, DE curve, timings."""
  config = report["config"]
  labels = labels_of(config["num_teachers"])
  e, m = config["num_teachers"], config["num_members"]
  summary = report["summary"]
  lines = [f"# ODS study: {config['dataset']}", "",
           f"Teacher: DeepEns-{e} (the first {e} of {m} small CNNs, filters "
           f"{config['filters']}, dense {config['dense_units']}, {config['member_epochs']} "
           f"epochs). Students: {config['student_epochs']} epochs on the training images; "
           f"KD T = {config['kd_temperature']:g}, a = {config['kd_alpha']:g}, label CE "
           # Reports from before `labels_on` existed put the labels on the perturbed batch.
           f"on the {config.get('labels_on', 'perturbed')} batch; ODS step "
           f"{config['step_size']:.4g} (teacher T {config['ods_temperature']:g}); Gaussian "
           f"noise scale {config['gaussian_scale']:.4g}. Mean +- std over seeds "
           f"{list(config['seeds'])}. Calibrated NLL: temperature fitted on one half of "
           "the test set, scored on the other (5 random splits, both ways); DEE from the "
           f"calibrated NLL against deep ensembles of 1..{m}. Images: " + ", ".join(
               f"{k} {v}" for k, v in report["sizes"].items()) + ".", "",
           "| method | ACC | NLL | Brier | ECE | calibrated NLL | DEE | mean MI (test) | "
           "train s |", "|---|---|---|---|---|---|---|---|---|"]
  for name, row in report["teachers"].items():
    lines.append(f"| T: {name} | {row['accuracy']:.4f} | {row['nll']:.4f} | "
                 f"{row['brier']:.4f} | {row['ece']:.4f} | {row['calibrated_nll']:.4f} | "
                 f"- | - | - |")
  for method, s in summary.items():
    seconds = np.mean([r["train_seconds"] for r in report["runs"][method]])
    lines.append(f"| S: {labels[method]} | " + " | ".join(
        _cell(s[k], d, m if k == "dee" else None)
        for k, d in (("accuracy", 4), ("nll", 4), ("brier", 4), ("ece", 4),
                     ("calibrated_nll", 4), ("dee", 2), ("mean_mutual_information", 4))) +
                 f" | {seconds:.0f} |")
  ood_keys = [k for s in summary.values() for k in s if k.startswith("ood_auroc_")]
  ood_keys = list(dict.fromkeys(ood_keys))
  if ood_keys:
    lines += ["", "## OOD detection AUROC (OOD positive)", "",
              "| method | " + " | ".join(k[len("ood_auroc_"):].replace("_", " ", 1)
                                        for k in ood_keys) + " |",
              "|---|" + "---|" * len(ood_keys)]
    for method, s in summary.items():
      lines.append(f"| {labels[method]} | " + " | ".join(
          _cell(s[k], 3) if k in s else "n/a" for k in ood_keys) + " |")
  lines += ["", f"## Diversity: DeepEns-{e} on {config['diversity_size']} training images",
            "", "| inputs | step | RMS change per pixel | teacher MI | pairs disagreeing |",
            "|---|---|---|---|---|"]
  for kind, rows in report["diversity"].items():
    for r in rows:
      lines.append(f"| {kind} | {r['step_size']:g} | {r['rms_change']:.4f} | "
                   f"{r['mutual_information']:.4f} | {r['disagreement']:.4f} |")
  lines += ["", "## Deep ensembles of 1..M members (mean over member subsets)", "",
            "| size | subsets | ACC | NLL | calibrated NLL | ECE |", "|---|---|---|---|---|---|"]
  for r in report["deep_ensemble_curve"]:
    lines.append(f"| {r['size']} | {r['subsets']} | {r['accuracy']:.4f} | {r['nll']:.4f} | "
                 f"{r['calibrated_nll']:.4f} | {r['ece']:.4f} |")
  lines += ["", "## Targets (the issue's, reported whether met or not)", ""]
  if any(isinstance(v, dict) for v in report["targets"].values()):
    lines += ["Paired by seed (difference = method - base); met only beyond 2 standard "
              "errors of the paired difference.", ""]
  for key, value in report["targets"].items():
    if isinstance(value, dict):
      se = ("" if value["seeds"] < 2 else f" +- {value['standard_error']:.4f} s.e.")
      lines.append(f"- {labels.get(value['method'], value['method'])} vs "
                   f"{labels.get(value['base'], value['base'])}, {value['metric']}: "
                   f"{value['verdict']} (difference {value['difference']:+.4f}{se}, "
                   f"{value['seeds']} seeds)")
    elif isinstance(value, bool):   # the boolean targets of earlier reports
      lines.append(f"- {key.replace('_', ' ')}: {'met' if value else '**not met**'}")
    else:
      lines.append(f"- {key.replace('_', ' ')}: {', '.join(value) or 'none'}")
  if "train_seconds_all_runs" in report:
    lines += ["", f"Training time of all {sum(len(r) for r in report['runs'].values())} "
              f"student runs in this report, some possibly trained by an earlier call: "
              f"{report['train_seconds_all_runs']:.0f} s."]
  return "\n".join(lines + _common.markdown_footer(report))
