"""The many-classes study's report: the Markdown table and the metrics-against-K figure
(`tfp-distill many-classes`; the study: many_classes.py).

Reports written before the method registry and td.metrics.uncertainty_fidelity (the
measured ones in docs/many_classes) are read as they are: their proxy student "proxy"
is "proxy-dirichlet" (`canonical`), their MI relative error keeps its column.
"""

import numpy as np

import tfp_distill as td
from tfp_distill import plots

__all__ = ["LABELS", "METRICS", "MODELS", "PLOT_COLORS", "STUDENTS", "canonical",
           "format_markdown", "metrics_figure"]

#: The students, by their `td.methods` names (the report's keys). Reports written before
#: the registry called the proxy student "proxy" (an alias of "proxy-dirichlet"):
#: `canonical` renames it on reading.
STUDENTS = ("end2", "proxy-dirichlet")
MODELS = ("ensemble",) + STUDENTS
#: Each model's name in tables and figures.
LABELS = {"bayes": "Bayes posterior", "ensemble": "ensemble", "end2": "EnD^2",
          "proxy-dirichlet": "proxy-Dirichlet"}

#: Metrics per model, in table order: (key, column title, which models have it). The
#: students' MI fidelity is `td.metrics.uncertainty_fidelity`'s.
METRICS = (
    ("accuracy", "accuracy", ("bayes",) + MODELS),
    ("nll", "NLL", ("bayes",) + MODELS),
    ("ood_auroc_mi", "OOD AUROC (MI)", MODELS),
    ("ood_auroc_total", "OOD AUROC (total)", MODELS),
    ("mi_pearson", "MI Pearson r", STUDENTS),
    ("mi_spearman", "MI Spearman rho", STUDENTS),
    ("mi_mean_ratio", "MI mean ratio", STUDENTS),
    ("mi_relative_l1", "MI relative L1", STUDENTS),
    ("mean_mi_test", "mean MI, test", MODELS),
    ("mean_mi_ood", "mean MI, OOD", MODELS),
)
#: A column of reports written before `td.metrics.uncertainty_fidelity`: mean |MI_student
#: - MI_ensemble| / MI_ensemble over test points with MI_ensemble >= 1e-3 nats. Read (in
#: the table and the figure), never written.
_OLD_METRICS = (("mi_relative_error", "MI rel. error", STUDENTS),)

PLOT_COLORS = ("k", "tab:blue", "tab:green", "tab:red")   # Bayes, ensemble, EnD^2, proxy


def metrics_figure(path, config, results):
  """The metrics-against-K figure from a report's "results" (redraws a saved report).

  Args:
    path: str, the PNG file to write.
    config: `ManyClassesConfig`.
    results: dict, `report["results"]` (str(K) -> model -> metric -> {"mean", "sem"}).

  Returns:
    path.
  """
  results = {k: _renamed(per_model) for k, per_model in results.items()}
  ks = np.asarray(config.classes, np.float64)
  panels = {}
  for key, title, models in _columns(results):
    if key in ("mean_mi_ood",):
      continue
    panels[title] = {
        LABELS[name]: (ks, np.array([results[str(k)][name][key]["mean"]
                                      for k in config.classes]),
                        np.array([results[str(k)][name][key]["sem"]
                                  for k in config.classes]))
        for name in models}
  return plots.plot_error_lines(
      path, panels, "number of classes K", log_x=True, dashed=(LABELS["bayes"],),
      colors=dict(zip((LABELS[name] for name in ("bayes",) + MODELS), PLOT_COLORS)),
      title=f"Many classes: mean +- standard error over {len(config.seeds)} seeds",
      log_y=("MI relative L1", "MI rel. error", "mean MI, test"))


def _renamed(per_model):
  """{model: value} with old students' keys as their `td.methods` names ("proxy" ->
  "proxy-dirichlet"); other keys ("bayes", "ensemble") as they are."""
  def name(key):
    if key in ("bayes", "ensemble"):
      return key
    return td.methods.get(key, "classification").name
  return {name(k): v for k, v in per_model.items()}


def canonical(report):
  """A report (old or new) with the students under their `td.methods` names: the reports
  in docs/many_classes, written before the registry, call the proxy student "proxy"."""
  out = dict(report)
  out["models"] = _renamed(report["models"])
  for key in ("results", "gaps_to_ensemble"):
    out[key] = {k: _renamed(v) for k, v in report[key].items()}
  out["runs"] = [dict(r, metrics=_renamed(r["metrics"]), finite=_renamed(r["finite"]))
                 for r in report["runs"]]
  return out


def _columns(results):
  """`METRICS`, and the old metrics a report has (`_OLD_METRICS`), that any model in
  `results` (str(K) -> model -> metric -> summary) holds."""
  held = {key for per_model in results.values() for m in per_model.values() for key in m}
  return [c for c in METRICS + _OLD_METRICS if c[0] in held]


def _cell(summary, digits=4):
  """"mean +- sem", the mean alone for one seed, "n/a" for a metric the model lacks."""
  if summary is None:
    return "n/a"
  mean, sem = summary["mean"], summary["sem"]
  if mean is None:
    return "not finite"
  return f"{mean:.{digits}f}" if sem is None else f"{mean:.{digits}f} +- {sem:.{digits}f}"


def format_markdown(report):
  """The report as Markdown: the metrics table (rows K x model), the gaps, the data, times.

  Args:
    report: dict as returned by `run_many_classes`.

  Returns:
    str.
  """
  report = canonical(report)
  config = report["config"]
  columns = [(key, title) for key, title, _ in _columns(report["results"])]
  lines = [
      "# Many classes: EnD^2 and proxy-Dirichlet students as K grows", "",
      f"K-class Gaussian mixture in D = {config['dim']} dimensions, class means scaled so "
      f"that the Bayes-optimal accuracy is {config['bayes_accuracy']:g} at every K; "
      f"{config['num_train']} training examples in all (N / K per class), "
      f"{config['num_test']} test points, {config['num_ood']} OOD points from "
      f"{config['num_ood_classes']} held-out components. Ensemble of "
      f"{config['num_members']} MLPs (hidden {tuple(config['hidden'])}, "
      f"{config['member_epochs']} epochs); both students are the same MLP with a "
      f"Dirichlet head, start from the same weights and train together on the same "
      f"batches ({config['student_epochs']} epochs over the training inputs and "
      f"{config['num_unlabeled']} unlabeled in-distribution inputs, temperature "
      f"{config['initial_temperature']:g} -> 1 over epochs {config['anneal_start']}-"
      f"{config['anneal_end']}); only the loss differs. Mean +- standard error over "
      f"seeds {tuple(config['seeds'])}.", "",
      "| K | model | " + " | ".join(title for _, title in columns) + " |",
      "|---|---|" + "---:|" * len(columns)]
  for k, per_model in report["results"].items():
    for name, metrics in per_model.items():
      lines.append(f"| {k} | {report['models'][name]} | " + " | ".join(
          _cell(metrics.get(key)) for key, _ in columns) + " |")
  gap_keys = [("accuracy", "accuracy"), ("nll", "NLL"), ("ood_auroc_mi", "OOD AUROC (MI)"),
              ("ood_auroc_total", "OOD AUROC (total)")]
  lines += ["", "Student minus ensemble, paired by seed (mean +- standard error):", "",
            "| K | student | " + " | ".join(t for _, t in gap_keys) + " |",
            "|---|---|" + "---:|" * len(gap_keys)]
  for k, per_student in report["gaps_to_ensemble"].items():
    for name, gaps in per_student.items():
      lines.append(f"| {k} | {report['models'][name]} | " + " | ".join(
          _cell(gaps[key]) for key, _ in gap_keys) + " |")
  # Reports written before td.metrics.uncertainty_fidelity also give the share of test
  # points their relative error kept (ensemble MI >= 1e-3 nats).
  kept = all("mi_kept_for_relative_error" in r["data"] for r in report["runs"])
  lines += ["", "Data per K (mean over seeds): scale of the class means, Bayes accuracy "
            "on the test set" + (", share of test points with ensemble MI >= 0.001 (kept "
                                 "for the relative error)" if kept else "") + ":", "",
            "| K | train / class | scale | Bayes accuracy (test) |" + (
                " MI kept |" if kept else ""),
            "|---|---:|---:|---:|" + ("---:|" if kept else "")]
  for k in report["results"]:
    runs = [r for r in report["runs"] if str(r["num_classes"]) == k]
    lines.append(
        f"| {k} | {runs[0]['data']['train_per_class']:g} | "
        f"{np.mean([r['data']['scale'] for r in runs]):.4f} | "
        f"{np.mean([r['data']['bayes_accuracy_test'] for r in runs]):.4f} |" + (
            f" {np.mean([r['data']['mi_kept_for_relative_error'] for r in runs]):.3f} |"
            if kept else ""))
  not_finite = [f"K={r['num_classes']} seed {r['seed']} {name}" for r in report["runs"]
                for name, ok in r["finite"].items() if not ok]
  if not_finite:
    lines += ["", "Non-finite outputs (metrics NaN): " + ", ".join(not_finite) + "."]
  lines += ["", "| stage | seconds (all runs) |", "|---|---:|"]
  for stage, seconds in report["timings_s"].items():
    lines.append(f"| {stage} | {seconds:.1f} |")
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  machine = report["machine"]
  lines += ["", f"Wall time {report['wall_time_s'] / 60:.1f} min on {machine['cpu_count']} "
            f"CPU cores ({machine['platform']}); {versions}; {report['date']}.", ""]
  return "\n".join(lines)
