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
import datetime
import json
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill.datasets import toy as toy_data
from tfp_distill.experiments import plots

__all__ = ["ToyConfig", "run_toy", "format_markdown"]

_MODELS = ("ensemble", "distilled", "mixture")


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


def _member_builder(config, family):
  def build_member(seed):
    # Layer i of a member is seeded with 1000 * seed + i: no two members share a seed.
    return td.models.mlp((1,), config.member_hidden, family.params_size,
                         seed=1000 * seed, name=f"member_{seed}")
  return build_member


def _student(config, head, params_size, seed, name):
  return td.models.mlp((1,), config.student_hidden, params_size, head=head,
                       seed=seed, name=name)


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


def _numpy(u):
  return {k: np.asarray(v) for k, v in u.items()}


def _decompositions(ensemble, distilled, mixture, family, x):
  """Prediction and variances [n] of the three models at x [n, 1]."""
  return {
      "ensemble": _numpy(td.decompose_ensemble(ensemble.predict_targets(x), family)),
      "distilled": _numpy(td.decompose(distilled(x), family)),
      "mixture": _numpy(td.decompose(mixture(x), family)),
  }


def _float(t):
  return float(np.asarray(t))


def _evaluate(ensemble, distilled, mixture, family, x, y, num_fractions=100):
  """RMSE, NLL, AUSE per model on (x [n, 1], y [n]), and the sparsification curves."""
  z = ensemble.predict_targets(x)                                  # [n, members, 2]
  nll = {
      "ensemble": td.metrics.gaussian_mixture_nll(
          y, family.mean(z)[..., 0], family.variance(z)[..., 0]),
      "distilled": -tf.reduce_mean(
          td.losses.predictive_log_prob(distilled(x), family, y)),
      "mixture": -tf.reduce_mean(mixture(x).log_prob(y[:, np.newaxis])),
  }
  u = _decompositions(ensemble, distilled, mixture, family, x)
  metrics, curves = {}, {}
  for name in _MODELS:
    errors = np.square(y - u[name]["prediction"])
    total = u[name]["total"]
    metrics[name] = {
        "rmse": _float(td.metrics.rmse(y, u[name]["prediction"])),
        "nll": _float(nll[name]),
        "ause": _float(td.metrics.ause(errors, total, num_fractions)),
    }
    fractions, curve = td.metrics.sparsification_curve(errors, total, num_fractions)
    _, oracle = td.metrics.sparsification_curve(errors, total, num_fractions, oracle=True)
    curves[name] = (np.asarray(fractions), np.asarray(curve), np.asarray(oracle))
  return metrics, curves


def _agreement(estimate, reference):
  return {"pearson": _float(td.metrics.pearson_correlation(estimate, reference)),
          "mean_relative_error": _float(td.metrics.mean_relative_error(estimate,
                                                                        reference))}


def _fidelity(u):
  """How well the students' uncertainty curves on the grid match the ensemble's."""
  ens, dist, mix = u["ensemble"], u["distilled"], u["mixture"]
  return {
      "distilled": {
          "aleatoric": _agreement(dist["aleatoric"], ens["aleatoric"]),
          "epistemic": _agreement(dist["epistemic"], ens["epistemic"]),
          "total": _agreement(dist["total"], ens["total"]),
          "prediction_rmse": _float(td.metrics.rmse(ens["prediction"],
                                                    dist["prediction"])),
      },
      "mixture": {
          "total": _agreement(mix["total"], ens["total"]),
          "prediction_rmse": _float(td.metrics.rmse(ens["prediction"],
                                                    mix["prediction"])),
      },
  }


def _versions():
  return {"tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
          "tf_keras": keras.__version__, "numpy": np.__version__,
          "tfp_distill": td.__version__}


def run_toy(out_dir, config=None):
  """Runs the toy study end to end and writes its report folder.

  Trains the ensemble on the sinusoid, distils it into a distribution-distilled student
  (`MultivariateNormalTriLHead(2)` over z = (mu, rho), `EnsembleNLL`) and a
  mixture-distilled student (`NormalPredictiveHead(1)` over y, `MixtureKL`), both with
  plain `student.fit` on `teacher_targets` of inputs drawn uniformly on the distillation
  interval (no ground-truth y; both students see the same input stream, drawn with seed
  `seed + 2`), and evaluates the three models.

  Metrics on the test set (x [num_test, 1], y [num_test] from
  `sinusoid(num_test, test_low, test_high, seed + 1)`):
  - "rmse" of the mean prediction;
  - "nll": ensemble: the NLL of its equally weighted mixture of members; distilled: of its
    predictive q~(y | x) = int q(y; z) v(z | x) dz (eq 14); mixture: of its Normal;
  - "ause": area under the sparsification error with squared errors, sorted by the total
    variance (aleatoric + epistemic).
  Fidelity on `grid_points` points on [test_low, test_high]: Pearson correlation and mean
  relative error of the distilled student's aleatoric, epistemic and total variances and
  of the mixture student's total variance against the ensemble's; RMSE between their mean
  predictions and the ensemble's.

  Writes to `out_dir`: report.json, report.md, uncertainty.png (Fig. 2 of [1]),
  sparsification.png (Fig. 3), variances.png (the variance curves on the grid, log
  scale), ensemble/ (`Ensemble.save`), distilled.keras and mixture.keras.

  Args:
    out_dir: str, the report folder (created if needed; files in it are overwritten).
    config: `ToyConfig` or None (the paper's configuration).

  Returns:
    report: dict with keys "experiment", "config", "metrics" (model -> {"rmse", "nll",
      "ause"}), "fidelity", "timings_s" (stage -> seconds, and "total"), "versions",
      "date", "files".

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

  x_train, y_train = toy_data.sinusoid(config.num_train, config.train_low,
                                       config.train_high, seed=config.seed)
  tic = time.perf_counter()
  ensemble = td.train_ensemble(
      _member_builder(config, family), (x_train, y_train), family,
      num_members=config.num_members, epochs=config.member_epochs,
      batch_size=config.member_batch_size, learning_rate=config.learning_rate,
      seed=config.seed, verbose=config.verbose,
      vectorize="auto" if config.fast_paths else False)
  timings["ensemble"] = time.perf_counter() - tic

  tic = time.perf_counter()
  head = td.heads.MultivariateNormalTriLHead
  distilled = _student(config, head(family.params_size), head.params_size(
      family.params_size), seed=10_000 + 100 * config.seed, name="distilled")
  _distil(distilled, td.losses.EnsembleNLL(), ensemble, config, "distilled student")
  timings["distilled"] = time.perf_counter() - tic

  tic = time.perf_counter()
  head = td.heads.NormalPredictiveHead
  mixture = _student(config, head(family.event_size, min_scale=config.min_variance),
                     head.params_size(family.event_size),
                     seed=20_000 + 100 * config.seed, name="mixture")
  _distil(mixture, td.losses.MixtureKL(family), ensemble, config, "mixture student")
  timings["mixture"] = time.perf_counter() - tic

  tic = time.perf_counter()
  x_test, y_test = toy_data.sinusoid(config.num_test, config.test_low, config.test_high,
                                     seed=config.seed + 1)
  metrics, curves = _evaluate(ensemble, distilled, mixture, family, x_test, y_test)
  x_grid = toy_data.grid(config.test_low, config.test_high, config.grid_points)
  u_grid = _decompositions(ensemble, distilled, mixture, family, x_grid)
  fidelity = _fidelity(u_grid)
  timings["evaluation"] = time.perf_counter() - tic

  tic = time.perf_counter()
  files = {"uncertainty": "uncertainty.png", "sparsification": "sparsification.png",
           "variances": "variances.png",
           "ensemble": "ensemble", "distilled": "distilled.keras",
           "mixture": "mixture.keras", "report_json": "report.json",
           "report_md": "report.md"}
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
      os.path.join(out_dir, files["sparsification"]),
      {name: curves[name] for name in _MODELS},
      title=f"Sparsification, test set on [{config.test_low:g}, {config.test_high:g}]")
  plots.plot_variances(
      os.path.join(out_dir, files["variances"]), x_grid,
      {name: {k: u_grid[name][k] for k in ("aleatoric", "epistemic", "total")
              if k in u_grid[name]} for name in _MODELS},
      reference="ensemble", train_interval=(config.train_low, config.train_high),
      title="Variances on the fidelity grid")
  timings["plots"] = time.perf_counter() - tic

  tic = time.perf_counter()
  ensemble.save(os.path.join(out_dir, files["ensemble"]))
  distilled.save(os.path.join(out_dir, files["distilled"]))
  mixture.save(os.path.join(out_dir, files["mixture"]))
  timings["save"] = time.perf_counter() - tic
  timings["total"] = time.perf_counter() - start

  report = {
      "experiment": "toy",
      "config": dataclasses.asdict(config),
      "metrics": metrics,
      "metric_definitions": {
          "rmse": "root mean squared error of the mean prediction on the test set",
          "nll": ("mean negative log predictive density: ensemble = its uniform mixture, "
                  "distilled = q~(y|x) (eq 14), mixture = its Normal"),
          "ause": ("area under the sparsification error (squared errors, sorted by total "
                   "variance, 100 fractions, trapezoid rule)"),
          "fidelity": (f"on a {config.grid_points}-point grid on [{config.test_low:g}, "
                       f"{config.test_high:g}]: Pearson r and mean relative error "
                       "|student - ensemble| / ensemble of the variances"),
      },
      "fidelity": fidelity,
      "timings_s": timings,
      "versions": _versions(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "files": files,
  }
  with open(os.path.join(out_dir, files["report_json"]), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(out_dir, files["report_md"]), "w") as f:
    f.write(format_markdown(report))
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
      "| student | variance | Pearson r | mean relative error |",
      "|---|---|---:|---:|",
  ]
  for student, parts in report["fidelity"].items():
    for part, value in parts.items():
      if isinstance(value, dict):
        lines.append(f"| {student} | {part} | {value['pearson']:.4f} | "
                     f"{value['mean_relative_error']:.4f} |")
  gaps = ", ".join(f"{student} {parts['prediction_rmse']:.4f}"
                   for student, parts in report["fidelity"].items()
                   if "prediction_rmse" in parts)
  lines += ["", f"RMSE of the mean prediction against the ensemble's on the grid: "
                f"{gaps}."]
  lines += ["", "| stage | seconds |", "|---|---:|"]
  for stage, seconds in report["timings_s"].items():
    lines.append(f"| {stage} | {seconds:.1f} |")
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  lines += ["", f"{versions}; {report['date']}.", ""]
  return "\n".join(lines)
