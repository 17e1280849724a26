"""`tfp-distill bench`'s report: the speed issue's targets checked against a run's
figures, the Markdown tables and ratios.png (the run itself: bench.py).

Reports written before td.report.header (docs/bench/report.json: "wall_s", no
"timings_s") render as they are: nothing here reads the run's wall time.
"""

import numpy as np

__all__ = ["format_markdown", "plot_ratios", "targets"]


def targets(suites):
  """The speed issue's goals, checked against this run's figures."""
  out = []

  def add(name, value, goal, higher_is_better=True, unit="x"):
    if value is None:
      return
    met = value >= goal if higher_is_better else value <= goal
    out.append({"target": name, "value": float(value), "goal": goal, "unit": unit,
                "higher_is_better": higher_is_better, "met": bool(met)})

  inference = suites.get("inference", {})
  cnn = inference.get("small_cnn", {}).get("ensembles", {}).get("10")
  if cnn:
    add("predict_uncertainty: Dirichlet student vs ensemble (small CNN, M = 10)",
        cnn["student_speedup"].get("dirichlet"), 9.0)
    add("predict_uncertainty: Keras 3 Dirichlet student vs ensemble (small CNN, M = 10)",
        cnn["student_speedup"].get("dirichlet_keras3"), 9.0)
    add("predict_uncertainty: Gaussian-over-logits student, 100 samples, vs ensemble "
        "(small CNN, M = 10)", cnn["student_speedup"].get("gaussian_logits_100"), 8.0)
  for name, entry in inference.items():
    for m, e in entry["ensembles"].items():
      add(f"td.Ensemble vs the member loop ({name}, M = {m})", e["ensemble_vs_loop"], 2.0)
      add(f"stacked td.Ensemble vs the member loop ({name}, M = {m})", e["stacked_vs_loop"],
          4.0)
    for label, s in entry["students"].items():
      if "overhead_vs_hand_tf_function" in s:
        add(f"predict_uncertainty overhead vs a hand-written tf.function ({name}, {label})",
            100 * s["overhead_vs_hand_tf_function"], 10.0, False, "%")
        add(f"predict_uncertainty overhead vs the SavedModel signature ({name}, {label})",
            100 * s["overhead_vs_saved_model"], 10.0, False, "%")
  train = suites.get("train", {}).get("uci_sized_mlp")
  if train:
    add("train_ensemble (vectorized) vs sequential fit, UCI-sized",
        train["vectorized_vs_sequential"], 3.0)
  distill = suites.get("distill")
  if distill:
    add("target cache epoch / in-memory epoch", distill["cache_vs_in_memory"], 1.05, False)
  for case, entry in suites.get("decompose", {}).items():
    if case.startswith("gaussian_logits_monte_carlo") and "tf_function_vs_numpy" in entry:
      add(f"Monte Carlo decomposition vs NumPy ({case})", entry["tf_function_vs_numpy"],
          3.0)
  return out


def _ms(t):
  return f"{t['min_s'] * 1e3:.1f} / {t['median_s'] * 1e3:.1f}"


def format_markdown(report):
  """The report as Markdown tables (times: min / median of the repeats)."""
  m = report["machine"]
  lines = ["# tfp-distill bench", "",
           f"{m['date']}; {m['cpu']}, {m['cores']} cores"
           + (f", GPUs {m['gpus']}" if m["gpus"] else ", no GPU")
           + f"; TensorFlow {m['tensorflow']}, TFP {m['tensorflow_probability']}; "
           f"{report['config']['repeats']} timed repeats per figure (min / median).", ""]
  t = report.get("targets")
  if t:
    lines += ["## Targets", "", "| target | measured | goal | |", "|---|---:|---:|---|"]
    for row in t:
      sign = ">=" if row["higher_is_better"] else "<="
      lines.append(f"| {row['target']} | {row['value']:.2f}{row['unit']} | {sign} "
                   f"{row['goal']:g}{row['unit']} | {'met' if row['met'] else '**not met**'} |")
    lines.append("")
  suites = report["suites"]
  if "inference" in suites:
    lines += ["## Inference (ms, min / median; speed-ups by the min)", ""]
    for name, entry in suites["inference"].items():
      lines += [f"### {name}, {entry['batch']} inputs", "",
                "| student | predict_uncertainty | eager decompose | hand tf.function | "
                "SavedModel |", "|---|---:|---:|---:|---:|"]
      for label, s in entry["students"].items():
        cells = [_ms(s[k]) if k in s else "-" for k in (
            "predict_uncertainty", "student_eager_decompose", "student_hand_tf_function",
            "student_saved_model")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
      labels = list(entry["students"])
      lines += ["", "| M | member loop | td.Ensemble (eager decompose) | td.Ensemble | "
                    "stacked | ensemble / loop | stacked / loop | "
                + " | ".join(f"speed-up {l}" for l in labels) + " |",
                "|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(labels)]
      for mm, e in entry["ensembles"].items():
        tt = e["timings"]
        lines.append(
            f"| {mm} | {_ms(tt['member_loop'])} | {_ms(tt['ensemble_eager_decompose'])} | "
            f"{_ms(tt['ensemble'])} | {_ms(tt['ensemble_stacked'])} | "
            f"{e['ensemble_vs_loop']:.2f}x | {e['stacked_vs_loop']:.2f}x | "
            + " | ".join(f"{e['student_speedup'][l]:.1f}x" for l in labels) + " |")
      lines.append("")
  if "decompose" in suites:
    lines += ["## Decomposition graphs alone (ms, min / median; peak memory added, MB)", "",
              "| case | tf.function | XLA | eager | NumPy | tf.function vs NumPy | peak MB "
              "(tf.function / XLA / eager / NumPy) |", "|---|---:|---:|---:|---:|---:|---|"]
    for case, e in suites["decompose"].items():
      t = e["timings"]
      mem = e.get("peak_memory_added_mb") or {}
      numpy_ms = _ms(t["numpy"]) if "numpy" in t else "-"
      vs_numpy = (f"{e['tf_function_vs_numpy']:.1f}x" if "tf_function_vs_numpy" in e
                  else "-")
      peaks = " / ".join(f"{mem[v]:.0f}" for v in ("tf_function", "xla", "eager", "numpy")
                         if v in mem) or "-"
      lines.append(f"| {case} | {_ms(t['tf_function'])} | {_ms(t['xla'])} | "
                   f"{_ms(t['eager'])} | {numpy_ms} | {vs_numpy} | {peaks} |")
    lines.append("")
  if "distill" in suites:
    d = suites["distill"]
    lines += [f"## Distillation epochs ({d['examples_per_epoch']} examples, batch "
              f"{d['batch_size']}, M = {d['members']} MLP members, full-covariance MLP "
              "student)", "", "| feeding | s / epoch (min / median) | examples / s |",
              "|---|---:|---:|"]
    for k, v in d["epoch_timings"].items():
      lines.append(f"| {k} | {v['min_s']:.3f} / {v['median_s']:.3f} | "
                   f"{d['examples_per_s'][k]:,.0f} |")
    lines.append("")
  if "train" in suites:
    lines += ["## Ensemble training (s, min / median)", "",
              "| case | vectorized | one graph | sequential fit | vectorized vs sequential |"
              " vectorized vs one graph |", "|---|---:|---:|---:|---:|---:|"]
    for case, e in suites["train"].items():
      t = e["timings"]
      lines.append(f"| {case} | {t['vectorized']['min_s']:.2f} / "
                   f"{t['vectorized']['median_s']:.2f} | {t['one_graph']['min_s']:.2f} / "
                   f"{t['one_graph']['median_s']:.2f} | {t['sequential_fit']['min_s']:.2f} / "
                   f"{t['sequential_fit']['median_s']:.2f} | "
                   f"{e['vectorized_vs_sequential']:.2f}x | "
                   f"{e['vectorized_vs_one_graph']:.2f}x |")
    lines.append("")
  return "\n".join(lines)


def plot_ratios(report, path):
  """Measured ratios against their goals (log scale; green met, red not met)."""
  rows = [t for t in report.get("targets", []) if t["unit"] == "x"]
  if not rows:
    return None
  from tfp_distill.experiments import plots
  plt = plots.pyplot()
  fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.2))
  names = [r["target"] for r in rows]
  values = [r["value"] for r in rows]
  colors = ["tab:green" if r["met"] else "tab:red" for r in rows]
  y = np.arange(len(rows))
  ax.barh(y, values, color=colors)
  ax.scatter([r["goal"] for r in rows], y, marker="|", s=300, color="black", zorder=3,
             label="goal")
  ax.set_yticks(y)
  ax.set_yticklabels(names, fontsize=7)
  ax.invert_yaxis()
  ax.set_xscale("log")
  ax.set_xlabel("measured ratio (log scale)")
  ax.legend(loc="lower right")
  return plots.save_figure(plt, fig, path,
                           title=f"tfp-distill bench ({report['machine']['date']}, "
                                 f"{report['machine']['cores']} cores)")
