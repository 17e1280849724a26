"""UCI regression benchmark of the general distillation framework (`tfp-distill uci`).

```none
split i of data set D (normalised on its training part)
  ├─► ensemble of M heteroscedastic one-hidden-layer MLPs (train_ensemble, labels y)
  │      targets z at the training x and at jittered training x (fresh every epoch)
  ├─► "full":     v(z | x) = N(m(x), L L^T) over z = (mu, rho), EnsembleNLL
  ├─► "diagonal": v(z | x) = N(m(x), diag s(x)^2),             EnsembleNLL
  └─► "mixture":  N(y; mu(x), s(x)^2),                           MixtureKL
metrics per split in original units: RMSE, NLL, AUSE; mean and standard error over splits
```

How each model's predictive (for NLL) is formed: the ensemble's is the equally weighted
mixture of its members' Normals; a distribution-distilled student's is
q~(y | x) = int q(y; z) v(z | x) dz (eq 14 of [1], mu integrated in closed form, rho by
Gauss-Hermite quadrature); the mixture student's is its Normal. AUSE sorts squared errors
by the total variance (aleatoric + epistemic).

Members of one architecture train in one graph (`train_ensemble`): the loss is the sum of
the members' mean NLLs, each member with its own initialisation and data order, which is
M independent trainings. Students train with the teacher inside the train step
(`td.Distiller`) on the training inputs plus jittered copies, no labels.

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531 (section 4.1, Table 1, appendix B.1.2).
[2]: Lakshminarayanan, Pritzel, Blundell. Simple and scalable predictive uncertainty
     estimation using deep ensembles. NeurIPS 2017. arXiv:1612.01474 (Table 1).
"""

import dataclasses
import datetime
import gc
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill.datasets import uci as uci_data

__all__ = ["UCIConfig", "run_split", "run_uci", "aggregate", "format_markdown",
           "PUBLISHED"]

STUDENTS = ("full", "diagonal", "mixture")
MODELS = ("ensemble",) + STUDENTS

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


@dataclasses.dataclass(frozen=True)
class UCIConfig:
  """Protocol of the UCI benchmark.

  Members follow the Hernandez-Lobato & Adams / Deep Ensembles setup (one hidden layer of
  50 units, 100 for protein; 40 epochs; batch 100; Adam). Students have one hidden layer
  of 75 units, as in the framework paper, and see the training inputs plus
  `jitter_copies` jittered copies of them per epoch (within the bounds below).

  Attributes:
    num_members: int, M.
    member_hidden: tuple or None (None: 50 units, 100 for protein).
    member_epochs, member_batch_size, member_learning_rate: member training.
    min_variance: float, variance floor c of the members (normalised units).
    student_hidden: tuple.
    student_epochs, student_batch_size, student_learning_rate: student training.
    jitter_copies: float, jittered inputs per epoch as a multiple of the training size.
    jitter_scale: float, noise sd of the jittered inputs (normalised features).
    min_distill_samples, max_distill_samples: int, bounds on the distillation inputs per
      epoch (training inputs + jittered ones): small sets get more jittered copies.
    students: tuple, which of "full", "diagonal", "mixture" to train.
    perturbation_step: None, or float > 0: every distillation batch is moved by
      `td.perturb.MeanDisagreement(perturbation_step)`, a random fraction of a step up
      the members' disagreement (the regression analogue of ODS), before the teacher
      labels it.
    steps_per_execution: int, training steps per compiled call (speed only).
    fast_paths: bool. True: the members train vectorized (`train_ensemble`; member m
      reads rows in the order `member_permutation(n, seed + m, epoch)`), and the
      students train together, one teacher pass and one Adam step per batch for all of
      them (a sum of their losses over disjoint parameters: each trains as it would
      alone), on `td.targets.jittered_batches` (each epoch's inputs drawn at once, fully
      shuffled). False: the protocol of the 2026-11-25 table (members side by side in
      one graph; each student alone on an element-wise shuffled tf.data pipeline with a
      20,000-element buffer). Same distributions of inputs and orders, other draws.
    student_jit_compile: bool, compile the students' train step with XLA.
    seed: int, base seed (split i uses seed + 1000 i).
    verbose: int, 0 silent, 1 progress bars.
  """

  num_members: int = 10
  member_hidden: tuple = None
  member_epochs: int = 40
  member_batch_size: int = 100
  member_learning_rate: float = 1e-2
  min_variance: float = 1e-4
  student_hidden: tuple = (75,)
  student_epochs: int = 30
  student_batch_size: int = 100
  student_learning_rate: float = 1e-2
  jitter_copies: float = 4.0
  jitter_scale: float = 0.1
  min_distill_samples: int = 10_000
  max_distill_samples: int = 100_000
  students: tuple = STUDENTS
  perturbation_step: float = None
  steps_per_execution: int = 100
  fast_paths: bool = True
  student_jit_compile: bool = True
  seed: int = 0
  verbose: int = 1

  @classmethod
  def fast(cls, **overrides):
    """A tiny configuration for smoke tests, not for results."""
    config = dict(num_members=3, member_epochs=2, student_epochs=1, jitter_copies=1.0,
                  min_distill_samples=0, verbose=0)
    config.update(overrides)
    return cls(**config)

  def key(self):
    """A short hash of the settings that change results (not `verbose`)."""
    fields = dataclasses.asdict(self)
    fields.pop("verbose")
    fields.pop("steps_per_execution")
    for name, old_default in (("perturbation_step", None), ("fast_paths", False),
                              ("student_jit_compile", False)):
      if fields[name] == old_default:   # keeps the keys of results saved before them
        fields.pop(name)
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _hidden(config, name):
  if config.member_hidden is not None:
    return tuple(config.member_hidden)
  return (100,) if name == "protein" else (50,)


def _heads(family):
  e = family.params_size
  return {
      "full": (td.heads.MultivariateNormalTriLHead(e),
               td.heads.MultivariateNormalTriLHead.params_size(e), td.losses.EnsembleNLL()),
      "diagonal": (td.heads.NormalHead(e), td.heads.NormalHead.params_size(e),
                   td.losses.EnsembleNLL()),
      "mixture": (td.heads.NormalPredictiveHead(family.event_size,
                                                min_scale=family.min_variance),
                  td.heads.NormalPredictiveHead.params_size(family.event_size),
                  td.losses.MixtureKL(family)),
  }


def _num_jittered(config, n):
  extra = config.jitter_copies * n
  return int(max(min(extra, config.max_distill_samples - n), config.min_distill_samples - n,
                 0))


def _distil_together(kinds, data, ensemble, family, config, seed):
  """All students in one model and one train step (fast_paths): {kind: student}.

  ```none
  batch x ─► teacher (once) ─► z ─► sum_k loss_k(z, student_k(x)) ─► one Adam step
  ```
  The loss is a sum over students whose parameters are disjoint, and Adam's update is
  per parameter, so each student trains exactly as it would alone on these batches.
  Student k is initialised with seed + 100 (k + 1), as in the separate protocol.
  """
  heads = _heads(family)
  students = {}
  for i, kind in enumerate(kinds):
    head, params_size, _ = heads[kind]
    students[kind] = td.models.mlp(data.x_train.shape[1:], config.student_hidden,
                                   params_size, head=head, seed=seed + 100 * (i + 1),
                                   name=kind)
  inputs = keras.Input(data.x_train.shape[1:])
  panel = keras.Model(inputs, {kind: s(inputs) for kind, s in students.items()})
  losses = {kind: heads[kind][2] for kind in kinds}

  def loss(z, dists):   # [batch]: the sum of the students' per-example losses
    return tf.add_n([getattr(l, "call", l)(z, dists[k]) for k, l in losses.items()])

  perturbation = (None if config.perturbation_step is None else
                  td.perturb.MeanDisagreement(config.perturbation_step, family))
  distiller = td.Distiller(panel, ensemble, loss=loss, perturbation=perturbation,
                           seed=seed)
  distiller.compile(keras.optimizers.Adam(config.student_learning_rate),
                    steps_per_execution=config.steps_per_execution,
                    jit_compile=config.student_jit_compile)
  batches = td.targets.jittered_batches(data.x_train, config.student_batch_size,
                                        config.jitter_scale,
                                        _num_jittered(config, len(data.x_train)),
                                        seed=seed)
  bar = td.callbacks.ProgressBar(f"{data.name} {data.split} students",
                                 disable=not config.verbose, leave=False)
  distiller.fit(batches, epochs=config.student_epochs, verbose=0, callbacks=[bar])
  return students


def _distil(kind, data, ensemble, family, config, seed):
  """One student on its own pipeline: the protocol of the 2026-11-25 table."""
  head, params_size, loss = _heads(family)[kind]
  student = td.models.mlp(data.x_train.shape[1:], config.student_hidden, params_size,
                          head=head, seed=seed, name=kind)
  n = len(data.x_train)
  extra = _num_jittered(config, n)
  inputs = tf.data.Dataset.from_tensor_slices(data.x_train).shuffle(
      n, seed=seed, reshuffle_each_iteration=True)
  if extra > 0:
    inputs = inputs.concatenate(td.targets.jittered_inputs(
        data.x_train, config.jitter_scale, extra, seed=seed + 1)).shuffle(
            min(n + extra, 20_000), seed=seed + 2, reshuffle_each_iteration=True)
  perturbation = (None if config.perturbation_step is None else
                  td.perturb.MeanDisagreement(config.perturbation_step, family))
  distiller = td.Distiller(student, ensemble, loss=loss, perturbation=perturbation,
                           seed=seed)
  distiller.compile(keras.optimizers.Adam(config.student_learning_rate),
                    steps_per_execution=config.steps_per_execution,
                    jit_compile=config.student_jit_compile)
  bar = td.callbacks.ProgressBar(f"{data.name} {data.split} {kind}",
                                 disable=not config.verbose, leave=False)
  distiller.fit(inputs.batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE),
                epochs=config.student_epochs, verbose=0, callbacks=[bar])
  return student


def _predictive(model_name, model, family, x, y):
  """(prediction [n], total variance [n], mean NLL) in normalised units."""
  if model_name == "ensemble":
    z = model.predict_targets(x)
    u = td.decompose_ensemble(z, family)
    nll = td.metrics.gaussian_mixture_nll(y, family.mean(z)[..., 0],
                                          family.variance(z)[..., 0])
  else:
    dist = model(x)
    u = td.decompose(dist, family)
    if model_name == "mixture":
      nll = -tf.reduce_mean(dist.log_prob(y[:, None]))
    else:
      nll = -tf.reduce_mean(td.losses.predictive_log_prob(dist, family, y))
  return np.asarray(u["prediction"]), np.asarray(u["total"]), float(nll)


def run_split(name, split, config=None, data_dir=None):
  """Runs the protocol on one split; returns metrics in original units.

  Args:
    name: UCI data set short name.
    split: int, split index.
    config: `UCIConfig` or None.
    data_dir: optional UCI data directory.

  Returns:
    dict: "metrics" (model -> {"rmse", "nll", "ause"}), "sparsification" (model ->
      {"fractions", "curve", "oracle"} lists), "timings_s", "n_train", "n_test".

  Raises:
    FloatingPointError: if any metric is NaN or Inf (a diverged split).
  """
  config = config or UCIConfig()
  data = uci_data.load_uci(name, split, data_dir)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  seed = config.seed + 1000 * split
  timings = {}
  tic = time.perf_counter()
  hidden = _hidden(config, data.name)
  ensemble = td.train_ensemble(
      lambda s: td.models.mlp(data.x_train.shape[1:], hidden, family.params_size,
                              seed=1000 * s),
      (data.x_train, data.y_train), family, num_members=config.num_members,
      epochs=config.member_epochs, batch_size=config.member_batch_size,
      learning_rate=config.member_learning_rate, seed=seed, verbose=config.verbose,
      steps_per_execution=config.steps_per_execution,
      vectorize="auto" if config.fast_paths else False)
  timings["ensemble"] = time.perf_counter() - tic
  models = {"ensemble": ensemble}
  if config.fast_paths:
    tic = time.perf_counter()
    models.update(_distil_together(config.students, data, ensemble, family, config, seed))
    timings["students"] = time.perf_counter() - tic
  else:
    for i, kind in enumerate(config.students):
      tic = time.perf_counter()
      models[kind] = _distil(kind, data, ensemble, family, config, seed + 100 * (i + 1))
      timings[kind] = time.perf_counter() - tic

  y = data.y_test
  log_scale = float(np.log(data.y_std))
  metrics, curves = {}, {}
  for model_name, model in models.items():
    prediction, total, nll = _predictive(model_name, model, family, data.x_test, y)
    errors = np.square(y - prediction)
    metrics[model_name] = {
        "rmse": float(td.metrics.rmse(y, prediction)) * data.y_std,
        "nll": nll + log_scale,
        "ause": float(td.metrics.ause(errors, total)),
    }
    fractions, curve = td.metrics.sparsification_curve(errors, total)
    _, oracle = td.metrics.sparsification_curve(errors, total, oracle=True)
    curves[model_name] = {"fractions": np.asarray(fractions).tolist(),
                          "curve": np.asarray(curve).tolist(),
                          "oracle": np.asarray(oracle).tolist()}
    if not all(np.isfinite(v) for v in metrics[model_name].values()):
      raise FloatingPointError(f"{name} split {split}: {model_name} diverged: "
                               f"{metrics[model_name]}")
  return {"dataset": data.name, "split": split, "metrics": metrics,
          "sparsification": curves, "timings_s": timings,
          "n_train": len(data.x_train), "n_test": len(data.x_test)}


def _split_file(out_dir, name, split):
  return os.path.join(out_dir, name, f"split_{split:02d}.json")


def run_uci(out_dir, datasets, num_splits=None, config=None, data_dir=None):
  """Runs (or resumes) the benchmark and writes the report folder.

  Each finished split is saved as `<out_dir>/<dataset>/split_<i>.json` together with the
  config's key; a rerun with the same config skips finished splits.

  Args:
    out_dir: str, report folder.
    datasets: list of short names.
    num_splits: int or None (all standard splits); the first num_splits are run.
    config: `UCIConfig` or None.
    data_dir: optional UCI data directory.

  Returns:
    report dict (see `aggregate`).
  """
  config = config or UCIConfig()
  results = {}
  for name in datasets:
    total = uci_data.num_splits(name, data_dir)
    splits = range(min(total, num_splits) if num_splits else total)
    results[name] = []
    for split in splits:
      path = _split_file(out_dir, name, split)
      if os.path.exists(path):
        with open(path) as f:
          saved = json.load(f)
        if saved.get("config_key") == config.key():
          results[name].append(saved)
          continue
      result = run_split(name, split, config, data_dir)
      # Free the split's models, graphs and compiled clusters before the next one (the
      # 178-split table otherwise grows past 10 GB of resident memory).
      keras.backend.clear_session()
      gc.collect()
      result["config_key"] = config.key()
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + ".tmp", "w") as f:
        json.dump(result, f)
      os.replace(path + ".tmp", path)
      results[name].append(result)
      if config.verbose:
        m = result["metrics"]
        print(f"{name} split {split}: " + "; ".join(
            f"{k} rmse {v['rmse']:.3f} nll {v['nll']:.3f}" for k, v in m.items()),
            flush=True)
  report = aggregate(results, config)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(format_markdown(report))
  from tfp_distill.experiments import plots  # pylint: disable=import-outside-toplevel
  for name, splits in results.items():
    if splits:
      first = splits[0]["sparsification"]
      plots.plot_sparsification(
          os.path.join(out_dir, f"sparsification_{name}.png"),
          {m: (np.array(c["fractions"]), np.array(c["curve"]), np.array(c["oracle"]))
           for m, c in first.items()},
          title=f"{name}, split 0: sparsification (squared error by total variance)")
  return report


def aggregate(results, config):
  """Per data set and model: mean, standard error and per-split values of each metric.

  Args:
    results: dict name -> list of `run_split` results.
    config: the `UCIConfig` used.

  Returns:
    dict with "config", "results" (name -> model -> metric -> {"mean", "stderr",
    "values"}), "num_splits", "timings_s" (name -> mean seconds per split and stage),
    "published", "date".
  """
  table, timings, counts = {}, {}, {}
  for name, splits in results.items():
    if not splits:
      continue
    counts[name] = len(splits)
    table[name] = {}
    for model in splits[0]["metrics"]:
      table[name][model] = {}
      for metric in ("rmse", "nll", "ause"):
        values = np.array([s["metrics"][model][metric] for s in splits])
        stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
        table[name][model][metric] = {"mean": float(values.mean()), "stderr": float(stderr),
                                      "values": values.tolist()}
    timings[name] = {stage: float(np.mean([s["timings_s"][stage] for s in splits]))
                     for stage in splits[0]["timings_s"]}
  return {"config": dataclasses.asdict(config), "config_key": config.key(),
          "results": table, "num_splits": counts, "timings_s": timings,
          "published": PUBLISHED,
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds")}


def format_markdown(report):
  """The report as Markdown: our rows (mean +- stderr) beside the published ones."""
  lines = ["# UCI regression: ensemble distribution distillation", "",
           "Mean +- standard error over splits, original units. Rows marked *published* "
           "are copied from the papers, not measured here.", ""]
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
    stages = ", ".join(f"{k} {v:.1f}" for k, v in report["timings_s"][name].items())
    lines += ["", f"Seconds per split: {stages}.", ""]
  return "\n".join(lines)
