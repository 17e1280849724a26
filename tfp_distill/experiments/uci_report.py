"""The UCI benchmark's summary over splits and its report (`tfp-distill uci`).

```none
run_split / run_ood_split results (uci.py), one per split
   ──► aggregate / aggregate_ood: mean, standard error and values of every metric and
       fidelity statistic over splits, per data set and model; the keys every report
       has (td.report.header); the published numbers beside ours
   ──► format_markdown / format_ood_markdown / format_fidelity_markdown
```
Reports written before td.report.header and td.metrics.uncertainty_fidelity (the
measured ones in docs/uci) are read as they are: their seconds per split under
"timings_s" (`seconds_per_split`), their fidelity's mean relative error (MRE).
"""

import numpy as np

import tfp_distill as td

__all__ = ["PUBLISHED", "REFERENCE", "aggregate", "aggregate_ood",
           "format_fidelity_markdown", "format_markdown", "format_mean_stderr",
           "format_ood_markdown", "seconds_per_split", "students_inputs_words"]

#: The second, independent ensemble of the noise ceiling (seed offset from the first).
REFERENCE = "second_ensemble"

#: Published numbers (mean over splits), marked as such in every report.
#: Lindqvist et al. 2020, Table 1: ensemble (M = 10) and distilled, RMSE / NLL / AUSE.
#: Lakshminarayanan et al. 2017, Table 1: Deep Ensembles (M = 5), RMSE / NLL.
PUBLISHED = {
    "lindqvist2020_ensemble": {
        "concrete": {"rmse": 8.08, "nll": 3.47, "ause": 0.36},
        "wine": {"rmse": 0.65, "nll": 0.99, "ause": 0.50},
        "yacht": {"rmse": 2.86, "nll": 3.41, "ause": 0.28},
        "kin8nm": {"rmse": 0.11, "nll": -0.72, "ause": 0.30},
        "power": {"rmse": 4.31, "nll": 3.10, "ause": 0.57},
    },
    "lindqvist2020_distilled": {
        "concrete": {"rmse": 8.64, "nll": 3.80, "ause": 0.34},
        "wine": {"rmse": 0.65, "nll": 1.05, "ause": 0.58},
        "yacht": {"rmse": 3.42, "nll": 4.30, "ause": 0.34},
        "kin8nm": {"rmse": 0.12, "nll": -0.27, "ause": 0.37},
        "power": {"rmse": 4.33, "nll": 3.67, "ause": 0.64},
    },
    "deep_ensembles2017": {
        "boston": {"rmse": 3.28, "nll": 2.41},
        "concrete": {"rmse": 6.03, "nll": 3.06},
        "energy": {"rmse": 2.09, "nll": 1.38},
        "kin8nm": {"rmse": 0.09, "nll": -1.20},
        "naval": {"rmse": 0.00, "nll": -5.63},
        "power": {"rmse": 4.11, "nll": 2.79},
        "protein": {"rmse": 4.71, "nll": 2.83},
        "wine": {"rmse": 0.64, "nll": 0.94},
        "yacht": {"rmse": 1.58, "nll": 1.18},
    },
}


def _summary(values):
  values = np.asarray(values, np.float64)
  stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
  return {"mean": float(values.mean()), "stderr": float(stderr), "values": values.tolist()}


def _summarise(items):
  """Nested dicts with float leaves (one per split) -> the same tree of `_summary`s.

  Keys missing from some splits (e.g. a section older results lack) are summarised over
  the splits that have them; a leaf that no split defines (a correlation of a constant:
  None) is None.
  """
  present = [item for item in items if item is not None]
  if not present:
    return None
  if not isinstance(present[0], dict):
    return _summary(present)
  keys = list(dict.fromkeys(k for item in present for k in item))
  return {key: _summarise([item.get(key) if item else None for item in items])
          for key in keys}


def _seconds(splits):
  stages = list(dict.fromkeys(k for s in splits for k in s["timings_s"]))
  return {stage: float(np.mean([s["timings_s"].get(stage, np.nan) for s in splits]))
          for stage in stages}


def seconds_per_split(report):
  """{data set: {stage: mean seconds per split}} of a report, old or new: reports
  written before the shared schema (`td.report.header`) kept these under "timings_s"."""
  if "seconds_per_split" in report:
    return report["seconds_per_split"]
  return report["timings_s"]


def aggregate(results, config, timings=None):
  """Per data set and model: mean, standard error and per-split values of each metric.

  Args:
    results: dict name -> list of `run_split` results.
    config: the `UCIConfig` used.
    timings: None or {stage: seconds} of the call that summarises (`td.report.header`).

  Returns:
    dict with the keys every report has (`td.report.header`), "config_key", "results"
    (name -> model -> metric -> {"mean", "stderr", "values"}), "fidelity" (name ->
    student -> part -> statistic -> {"mean", "stderr", "values"}; see `run_split`),
    "noise_ceiling" (name -> part -> statistic -> ...), "num_splits",
    "seconds_per_split" (name -> stage -> mean seconds per split), "published". Splits
    saved before a section existed are left out of its summary.
  """
  table, fidelity, ceiling, seconds, counts = {}, {}, {}, {}, {}
  for name, splits in results.items():
    if not splits:
      continue
    counts[name] = len(splits)
    table[name] = {
        model: {metric: _summary([s["metrics"][model][metric] for s in splits])
                for metric in ("rmse", "nll", "ause")}
        for model in splits[0]["metrics"]}
    with_fidelity = [s["fidelity"] for s in splits if "fidelity" in s]
    if with_fidelity:
      fidelity[name] = _summarise(with_fidelity)
    with_ceiling = [s["noise_ceiling"] for s in splits if "noise_ceiling" in s]
    if with_ceiling:
      ceiling[name] = _summarise(with_ceiling)
    seconds[name] = _seconds(splits)
  return {**td.report.header(config, timings or {}), "config_key": config.key(),
          "results": table, "fidelity": fidelity, "noise_ceiling": ceiling,
          "num_splits": counts, "seconds_per_split": seconds, "published": PUBLISHED}


def aggregate_ood(results, config, timings=None):
  """The OOD protocol's report: mean, standard error and values over splits.

  Args:
    results: dict name -> list of `run_ood_split` results.
    config: the `UCIConfig` used.
    timings: None or {stage: seconds} of the call that summarises (`td.report.header`).

  Returns:
    dict with the keys every report has (`td.report.header`), "config_key", "protocol",
    "results" (name -> model -> {"rmse_in", "nll_in", "rmse_ood", "nll_ood"} ->
    summary), "ood_auroc" (name -> model -> {"epistemic", "total"} -> summary),
    "fidelity_in", "fidelity_ood", "noise_ceiling_in", "noise_ceiling_ood",
    "num_splits", "n_ood", "seconds_per_split".
  """
  report = {**td.report.header(config, timings or {}), "config_key": config.key(),
            "results": {}, "ood_auroc": {}, "fidelity_in": {}, "fidelity_ood": {},
            "noise_ceiling_in": {}, "noise_ceiling_ood": {}, "num_splits": {},
            "n_ood": {}, "seconds_per_split": {}, "protocol": None}
  for name, splits in results.items():
    if not splits:
      continue
    report["num_splits"][name] = len(splits)
    report["n_ood"][name] = splits[0]["n_ood"]
    report["protocol"] = splits[0]["protocol"]
    for section in ("metrics", "ood_auroc", "fidelity_in", "fidelity_ood",
                    "noise_ceiling_in", "noise_ceiling_ood"):
      present = [s[section] for s in splits if section in s]
      if present:
        report["results" if section == "metrics" else section][name] = _summarise(present)
    report["seconds_per_split"][name] = _seconds(splits)
  return report


def format_mean_stderr(mean, stderr, digits=3):
  """'mean +- stderr' with `digits` decimals, more (up to 6) where the standard error
  needs them for two significant digits (naval's RMSE is ~0.002 +- 0.0003)."""
  if stderr > 0:
    digits = int(min(6, max(digits, 1 - np.floor(np.log10(stderr)))))
  return f"{mean:.{digits}f} +- {stderr:.{digits}f}"


def _cell(summary, digits=3):
  return format_mean_stderr(summary["mean"], summary["stderr"], digits)


#: The relative error column of the fidelity tables: relative L1 (`td.metrics.
#: uncertainty_fidelity`), or the mean relative error of reports written before it.
_ERROR_COLUMNS = {"relative_l1": "rel. L1", "mean_relative_error": "MRE"}


def format_fidelity_markdown(report, part="epistemic"):
  """One table over data sets: Spearman / Pearson of a variance part, students and ceiling.

  Columns: for each student with that part and for the second ensemble, Spearman rho and
  Pearson r of its per-test-point variance against the ensemble's (mean +- s.e. over
  splits), then the students' relative L1 error (an older report's mean relative error,
  MRE).
  """
  names = list(report.get("fidelity") or {})   # reports before 2026-12 have none
  if not names:
    return ""
  first = report["fidelity"][names[0]]
  students = [k for k in first if first[k] and part in first[k]]
  columns = students + ([REFERENCE] if report.get("noise_ceiling") else [])
  cells = [cell for s in report["fidelity"].values() for kind in s.values() if kind
           for cell in kind.values()]
  error = next((k for k in _ERROR_COLUMNS if any(cell and k in cell for cell in cells)),
               "relative_l1")
  header = ["data set"] + [f"{c} rho" for c in columns] + [f"{c} r" for c in columns] + [
      f"{c} {_ERROR_COLUMNS[error]}" for c in students]
  lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
  for name in names:
    def stat(column, statistic):
      tree = (report["noise_ceiling"].get(name) if column == REFERENCE
              else report["fidelity"][name].get(column))
      if not tree or part not in tree or not tree[part].get(statistic):
        return "-"
      return _cell(tree[part][statistic], 2)
    row = ([stat(c, "spearman") for c in columns] + [stat(c, "pearson") for c in columns]
           + [stat(c, error) for c in students])
    lines.append(f"| {name} | " + " | ".join(row) + " |")
  return "\n".join(lines)


def format_markdown(report):
  """The report as Markdown: our rows (mean +- stderr) beside the published ones."""
  lines = ["# UCI regression: ensemble distribution distillation", "",
           "Mean +- standard error over splits, original units. Rows marked *published* "
           "are copied from the papers, not measured here.", ""]
  inputs = students_inputs_words(report.get("config") or {})
  if inputs:
    lines += [inputs, ""]
  for name, models in report["results"].items():
    n = report["num_splits"][name]
    lines += [f"## {name} ({n} splits)", "", "| model | RMSE | NLL | AUSE |",
              "|---|---:|---:|---:|"]
    for model, metrics in models.items():
      cells = [f"{metrics[m]['mean']:.3f} +- {metrics[m]['stderr']:.3f}"
               for m in ("rmse", "nll", "ause")]
      lines.append(f"| {model} (ours) | " + " | ".join(cells) + " |")
    for source, label in (("lindqvist2020_ensemble", "ensemble, Lindqvist 2020"),
                          ("lindqvist2020_distilled", "distilled, Lindqvist 2020"),
                          ("deep_ensembles2017", "Deep Ensembles M=5, 2017")):
      pub = report["published"][source].get(name)
      if pub:
        cells = [f"{pub[m]:.2f}" if m in pub else "-" for m in ("rmse", "nll", "ause")]
        lines.append(f"| {label} (*published*) | " + " | ".join(cells) + " |")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in seconds_per_split(report)[name].items())
    lines += ["", f"Seconds per split: {stages}.", ""]
  if report.get("fidelity"):
    lines += ["## Fidelity of the uncertainty split", "",
              "Agreement of each student's per-test-point variance with the ensemble's "
              "(`td.metrics.uncertainty_fidelity`: Spearman rho, Pearson r, relative L1 "
              "error sum|s - e| / sum|e|, or in older reports the mean relative error "
              f"MRE; mean +- s.e. over splits). `{REFERENCE}` is a second ensemble of "
              "the same protocol and other seeds: its agreement with the first is the "
              "noise ceiling.", ""]
    for part in ("epistemic", "aleatoric"):
      lines += [f"### {part.capitalize()} variance", "",
                format_fidelity_markdown(report, part), ""]
  return "\n".join(lines)


def students_inputs_words(config):
  """A sentence on the students' inputs when they differ from the defaults (box inputs,
  a longer schedule), else ""."""
  words = []
  if config.get("box_share"):
    expand = config.get("box_expand", 0.5)
    words.append(f"box inputs, {config['box_share']:g} of the training and jittered "
                 "inputs per epoch (uniform on the data's box widened by "
                 f"{expand:g} of its range on each side)")
  if config.get("marginal_share"):
    words.append(f"marginal inputs, {config['marginal_share']:g} of the training and "
                 "jittered inputs per epoch (each feature from a random training row)")
  if config.get("far_share"):
    low, high = config.get("far_scale", (1.0, 4.0))
    words.append(f"far inputs, {config['far_share']:g} of the training and jittered "
                 f"inputs per epoch (a training row plus noise of {low:g} to {high:g} "
                 "feature sd)")
  if config.get("student_min_steps"):
    words.append(f"at least {config['student_min_steps']} optimizer steps")
  return ("The students distil with " + " and ".join(words) + ".") if words else ""


def format_ood_markdown(report):
  """The OOD protocol's report: AUROC by epistemic variance, then RMSE / NLL in and out."""
  protocol = report["protocol"] or {}
  lines = ["# UCI out-of-distribution: PCA hold-out", "",
           f"The {protocol.get('holdout_fraction', 0.1):.0%} of rows farthest along the "
           "first principal component of the standardized inputs are held out as OOD; "
           "models train on random "
           f"{1 - protocol.get('test_fraction', 0.1):.0%}/"
           f"{protocol.get('test_fraction', 0.1):.0%} splits of the rest. AUROC of each "
           "model's variance for OOD (positive) against in-distribution test points; "
           "mean +- standard error over splits. The mixture student has no epistemic "
           f"part: its column uses its total variance. `{REFERENCE}`: a second ensemble "
           "(other seeds).", ""]
  inputs = students_inputs_words(report.get("config") or {})
  if inputs:
    lines[-1:-1] = [inputs, ""]
  names = list(report["ood_auroc"])
  if not names:
    return "\n".join(lines)
  models = list(report["ood_auroc"][names[0]])
  lines += ["| data set (splits, OOD points) | " + " | ".join(models) + " |",
            "|---" + "|---:" * len(models) + "|"]
  for name in names:
    cells = []
    for model in models:
      a = report["ood_auroc"][name][model]
      cells.append(_cell(a.get("epistemic", a["total"])) + ("" if "epistemic" in a
                                                              else " (total)"))
    lines.append(f"| {name} ({report['num_splits'][name]}, {report['n_ood'][name]}) | "
                 + " | ".join(cells) + " |")
  lines += ["", "## RMSE and NLL in distribution and on the held-out rows", "",
            "| data set | model | RMSE in | RMSE OOD | NLL in | NLL OOD |",
            "|---|---|---:|---:|---:|---:|"]
  for name in names:
    for model, m in report["results"][name].items():
      lines.append(f"| {name} | {model} | " + " | ".join(
          _cell(m[k]) for k in ("rmse_in", "rmse_ood", "nll_in", "nll_ood")) + " |")
  if report.get("fidelity_ood"):
    lines += ["", "## Fidelity of the epistemic variance on the OOD points", "",
              format_fidelity_markdown({"fidelity": report["fidelity_ood"],
                                        "noise_ceiling": report["noise_ceiling_ood"]},
                                       "epistemic"), ""]
  lines += ["", "Seconds per split: " + "; ".join(
      f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items())
      for name, t in seconds_per_split(report).items()) + ".", ""]
  return "\n".join(lines)
