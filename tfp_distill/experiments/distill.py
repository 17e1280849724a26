"""Distil a user's own ensemble (`tfp-distill distill`): teachers and data from anywhere.

```none
--teacher .keras (tf_keras / Keras 3) | SavedModel | members' outputs .npz
--train DATA ──► x, y ──┬──► 10% held out as the test set (when --test is not given)
                        └──► 10% held out for early stopping on the distillation loss
teacher outputs z [n, members, params] at the training inputs (+ extra inputs: mixup
inputs for classification, jittered copies for regression; none from an .npz)
   ──► student (built-in backbone or the user's tf_keras .keras backbone + a head)
   ──► student.keras, saved_model/, report.json, report.md, fidelity.png (, roc.png)
```

The task comes from the members' outputs and the labels: integer labels mean
classification (the members give K logits), float labels regression (the members give
z = [mu, rho] of `td.families.HeteroscedasticNormal`, 2 d values for d targets).
Method defaults are those of this library's studies: EnD^2 with temperature annealing
and mixup inputs for images, a full-covariance Gaussian over z with jittered inputs for
regression.
"""

import dataclasses
import datetime
import json
import os
import shutil
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_distill as td
from tfp_distill import teachers
from tfp_distill._keras import keras
from tfp_distill.datasets import sources
from tfp_distill.experiments import _common
from tfp_distill.experiments import plots

__all__ = ["DistillConfig", "DistillError", "run_distill", "format_markdown", "METHODS"]

#: Methods per task; the first is the default.
METHODS = {"classification": ("end2", "gaussian-logits", "kd", "mixture"),
           "regression": ("mvn", "diagonal", "mixture")}
STUDENTS = ("builtin:mlp", "builtin:small_cnn", "builtin:resnet18")
STRATEGIES = ("default", "mirrored", "multi-worker")


class DistillError(ValueError):
  """A problem with the user's inputs; the message is one line."""

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """What `tfp-distill distill` runs; each field is a flag (and a `--config` TOML key).

  Attributes:
    teacher: tuple of str: `.keras` files (tf_keras or Keras 3), SavedModel folders, or
      one `.npz` with the members' outputs `z` [n, members, params] aligned with `train`
      (optional `z_test` aligned with `test`, `z_ood` with `ood`).
    train: str, the training data (`datasets.sources.load_data`).
    out: str, the report folder.
    test: None (hold out `test_fraction` of `train`) or the test data.
    ood: None or out-of-distribution data (AUROC of the epistemic uncertainty).
    task: None (from the outputs and labels), "classification" or "regression".
    method: None (the task's default, the first in `METHODS`) or a name in `METHODS`.
    student: None (builtin:small_cnn for images, builtin:mlp otherwise), a name in
      `STUDENTS`, or a tf_keras `.keras` backbone x -> features (a head is appended).
    epochs, batch_size, learning_rate: student training (Adam, cosine-decayed).
    patience: epochs without a lower held-out distillation loss before stopping.
    validation_fraction: share of the training rows held out for early stopping.
    test_fraction: share of `train` held out as the test set when `test` is None.
    extra_inputs: "auto" (mixup for classification, jitter for regression, none with
      precomputed outputs), "mixup", "jitter" or "none".
    jitter_copies, jitter_scale: jittered copies per training row, and their noise sd
      as a fraction of each feature's standard deviation.
    min_variance: the members' `HeteroscedasticNormal` variance floor (regression).
    num_samples: Monte Carlo samples for students without a closed form.
    strategy: "default", "mirrored" (all local devices) or "multi-worker" (TF_CONFIG).
    resume: continue a killed run from its last finished epoch (the backup in
      `out/backup`); without it a stale backup is removed and training starts afresh.
    data_service: None, or a tf.data service dispatcher's address: the teacher's outputs
      are computed by its workers (`td.targets.service_targets`).
    seed: int.
    limit: None or the number of examples read from each data source.
    verbose: 0 silent, 1 progress bars.
  """

  teacher: tuple = ()
  train: str = None
  out: str = os.path.join("reports", "distill")
  test: str = None
  ood: str = None
  task: str = None
  method: str = None
  student: str = None
  epochs: int = 30
  batch_size: int = 128
  learning_rate: float = 1e-3
  patience: int = 5
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  extra_inputs: str = "auto"
  jitter_copies: int = 4
  jitter_scale: float = 0.1
  min_variance: float = 1e-3
  num_samples: int = 100
  strategy: str = "default"
  resume: bool = False
  data_service: str = None
  seed: int = 0
  limit: int = None
  verbose: int = 1


def _check_config(config):
  if not config.teacher:
    raise DistillError("--teacher is required: .keras files, SavedModel folders or one "
                       ".npz of the members' outputs.")
  if not config.train:
    raise DistillError("--train is required (a .npz, tfds:NAME[:SPLIT], an image folder "
                       "or a .csv).")
  for name in ("epochs", "batch_size", "patience", "num_samples", "jitter_copies"):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < (
        0 if name == "jitter_copies" else 1):
      raise DistillError(f"{name} must be a positive integer, got {value!r}.")
  for name in ("validation_fraction", "test_fraction"):
    if not 0 < getattr(config, name) < 1:
      raise DistillError(f"{name} must be in (0, 1), got {getattr(config, name)!r}.")
  if config.strategy not in STRATEGIES:
    raise DistillError(f"strategy must be one of {', '.join(STRATEGIES)}, got "
                       f"{config.strategy!r}.")
  if config.extra_inputs not in ("auto", "mixup", "jitter", "none"):
    raise DistillError(f"extra_inputs must be auto, mixup, jitter or none, got "
                       f"{config.extra_inputs!r}.")
  if config.task not in (None, "classification", "regression"):
    raise DistillError(f"task must be classification or regression, got {config.task!r}.")


# ---------------------------------------------------------------------------------------
# Teachers and data.


def _precomputed(config):
  return len(config.teacher) == 1 and str(config.teacher[0]).endswith(".npz")


def _npz_outputs(path, key, rows):
  """The members' outputs under `key` in the teacher .npz, or None when it has none."""
  with np.load(path, allow_pickle=False) as data:
    present = key in data.files
  return teachers.load_member_outputs(path, rows, key=key) if present else None


def _load(config):
  """(train, test, ood DataSources, ensemble or None, z_train, z_test, z_ood, notes)."""
  notes = []
  train = sources.load_data(config.train, limit=config.limit)
  test = None if config.test is None else sources.load_data(config.test, limit=config.limit)
  ood = None if config.ood is None else sources.load_data(config.ood, limit=config.limit)
  ensemble = z_all = z_test = z_ood = None
  if _precomputed(config):
    path = str(config.teacher[0])
    z_all = teachers.load_member_outputs(path, num_examples=len(train.x))
    if test is not None:
      z_test = _npz_outputs(path, "z_test", len(test.x))
    if ood is not None:
      z_ood = _npz_outputs(path, "z_ood", len(ood.x))
    notes.append(f"teacher: the members' outputs in {path} (no teacher model: no extra "
                 "inputs, no speed-up figure)")
  else:
    ensemble = td.Ensemble.from_files(list(config.teacher))
    notes.append("teacher: " + ", ".join(teachers.describe(m) for m in ensemble.members))
  if test is None:
    train, test = sources.holdout_split(train, config.test_fraction, config.seed)
    notes.append(f"test set: {test.name}, as no --test was given")
    if z_all is not None:
      z_test, z_all = z_all[test.index], z_all[train.index]
  if ensemble is not None:
    for name, part in (("train", train), ("test", test), ("ood", ood)):
      if part is not None:
        _check_inputs_fit(ensemble, part, name)
  return train, test, ood, ensemble, z_all, z_test, z_ood, notes


def _check_inputs_fit(ensemble, part, name):
  try:
    ensemble(part.x[:2])
  except ValueError as error:
    if "cannot take inputs" not in str(error):
      raise DistillError(str(error)) from error      # e.g. members of different sizes
    raise DistillError(f"--{name} {part.name}: inputs of shape {list(part.x.shape[1:])} do "
                       f"not fit the members: {error}") from error


def _infer_task(config, z, train, test):
  params = z.shape[-1]
  labels = train.y if train.y is not None else test.y
  task = config.task
  if task is None:
    if labels is None:
      raise DistillError("No labels in --train or --test to tell classification from "
                         "regression: pass --task classification or --task regression.")
    task = "classification" if np.issubdtype(labels.dtype, np.integer) else "regression"
  if task == "classification":
    family = td.families.CategoricalLogits(params)
    for part in (train, test):
      if part.y is not None:
        if not np.issubdtype(part.y.dtype, np.integer):
          raise DistillError(f"{part.name}: classification needs integer labels, got "
                             f"{part.y.dtype}.")
        outside = np.flatnonzero(part.y >= params)
        if outside.size:
          raise DistillError(
              f"{part.name}: label {int(part.y[outside[0]])} at row {int(outside[0])} is "
              f"outside the members' classes (they give {params} logits: labels 0.."
              f"{params - 1}; integer regression targets need --task regression).")
  else:
    if params % 2:
      raise DistillError(f"Regression members give z = [mu, rho] (2 d values for d "
                         f"targets), but these give {params} values per example.")
    family = td.families.HeteroscedasticNormal(params // 2, config.min_variance)
    for part in (train, test):
      if part.y is not None:
        d = 1 if part.y.ndim == 1 else part.y.shape[-1]
        if d != params // 2:
          raise DistillError(f"{part.name}: y has {d} targets per example but the members "
                             f"predict {params // 2}.")
  return task, family


def _extra_inputs(config, task, x, ensemble, rng):
  """(kind, extra inputs [k, ...]) beyond the training rows (see `extra_inputs`)."""
  kind = config.extra_inputs
  if kind == "auto":
    if ensemble is None:
      kind = "none"
    elif task == "classification":
      kind = "mixup"
    else:
      kind = "jitter"
  if kind != "none" and ensemble is None:
    raise DistillError(f"extra_inputs={kind!r} needs the teacher's models to label the "
                       "extra inputs; precomputed outputs cover the training rows only.")
  if kind == "mixup":
    return kind, td.targets.mixup_inputs(x, len(x), rng)
  if kind == "jitter":
    scale = config.jitter_scale * x.std(axis=0, keepdims=True)
    rows = np.repeat(x, config.jitter_copies, axis=0)
    return kind, (rows + scale * rng.normal(size=rows.shape)).astype(np.float32)
  return kind, x[:0]


# ---------------------------------------------------------------------------------------
# Students.


def _head(task, method, family):
  """(head layer, params_size, loss, decomposition family, anneal?)"""
  if task == "classification":
    k = family.num_classes
    if method == "end2":
      return (td.heads.DirichletHead(k), k,
              td.losses.DirichletNLL(temperature=2.5, smoothing=1e-4, family=family),
              family, True)
    if method == "gaussian-logits":
      centred = td.families.CategoricalLogits(k, reference_class=True)
      head = td.heads.MultivariateNormalTriLHead
      return head(k - 1), head.params_size(k - 1), td.losses.EnsembleNLL(centred), centred, \
          False
    if method == "kd":
      return (td.heads.CategoricalHead(k), k,
              td.losses.KnowledgeDistillation(temperature=2.0, family=family), family, False)
    return td.heads.CategoricalHead(k), k, td.losses.MixtureKL(family), family, False
  e = family.params_size
  if method == "mvn":
    head = td.heads.MultivariateNormalTriLHead
    return head(e), head.params_size(e), td.losses.EnsembleNLL(), family, False
  if method == "diagonal":
    return td.heads.NormalHead(e), td.heads.NormalHead.params_size(e), \
        td.losses.EnsembleNLL(), family, False
  head = td.heads.NormalPredictiveHead(family.event_size, min_scale=family.min_variance)
  return (head, td.heads.NormalPredictiveHead.params_size(family.event_size),
          td.losses.MixtureKL(family), family, False)


def _build_student(config, input_shape, head, params_size):
  name = config.student or ("builtin:small_cnn" if len(input_shape) == 3 else "builtin:mlp")
  seed = config.seed + 10 ** 6
  if name == "builtin:mlp":
    if len(input_shape) != 1:
      raise DistillError(f"builtin:mlp takes feature vectors; these inputs have shape "
                         f"{list(input_shape)} (try builtin:small_cnn).")
    return name, td.models.mlp(input_shape, (150,), params_size, head=head, seed=seed,
                               name="student")
  if name in ("builtin:small_cnn", "builtin:resnet18"):
    if len(input_shape) != 3:
      raise DistillError(f"{name} takes images [height, width, channels]; these inputs "
                         f"have shape {list(input_shape)} (try builtin:mlp).")
    if name == "builtin:small_cnn":
      return name, td.models.small_cnn(input_shape, params_size, head=head, filters=(16, 32),
                                       dense_units=64, seed=seed, name="student")
    return name, td.models.resnet18_cifar(input_shape, params_size, head=head, seed=seed,
                                          name="student")
  if not name.endswith(".keras"):
    raise DistillError(f"--student must be one of {', '.join(STUDENTS)} or a .keras "
                       f"backbone, got {name!r}.")
  if not os.path.exists(name):
    raise DistillError(f"Student backbone {name} does not exist.")
  backbone = teachers.load_member(name)
  if not isinstance(backbone, keras.Model):
    raise DistillError(f"Student backbone {name} is a {teachers.describe(backbone)}; the "
                       "student is built with tf_keras (tfp.layers needs it): save the "
                       "backbone with tf_keras.")
  inputs = keras.Input(input_shape)
  features = backbone(inputs)
  if features.shape.rank != 2:
    features = keras.layers.Flatten()(features)
  params = keras.layers.Dense(params_size, name="head_params")(features)
  return name, keras.Model(inputs, head(params), name="student")


def _strategy(name):
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi-worker":
    if not os.environ.get("TF_CONFIG"):
      raise DistillError("--strategy multi-worker needs TF_CONFIG in the environment "
                         "(see docs/guide/distributed.md).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


class ResumableEarlyStopping(keras.callbacks.Callback):
  """Early stopping on `val_loss` whose state survives a killed run.

  Keras' `EarlyStopping` keeps its best loss, patience count and best weights in memory,
  so a run resumed by `BackupAndRestore` would forget them (and end with other weights
  than an uninterrupted run). This one writes them to `folder` at every epoch's end
  (before the backup is written: place it before `BackupAndRestore`); an epoch that a
  resumed run repeats is not counted twice. At the end the best epoch's weights are
  restored.

  Args:
    folder: str, where the state lives (the run's backup folder).
    patience: int, epochs without a lower `val_loss` before stopping.
    start_from_epoch: int, epochs before the first comparison (annealing, warm-up).
  """

  def __init__(self, folder, patience, start_from_epoch=0):
    super().__init__()
    self.folder = folder
    self.patience = int(patience)
    self.start_from_epoch = int(start_from_epoch)
    self.state = {"best": None, "best_epoch": None, "wait": 0, "last_epoch": -1}
    self._state_file = os.path.join(folder, "early_stopping.json")
    self._weights_file = os.path.join(folder, "best_weights.npz")

  def on_train_begin(self, logs=None):
    if os.path.exists(self._state_file):
      with open(self._state_file) as f:
        self.state = json.load(f)

  def _write(self):
    os.makedirs(self.folder, exist_ok=True)
    tmp = self._state_file + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.state, f)
    os.replace(tmp, self._state_file)   # atomic: never a half-written state

  def on_epoch_end(self, epoch, logs=None):
    current = (logs or {}).get("val_loss")
    if epoch <= self.state["last_epoch"]:
      return
    if current is not None and np.isfinite(current) and epoch >= self.start_from_epoch:
      if self.state["best"] is None or current < self.state["best"]:
        self.state.update(best=float(current), best_epoch=int(epoch), wait=0)
        # NumPy arrays, not Keras' weight files: they load into mirrored variables too.
        os.makedirs(self.folder, exist_ok=True)
        tmp = os.path.join(self.folder, "best_weights.tmp.npz")
        weights = self.model.get_weights()
        np.savez(tmp, **{f"w{i}": w for i, w in enumerate(weights)})
        os.replace(tmp, self._weights_file)
      else:
        self.state["wait"] += 1
        if self.state["wait"] >= self.patience:
          self.model.stop_training = True
    self.state["last_epoch"] = int(epoch)
    self._write()

  def on_train_end(self, logs=None):
    if self.state["best"] is not None and os.path.exists(self._weights_file):
      with np.load(self._weights_file, allow_pickle=False) as saved:
        self.model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])


def _saved_epoch(backup):
  """The last epoch `BackupAndRestore` finished in `backup` (0-based), or -1 for none."""
  latest = tf.train.latest_checkpoint(os.path.join(backup, "chief"))
  if latest is None:
    return -1
  return int(tf.train.load_variable(latest, "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))


def epoch_batches(x, z, batch_size, seed, start_epoch, epochs):
  """Batches (x, z) for epochs start_epoch .. epochs - 1, each in its own fixed order.

  Epoch e reads the rows in the order `td.ensemble.member_permutation(n, seed, e)`: the order
  is a function of the epoch, not of how many epochs this process has run, so a run
  resumed at epoch e (`--resume`) sees exactly the batches an uninterrupted run sees.

  Returns:
    (tf.data.Dataset of all the remaining epochs' batches, batches per epoch).
  """
  n = len(x)
  steps = -(-n // batch_size)
  x_t, z_t = tf.constant(x), tf.constant(z)

  def one_epoch(epoch):
    order = td.ensemble.member_permutation(n, seed, epoch)
    return tf.data.Dataset.range(steps).map(
        lambda b: (tf.gather(x_t, order[b * batch_size:(b + 1) * batch_size]),
                   tf.gather(z_t, order[b * batch_size:(b + 1) * batch_size])))

  data = (tf.data.Dataset.range(start_epoch, epochs, output_type=tf.int64)
          .flat_map(one_epoch).prefetch(tf.data.AUTOTUNE))
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return data.with_options(options), steps


def _train(config, strategy, task, method, family, x_fit, z_fit, x_val, z_val, out_dir):
  head, params_size, loss, student_family, anneal = _head(task, method, family)
  with strategy.scope():
    student_name, student = _build_student(config, x_fit.shape[1:], head, params_size)
    # Targets are precomputed: the Distiller never runs a teacher, but its train step
    # stops a divergent run at the step, with the batch's statistics.
    trainer = td.Distiller(student, None, loss)
    trainer(x_fit[:1])            # built, as BackupAndRestore needs before fit
    trainer.compile(optimizer=_common.adam(config.learning_rate, "cosine", config.epochs,
                                           len(x_fit), config.batch_size))
  backup = os.path.join(out_dir, "backup")
  if not config.resume and os.path.exists(backup):
    shutil.rmtree(backup)
  start_epoch = _saved_epoch(backup) + 1 if os.path.exists(backup) else 0
  train_data, steps_per_epoch = epoch_batches(x_fit, z_fit, config.batch_size,
                                              config.seed + 7, start_epoch, config.epochs)
  val_data = tf.data.Dataset.from_tensor_slices((x_val, z_val)).batch(1024)
  finite = td.callbacks.StopOnNonFiniteLoss()
  anneal_end = 0
  callbacks = []
  if anneal:
    anneal_start, anneal_end = config.epochs // 4, (3 * config.epochs) // 4
    callbacks.append(td.callbacks.TemperatureAnnealing(
        loss, 2.5, 1.0, anneal_start, max(anneal_end, anneal_start + 1)))
  # The held-out loss is comparable across epochs only once the temperature is 1. The
  # early-stopping state is written before the backup (see ResumableEarlyStopping).
  callbacks += [finite, ResumableEarlyStopping(backup, config.patience, anneal_end),
                keras.callbacks.BackupAndRestore(backup),
                keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"),
                                            write_graph=False),
                td.callbacks.ProgressBar("student", disable=not config.verbose)]
  history = trainer.fit(train_data, validation_data=val_data, epochs=config.epochs,
                        steps_per_epoch=steps_per_epoch, verbose=0, callbacks=callbacks)
  if finite.where is not None:
    raise DistillError(f"{finite.message()} Nothing was saved (--learning-rate sets "
                       "the rate).")
  shutil.rmtree(backup, ignore_errors=True)      # finished: nothing left to resume
  return student, student_family, student_name, start_epoch, {
      k: [float(v) for v in values] for k, values in history.history.items()}


# ---------------------------------------------------------------------------------------
# Evaluation.


def _time(fn, repeats=3):
  fn()                                   # warm-up: tracing and compilation
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def _regression_metrics(y, u, nll):
  y = y.reshape(len(y), -1)
  prediction = np.asarray(u["prediction"]).reshape(len(y), -1)
  out = {"rmse": float(np.sqrt(np.mean(np.square(prediction - y))))}
  if nll is not None:
    out["nll"] = float(nll)
  if y.shape[1] == 1:
    errors = np.abs(prediction[:, 0] - y[:, 0])
    out["ause"] = float(td.metrics.ause(errors, np.asarray(u["total"])))
  return out


def _regression_nll(model_kind, family, x, y, student=None, z=None, method=None):
  """Mean NLL of y [n] (one target) under the ensemble's mixture or the student."""
  if family.event_size != 1:
    return None
  y = y.reshape(-1).astype(np.float32)
  if model_kind == "ensemble":
    return td.metrics.gaussian_mixture_nll(y, family.mean(z)[..., 0],
                                           family.variance(z)[..., 0])
  total = 0.0
  for i in range(0, len(x), 1024):
    dist = student(x[i:i + 1024], training=False)
    if method == "mixture":
      log_p = dist.log_prob(y[i:i + 1024, None])
    else:
      log_p = td.losses.predictive_log_prob(dist, family, y[i:i + 1024])
    total += float(tf.reduce_sum(log_p))
  return -total / len(x)


def fidelity_figure(path, ensemble_u, student_u):
  """Scatter plots (log axes) of the student's uncertainties against the ensemble's.

  Args:
    path: str, the PNG file.
    ensemble_u, student_u: dicts of NumPy arrays [n] ("total", "aleatoric",
      "epistemic"; those both have are drawn), as `td.predict_uncertainty` returns.
  """
  parts = [p for p in ("total", "aleatoric", "epistemic")
           if p in ensemble_u and p in student_u]
  rows = {"test set": {part: (ensemble_u[part], student_u[part]) for part in parts}}
  return plots.plot_scatter_grid(path, rows, "ensemble", "student", log=True,
                                 title="The student's uncertainties vs the ensemble's")


def run_distill(config):
  """Runs `tfp-distill distill` and writes its report folder; returns the report dict.

  Raises:
    DistillError, sources.DataError, teachers.TeacherError (all ValueErrors, one-line
    messages): bad input, or a distillation loss that became NaN/Inf.
  """
  _check_config(config)
  # First: MultiWorkerMirroredStrategy configures the collective ops, which must happen
  # before any other TensorFlow op runs in this process.
  strategy = _strategy(config.strategy)
  out_dir = config.out
  os.makedirs(out_dir, exist_ok=True)
  timings, start = {}, time.perf_counter()
  rng = np.random.default_rng(config.seed)

  t = time.perf_counter()
  train, test, ood, ensemble, z_train, z_test, z_ood, notes = _load(config)
  timings["load"] = time.perf_counter() - t

  t = time.perf_counter()

  def teacher_outputs(x):
    if config.data_service:
      return td.targets.service_targets(ensemble, x, config.data_service,
                                        verbose=config.verbose)
    return ensemble.predict_targets(x)

  if config.data_service and ensemble is None:
    raise DistillError("--data-service computes the teacher's outputs: it needs teacher "
                       "models, not precomputed outputs.")
  if z_train is None:
    z_train = teacher_outputs(train.x)
  task, family = _infer_task(config, z_train, train, test)
  method = config.method or METHODS[task][0]
  if method not in METHODS[task]:
    raise DistillError(f"--method {method} is not a {task} method; {task} methods: "
                       f"{', '.join(METHODS[task])}.")
  fit, val = sources.holdout_split(
      sources.DataSource(train.x, train.y, train.name), config.validation_fraction,
      config.seed + 1)
  z_fit, z_val = z_train[fit.index], z_train[val.index]
  extra_kind, x_extra = _extra_inputs(config, task, fit.x, ensemble, rng)
  if len(x_extra):
    z_fit = np.concatenate([z_fit, teacher_outputs(x_extra)], axis=0)
  x_fit = np.concatenate([fit.x, x_extra], axis=0)
  timings["teacher_targets"] = time.perf_counter() - t

  t = time.perf_counter()
  student, student_family, student_name, resumed_from, history = _train(
      config, strategy, task, method, family, x_fit, z_fit, val.x, z_val, out_dir)
  timings["student"] = time.perf_counter() - t

  t = time.perf_counter()
  files = {"student": "student.keras", "saved_model": "saved_model",
           "report_json": "report.json", "report_md": "report.md",
           "fidelity": "fidelity.png"}
  student.save(os.path.join(out_dir, files["student"]))
  td.export_saved_model(student, student_family, os.path.join(out_dir, files["saved_model"]),
                        num_samples=config.num_samples, seed=config.seed)
  timings["save"] = time.perf_counter() - t

  t = time.perf_counter()

  def student_u(x):
    return td.predict_uncertainty(student, student_family, x,
                                  num_samples=config.num_samples, seed=config.seed)

  def ensemble_u(x, z):
    if z is not None:
      return {k: np.asarray(v) for k, v in td.decompose_ensemble(z, family).items()}
    if ensemble is None:
      return None
    return td.predict_uncertainty(ensemble, family, x)

  if z_test is None and ensemble is not None:
    z_test = ensemble.predict_targets(test.x)
  u = {"student": student_u(test.x), "ensemble": ensemble_u(test.x, z_test)}
  metrics = {}
  if test.y is not None:
    for name, uu in u.items():
      if uu is None:
        continue
      if task == "classification":
        metrics[name] = _common.classification_metrics(test.y, uu["prediction"])
      else:
        nll = (_regression_nll("ensemble", family, test.x, test.y, z=z_test)
               if name == "ensemble" else
               _regression_nll("student", student_family, test.x, test.y, student=student,
                               method=method))
        metrics[name] = _regression_metrics(test.y, uu, nll)
  fidelity = {}
  if u["ensemble"] is not None:
    fidelity = {part: _common.agreement(u["student"][part], u["ensemble"][part])
                for part in ("total", "aleatoric", "epistemic")
                if part in u["student"] and part in u["ensemble"]}
  ood_result, roc_panels = {}, {}
  if ood is not None:
    u_ood = {"student": student_u(ood.x),
             "ensemble": ensemble_u(ood.x, z_ood if ensemble is None else None)}
    for name, uo in u_ood.items():
      if uo is None:
        continue
      part = "epistemic" if "epistemic" in uo else "total"
      result = td.metrics.ood_detection(u[name][part], uo[part])
      ood_result[name] = {"score": part, "auroc": float(result["auroc"]),
                          "aupr": float(result["aupr"])}
      labels = np.concatenate([np.zeros(len(test.x)), np.ones(len(ood.x))])
      fpr, tpr = td.metrics.roc_curve(labels, np.concatenate([u[name][part], uo[part]]))
      roc_panels.setdefault(f"{ood.name} vs {test.name}", {})[f"{name} ({part})"] = (
          np.asarray(fpr), np.asarray(tpr), float(result["auroc"]))
  timings["evaluate"] = time.perf_counter() - t

  speed = None
  if ensemble is not None:
    t = time.perf_counter()
    x_time = test.x[:4096]
    ens_s = _time(lambda: td.predict_uncertainty(ensemble, family, x_time))
    stu_s = _time(lambda: student_u(x_time))
    speed = {"examples": int(len(x_time)), "ensemble_s": ens_s, "student_s": stu_s,
             "speedup": ens_s / stu_s}
    timings["speed"] = time.perf_counter() - t

  if fidelity:
    fidelity_figure(os.path.join(out_dir, files["fidelity"]), u["ensemble"], u["student"])
  else:
    del files["fidelity"]
  if roc_panels:
    files["roc"] = "roc.png"
    plots.plot_roc_curves(os.path.join(out_dir, files["roc"]), roc_panels,
                          title="OOD detection")
  timings["total"] = time.perf_counter() - start

  report = {
      "task": task, "method": method, "student_model": student_name,
      "strategy": {"name": config.strategy, "replicas": int(strategy.num_replicas_in_sync)},
      "teacher_outputs_from": config.data_service or ("precomputed" if ensemble is None
                                                      else "this process"),
      "family": td.families.serialize(family),
      "data": {"train": train.name, "test": test.name,
               "ood": None if ood is None else ood.name,
               "sizes": {"train": int(len(fit.x)), "extra_inputs": int(len(x_extra)),
                         "early_stopping": int(len(val.x)), "test": int(len(test.x)),
                         "ood": 0 if ood is None else int(len(ood.x))},
               "extra_inputs": extra_kind},
      "num_members": int(z_train.shape[1]),
      "notes": notes,
      **metrics,
      "fidelity": fidelity,
      "ood": ood_result,
      "speed": speed,
      "speedup": None if speed is None else speed["speedup"],
      "history": history,
      "epochs_run": resumed_from + len(history.get("loss", [])),
      "resumed_from_epoch": resumed_from,
      "timings_s": timings,
      "files": files,
      "config": dataclasses.asdict(config),
      "versions": {"tensorflow": tf.__version__,
                   "tensorflow_probability": tfp.__version__,
                   "tfp_distill": td.__version__},
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  _common.write_report(out_dir, files, report, format_markdown(report))
  return report


def format_markdown(report):
  """The report as Markdown: metrics, fidelity, OOD, speed, notes, wall time."""
  sizes = report["data"]["sizes"]
  extra = ("no extra inputs" if not sizes["extra_inputs"] else
           f"{sizes['extra_inputs']} {report['data']['extra_inputs']} inputs")
  lines = [f"# Distilled student: {report['method']} ({report['task']})", "",
           f"Ensemble of {report['num_members']} members -> {report['student_model']} "
           f"student. Train {report['data']['train']} ({sizes['train']} rows, {extra}, "
           f"{sizes['early_stopping']} rows for early stopping; {report['epochs_run']} "
           f"epochs), test {report['data']['test']} ({sizes['test']}).", ""]
  names = [n for n in ("ensemble", "student") if n in report]
  if names:
    keys = list(report[names[0]])
    lines += ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name in names:
      lines.append(f"| {name} | " + " | ".join(
          f"{report[name].get(k, float('nan')):.4f}" for k in keys) + " |")
    lines.append("")
  if report["fidelity"]:
    lines += ["Fidelity of the student's uncertainties to the ensemble's (test set):", "",
              "| part | Pearson | Spearman | mean relative error |", "|---|---:|---:|---:|"]
    for part, a in report["fidelity"].items():
      lines.append(f"| {part} | {a['pearson']:.3f} | {a['spearman']:.3f} | "
                   f"{a['mean_relative_error']:.3f} |")
    lines.append("")
  if report["ood"]:
    lines += [f"OOD detection of {report['data']['ood']}:", "",
              "| model | score | AUROC | AUPR |", "|---|---|---:|---:|"]
    for name, r in report["ood"].items():
      lines.append(f"| {name} | {r['score']} | {r['auroc']:.3f} | {r['aupr']:.3f} |")
    lines.append("")
  if report["speed"]:
    s = report["speed"]
    lines += [f"Speed (`td.predict_uncertainty`, {s['examples']} test inputs, min of 3, "
              f"this machine): ensemble {1000 * s['ensemble_s']:.1f} ms, student "
              f"{1000 * s['student_s']:.1f} ms: **{s['speedup']:.1f}x**.", ""]
  lines += [f"- {note}" for note in report["notes"]]
  lines += ["", "| stage | seconds |", "|---|---:|"]
  lines += [f"| {k} | {v:.1f} |" for k, v in report["timings_s"].items()]
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  return "\n".join(lines + ["", f"{versions}; {report['date']}.", ""])
