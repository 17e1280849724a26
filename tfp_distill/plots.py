"""Figures for reports (matplotlib, Agg backend; arrays in, PNG files out).

The functions take NumPy arrays and dicts of them, never models, so any experiment can
reuse them. matplotlib is imported inside each function and switched to the
non-interactive Agg backend there, so importing this module opens no display.
"""

import numpy as np

__all__ = ["pyplot", "save_figure", "plot_regression_uncertainty", "plot_sparsification",
           "plot_variances", "plot_histograms", "plot_roc_curves", "plot_severity_boxes",
           "plot_method_bars", "plot_lines", "plot_uci_fidelity", "plot_uci_ood_auroc",
           "plot_error_lines", "plot_scatter_grid"]

_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:olive")


def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend (a one-line error naming the
  [studies] extra when matplotlib is missing)."""
  from tfp_distill import _optional
  matplotlib = _optional.require("matplotlib", "figures")
  matplotlib.use("Agg")
  from matplotlib import pyplot
  return pyplot


def _null_formatter():
  from matplotlib import ticker
  return ticker.NullFormatter()


def save_figure(plt, fig, path, title=None):
  """Suptitle (if any), tight layout, PNG at 120 dpi; closes the figure; returns path."""
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_regression_uncertainty(path, panels, x_train, y_train, x_grid, true_mean=None,
                                train_interval=None, num_std=2., ylim=None, title=None):
  """One panel per model: mean prediction with aleatoric / epistemic (or total) bands.

  Each panel shows the training points, the model's mean prediction, a band of
  +- num_std * sqrt(aleatoric) around it, a band of +- num_std * sqrt(epistemic), or,
  for a model that only knows its total variance, a band of +- num_std * sqrt(total);
  the true function and the shaded training interval when given.

  Args:
    path: str, the PNG file to write.
    panels: dict title -> dict of float arrays [grid]: "prediction", and either
      "aleatoric" and "epistemic" (variances) or "total" (variance). Panels are drawn
      left to right in the dict's order.
    x_train: float array [n] or [n, 1], training inputs.
    y_train: float array [n], training targets.
    x_grid: float array [grid] or [grid, 1], where the panels' arrays were evaluated.
    true_mean: None or float array [grid], the noise-free function on the grid.
    train_interval: None or (low, high), shaded as the training region.
    num_std: float, half-width of the bands in standard deviations.
    ylim: None or (low, high); by default the training targets' range plus a margin, so
      a large out-of-distribution variance does not squash the plot.
    title: None or str, a title over all panels.

  Returns:
    path.
  """
  plt = pyplot()
  x_train = np.asarray(x_train).reshape(-1)
  y_train = np.asarray(y_train).reshape(-1)
  x = np.asarray(x_grid).reshape(-1)
  if ylim is None:
    span = float(np.ptp(y_train)) if y_train.size else 2.
    ylim = (float(np.min(y_train)) - 0.5 * span, float(np.max(y_train)) + 0.5 * span)
  fig, axes = plt.subplots(1, len(panels), figsize=(5. * len(panels), 4.), sharey=True,
                           squeeze=False)
  for ax, (name, u) in zip(axes[0], panels.items()):
    mean = np.asarray(u["prediction"]).reshape(-1)
    if train_interval is not None:
      ax.axvspan(*train_interval, color="0.85", alpha=0.5, lw=0,
                 label="training interval")
    ax.scatter(x_train, y_train, s=3, color="0.45", alpha=0.5, lw=0,
               label="training data")
    if "aleatoric" in u and "epistemic" in u:
      for key, color in (("aleatoric", "tab:orange"), ("epistemic", "tab:blue")):
        half = num_std * np.sqrt(np.asarray(u[key]).reshape(-1))
        ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.3, lw=0,
                        label=f"{key} \u00b1{num_std:g} std")
    else:
      half = num_std * np.sqrt(np.asarray(u["total"]).reshape(-1))
      ax.fill_between(x, mean - half, mean + half, color="tab:purple", alpha=0.3, lw=0,
                      label=f"total \u00b1{num_std:g} std")
    if true_mean is not None:
      ax.plot(x, np.asarray(true_mean).reshape(-1), color="k", ls="--", lw=1.,
              label="true function")
    ax.plot(x, mean, color="tab:red", lw=1.5, label="mean prediction")
    ax.set_title(name)
    ax.set_xlim(float(x.min()), float(x.max()))
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8)
  axes[0][0].set_ylabel("y")
  return save_figure(plt, fig, path, title)


def plot_sparsification(path, curves, title=None):
  """Sparsification curves of several models, each with its own oracle (dashed).

  Every model's oracle sorts *that model's* errors, so curves of models with different
  predictions are each compared to their own oracle (the errors differ between models).

  Args:
    path: str, the PNG file to write.
    curves: dict model name -> (fractions [fractions], curve [fractions],
      oracle [fractions]) float arrays.
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6., 4.5))
  for (name, (fractions, curve, oracle)), color in zip(curves.items(), _COLORS):
    ax.plot(fractions, curve, color=color, lw=1.5, label=name)
    ax.plot(fractions, oracle, color=color, lw=1., ls="--", label=f"{name} oracle")
  ax.set_xlabel("fraction of points removed (most uncertain first)")
  ax.set_ylabel("MSE of kept points / MSE of all points")
  ax.set_xlim(0., 1.)
  ax.set_ylim(bottom=0.)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title)
  return save_figure(plt, fig, path)


def plot_variances(path, x_grid, variances, reference=None, train_interval=None,
                   title=None):
  """Variance curves of several models on one grid, one panel per kind, log scale.

  Makes small variances (e.g. an epistemic part far below the aleatoric one) readable and
  shows at a glance how a student's curves follow its teacher's.

  Args:
    path: str, the PNG file to write.
    x_grid: float array [grid] or [grid, 1].
    variances: dict model name -> dict kind -> float array [grid] (kinds such as
      "aleatoric", "epistemic", "total"; a model may lack some kinds). Panels are the
      kinds in order of first appearance.
    reference: None or the name of the model drawn as a thick black line (the teacher).
    train_interval: None or (low, high), shaded as the training region.
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  x = np.asarray(x_grid).reshape(-1)
  kinds = []
  for parts in variances.values():
    kinds += [k for k in parts if k not in kinds]
  fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.6), squeeze=False)
  styles = iter([("tab:green", "--"), ("tab:red", ":"), ("tab:purple", "-."),
                 ("tab:brown", "--")])
  style = {name: (("k", "-") if name == reference else next(styles))
           for name in variances}
  for ax, kind in zip(axes[0], kinds):
    if train_interval is not None:
      ax.axvspan(*train_interval, color="0.85", alpha=0.5, lw=0)
    for name, parts in variances.items():
      if kind in parts:
        color, ls = style[name]
        ax.plot(x, np.asarray(parts[kind]).reshape(-1), color=color, ls=ls,
                lw=2. if name == reference else 1.5, label=name)
    ax.set_yscale("log")
    ax.set_title(f"{kind} variance")
    ax.set_xlabel("x")
    ax.set_xlim(float(x.min()), float(x.max()))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  return save_figure(plt, fig, path, title)


def plot_histograms(path, panels, bins=50, log_x=False, title=None):
  """Overlaid histograms, one panel per quantity (e.g. a teacher's vs a student's values).

  Args:
    path: str, the PNG file to write.
    panels: dict panel title -> dict series name -> float array [n] (any shape; it is
      flattened). The first series of each panel is drawn as a filled grey histogram
      (the reference), the others as step outlines.
    bins: int, bins shared by the series of a panel (over their common range).
    log_x: bool, logarithmic bins for every panel (for positive quantities over many
      decades), or a collection of the panel titles that get them.
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
  for ax, (name, series) in zip(axes[0], panels.items()):
    values = {k: np.asarray(v, np.float64).reshape(-1) for k, v in series.items()}
    values = {k: v[np.isfinite(v)] for k, v in values.items()}
    everything = np.concatenate(list(values.values()))
    log = log_x if isinstance(log_x, bool) else name in log_x
    if log:
      everything = everything[everything > 0]
      low, high = np.percentile(everything, [0.1, 99.9])
      edges = np.geomspace(max(low, 1e-12), max(high, low * 10, 1e-11), bins + 1)
    else:
      low, high = np.percentile(everything, [0.1, 99.9])
      edges = np.linspace(low, high if high > low else low + 1., bins + 1)
    for i, ((label, v), color) in enumerate(zip(values.items(), ("0.6",) + _COLORS)):
      # Fractions per bin (not densities): comparable on linear and logarithmic bins.
      weights = np.full(len(v), 1. / max(len(v), 1))
      if i == 0:
        ax.hist(v, bins=edges, weights=weights, color=color, alpha=0.7, label=label)
      else:
        ax.hist(v, bins=edges, weights=weights, histtype="step", lw=1.5, color=color,
                label=label)
    if log:
      ax.set_xscale("log")
    ax.set_title(name, fontsize=10)
    ax.set_ylabel("fraction of points")
    ax.legend(fontsize=7)
  return save_figure(plt, fig, path, title)


def plot_roc_curves(path, panels, title=None):
  """ROC curves, one panel per task (e.g. one out-of-distribution set and score).

  Args:
    path: str, the PNG file to write.
    panels: dict panel title -> dict model name -> (fpr [n], tpr [n], auroc float).
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  labels = []
  for curves in panels.values():
    labels += [label for label in curves if label not in labels]
  colors = dict(zip(labels, ("k",) + _COLORS))     # one color per model in every panel
  fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4.0), squeeze=False)
  for ax, (name, curves) in zip(axes[0], panels.items()):
    for label, (fpr, tpr, area) in curves.items():
      color = colors[label]
      ax.plot(fpr, tpr, color=color, lw=1.5, label=f"{label} ({area:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=1., ls=":")
    ax.set_xlim(0., 1.)
    ax.set_ylim(0., 1.)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(name, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="model (AUROC)", title_fontsize=7)
  return save_figure(plt, fig, path, title)


def plot_severity_boxes(path, metrics, title=None):
  """Box plots of metrics by corruption severity, models side by side (Ovadia et al.).

  Args:
    path: str, the PNG file to write.
    metrics: dict metric name -> dict model name -> dict severity (int; 0 = clean) ->
      float array [corruptions] (one value per corruption type).
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  fig, axes = plt.subplots(len(metrics), 1, figsize=(10., 3.3 * len(metrics)),
                           squeeze=False)
  for ax, (metric, models) in zip(axes[:, 0], metrics.items()):
    names = list(models)
    severities = sorted({s for m in models.values() for s in m})
    width = 0.8 / len(names)
    for i, (name, color) in enumerate(zip(names, ("0.4",) + _COLORS)):
      data = [np.asarray(models[name].get(s, []), np.float64) for s in severities]
      positions = [j + (i - (len(names) - 1) / 2.) * width for j in range(len(severities))]
      box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                       showfliers=False, manage_ticks=False)
      for patch in box["boxes"]:
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
      ax.plot([], [], color=color, lw=6, alpha=0.6, label=name)
    ax.set_xticks(range(len(severities)))
    ax.set_xticklabels(["clean" if s == 0 else str(s) for s in severities])
    ax.set_xlabel("corruption severity")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=len(names))
  return save_figure(plt, fig, path, title)


def plot_method_bars(path, panels, reference=None, title=None):
  """Horizontal bars with error bars, one panel per metric, one bar per method.

  Args:
    path: str, the PNG file to write.
    panels: dict metric -> dict method -> (mean, std) (std may be 0 or NaN: no bar).
    reference: None or dict metric -> dict label -> value, drawn as dashed vertical lines
      (e.g. the teacher's value).
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  methods = list(dict.fromkeys(m for series in panels.values() for m in series))
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels),
                                                     0.9 + 0.42 * len(methods)),
                           squeeze=False, sharey=True)
  rows = np.arange(len(methods))[::-1]
  for ax, (metric, series) in zip(axes[0], panels.items()):
    means = np.array([series.get(m, (np.nan, np.nan))[0] for m in methods], np.float64)
    stds = np.nan_to_num(np.array([series.get(m, (np.nan, np.nan))[1] for m in methods],
                                  np.float64))
    ax.barh(rows, means, xerr=stds, color="tab:blue", alpha=0.75, capsize=3)
    refs = list((reference or {}).get(metric, {}).values())
    finite = np.concatenate([means[np.isfinite(means)], np.asarray(refs, np.float64)])
    if finite.size:
      low, high = finite.min() - stds.max(), finite.max() + stds.max()
      # Equal values (e.g. every DEE at 1) still get a readable axis around them.
      pad = 0.15 * (high - low) if high - low > 1e-9 else 0.1 * max(abs(high), 1e-3)
      ax.set_xlim(low - pad, high + pad)
    for i, (label, value) in enumerate((reference or {}).get(metric, {}).items()):
      ax.axvline(value, ls="--", lw=1, color=_COLORS[(i + 2) % len(_COLORS)], label=label)
    if (reference or {}).get(metric):
      ax.legend(fontsize=8, loc="lower right")
    ax.set_title(metric, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
  axes[0][0].set_yticks(rows)
  axes[0][0].set_yticklabels(methods, fontsize=9)
  return save_figure(plt, fig, path, title)


def plot_lines(path, panels, x_label, log_y=False, title=None):
  """Line plots with markers, one panel per quantity, one line per series.

  Args:
    path: str, the PNG file to write.
    panels: dict panel title -> dict series name -> (x [n], y [n]).
    x_label: str.
    log_y: bool, logarithmic y axes.
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
  for ax, (name, series) in zip(axes[0], panels.items()):
    for (label, (xs, ys)), color in zip(series.items(), _COLORS * 3):
      ax.plot(np.asarray(xs), np.asarray(ys), marker="o", lw=1.5, color=color, label=label)
    if log_y:
      ax.set_yscale("log")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return save_figure(plt, fig, path, title)


def _grouped_bars(ax, groups, series, values, errors):
  """Bars of len(series) per group: values / errors [series][groups]."""
  width = 0.8 / max(len(series), 1)
  positions = np.arange(len(groups))
  for i, (label, color) in enumerate(zip(series, _COLORS)):
    ax.bar(positions + (i - (len(series) - 1) / 2) * width, values[i], width,
           yerr=errors[i], color=color, label=label, capsize=2)
  ax.set_xticks(positions)
  ax.set_xticklabels(groups, rotation=30, ha="right")
  ax.grid(axis="y", alpha=0.3)


def plot_uci_fidelity(path, report):
  """Spearman rho of the students' variances with the ensemble's, per data set.

  One panel per part (epistemic, aleatoric); bars: each student with that part and the
  second ensemble (the noise ceiling); error bars: standard error over splits.

  Args:
    path: str, the PNG file to write.
    report: dict, `tfp_distill.experiments.uci.aggregate`'s report with "fidelity"
      and "noise_ceiling".

  Returns:
    path.
  """
  plt = pyplot()
  names = list(report["fidelity"])
  fig, axes = plt.subplots(1, 2, figsize=(11., 4.), sharey=True)
  for ax, part in zip(axes, ("epistemic", "aleatoric")):
    first = report["fidelity"][names[0]]
    series = [k for k in first if part in first[k]]
    trees = [[report["fidelity"][n][k][part]["spearman"] for n in names] for k in series]
    if report.get("noise_ceiling"):
      series.append("second ensemble")
      trees.append([report["noise_ceiling"][n][part]["spearman"] for n in names])
    _grouped_bars(ax, names, series, [[t["mean"] for t in row] for row in trees],
                  [[t["stderr"] for t in row] for row in trees])
    ax.set_title(f"{part} variance vs the ensemble's")
    ax.axhline(0., color="black", lw=0.8)
  axes[0].set_ylabel("Spearman rank correlation")
  axes[0].legend(fontsize=8)
  return save_figure(plt, fig, path)


def plot_uci_ood_auroc(path, report):
  """AUROC of each model's epistemic variance (mixture: total) for the PCA hold-out.

  Args:
    path: str, the PNG file to write.
    report: dict, `tfp_distill.experiments.uci.aggregate_ood`'s report.

  Returns:
    path.
  """
  plt = pyplot()
  names = list(report["ood_auroc"])
  models = list(report["ood_auroc"][names[0]])
  values, errors, labels = [], [], []
  for model in models:
    cells = [report["ood_auroc"][n][model] for n in names]
    key = "epistemic" if "epistemic" in cells[0] else "total"
    values.append([c[key]["mean"] for c in cells])
    errors.append([c[key]["stderr"] for c in cells])
    labels.append(model if key == "epistemic" else f"{model} (total)")
  fig, ax = plt.subplots(figsize=(9., 4.))
  _grouped_bars(ax, names, labels, values, errors)
  ax.axhline(0.5, color="black", lw=0.8, ls="--")
  ax.set_ylim(0., 1.)
  ax.set_ylabel("AUROC, OOD vs test points")
  ax.set_title("PCA hold-out: OOD detection by epistemic variance")
  ax.legend(fontsize=8, ncol=2)
  return save_figure(plt, fig, path)


def plot_error_lines(path, panels, x_label, log_x=False, dashed=(), colors=None,
                     title=None, log_y=()):
  """Means with error bars against x, one panel per quantity, one line per series.

  Args:
    path: str, the PNG file to write.
    panels: dict panel title -> dict series name -> (x [n], mean [n], error [n]); an
      error that is NaN draws no bar, a NaN mean no point.
    x_label: str.
    log_x: bool, logarithmic x axes (ticks at the given x values).
    dashed: collection of series names drawn as dashed lines without markers (references
      such as a Bayes-optimal value).
    colors: None or dict series name -> matplotlib color (default: black for the first
      series, then the house colors; one color per series in every panel).
    title: None or str.
    log_y: collection of panel titles drawn with a logarithmic y axis (quantities that
      span orders of magnitude across series).

  Returns:
    path.
  """
  plt = pyplot()
  names = list(dict.fromkeys(n for series in panels.values() for n in series))
  colors = {**dict(zip(names, ("k",) + _COLORS * 3)), **(colors or {})}
  columns = min(len(panels), 4)
  rows = -(-len(panels) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.5 * rows),
                           squeeze=False)
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  for ax, (name, series) in zip(axes.flat, panels.items()):
    ticks = set()
    for label, (xs, means, errors) in series.items():
      xs, means = np.asarray(xs, np.float64), np.asarray(means, np.float64)
      errors = np.nan_to_num(np.asarray(errors, np.float64))
      ticks.update(xs.tolist())
      if label in dashed:
        ax.plot(xs, means, ls="--", lw=1.2, color=colors[label], label=label)
      else:
        ax.errorbar(xs, means, yerr=errors, marker="o", ms=4, lw=1.5, capsize=3,
                    color=colors[label], label=label)
    if log_x:
      ax.set_xscale("log")
      ax.xaxis.set_minor_formatter(_null_formatter())
      ax.set_xticks(sorted(ticks))
      ax.set_xticklabels([f"{t:g}" for t in sorted(ticks)])
    if name in log_y:
      ax.set_yscale("log")
    ax.set_title(name + (" (log scale)" if name in log_y else ""), fontsize=10)
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return save_figure(plt, fig, path, title)


def plot_scatter_grid(path, rows, x_label, y_label, log=False, colors=None, title=None):
  """Scatter plots of y against x with the identity line, one panel per (row, series).

  Args:
    path: str, the PNG file to write.
    rows: dict row title -> dict series name -> (x [n], y [n]); one row of panels per
      entry, one column per series.
    x_label, y_label: str.
    log: bool, logarithmic axes (non-positive values are left out).
    colors: None or dict series name -> matplotlib color (default: one per column).
    title: None or str.

  Returns:
    path.
  """
  plt = pyplot()
  colors = colors or {}
  columns = max(len(series) for series in rows.values())
  fig, axes = plt.subplots(len(rows), columns, figsize=(3.8 * columns, 3.4 * len(rows)),
                           squeeze=False)
  for r, (row, series) in enumerate(rows.items()):
    for c, (label, (xs, ys)) in enumerate(series.items()):
      ax = axes[r][c]
      xs, ys = np.asarray(xs, np.float64).reshape(-1), np.asarray(ys, np.float64).reshape(-1)
      keep = np.isfinite(xs) & np.isfinite(ys)
      if log:
        keep &= (xs > 0) & (ys > 0)
      xs, ys = xs[keep], ys[keep]
      ax.scatter(xs, ys, s=3, alpha=0.4, lw=0,
                 color=colors.get(label, _COLORS[c % len(_COLORS)]))
      if xs.size:
        low, high = min(xs.min(), ys.min()), max(xs.max(), ys.max())
        ax.plot([low, high], [low, high], color="0.4", lw=1, ls=":")
      if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(_null_formatter())
        ax.yaxis.set_minor_formatter(_null_formatter())
      ax.set_title(f"{row}: {label}", fontsize=10)
      ax.set_xlabel(x_label)
      ax.set_ylabel(y_label)
      ax.grid(alpha=0.3)
    for c in range(len(series), columns):
      axes[r][c].set_visible(False)
  return save_figure(plt, fig, path, title)
