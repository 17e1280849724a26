"""The image study's report as Markdown (`tfp-distill images`; the study: images.py).

Reports written before td.metrics.uncertainty_fidelity and td.report.header (the
measured ones in docs/images) render as they are: their fidelity is one Pearson r per
part.
"""

from tfp_distill.experiments import _common

__all__ = ["LABELS", "format_markdown", "selection_markdown"]

#: Each model's name in tables and figures.
LABELS = {"ensemble": "ensemble", "member": "single member", "dirichlet": "EnD^2 Dirichlet",
          "gaussian": "Gaussian over logits", "mixture": "mixture (soft targets)"}


def format_markdown(report):
  """The report as Markdown tables (clean metrics, OOD, shift by severity, timings)."""
  config = report["config"]
  names = list(report["metrics"])
  lines = [f"# Image study: {config['dataset']}", "",
           f"Ensemble of {config['num_members']} small CNNs (filters {config['filters']}, "
           f"dense {config['dense_units']}; {config['member_epochs']} epochs), students "
           f"with the same backbone ({config['student_epochs']} epochs) trained only on "
           "the ensemble's logits at the training images" + (
               " and as many mixup inputs (lam x_i + (1 - lam) x_j, lam ~ U(0, 1))"
               if config.get("extra_inputs", "none") == "mixup" else "") +
           ". EnD^2 temperature "
           f"{config['initial_temperature']:g} -> 1 (epochs {config['anneal_start']}-"
           f"{config['anneal_end']}); Gaussian over logits with "
           f"{config.get('gaussian_covariance', 'diagonal')} covariance, decomposed with "
           f"{config['num_samples']} Monte Carlo samples. Images: " + ", ".join(
               f"{k} {v}" for k, v in report.get("sizes", {}).items()) + ".", "",
           "## Clean test set", "",
           "| model | accuracy | NLL | Brier | ECE (15 equal-width bins) | ECE (15 quantile "
           "bins) | misclassification AUROC (total) |", "|---|---|---|---|---|---|---|"]
  for name in names:
    m = report["metrics"][name]
    lines.append(f"| {LABELS[name]} | {m['accuracy']:.4f} | {m['nll']:.4f} | "
                 f"{m['brier']:.4f} | {m['ece']:.4f} | {m['ece_quantile']:.4f} | "
                 f"{m.get('misclassification_auroc', float('nan')):.4f} |")
  if report["ood"]:
    sets = list(report["ood"])
    lines += ["", "## Out-of-distribution detection (AUROC / AUPR, OOD positive)", "",
              "| model | " + " | ".join(f"{s} by total | {s} by MI" for s in sets) + " |",
              "|---|" + "---|" * (2 * len(sets))]
    for name in names:
      cells = []
      for s in sets:
        for score in ("total", "mutual_information"):
          r = report["ood"][s][name].get(score)
          cells.append("n/a" if r is None else f"{r['auroc']:.3f} / {r['aupr']:.3f}")
      lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
  by_severity = report["shift"]["by_severity"]
  if any(by_severity[n]["accuracy"] for n in names):
    lines += ["", f"## Dataset shift: mean over {len(report['shift']['per_corruption'])} "
              f"corruptions ({report['shift']['num_images']} test images each)", "",
              "| model | metric | clean | " + " | ".join(f"sev {s}" for s in range(1, 6))
              + " |", "|---|---|---|" + "---|" * 5]
    for name in names:
      for metric in ("accuracy", "nll", "ece"):
        values = by_severity[name][metric]
        lines.append(f"| {LABELS[name]} | {metric} | {report['metrics'][name][metric]:.4f}"
                     f" | " + " | ".join(f"{values[str(s)]:.4f}" for s in range(1, 6))
                     + " |")
  lines += [""] + _fidelity_markdown(report["fidelity"]) + ["",
            "## Targets (the issue's, reported whether met or not)", ""]
  columns = []
  for result in report["targets"].values():
    columns += [k for k in result if k not in columns]
  lines += ["| student | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|---|" + "---|" * len(columns)]
  for name, result in report["targets"].items():
    lines.append(f"| {LABELS[name]} | " + " | ".join(
        "n/a" if c not in result else ("met" if result[c] else "**not met**")
        for c in columns) + " |")
  return "\n".join(lines + _common.markdown_footer(report))


def selection_markdown(result):
  """`select_students`' result as a Markdown table (validation images)."""
  ref = result["reference"]
  lines = [f"Validation: the last {result['validation']} training images (students and "
           f"ensemble trained on the other {result['train']}).", "",
           "| model | variant | accuracy | NLL | ECE | epistemic r | student s |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for name in ("ensemble", "member"):
    m = ref[name]
    lines.append(f"| {LABELS[name]} | - | {m['accuracy']:.4f} | {m['nll']:.4f} | "
                 f"{m['ece']:.4f} | - | - |")
  students = [n for n in LABELS
              if any(n in entry["metrics"] for entry in result["variants"].values())]
  for student in students:
    for variant, entry in result["variants"].items():
      m = entry["metrics"].get(student)
      if m is None:
        continue
      chosen = " (chosen)" if result["choice"].get(student) == variant else ""
      r = m.get("epistemic_pearson")
      lines.append(f"| {LABELS[student]} | {variant}{chosen} | {m['accuracy']:.4f} | "
                   f"{m['nll']:.4f} | {m['ece']:.4f} | "
                   f"{'-' if r is None else f'{r:.3f}'} | "
                   f"{entry['timings_s'].get(student, float('nan')):.0f} |")
  confidence = "; ".join(f"{LABELS[n]} {ref[n]['mean_confidence']:.4f} at accuracy "
                         f"{ref[n]['accuracy']:.4f}" for n in ("ensemble", "member")
                         if "mean_confidence" in ref[n])
  if confidence:
    lines += ["", f"Mean confidence (largest probability) on these images: {confidence}."]
  return "\n".join(lines) + "\n"


def _pearson(cell):
  """Pearson r of a fidelity cell: a dict of statistics, or (reports written before
  `td.metrics.uncertainty_fidelity`) the correlation itself."""
  return cell.get("pearson") if isinstance(cell, dict) else cell


def _fidelity_markdown(fidelity):
  """The fidelity section's lines: every statistic (a report of before: Pearson r only)."""
  parts = ("total", "aleatoric", "epistemic")
  cells = [cell for student in fidelity.values() for cell in student.values()]
  columns = _common.fidelity_columns(cells)
  if not columns:                      # an old report: one Pearson r per part
    lines = ["## Fidelity to the ensemble (Pearson r on the test set)", "",
             "| student | " + " | ".join(parts) + " |", "|---|---|---|---|"]
    for name, values in fidelity.items():
      lines.append(f"| {LABELS[name]} | " + " | ".join(
          f"{values[k]:.3f}" if k in values else "n/a" for k in parts) + " |")
  else:
    lines = ["## Fidelity to the ensemble (test set, `td.metrics.uncertainty_fidelity`)",
             "", "| student | part | " + " | ".join(
                 _common.FIDELITY_COLUMNS[c] for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for name, values in fidelity.items():
      for part in parts:
        if part in values:
          lines.append(f"| {LABELS[name]} | {part} | " + " | ".join(
              _common.number(values[part].get(c), ".3f") for c in columns) + " |")
  g = fidelity["gaussian"]
  return lines + ["", f"Gaussian student vs ensemble, centred logits: mean r = "
                  f"{_common.number(_pearson(g['logit_mean']), '.3f')}, variance r = "
                  f"{_common.number(_pearson(g['logit_variance']), '.3f')}."]
