"""UCI regression benchmark of the general distillation framework (`tfp-distill uci`).

```none
split i of data set D (normalised on its training part)
  ├─► ensemble of M heteroscedastic one-hidden-layer MLPs (train_ensemble, labels y)
  │      targets z at the training x and at jittered training x (fresh every epoch)
  │   the students of td.methods ("full" is its "mvn"):
  ├─► "full":     v(z | x) = N(m(x), L L^T) over z = (mu, rho), EnsembleNLL
  ├─► "diagonal": v(z | x) = N(m(x), diag s(x)^2),             EnsembleNLL
  └─► "mixture":  N(y; mu(x), s(x)^2),                           MixtureKL
metrics per split in original units: RMSE, NLL, AUSE; mean and standard error over splits
fidelity on the test points: each student's epistemic / aleatoric / total variance
  against the ensemble's (td.metrics.uncertainty_fidelity: Pearson, Spearman, mean
  ratio, relative L1), beside the same between two independent ensembles (the noise
  ceiling)
summary over splits and the report's Markdown: uci_report.py
```

The OOD protocol (`run_uci(..., ood=True)`, `tfp-distill uci --ood`) holds out the 10% of
rows farthest along the first principal component of the standardized inputs
(`td.datasets.uci.load_uci_ood`), trains the same models on random 90/10 splits of the
rest, and reports the AUROC of each model's epistemic variance for OOD against
in-distribution test points, and the models' RMSE / NLL on both.

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
import gc
import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill import plots
from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import _common
# The summary over splits and the report's Markdown are uci_report's (this module runs the
# protocol); their names are importable from here as before.
from tfp_distill.experiments.uci_report import PUBLISHED
from tfp_distill.experiments.uci_report import REFERENCE
from tfp_distill.experiments.uci_report import aggregate
from tfp_distill.experiments.uci_report import aggregate_ood
from tfp_distill.experiments.uci_report import format_fidelity_markdown
from tfp_distill.experiments.uci_report import format_markdown
from tfp_distill.experiments.uci_report import format_mean_stderr
from tfp_distill.experiments.uci_report import format_ood_markdown
from tfp_distill.experiments.uci_report import seconds_per_split

__all__ = ["MODELS", "PUBLISHED", "REFERENCE", "STUDENTS", "UCIConfig", "aggregate",
           "aggregate_ood", "distil_alone", "distil_together", "evaluate_model",
           "format_fidelity_markdown", "format_markdown", "format_mean_stderr",
           "format_ood_markdown", "run_ood_split", "run_split", "run_uci",
           "seconds_per_split", "student", "train_ensemble"]


#: The students, by the names this study's reports and saved splits have always used:
#: `td.methods` names or aliases ("full" is the registry's "mvn"). They stay: each saved
#: split is found by a hash of the config, `students` included (`UCIConfig.key`), so a
#: rename would orphan the measured splits behind docs/uci.
STUDENTS = ("full", "diagonal", "mixture")
MODELS = ("ensemble",) + STUDENTS
REFERENCE_SEED_OFFSET = 500
#: The uncertainty parts of an ensemble's decomposition (a student's: `student(...)`).
ENSEMBLE_PARTS = ("epistemic", "aleatoric", "total")

@dataclasses.dataclass(frozen=True)
class UCIConfig:
  """Protocol of the UCI benchmark.

  Members follow the Hernandez-Lobato & Adams / Deep Ensembles setup (one hidden layer of
  50 units, 100 for protein; 40 epochs; batch 100; Adam). Students have one hidden layer
  of 150 units (the framework paper's 75 until 2026-11-30) with a cosine-decayed learning
  rate: both chosen on validation rows carved from the training splits
  (`scripts/uci_select.py`, naval / protein / boston, 3 splits), never on test rows. They
  see the training inputs plus `jitter_copies` jittered copies of them per epoch (within
  the bounds below).

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
    box_share: float >= 0, box inputs per epoch as a share of the training plus
      jittered inputs (0.2: one in six of the epoch's inputs, the proportion of
      `td.distill`'s "jitter+box"), drawn afresh every epoch uniform on the training
      inputs' box widened by half its range on each side (`td.targets.jittered_batches`):
      inputs off the data, for the students' epistemic variance there. Fast paths only.
    box_expand: float >= 0, the box's widening on each side as a share of each
      feature's range (0.5 as `td.distill`'s box; 0: the data's own box).
    marginal_share: float >= 0, marginal inputs per epoch (each feature from a random
      training row: new combinations of seen values, `td.targets.marginal_inputs`), as a
      share of the training plus jittered inputs, drawn afresh every epoch. Fast paths
      only.
    far_share: float >= 0, far inputs per epoch (a random training row plus noise of s
      feature sd, s uniform on far_scale: `td.targets.far_inputs`), as a share of the
      training plus jittered inputs, drawn afresh every epoch. Fast paths only.
    far_scale: (low, high), the far inputs' noise range in feature sd.
    student_min_steps: None, or int: the students train at least this many optimizer
      steps (more epochs than student_epochs on small sets). Inputs off the data need
      more steps than the rows alone (`td.job.OFF_DATA_MIN_STEPS`).
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
    student_lr_schedule: "cosine" (decayed to 0 over the student's steps by a half
      cosine; chosen on validation rows, `scripts/uci_select.py`) or "constant" (Adam at
      student_learning_rate throughout: the tables of 2026-11-25 and 2026-11-30).
    reference_ensemble: bool, also train a second ensemble (base seed + 500) after the
      others are evaluated, and report its agreement with the first: how far two
      ensembles of this protocol agree on per-point variances (the noise ceiling of the
      students' fidelity). It changes no other result.
    seed: int, base seed (split i uses seed + 1000 i).
    verbose: int, 0 silent, 1 progress bars.
  """

  num_members: int = 10
  member_hidden: tuple = None
  member_epochs: int = 40
  member_batch_size: int = 100
  member_learning_rate: float = 1e-2
  min_variance: float = 1e-4
  student_hidden: tuple = (150,)
  student_epochs: int = 30
  student_batch_size: int = 100
  student_learning_rate: float = 1e-2
  jitter_copies: float = 4.0
  jitter_scale: float = 0.1
  min_distill_samples: int = 10_000
  max_distill_samples: int = 100_000
  box_share: float = 0.0
  box_expand: float = 0.5
  marginal_share: float = 0.0
  far_share: float = 0.0
  far_scale: tuple = (1.0, 4.0)
  student_min_steps: int = None
  students: tuple = STUDENTS
  perturbation_step: float = None
  steps_per_execution: int = 100
  fast_paths: bool = True
  student_jit_compile: bool = True
  student_lr_schedule: str = "cosine"
  reference_ensemble: bool = True
  seed: int = 0
  verbose: int = 1

  #: Settings that reproduce an earlier table: `UCIConfig(**UCIConfig.PROTOCOLS[date])`.
  PROTOCOLS = {
      "2026-11-25": {"fast_paths": False, "student_jit_compile": False,
                     "steps_per_execution": 10, "student_lr_schedule": "constant",
                     "student_hidden": (75,)},
      "2026-11-30": {"student_lr_schedule": "constant", "student_hidden": (75,)},
  }

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
    for name in ("verbose", "steps_per_execution", "reference_ensemble"):
      fields.pop(name)
    for name, old_default in (("perturbation_step", None), ("fast_paths", False),
                              ("student_jit_compile", False),
                              ("student_lr_schedule", "constant"), ("box_share", 0.0),
                              ("box_expand", 0.5), ("marginal_share", 0.0),
                              ("far_share", 0.0), ("far_scale", (1.0, 4.0)),
                              ("student_min_steps", None)):
      # Left out at their old defaults: keeps the keys of results saved before them (a
      # list and a tuple of the same values are the same setting).
      if json.dumps(fields[name]) == json.dumps(old_default):
        fields.pop(name)
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _hidden(config, name):
  if config.member_hidden is not None:
    return tuple(config.member_hidden)
  return (100,) if name == "protein" else (50,)


def student(kind, family):
  """The registry's student `kind` ("full", "diagonal", "mixture": `td.methods` names or
  aliases): `_common.RegistryStudent` (head, params_size, loss, decomposition family,
  uncertainty parts)."""
  return _common.registry_student(kind, "regression", family)


def _student_optimizer(config, n, epochs=None):
  """Adam for students that see n distillation inputs per epoch for `epochs` epochs
  (default student_epochs; see student_lr_schedule)."""
  return _common.adam(config.student_learning_rate, config.student_lr_schedule,
                      epochs or config.student_epochs, n, config.student_batch_size)


def _num_jittered(config, n):
  extra = config.jitter_copies * n
  return int(max(min(extra, config.max_distill_samples - n), config.min_distill_samples - n,
                 0))


def _num_extra(share, config, n):
  """Inputs per epoch of one kind off the data (box, marginal, far) for n training rows:
  `share` of the training plus jittered inputs."""
  return int(round(share * (n + _num_jittered(config, n))))


def _num_box(config, n):
  return _num_extra(config.box_share, config, n)


def _num_marginal(config, n):
  return _num_extra(config.marginal_share, config, n)


def _num_far(config, n):
  return _num_extra(config.far_share, config, n)


def _student_epochs(config, per_epoch):
  """Epochs for students that see per_epoch inputs per epoch: student_epochs, or more
  to reach student_min_steps."""
  if not config.student_min_steps:
    return config.student_epochs
  steps = -(-per_epoch // config.student_batch_size)
  return max(config.student_epochs, -(-config.student_min_steps // steps))


def distil_together(kinds, data, ensemble, family, config, seed):
  """All students in one model and one train step (fast_paths): {kind: student}.

  ```none
  batch x ─► teacher (once) ─► z ─► sum_k loss_k(z, student_k(x)) ─► one Adam step
  ```
  The loss is a sum over students whose parameters are disjoint, and Adam's update is
  per parameter, so each student trains exactly as it would alone on these batches.
  Student k is initialised with seed + 100 (k + 1), as in the separate protocol.
  """
  parts = {kind: student(kind, family) for kind in kinds}
  students = {}
  for i, kind in enumerate(kinds):
    students[kind] = td.models.mlp(data.x_train.shape[1:], config.student_hidden,
                                   parts[kind].params_size, head=parts[kind].head,
                                   seed=seed + 100 * (i + 1), name=kind)
  inputs = keras.Input(data.x_train.shape[1:])
  panel = keras.Model(inputs, {kind: s(inputs) for kind, s in students.items()})
  losses = {kind: parts[kind].loss for kind in kinds}

  def loss(z, dists):   # [batch]: the sum of the students' per-example losses
    return tf.add_n([getattr(l, "call", l)(z, dists[k]) for k, l in losses.items()])

  perturbation = (None if config.perturbation_step is None else
                  td.perturb.MeanDisagreement(config.perturbation_step, family))
  distiller = td.Distiller(panel, ensemble, loss=loss, perturbation=perturbation,
                           seed=seed)
  n = len(data.x_train)
  per_epoch = (n + _num_jittered(config, n) + _num_box(config, n)
               + _num_marginal(config, n) + _num_far(config, n))
  epochs = _student_epochs(config, per_epoch)
  distiller.compile(_student_optimizer(config, per_epoch, epochs),
                    steps_per_execution=config.steps_per_execution,
                    jit_compile=config.student_jit_compile)
  batches = td.targets.jittered_batches(data.x_train, config.student_batch_size,
                                        config.jitter_scale, _num_jittered(config, n),
                                        seed=seed, num_box=_num_box(config, n),
                                        box_expand=config.box_expand,
                                        num_marginal=_num_marginal(config, n),
                                        num_far=_num_far(config, n),
                                        far_scale=config.far_scale)
  bar = td.callbacks.ProgressBar(f"{data.name} {data.split} students",
                                 disable=not config.verbose, leave=False)
  distiller.fit(batches, epochs=epochs, verbose=0, callbacks=[bar])
  return students


def distil_alone(kind, data, ensemble, family, config, seed):
  """One student on its own pipeline: the protocol of the 2026-11-25 table."""
  if (config.box_share or config.marginal_share or config.far_share
      or config.student_min_steps):
    raise ValueError("UCIConfig: box_share, marginal_share, far_share and "
                     "student_min_steps need fast_paths=True (the 2026-11-25 protocol has "
                     "none of them).")
  parts = student(kind, family)
  model = td.models.mlp(data.x_train.shape[1:], config.student_hidden, parts.params_size,
                        head=parts.head, seed=seed, name=kind)
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
  distiller = td.Distiller(model, ensemble, loss=parts.loss, perturbation=perturbation,
                           seed=seed)
  distiller.compile(_student_optimizer(config, n + extra),
                    steps_per_execution=config.steps_per_execution,
                    jit_compile=config.student_jit_compile)
  bar = td.callbacks.ProgressBar(f"{data.name} {data.split} {kind}",
                                 disable=not config.verbose, leave=False)
  distiller.fit(inputs.batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE),
                epochs=config.student_epochs, verbose=0, callbacks=[bar])
  return model


def evaluate_model(model_name, model, family, x, y):
  """({"prediction", and the model's uncertainty parts} NumPy [n], mean NLL), normalised.

  Ensembles (`model_name` "ensemble" or `REFERENCE`): the NLL of their equal mixture;
  students (`STUDENTS`): of their predictive (`_common.regression_nll`).
  """
  if model_name in ("ensemble", REFERENCE):
    z = model.predict_targets(x)
    u = td.decompose_ensemble(z, family)
    nll = float(td.metrics.gaussian_mixture_nll(y, family.mean(z)[..., 0],
                                                family.variance(z)[..., 0]))
    parts = ENSEMBLE_PARTS
  else:
    spec = student(model_name, family)
    dist = model(x)
    u = td.decompose(dist, spec.family)
    nll = _common.regression_nll(spec, dist, y)
    parts = spec.parts
  return {k: np.asarray(u[k]) for k in ("prediction",) + parts}, nll


def _fidelity(u, names):
  """{model: {part: td.metrics.uncertainty_fidelity of its part against the ensemble's}}
  for every model in names."""
  return {name: {part: _common.fidelity(values, u["ensemble"][part])
                 for part, values in u[name].items() if part != "prediction"}
          for name in names if name in u}


def train_ensemble(data, family, config, seed):
  """The split's ensemble of heteroscedastic MLPs (`td.train_ensemble`)."""
  hidden = _hidden(config, data.name)
  return td.train_ensemble(
      lambda s: td.models.mlp(data.x_train.shape[1:], hidden, family.params_size,
                              seed=1000 * s),
      (data.x_train, data.y_train), family, num_members=config.num_members,
      epochs=config.member_epochs, batch_size=config.member_batch_size,
      learning_rate=config.member_learning_rate, seed=seed, verbose=config.verbose,
      steps_per_execution=config.steps_per_execution,
      vectorize="auto" if config.fast_paths else False)


def _train_models(data, family, config, seed):
  """The ensemble and the students of one split: ({name: model}, {stage: seconds})."""
  timings = {}
  tic = time.perf_counter()
  models = {"ensemble": train_ensemble(data, family, config, seed)}
  timings["ensemble"] = time.perf_counter() - tic
  if config.fast_paths:
    tic = time.perf_counter()
    models.update(distil_together(config.students, data, models["ensemble"], family,
                                  config, seed))
    timings["students"] = time.perf_counter() - tic
  else:
    for i, kind in enumerate(config.students):
      tic = time.perf_counter()
      models[kind] = distil_alone(kind, data, models["ensemble"], family, config,
                                  seed + 100 * (i + 1))
      timings[kind] = time.perf_counter() - tic
  return models, timings


def _add_reference(models, timings, data, family, config, seed):
  """Trains the noise ceiling's second ensemble (after everything else is evaluated)."""
  tic = time.perf_counter()
  models[REFERENCE] = train_ensemble(data, family, config, seed + REFERENCE_SEED_OFFSET)
  timings[REFERENCE] = time.perf_counter() - tic


def run_split(name, split, config=None, data_dir=None, validation=False):
  """Runs the protocol on one split; returns metrics in original units.

  Args:
    name: UCI data set short name.
    split: int, split index.
    config: `UCIConfig` or None.
    data_dir: optional UCI data directory.
    validation: bool, train on 90% of the split's training rows and evaluate on the
      other 10% (`td.datasets.uci.validation_part`), never touching its test rows:
      for method choices.

  Returns:
    dict: "metrics" (model -> {"rmse", "nll", "ause"}), "sparsification" (model ->
      {"fractions", "curve", "oracle"} lists), "fidelity" (student -> part ->
      `td.metrics.uncertainty_fidelity` of the student's per-test-point "epistemic" /
      "aleatoric" / "total" variance against the ensemble's; the mixture student has
      "total" only), "noise_ceiling" (the same for a second ensemble, part -> statistics;
      absent unless `config.reference_ensemble`), "timings_s", "n_train", "n_test".

  Raises:
    FloatingPointError: if any metric is NaN or Inf (a diverged split).
  """
  config = config or UCIConfig()
  data = uci_data.load_uci(name, split, data_dir)
  if validation:
    data = uci_data.validation_part(data, seed=config.seed)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  seed = config.seed + 1000 * split
  models, timings = _train_models(data, family, config, seed)

  y = data.y_test
  log_scale = float(np.log(data.y_std))
  metrics, curves, u = {}, {}, {}
  for model_name, model in models.items():
    u[model_name], nll = evaluate_model(model_name, model, family, data.x_test, y)
    prediction, total = u[model_name]["prediction"], u[model_name]["total"]
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
  result = {"dataset": data.name, "split": split, "evaluated_on": (
                "validation" if validation else "test"), "metrics": metrics,
            "sparsification": curves, "fidelity": _fidelity(u, config.students),
            "timings_s": timings, "n_train": len(data.x_train), "n_test": len(data.x_test)}
  if config.reference_ensemble:
    _add_reference(models, timings, data, family, config, seed)
    u[REFERENCE], _ = evaluate_model(REFERENCE, models[REFERENCE], family, data.x_test, y)
    result["noise_ceiling"] = _fidelity(u, [REFERENCE])[REFERENCE]
  return result


def run_ood_split(name, split, config=None, data_dir=None, holdout_fraction=0.1,
                  test_fraction=0.1):
  """The OOD protocol on one split (`td.datasets.uci.load_uci_ood`).

  Args:
    name: UCI data set short name.
    split: int >= 0, the random split of the in-distribution rows.
    config: `UCIConfig` or None (its `reference_ensemble` adds the second ensemble's
      AUROC and agreement).
    data_dir: optional UCI data directory.
    holdout_fraction, test_fraction: see `load_uci_ood`.

  Returns:
    dict: "metrics" (model -> {"rmse_in", "nll_in", "rmse_ood", "nll_ood"}, original
      units), "ood_auroc" (model -> {"epistemic", "total"}: AUROC of that variance for
      OOD (positive) against in-distribution test points; the mixture student has
      "total" only), "fidelity_in" / "fidelity_ood" (as `run_split`'s "fidelity", on
      the test and on the OOD points), "noise_ceiling_in" / "noise_ceiling_ood",
      "timings_s", "n_train", "n_test", "n_ood".

  Raises:
    FloatingPointError: if any metric is NaN or Inf.
  """
  config = config or UCIConfig()
  data = uci_data.load_uci_ood(name, split, data_dir, holdout_fraction, test_fraction,
                               seed=config.seed)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  seed = config.seed + 1000 * split
  models, timings = _train_models(data, family, config, seed)
  if config.reference_ensemble:
    _add_reference(models, timings, data, family, config, seed)
  log_scale = float(np.log(data.y_std))
  metrics, aurocs, u_in, u_ood = {}, {}, {}, {}
  for model_name, model in models.items():
    u_in[model_name], nll_in = evaluate_model(model_name, model, family, data.x_test,
                                              data.y_test)
    u_ood[model_name], nll_ood = evaluate_model(model_name, model, family, data.x_ood,
                                                data.y_ood)
    metrics[model_name] = {
        "rmse_in": float(td.metrics.rmse(data.y_test, u_in[model_name]["prediction"]))
                   * data.y_std,
        "nll_in": nll_in + log_scale,
        "rmse_ood": float(td.metrics.rmse(data.y_ood, u_ood[model_name]["prediction"]))
                    * data.y_std,
        "nll_ood": nll_ood + log_scale,
    }
    aurocs[model_name] = {
        part: float(td.metrics.ood_detection(u_in[model_name][part],
                                             u_ood[model_name][part])["auroc"])
        for part in ("epistemic", "total") if part in u_in[model_name]}
    values = list(metrics[model_name].values()) + list(aurocs[model_name].values())
    if not all(np.isfinite(v) for v in values):
      raise FloatingPointError(f"{name} OOD split {split}: {model_name} diverged: "
                               f"{metrics[model_name]} {aurocs[model_name]}")
  result = {"dataset": data.name, "split": split, "metrics": metrics,
            "ood_auroc": aurocs,
            "fidelity_in": _fidelity(u_in, config.students),
            "fidelity_ood": _fidelity(u_ood, config.students),
            "timings_s": timings, "n_train": len(data.x_train), "n_test": len(data.x_test),
            "n_ood": len(data.x_ood),
            "protocol": {"holdout_fraction": holdout_fraction,
                         "test_fraction": test_fraction}}
  if config.reference_ensemble:
    result["noise_ceiling_in"] = _fidelity(u_in, [REFERENCE])[REFERENCE]
    result["noise_ceiling_ood"] = _fidelity(u_ood, [REFERENCE])[REFERENCE]
  return result


def _split_file(out_dir, name, split, ood=False, validation=False):
  prefix = "ood_" if ood else "val_" if validation else ""
  return os.path.join(out_dir, name, f"{prefix}split_{split:02d}.json")


def _complete(saved, config, ood):
  """Whether a saved split can be reused: same key, every section this config asks, and
  the fidelity of `td.metrics.uncertainty_fidelity` (a split saved with the older
  statistics is rerun, so that a report never mixes two definitions)."""
  if saved.get("config_key") != config.key():
    return False
  wanted = ["ood_auroc", "fidelity_in"] if ood else ["fidelity"]
  if config.reference_ensemble:
    wanted.append("noise_ceiling_in" if ood else "noise_ceiling")
  if not all(k in saved for k in wanted):
    return False
  cells = [cell for part in saved[wanted[1 if ood else 0]].values() for cell in part.values()]
  return all("relative_l1" in cell for cell in cells)


def _splits(name, num_splits, data_dir, ood):
  if ood:
    return range(num_splits or 5)
  total = uci_data.num_splits(name, data_dir)
  return range(min(total, num_splits) if num_splits else total)


def _run_or_resume(out_dir, name, split, config, data_dir, ood, validation):
  """One split's result: saved by an earlier call with this config, or run and saved."""
  path = _split_file(out_dir, name, split, ood, validation)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if _complete(saved, config, ood):
      return saved
  result = (run_ood_split(name, split, config, data_dir) if ood else
            run_split(name, split, config, data_dir, validation=validation))
  # Free the split's models, graphs and compiled clusters before the next one (the
  # 178-split table otherwise grows past 10 GB of resident memory).
  keras.backend.clear_session()
  gc.collect()
  result["config_key"] = config.key()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(result, f)
  os.replace(path + ".tmp", path)
  if config.verbose:
    if ood:
      line = "; ".join(f"{k} auroc {v.get('epistemic', v['total']):.3f}"
                       for k, v in result["ood_auroc"].items())
    else:
      line = "; ".join(f"{k} rmse {v['rmse']:.3f} nll {v['nll']:.3f}"
                       for k, v in result["metrics"].items())
    print(f"{name} {'OOD ' if ood else ''}split {split}: {line}", flush=True)
  return result


def _figures(out_dir, report, results, ood):
  """ood_auroc.png (OOD protocol); sparsification_<set>.png (split 0) and fidelity.png."""
  if ood:
    plots.plot_uci_ood_auroc(os.path.join(out_dir, "ood_auroc.png"), report)
    return
  for name, splits in results.items():
    if splits:
      first = splits[0]["sparsification"]
      plots.plot_sparsification(
          os.path.join(out_dir, f"sparsification_{name}.png"),
          {m: (np.array(c["fractions"]), np.array(c["curve"]), np.array(c["oracle"]))
           for m, c in first.items()},
          title=f"{name}, split 0: sparsification (squared error by total variance)")
  if any(splits and "noise_ceiling" in splits[0] for splits in results.values()):
    plots.plot_uci_fidelity(os.path.join(out_dir, "fidelity.png"), report)


def run_uci(out_dir, datasets, num_splits=None, config=None, data_dir=None, ood=False,
            validation=False):
  """Runs (or resumes) the benchmark and writes the report folder.

  Each finished split is saved as `<out_dir>/<dataset>/split_<i>.json` (OOD protocol:
  `ood_split_<i>.json`) together with the config's key; a rerun with the same config
  skips finished splits.

  Stages: every split run or read back (`run_split` / `run_ood_split`), the summary over
  splits (`aggregate` / `aggregate_ood`), report.json and report.md, the figures.

  Args:
    out_dir: str, report folder.
    datasets: list of short names.
    num_splits: int or None (standard protocol: all standard splits; OOD: 5); the
      first num_splits are run.
    config: `UCIConfig` or None.
    data_dir: optional UCI data directory.
    ood: bool, run the PCA hold-out protocol (`run_ood_split`) instead of the standard
      splits; the report is `aggregate_ood`'s and `format_ood_markdown`'s.
    validation: bool, evaluate on validation rows carved from each split's training
      rows (`run_split(..., validation=True)`; files `val_split_<i>.json`).

  Returns:
    report dict (see `aggregate` / `aggregate_ood`); its "timings_s" and "wall_time_s"
    are this call's (splits read back from disk take no time), the seconds each split
    took when it ran are in "seconds_per_split".
  """
  config = config or UCIConfig()
  if ood and validation:
    raise ValueError("run_uci: ood and validation are separate protocols; pick one.")
  start = time.perf_counter()
  results = {name: [_run_or_resume(out_dir, name, split, config, data_dir, ood, validation)
                    for split in _splits(name, num_splits, data_dir, ood)]
             for name in datasets}
  timings = {"splits": time.perf_counter() - start}
  tic = time.perf_counter()
  report = (aggregate_ood if ood else aggregate)(results, config)
  os.makedirs(out_dir, exist_ok=True)
  _figures(out_dir, report, results, ood)
  timings["summary_and_figures"] = time.perf_counter() - tic
  timings["total"] = time.perf_counter() - start
  report.update(td.report.header(config, timings))
  _common.write_report(out_dir, {"report_json": "report.json", "report_md": "report.md"},
                       report, (format_ood_markdown if ood else format_markdown)(report))
  return report
