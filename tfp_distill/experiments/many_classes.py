"""Many classes (`tfp-distill many-classes`): EnD^2 and proxy-Dirichlet students as K grows.

```none
for K in classes, for seed in seeds:
  K-class Gaussian mixture in D dims, the Bayes accuracy fixed (datasets.mixture)
     │ x_train, y_train (N examples in all, N / K per class)
     ▼
  ensemble of M MLPs (train_ensemble, vectorized; CategoricalLogits(K))
     │ logits z [batch, M, K] at x_train + an unlabeled in-distribution pool,
     │ computed in the train step (td.Distiller), one teacher pass per batch for both:
     ├──► "end2":            DirichletHead(K), DirichletNLL(target="ensemble")   ([1])
     └──► "proxy-dirichlet": DirichletHead(K), DirichletNLL(target="proxy")      ([2])
          (both from the method registry, td.methods)
          same MLP, same initial weights, same batches, same temperature schedule
  evaluation on the test set and on OOD points (held-out mixture components):
     accuracy, NLL, OOD AUROC by mutual information (and by total entropy),
     fidelity of the students' MI to the ensemble's (td.metrics.uncertainty_fidelity)
report: mean +- standard error over seeds per K and model, the students' gaps to the
ensemble (paired by seed), report.json, report.md, metrics_vs_classes.png, mi_scatter.png
```

The question is the one [2] asks: the Dirichlet NLL of EnD^2 fits all K concentrations
to the members' log-probabilities, most of which are the log of tiny tail probabilities
when K is large, and [2] reports that it then trains badly; the proxy target keeps only
the ensemble's mean and one precision. Both students here differ in nothing but the loss.

#### References

[1]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.

[2]: Ryabinin, Malinin, Gales. Scaling Ensemble Distribution Distillation to Many Classes
     with Proxy Targets. NeurIPS 2021. arXiv:2105.06987.
"""

import dataclasses
import json
import math
import os
import platform
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill import plots
from tfp_distill._keras import keras
from tfp_distill.datasets import mixture
from tfp_distill.experiments import _common
# The report's Markdown and figure are many_classes_report's (this module runs the
# study); their names are importable from here as before.
from tfp_distill.experiments.many_classes_report import LABELS as _LABELS
from tfp_distill.experiments.many_classes_report import METRICS
from tfp_distill.experiments.many_classes_report import MODELS as _MODELS
from tfp_distill.experiments.many_classes_report import PLOT_COLORS as _PLOT_COLORS
from tfp_distill.experiments.many_classes_report import STUDENTS
from tfp_distill.experiments.many_classes_report import canonical
from tfp_distill.experiments.many_classes_report import format_markdown
from tfp_distill.experiments.many_classes_report import metrics_figure

__all__ = ["METRICS", "STUDENTS", "ManyClassesConfig", "canonical", "format_markdown",
           "metrics_figure", "run_many_classes", "run_one"]


@dataclasses.dataclass(frozen=True)
class ManyClassesConfig:
  """Configuration of the many-classes study (defaults: the run in docs/many_classes).

  Data (`datasets.mixture.gaussian_mixture`): N = `num_train` training examples in all,
  whatever K (N / K per class: 2,000 at K = 10, 20 at K = 1000, as CIFAR-10 and CIFAR-100
  share one training set size); the class means' scale is set per K and seed so that the
  Bayes-optimal accuracy is `bayes_accuracy`; OOD points come from `num_ood_classes`
  held-out components of the same prior.

  Members and students are MLPs with the same hidden layers. The students distil the
  ensemble on the training inputs and `num_unlabeled` more in-distribution inputs (the
  members fit their own training points, so their disagreement shows mostly elsewhere);
  both students start from the same weights and see the same batches. The temperature
  schedule is the image study's (T0 = 2.5 held for the first quarter of the epochs, then
  linear to 1 by three quarters), for both students.

  The default sizes fit the whole study (3 K x 3 seeds) into about 25 minutes on 2 CPU
  cores shared with other jobs (a pilot of one seed took 44 s at K = 10, 112 s at K = 100
  and 343 s at K = 1000 with a 20,000-input pool; the pool was then cut to 10,000). The
  proxy cost (float64 digamma and its gradient over [batch, K]) is the most expensive
  step at K = 1000: about 4 times the EnD^2 loss per batch.

  Attributes:
    classes: tuple of ints K >= 2, the numbers of classes.
    seeds: tuple of ints; each seed draws its own means, data, members and students.
    dim: int, D.
    num_train, num_unlabeled, num_test, num_ood: split sizes.
    num_ood_classes: int, held-out mixture components that the OOD points come from.
    bayes_accuracy: float, the Bayes-optimal accuracy the class means are scaled to.
    num_probe: int, Monte Carlo points of the scale calibration.
    num_members: int, M.
    hidden: tuple of ints, hidden widths of members and students.
    member_epochs, member_batch_size: member training.
    learning_rate: float, Adam's learning rate (members and students).
    student_epochs, student_batch_size: student training (both students).
    initial_temperature, anneal_start, anneal_end: the temperature schedule
      (`callbacks.TemperatureAnnealing`), the same for both students.
    smoothing: float, target smoothing of both losses.
    jit_compile: bool, compile the students' train step with XLA.
    steps_per_execution: int, student train steps per compiled call.
    scatter_points: int, points per panel of mi_scatter.png (first seed).
    verbose: int, 0 silent, 1 progress bars and a line per run.
  """

  classes: tuple = (10, 100, 1000)
  seeds: tuple = (0, 1, 2)
  dim: int = 32
  num_train: int = 20000
  num_unlabeled: int = 10000
  num_test: int = 10000
  num_ood: int = 10000
  num_ood_classes: int = 100
  bayes_accuracy: float = 0.9
  num_probe: int = 4000
  num_members: int = 10
  hidden: tuple = (128, 128)
  member_epochs: int = 20
  member_batch_size: int = 128
  learning_rate: float = 1e-3
  student_epochs: int = 8
  student_batch_size: int = 128
  initial_temperature: float = 2.5
  anneal_start: int = 2
  anneal_end: int = 6
  smoothing: float = 1e-4
  jit_compile: bool = True
  steps_per_execution: int = 50
  scatter_points: int = 2000
  verbose: int = 1

  @classmethod
  def fast(cls, **overrides):
    """A tiny configuration for smoke tests (seconds on 2 CPU cores), not for results."""
    config = dict(classes=(3, 5), seeds=(0, 1), num_train=300, num_unlabeled=200,
                  num_test=200, num_ood=150, num_ood_classes=4, num_probe=500,
                  num_members=3, hidden=(16,), member_epochs=3, member_batch_size=64,
                  student_epochs=3, student_batch_size=64, anneal_start=0, anneal_end=2,
                  jit_compile=False, steps_per_execution=5, scatter_points=100,
                  verbose=0)
    config.update(overrides)
    return cls(**config)

  def key(self, *fields):
    """A short hash of the named fields (all when none), naming a configuration."""
    return _common.config_key(self, fields)

  def __post_init__(self):
    if not self.classes or min(self.classes) < 2:
      raise ValueError(f"classes must be a non-empty tuple of ints >= 2, got "
                       f"{self.classes}.")
    if not self.seeds:
      raise ValueError("seeds must not be empty.")
    if self.num_members < 2:
      raise ValueError(f"num_members must be >= 2 (mutual information needs a spread), "
                       f"got {self.num_members}.")


def _data(config, num_classes, seed):
  return mixture.gaussian_mixture(
      num_classes, config.num_train, config.num_test, config.num_unlabeled,
      config.num_ood, config.num_ood_classes, config.dim, config.bayes_accuracy,
      config.num_probe, seed=seed)


def _ensemble(config, family, data, seed):
  def build_member(member_seed):
    # Layer i of member m is seeded with 1000 * (1000 seed + m) + i: all distinct.
    # (train_ensemble calls build_member(1000 seed + m).)
    return td.models.mlp((config.dim,), config.hidden, family.params_size,
                         seed=1000 * member_seed, name=f"member_{member_seed}")
  return td.train_ensemble(build_member, (data.x_train, data.y_train), family,
                           num_members=config.num_members, epochs=config.member_epochs,
                           batch_size=config.member_batch_size,
                           learning_rate=config.learning_rate, seed=1000 * seed,
                           verbose=config.verbose, vectorize=True)


def _distil(config, family, ensemble, data, seed):
  """Trains both students together (one teacher pass per batch): {name: student}.

  ```none
  batch x ─► teacher (once) ─► z ─► end2_loss(z, end2(x)) + proxy_loss(z, proxy(x))
  ```
  The students' parameters are disjoint and Adam's update is per parameter, so each
  trains exactly as it would alone on these batches.
  """
  k = family.num_classes
  # The same initial weights for both students; 1e9 + ... is no member's seed (those are
  # 1e6 seed + 1000 m + i).
  init_seed = 10 ** 9 + 1000 * seed
  specs = {name: _common.registry_student(name, "classification", family,
                                          temperature=config.initial_temperature,
                                          smoothing=config.smoothing)
           for name in STUDENTS}
  students = {name: td.models.mlp((config.dim,), config.hidden, spec.params_size,
                                  head=spec.head, seed=init_seed,
                                  name=name.replace("-", "_"))
              for name, spec in specs.items()}
  inputs = keras.Input((config.dim,))
  panel = keras.Model(inputs, {name: s(inputs) for name, s in students.items()})

  def loss(z, dists):   # [batch]: the sum of the students' per-example losses
    return tf.add_n([specs[name].loss.call(z, dists[name]) for name in STUDENTS])

  distiller = td.Distiller(panel, ensemble, loss=loss, seed=seed)
  distiller.compile(keras.optimizers.Adam(config.learning_rate),
                    jit_compile=config.jit_compile,
                    steps_per_execution=config.steps_per_execution)
  x = np.concatenate([data.x_train, data.x_unlabeled], axis=0)
  batches = (tf.data.Dataset.from_tensor_slices(x)
             .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
             .batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE))
  callbacks = [spec.annealing(config.anneal_start, config.anneal_end,
                              config.initial_temperature) for spec in specs.values()]
  callbacks.append(td.callbacks.ProgressBar(f"K={k} seed {seed} students",
                                            disable=not config.verbose, leave=False))
  history = distiller.fit(batches, epochs=config.student_epochs, verbose=0,
                          callbacks=callbacks)
  return students, [float(v) for v in history.history["loss"]]


def _finite(u):
  return all(np.all(np.isfinite(v)) for v in u.values())


def _nan_if_none(value):
  return float("nan") if value is None else float(value)


def _metrics(name, u_test, u_ood, y_test, reference):
  """The metrics of one model (NaN where its outputs are not finite, or a statistic is
  undefined: the correlation of a constant)."""
  keys = [key for key, _, models in METRICS if name in models]
  if not (_finite(u_test) and _finite(u_ood)):
    return {key: float("nan") for key in keys}
  m = td.metrics
  p = u_test["prediction"]
  out = {"accuracy": float(m.accuracy(y_test, p)),
         "nll": float(m.categorical_nll(y_test, p)),
         "ood_auroc_mi": float(m.ood_detection(u_test["epistemic"],
                                               u_ood["epistemic"])["auroc"]),
         "ood_auroc_total": float(m.ood_detection(u_test["total"],
                                                  u_ood["total"])["auroc"]),
         "mean_mi_test": float(np.mean(u_test["epistemic"])),
         "mean_mi_ood": float(np.mean(u_ood["epistemic"]))}
  if name in STUDENTS:
    fidelity = _common.fidelity(u_test["epistemic"], reference["epistemic"])
    out.update({f"mi_{k}": _nan_if_none(fidelity[k])
                for k in ("pearson", "spearman", "mean_ratio", "relative_l1")})
  return {key: out[key] for key in keys}


def _evaluate(models, family, data, bayes):
  """{model: metrics} ("bayes" included) and {model: (u_test, u_ood)}."""
  u = {name: (td.predict_uncertainty(model, family, data.x_test, batch_size=2000),
              td.predict_uncertainty(model, family, data.x_ood, batch_size=2000))
       for name, model in models.items()}
  metrics = {"bayes": {"accuracy": float(td.metrics.accuracy(data.y_test, bayes)),
                       "nll": float(td.metrics.categorical_nll(data.y_test, bayes))}}
  for name in _MODELS:
    metrics[name] = _metrics(name, *u[name], data.y_test, u["ensemble"][0])
  return metrics, u


def run_one(config, num_classes, seed):
  """One (K, seed) run: data, ensemble, both students, metrics.

  Args:
    config: `ManyClassesConfig`.
    num_classes: int K.
    seed: int.

  Returns:
    (run, arrays): run is a JSON-ready dict with keys "num_classes", "seed", "data"
    (scale, probe and test Bayes accuracy, examples per class), "metrics" (model ->
    metric -> float, "bayes" included), "finite" (model -> bool), "student_loss"
    (the summed training loss per epoch), "timings_s"; arrays is model -> the test-set
    MI [num_test] (for the scatter figure).
  """
  timings = {}
  tic = time.perf_counter()
  data = _data(config, num_classes, seed)
  family = td.families.CategoricalLogits(num_classes)
  bayes = np.exp(mixture.bayes_log_posterior(data.x_test, data.means))
  timings["data"] = time.perf_counter() - tic

  tic = time.perf_counter()
  ensemble = _ensemble(config, family, data, seed)
  timings["ensemble"] = time.perf_counter() - tic

  tic = time.perf_counter()
  students, loss_history = _distil(config, family, ensemble, data, seed)
  timings["students"] = time.perf_counter() - tic

  tic = time.perf_counter()
  metrics, u = _evaluate({"ensemble": ensemble, **students}, family, data, bayes)
  timings["evaluation"] = time.perf_counter() - tic
  run = {
      "num_classes": int(num_classes), "seed": int(seed),
      "data": {"scale": data.scale, "bayes_accuracy_probe": data.probe_accuracy,
               "bayes_accuracy_test": metrics["bayes"]["accuracy"],
               "train_per_class": config.num_train / num_classes},
      "metrics": metrics,
      "finite": {name: bool(_finite(u_test) and _finite(u_ood))
                 for name, (u_test, u_ood) in u.items()},
      "student_loss": loss_history,
      "timings_s": timings,
  }
  return run, {name: u_test["epistemic"] for name, (u_test, _) in u.items()}


def _summary(values):
  """{"mean", "sem", "values"}: NaN mean if a value is not finite, NaN sem for one value."""
  values = np.asarray(values, np.float64)
  finite = bool(np.all(np.isfinite(values)))
  mean = float(np.mean(values)) if finite else float("nan")
  sem = (float(np.std(values, ddof=1) / np.sqrt(len(values)))
         if finite and len(values) > 1 else float("nan"))
  return {"mean": mean, "sem": sem, "values": [float(v) for v in values]}


def _json_ready(tree):
  """The tree with NaN and Inf floats replaced by None (strict JSON has neither)."""
  if isinstance(tree, dict):
    return {k: _json_ready(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_json_ready(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return None
  return tree


def _aggregate(config, runs):
  """results[K][model][metric] and gaps[K][student][metric] = {mean, sem, values}."""
  results, gaps = {}, {}
  for k in config.classes:
    per_k = [r for r in runs if r["num_classes"] == k]
    results[str(k)] = {
        name: {key: _summary([r["metrics"][name][key] for r in per_k])
               for key in per_k[0]["metrics"][name]}
        for name in ("bayes",) + _MODELS}
    gaps[str(k)] = {
        name: {key: _summary([r["metrics"][name][key] - r["metrics"]["ensemble"][key]
                              for r in per_k])
               for key in ("accuracy", "nll", "ood_auroc_mi", "ood_auroc_total")}
        for name in STUDENTS}
  return results, gaps


def _figures(out_dir, files, config, results, scatter):
  metrics_figure(os.path.join(out_dir, files["metrics"]), config, results)
  rows = {f"K={k}": {_LABELS[name]: (scatter[k]["ensemble"], scatter[k][name])
                     for name in STUDENTS} for k in config.classes}
  plots.plot_scatter_grid(
      os.path.join(out_dir, files["scatter"]), rows, "ensemble MI (nats)",
      "student MI (nats)", log=True,
      colors={_LABELS[name]: color for name, color in zip(STUDENTS, _PLOT_COLORS[2:])},
      title=f"Mutual information on the test set, seed {config.seeds[0]} "
            f"({config.scatter_points} points per panel)")


def run_many_classes(out_dir, config=None, log=None):
  """Runs the study over config.classes x config.seeds and writes its report folder.

  Writes to `out_dir` (no model weights): report.json, report.md,
  metrics_vs_classes.png (every metric against K, log axis, one line per model, error
  bars = standard error over seeds) and mi_scatter.png (the students' MI against the
  ensemble's on test points of the first seed).

  Metrics (test set of K classes; OOD set of held-out components):
  - "accuracy", "nll": of the predictive mean (ensemble: the members' mean probabilities;
    Dirichlet student: alpha / alpha_0; Bayes: the true posterior);
  - "ood_auroc_mi" / "ood_auroc_total": AUROC of OOD (positive) against test points,
    scored by mutual information / total entropy;
  - "mi_pearson", "mi_spearman", "mi_mean_ratio", "mi_relative_l1": the fidelity of a
    student's MI to the ensemble's over the test points (`td.metrics.
    uncertainty_fidelity`);
  - "mean_mi_test", "mean_mi_ood": the level of the MI.

  Args:
    out_dir: str, the report folder (created; its report files are overwritten).
    config: `ManyClassesConfig` or None (the defaults).
    log: None or callable(str), called with a line after each run.

  Returns:
    report: dict as written to report.json: the keys every report has
    (`td.report.header`: "config", "versions", "date", "wall_time_s", "timings_s"),
    "experiment", "config_key", "models", "metric_definitions", "results" (K -> model ->
    metric -> {"mean", "sem", "values"}), "gaps_to_ensemble" (K -> student -> metric ->
    the same, of the paired differences student - ensemble), "runs" (one dict per
    (K, seed), see `run_one`), "machine", "files". Values that are not finite (a
    diverged student; the standard error of one seed) are None.

  #### Examples

  ```python
  report = run_many_classes("reports/many_classes", ManyClassesConfig.fast())
  report["results"]["5"]["proxy-dirichlet"]["mi_pearson"]["mean"]
  ```
  """
  config = ManyClassesConfig() if config is None else config
  os.makedirs(out_dir, exist_ok=True)
  start = time.perf_counter()
  runs, scatter = _run_all(config, log)
  results, gaps = _aggregate(config, runs)
  files = {"report_json": "report.json", "report_md": "report.md",
           "metrics": "metrics_vs_classes.png", "scatter": "mi_scatter.png"}
  tic = time.perf_counter()
  _figures(out_dir, files, config, results, scatter)
  timings = {stage: float(sum(r["timings_s"][stage] for r in runs))
             for stage in ("data", "ensemble", "students", "evaluation")}
  timings.update(figures=time.perf_counter() - tic, total=time.perf_counter() - start)
  report = {
      "experiment": "many_classes",
      **td.report.header(config, timings),
      "config_key": config.key(),
      "models": {name: _LABELS[name] for name in ("bayes",) + _MODELS},
      "metric_definitions": {
          "accuracy": "fraction of test points whose argmax predictive class is the label",
          "nll": "mean -log p(label) of the predictive mean (probabilities floored at "
                 "1e-12)",
          "ood_auroc_mi": "AUROC, OOD points (held-out mixture components) positive, "
                          "test points negative, scored by mutual information",
          "ood_auroc_total": "the same, scored by the entropy of the predictive mean",
          "mi_pearson": "Pearson r of the student's and the ensemble's MI on the test set",
          "mi_spearman": "Spearman rank correlation of the same",
          "mi_mean_ratio": "mean MI of the student / mean MI of the ensemble",
          "mi_relative_l1": "sum |MI_student - MI_ensemble| / sum MI_ensemble",
          "mi_fidelity": "td.metrics.uncertainty_fidelity (one definition for every report)",
          "mean_mi_test": "mean MI over the test set (nats)",
          "mean_mi_ood": "mean MI over the OOD set (nats)",
          "sem": "standard error of the mean over seeds, std (ddof=1) / sqrt(seeds)",
          "gaps_to_ensemble": "student - ensemble, per seed (paired), then mean and sem",
      },
      "results": results,
      "gaps_to_ensemble": gaps,
      "runs": runs,
      "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
      "files": files,
  }
  report = _json_ready(report)
  with open(os.path.join(out_dir, files["report_json"]), "w") as f:
    json.dump(report, f, indent=2, allow_nan=False)
  with open(os.path.join(out_dir, files["report_md"]), "w") as f:
    f.write(format_markdown(report))
  return report


def _run_all(config, log):
  """Every (K, seed) run, in order, and the first seed's MI at `scatter_points` test
  points per K (for mi_scatter.png)."""
  runs, scatter = [], {}
  for k in config.classes:
    for seed in config.seeds:
      tic = time.perf_counter()
      run, mi = run_one(config, k, seed)
      runs.append(run)
      if seed == config.seeds[0]:
        keep = np.random.default_rng(seed).permutation(len(mi["ensemble"]))[
            :config.scatter_points]
        scatter[k] = {name: v[keep] for name, v in mi.items()}
      if log is not None:
        log(f"K={k} seed={seed}: " + ", ".join(
            f"{name} acc {run['metrics'][name]['accuracy']:.4f} AUROC(MI) "
            f"{run['metrics'][name].get('ood_auroc_mi', float('nan')):.3f}"
            for name in _MODELS) + f" ({time.perf_counter() - tic:.0f} s)")
  return runs, scatter
