"""The regression toy study of the general distillation framework (`tfp-distill toy`).

```none
sinusoid on [-3, 3] ──► ensemble of M heteroscedastic MLPs (train_ensemble)
                             │  targets z on x ~ U[-5, 5], fresh every epoch, no labels y
                             ├──► distribution-distilled student: v(z | x) = N(m(x), L L^T)
                             │      over z = (mu, rho), loss EnsembleNLL (eq 7)
                             └──► mixture-distilled student: N(y; mu(x), s^2(x)),
                                    loss MixtureKL (eq 31)
evaluation: RMSE, NLL, AUSE on a test set on [-5, 5]; fidelity of the students'
uncertainties to the ensemble's on a grid; figures as in Fig. 2 and 3 of [1].
```

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531 (section 4.1, appendix B.1.1).
"""

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill import plots
from tfp_distill._keras import keras
from tfp_distill.datasets import toy as toy_data
from tfp_distill.experiments import _common

__all__ = ["STUDENTS", "ToyConfig", "distil_student", "evaluate", "format_markdown",
           "grid_fidelity", "run_toy", "train_teacher"]


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  """Configuration of the toy study; the defaults are the paper's (section 4.1, B.1.1).

  The paper gives each member "a single hidden layer" without its width: we use 50 units
  (the width of its UCI members). Everything else is as stated there: M = 10 members
  trained for 150 epochs with batch size 32 and Adam (learning rate 1e-3) on N = 1000
  points of x ~ U[-3, 3]; students with two hidden layers of 10 units trained for 30
  epochs with the same optimizer, on ensemble outputs at x ~ U[-5, 5] only.

  Attributes:
    num_train: int, N training points.
    train_low, train_high: float, training interval.
    num_members: int, M.
    member_hidden: tuple of ints, hidden widths of a member.
    member_epochs: int.
    member_batch_size: int.
    learning_rate: float, Adam's learning rate (members and students).
    distill_low, distill_high: float, the distillation inputs' interval.
    distill_samples_per_epoch: int, fresh inputs drawn per student epoch.
    student_hidden: tuple of ints, hidden widths of both students.
    student_epochs: int.
    student_batch_size: int.
    num_test: int, test points drawn on [test_low, test_high].
    test_low, test_high: float, the evaluation interval (test set, grid and figures).
    grid_points: int, points of the fidelity grid on [test_low, test_high].
    seed: int, base seed (data, initialisations, data order, distillation inputs).
    min_variance: float, floor c of the members' variance softplus(rho) + c (eq 32).
    teacher_in: "train_step" (`td.Distiller`, the default: twice the throughput of the
      tf.data path on 2 CPU cores, scripts/throughput.py) or "tf_data"
      (`student.fit(td.teacher_targets(...))`).
    fast_paths: bool. True: members trained vectorized (`train_ensemble`; member m reads
      rows in the order `member_permutation(n, seed + m, epoch)`), students' train step
      compiled by XLA, 100 steps per compiled call. False: the protocol of the
      2026-11-25 figures (members side by side in one graph, no XLA, one step per call).
      Same distributions of data orders, other draws.
    verbose: int, 0 silent, 1 progress bars.
  """

  num_train: int = 1000
  train_low: float = -3.
  train_high: float = 3.
  num_members: int = 10
  member_hidden: tuple = (50,)
  member_epochs: int = 150
  member_batch_size: int = 32
  learning_rate: float = 1e-3
  distill_low: float = -5.
  distill_high: float = 5.
  distill_samples_per_epoch: int = 10000
  student_hidden: tuple = (10, 10)
  student_epochs: int = 30
  student_batch_size: int = 32
  num_test: int = 2000
  test_low: float = -5.
  test_high: float = 5.
  grid_points: int = 200
  seed: int = 0
  min_variance: float = 1e-3
  teacher_in: str = "train_step"
  fast_paths: bool = True
  verbose: int = 1

  @classmethod
  def fast(cls, **overrides):
    """A tiny configuration for smoke tests (seconds on 2 CPU cores), not for results."""
    config = dict(num_train=200, num_members=3, member_hidden=(16,), member_epochs=3,
                  member_batch_size=64, distill_samples_per_epoch=512, student_epochs=2,
                  student_batch_size=64, num_test=200, grid_points=50, verbose=0)
    config.update(overrides)
    return cls(**config)


#: The toy's two students: report key -> (td.methods name, initial-weights seed offset).
#: "distilled" (the distribution-distilled student) is the study's name for the role the
#: registry's "mvn" plays here; the key stays as the toy's reports have always had it.
STUDENTS = {"distilled": ("mvn", 10_000), "mixture": ("mixture", 20_000)}


def _member_builder(config, family):
  def build_member(seed):
    # Layer i of a member is seeded with 1000 * seed + i: no two members share a seed.
    return td.models.mlp((1,), config.member_hidden, family.params_size,
                         seed=1000 * seed, name=f"member_{seed}")
  return build_member


def _distil(student, loss, ensemble, config, description):
  """Fits `student` on ensemble targets at fresh x ~ U[distill_low, distill_high].

  The teacher runs inside the train step (`td.Distiller`) or in the tf.data pipeline
  (`student.fit(td.teacher_targets(...))`), as `config.teacher_in` says: the same loss
  on the same inputs either way.
  """
  inputs = td.targets.uniform_inputs(config.distill_low, config.distill_high,
                                     config.distill_samples_per_epoch,
                                     seed=config.seed + 2)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  bar = td.callbacks.ProgressBar(description, disable=not config.verbose)
  if config.teacher_in == "train_step":
    model = td.Distiller(student, ensemble, loss=loss)
    model.compile(optimizer=optimizer, jit_compile=config.fast_paths,
                  steps_per_execution=100 if config.fast_paths else 1)
    data = inputs.batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE)
  elif config.teacher_in == "tf_data":
    model = student
    model.compile(optimizer=optimizer, loss=loss, jit_compile=config.fast_paths,
                  steps_per_execution=100 if config.fast_paths else 1)
    data = td.teacher_targets(inputs, ensemble, batch_size=config.student_batch_size,
                              seed=config.seed + 3)
  else:
    raise ValueError(f"teacher_in must be 'train_step' or 'tf_data', got "
                     f"{config.teacher_in!r}.")
  # Either way a non-finite loss stops the run at once (td.Distiller adds its own
  # check, with the batch's statistics).
  stop = [] if model is not student else [td.callbacks.StopOnNonFiniteLoss(True)]
  return model.fit(data, epochs=config.student_epochs, verbose=0,
                   callbacks=[bar] + stop)


def train_teacher(config, family):
  """Stage 1: the training data and the ensemble: (x_train [n, 1], y_train [n], ensemble)."""
  x_train, y_train = toy_data.sinusoid(config.num_train, config.train_low,
                                       config.train_high, seed=config.seed)
  ensemble = td.train_ensemble(
      _member_builder(config, family), (x_train, y_train), family,
      num_members=config.num_members, epochs=config.member_epochs,
      batch_size=config.member_batch_size, learning_rate=config.learning_rate,
      seed=config.seed, verbose=config.verbose,
      vectorize="auto" if config.fast_paths else False)
  return x_train, y_train, ensemble


def distil_student(name, config, family, ensemble):
  """Stage 2, one student: the registry's student (`STUDENTS[name]`), an MLP with its
  head, fitted on the ensemble's outputs only. Returns (model, `RegistryStudent`)."""
  method, offset = STUDENTS[name]
  parts = _common.registry_student(method, "regression", family)
  model = td.models.mlp((1,), config.student_hidden, parts.params_size, head=parts.head,
                        seed=offset + 100 * config.seed, name=name)
  _distil(model, parts.loss, ensemble, config, f"{name} student")
  return model, parts


def _numpy(u):
  return {k: np.asarray(v) for k, v in u.items()}


def _decompositions(ensemble, students, family, x):
  """Prediction and variances [n] of the ensemble and every student at x [n, 1]."""
  u = {"ensemble": _numpy(td.decompose_ensemble(ensemble.predict_targets(x), family))}
  for name, (model, parts) in students.items():
    u[name] = _numpy(td.decompose(model(x), parts.family))
  return u


def _float(t):
  return float(np.asarray(t))


def evaluate(ensemble, students, family, x, y, num_fractions=100):
  """Stage 3: RMSE, NLL, AUSE per model on (x [n, 1], y [n]), and the sparsification
  curves."""
  z = ensemble.predict_targets(x)                                  # [n, members, 2]
  nll = {"ensemble": _float(td.metrics.gaussian_mixture_nll(
      y, family.mean(z)[..., 0], family.variance(z)[..., 0]))}
  for name, (model, parts) in students.items():
    nll[name] = _common.regression_nll(parts, model(x), y)
  u = _decompositions(ensemble, students, family, x)
  metrics, curves = {}, {}
  for name in u:
    errors = np.square(y - u[name]["prediction"])
    total = u[name]["total"]
    metrics[name] = {
        "rmse": _float(td.metrics.rmse(y, u[name]["prediction"])),
        "nll": nll[name],
        "ause": _float(td.metrics.ause(errors, total, num_fractions)),
    }
    fractions, curve = td.metrics.sparsification_curve(errors, total, num_fractions)
    _, oracle = td.metrics.sparsification_curve(errors, total, num_fractions, oracle=True)
    curves[name] = (np.asarray(fractions), np.asarray(curve), np.asarray(oracle))
  return metrics, curves


def grid_fidelity(u, students):
  """Stage 4: how well each student's uncertainty curves on the grid follow the
  ensemble's (`td.metrics.uncertainty_fidelity` of each part it has), and the RMSE
  between their mean predictions."""
  ens = u["ensemble"]
  out = {}
  for name, (_, parts) in students.items():
    out[name] = {part: _common.fidelity(u[name][part], ens[part]) for part in parts.parts}
    out[name]["prediction_rmse"] = _float(td.metrics.rmse(ens["prediction"],
                                                          u[name]["prediction"]))
  return out


def _figures(out_dir, files, config, x_train, y_train, x_grid, u_grid, curves):
  """Stage 5: uncertainty.png (Fig. 2 of [1]), sparsification.png (Fig. 3) and
  variances.png."""
  panels = {
      f"Ensemble (M={config.num_members})": u_grid["ensemble"],
      "Distribution distillation": u_grid["distilled"],
      "Mixture distillation (total only)": {
          "prediction": u_grid["mixture"]["prediction"],
          "total": u_grid["mixture"]["total"]},
  }
  plots.plot_regression_uncertainty(
      os.path.join(out_dir, files["uncertainty"]), panels, x_train, y_train, x_grid,
      true_mean=toy_data.sinusoid_mean(x_grid[:, 0]),
      train_interval=(config.train_low, config.train_high))
  plots.plot_sparsification(
      os.path.join(out_dir, files["sparsification"]), curves,
      title=f"Sparsification, test set on [{config.test_low:g}, {config.test_high:g}]")
  plots.plot_variances(
      os.path.join(out_dir, files["variances"]), x_grid,
      {name: {k: u[k] for k in ("aleatoric", "epistemic", "total") if k in u}
       for name, u in u_grid.items()},
      reference="ensemble", train_interval=(config.train_low, config.train_high),
      title="Variances on the fidelity grid")


def run_toy(out_dir, config=None):
  """Runs the toy study end to end and writes its report folder.

  Trains the ensemble on the sinusoid, distils it into a distribution-distilled student
  (the registry's "mvn": `MultivariateNormalTriLHead(2)` over z = (mu, rho),
  `EnsembleNLL`) and a mixture-distilled student ("mixture": `NormalPredictiveHead(1)`
  over y, `MixtureKL`), both on ensemble outputs at inputs drawn uniformly on the
  distillation interval (no ground-truth y; both students see the same input stream,
  drawn with seed `seed + 2`), and evaluates the three models.

  Metrics on the test set (x [num_test, 1], y [num_test] from
  `sinusoid(num_test, test_low, test_high, seed + 1)`):
  - "rmse" of the mean prediction;
  - "nll": ensemble: the NLL of its equally weighted mixture of members; distilled: of its
    predictive q~(y | x) = int q(y; z) v(z | x) dz (eq 14); mixture: of its Normal;
  - "ause": area under the sparsification error with squared errors, sorted by the total
    variance (aleatoric + epistemic).
  Fidelity on `grid_points` points on [test_low, test_high]: `td.metrics.
  uncertainty_fidelity` (Pearson, Spearman, mean ratio, relative L1) of the distilled
  student's aleatoric, epistemic and total variances and of the mixture student's total
  variance against the ensemble's; RMSE between their mean predictions and the
  ensemble's.

  Writes to `out_dir`: report.json, report.md, uncertainty.png (Fig. 2 of [1]),
  sparsification.png (Fig. 3), variances.png (the variance curves on the grid, log
  scale), ensemble/ (`Ensemble.save`), distilled.keras and mixture.keras.

  Args:
    out_dir: str, the report folder (created if needed; files in it are overwritten).
    config: `ToyConfig` or None (the paper's configuration).

  Returns:
    report: dict with the keys every report has (`td.report.header`: "config",
      "versions", "date", "wall_time_s", "timings_s": stage -> seconds, and "total"),
      and "experiment", "metrics" (model -> {"rmse", "nll", "ause"}),
      "metric_definitions", "fidelity", "files".

  #### Examples

  ```python
  report = run_toy("reports/toy", ToyConfig.fast())
  report["fidelity"]["distilled"]["epistemic"]["pearson"]
  ```
  """
  config = ToyConfig() if config is None else config
  os.makedirs(out_dir, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)

  tic = time.perf_counter()
  x_train, y_train, ensemble = train_teacher(config, family)
  timings["ensemble"] = time.perf_counter() - tic

  students = {}
  for name in STUDENTS:
    tic = time.perf_counter()
    students[name] = distil_student(name, config, family, ensemble)
    timings[name] = time.perf_counter() - tic

  tic = time.perf_counter()
  x_test, y_test = toy_data.sinusoid(config.num_test, config.test_low, config.test_high,
                                     seed=config.seed + 1)
  metrics, curves = evaluate(ensemble, students, family, x_test, y_test)
  x_grid = toy_data.grid(config.test_low, config.test_high, config.grid_points)
  u_grid = _decompositions(ensemble, students, family, x_grid)
  fidelity = grid_fidelity(u_grid, students)
  timings["evaluation"] = time.perf_counter() - tic

  tic = time.perf_counter()
  files = {"uncertainty": "uncertainty.png", "sparsification": "sparsification.png",
           "variances": "variances.png",
           "ensemble": "ensemble", "distilled": "distilled.keras",
           "mixture": "mixture.keras", "report_json": "report.json",
           "report_md": "report.md"}
  _figures(out_dir, files, config, x_train, y_train, x_grid, u_grid, curves)
  timings["plots"] = time.perf_counter() - tic

  tic = time.perf_counter()
  ensemble.save(os.path.join(out_dir, files["ensemble"]))
  for name, (model, _) in students.items():
    model.save(os.path.join(out_dir, files[name]))
  timings["save"] = time.perf_counter() - tic
  timings["total"] = time.perf_counter() - start

  report = {
      "experiment": "toy",
      **td.report.header(config, timings),
      "methods": {name: method for name, (method, _) in STUDENTS.items()},
      "metrics": metrics,
      "metric_definitions": {
          "rmse": "root mean squared error of the mean prediction on the test set",
          "nll": ("mean negative log predictive density: ensemble = its uniform mixture, "
                  "distilled = q~(y|x) (eq 14), mixture = its Normal"),
          "ause": ("area under the sparsification error (squared errors, sorted by total "
                   "variance, 100 fractions, trapezoid rule)"),
          "fidelity": (f"on a {config.grid_points}-point grid on [{config.test_low:g}, "
                       f"{config.test_high:g}]: td.metrics.uncertainty_fidelity of the "
                       "variances, student against ensemble"),
      },
      "fidelity": fidelity,
      "files": files,
  }
  _common.write_report(out_dir, files, report, format_markdown(report))
  return report


def format_markdown(report):
  """The report as Markdown: metrics, fidelity and timings tables.

  Args:
    report: dict as returned by `run_toy`.

  Returns:
    str.
  """
  config = report["config"]
  lines = [
      "# Toy regression: ensemble distribution distillation",
      "",
      f"Ensemble of {config['num_members']} members trained on {config['num_train']} "
      f"points on [{config['train_low']:g}, {config['train_high']:g}]; students trained "
      f"only on ensemble outputs at x ~ U[{config['distill_low']:g}, "
      f"{config['distill_high']:g}] ({config['distill_samples_per_epoch']} points x "
      f"{config['student_epochs']} epochs). Test set: {config['num_test']} points on "
      f"[{config['test_low']:g}, {config['test_high']:g}].",
      "",
      "| model | RMSE | NLL | AUSE |",
      "|---|---:|---:|---:|",
  ]
  for name, m in report["metrics"].items():
    lines.append(f"| {name} | {m['rmse']:.4f} | {m['nll']:.4f} | {m['ause']:.4f} |")
  lines += [
      "",
      f"Fidelity to the ensemble on a {config['grid_points']}-point grid on "
      f"[{config['test_low']:g}, {config['test_high']:g}]:",
      "",
  ]
  cells = [v for parts in report["fidelity"].values() for v in parts.values()]
  columns = _common.fidelity_columns(cells)
  lines += ["| student | variance | " + " | ".join(
      _common.FIDELITY_COLUMNS[c] for c in columns) + " |",
            "|---|---|" + "---:|" * len(columns)]
  for student, parts in report["fidelity"].items():
    for part, value in parts.items():
      if isinstance(value, dict):
        lines.append(f"| {student} | {part} | " + " | ".join(
            _common.number(value.get(c)) for c in columns) + " |")
  gaps = ", ".join(f"{student} {parts['prediction_rmse']:.4f}"
                   for student, parts in report["fidelity"].items()
                   if "prediction_rmse" in parts)
  lines += ["", f"RMSE of the mean prediction against the ensemble's on the grid: "
                f"{gaps}."]
  return "\n".join(lines + _common.markdown_footer(report))
