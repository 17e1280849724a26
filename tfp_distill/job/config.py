"""The settings of a distillation job (`DistillConfig`), checked by type and range
before any work (`check_config`), and the job's one-line error (`DistillError`)."""

import dataclasses
import os

import numpy as np

from tfp_distill import conventions as conventions_lib
from tfp_distill import methods as methods_lib

__all__ = ["DEFAULT_MIN_STEPS", "DistillConfig", "DistillError", "EXTRA_INPUTS",
           "EXTRA_KINDS", "FIELD_TYPES", "NOT_FINGERPRINTED", "OFF_DATA_KINDS",
           "OFF_DATA_MIN_STEPS", "OUTPUT_NORMALIZATIONS", "STRATEGIES", "STUDENTS",
           "check_config", "parse_extra_inputs", "student_keras"]


STUDENTS = ("auto", "builtin:mlp", "builtin:small_cnn", "builtin:resnet18")


STRATEGIES = ("default", "mirrored", "multi-worker")


#: The fewest optimizer steps an automatic schedule plans for when `min_steps` is None:
#: on the training rows and the method's own inputs (mixup, jitter), and with inputs off
#: the data too (`OFF_DATA_KINDS`). With far or box inputs, 3000 steps left the
#: regression students of docs/studies/ood-inputs.md unconverged (the held-out loss
#: still falling at the last epoch; yacht: RMSE 1.24x the ensemble's, against 0.93x with
#: 12000, where early stopping ended training at 106 of 240 epochs).
DEFAULT_MIN_STEPS = 3000
OFF_DATA_MIN_STEPS = 12000
#: The extra inputs that lie off the data (`OFF_DATA_MIN_STEPS`): three kinds of
#: `extra_inputs`, and the user's `aux` rows.
OFF_DATA_KINDS = ("far", "box", "marginal", "aux")


#: `DistillConfig.output_normalization` values.
OUTPUT_NORMALIZATIONS = ("auto", "on", "off")
#: The one-word settings of `extra_inputs` (kinds may also be joined, with shares).
EXTRA_INPUTS = ("auto", "none", "mixup", "jitter", "far", "box", "marginal")


class DistillError(ValueError):
  """A problem with the user's inputs or settings; the message is one line."""

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """The settings of one distillation job; each is a `tfp-distill distill` flag and a
  `--config` TOML key (the Python API takes them as keyword arguments of `distill`).

  Attributes:
    teacher: tuple of str: `.keras` files (tf_keras or Keras 3), SavedModel folders, or
      one `.npz` of the members' outputs `z` [n, members, outputs] aligned with `train`
      (optional `z_test`, `z_ood`). (`distill` also takes model objects or arrays.)
    train, test, ood, aux: data specs (`datasets.sources.load_data`): the training rows;
      the test rows (None: `test_fraction` of train held out); out-of-distribution
      inputs (AUROC of the epistemic uncertainty); unlabelled inputs the teacher labels
      as extra distillation inputs.
    out: str or None, the report folder (None: nothing is written; `result.save`).
    task: None (from the labels and outputs), "classification" or "regression".
    method: None or "auto" (the task's default) or a `td.methods` name or alias.
    teacher_output: classification members' outputs: "auto" (read from the models and
      the outputs), "logits", "probs" or "log-probs".
    variance: regression members' second output: "auto" (the likelihood of labelled
      rows), "softplus", "log-variance", "log-std", "variance", "std", or "point"
      (one output per target: point predictions).
    noise_variance: point-prediction members' noise variance: "auto" (from the residuals
      of held-out rows) or a float > 0.
    image_scale: images' pixels as the members take them: "auto" (the scale the members
      score best on, raw 0-255 when they score alike), "raw" or "unit" ([0, 1]).
    classes: None, or the class names in the members' order (string labels in a .csv).
    target_column: None (the last column) or the .csv column to predict.
    student: "auto" (builtin:small_cnn for images, builtin:mlp otherwise), a name in
      `STUDENTS`, or a `.keras` backbone x -> features of the student's Keras (a head is
      appended).
    keras: the student's Keras: None (3, or 2 under the multi-worker strategy, which
      Keras 3's `fit` does not run under), 3 (`import keras`, TensorFlow backend;
      `td.keras3` heads and losses) or 2 (tf_keras, `td.heads`: `tfp.layers` heads).
    epochs: None (from the data: at least `min_steps` optimizer steps and 30 epochs) or
      the maximum number of epochs.
    min_steps: None or int, the fewest optimizer steps an automatic schedule plans for.
      None: `DEFAULT_MIN_STEPS` (3000), or `OFF_DATA_MIN_STEPS` (12000) when far, box,
      marginal or aux inputs are distilled: a student needs longer to learn the members' spread
      off the data (docs/studies/ood-inputs.md), and early stopping ends it sooner when
      it has.
    min_steps_per_epoch: int, an epoch is as many passes over the rows as give at least
      this many optimizer steps (small data sets: Keras' per-epoch work, validation and
      early stopping's checks, does not dominate; 1: an epoch is one pass).
    batch_size, learning_rate: student training (Adam, cosine-decayed).
    patience: None (from the schedule) or epochs without a lower held-out distillation
      loss before stopping.
    validation_fraction, test_fraction: shares of `train` held out for early stopping
      and (when `test` is None) as the test set.
    extra_inputs: the inputs beyond the training rows that the teacher labels for the
      student (`parse_extra_inputs`): "auto" (the method's: mixup for classification,
      jitter for regression; none with precomputed outputs), "none", or kinds joined by
      "+", each with an optional share of the training rows after a colon: "mixup",
      "jitter" (`jitter_copies` per row by default), "far" (scaled noise, 1 to 4 feature
      standard deviations: `td.targets.far_inputs`), "box" (uniform on the data's box
      widened by half its range: `td.targets.box_inputs`), "marginal" (each feature
      from a random row: new combinations of seen values, `td.targets.marginal_inputs`),
      e.g. "mixup+far:0.5". The
      rows of `aux` are added to any of them.
    output_normalization: where the student's raw params start
      (`td.parameterization.output_normalization`, fitted to the teacher's targets on
      the training rows): "auto" (regression students, and the gaussian-logits
      students of image inputs: `td.job.training.output_normalization_for`), "on" (any
      student with a Normal head over the members' outputs) or "off".
    temperature: None (the method's schedule: end2 from 2.5, or from 1 with image
      inputs, `td.job.choice.default_temperature`) or a number >= 1, for the methods whose
      loss is annealed: the loss's starting temperature, held for the
      first quarter of the epochs and lowered linearly to the method's final one (1) by
      three quarters (`td.methods.Method.annealing`); or "choose" (image inputs, teacher
      models): a student at each of `CHOICE_TEMPERATURES`, the one kept chosen on
      corruptions of the held-out training images (`td.job.choice`; training costs
      that many times as much). Other methods refuse it.
    jitter_copies, jitter_scale: jittered copies per row and their noise sd (a fraction
      of each feature's standard deviation).
    min_variance: the variance floor c of the softplus convention.
    num_samples: Monte Carlo samples for students without a closed form.
    strategy: "default", "mirrored" or "multi-worker" (TF_CONFIG).
    resume: continue a killed run of the same job from its last finished epoch.
    data_service: None or a tf.data service dispatcher's address (teacher outputs).
    force: train even when the ensemble scores at chance on labelled rows.
    seed: int.
    limit: None or the number of examples read from each data source.
    verbose: 0 silent, 1 progress bars and a log of each decision.
  """

  teacher: tuple = ()
  train: str = None
  out: str = None
  test: str = None
  ood: str = None
  aux: str = None
  task: str = None
  method: str = None
  teacher_output: str = "auto"
  variance: str = "auto"
  noise_variance: object = "auto"
  image_scale: str = "auto"
  classes: tuple = None
  target_column: str = None
  student: str = "auto"
  keras: int = None
  epochs: int = None
  min_steps: int = None
  min_steps_per_epoch: int = 50
  batch_size: int = 128
  learning_rate: float = 1e-3
  patience: int = None
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  extra_inputs: str = "auto"
  output_normalization: str = "auto"
  temperature: object = None
  jitter_copies: int = 4
  jitter_scale: float = 0.1
  min_variance: float = 1e-3
  num_samples: int = 100
  strategy: str = "default"
  resume: bool = False
  data_service: str = None
  force: bool = False
  seed: int = 0
  limit: int = None
  verbose: int = 1


#: The type of every DistillConfig field (a --config TOML value must have it).
FIELD_TYPES = {
    "teacher": "paths", "train": "str?", "out": "str?", "test": "str?", "ood": "str?",
    "aux": "str?", "task": "str?", "method": "str?", "teacher_output": "str",
    "variance": "str", "noise_variance": "auto|float", "image_scale": "str",
    "classes": "strs?", "target_column": "str?", "student": "str", "keras": "int?",
    "epochs": "int?", "min_steps": "int?", "min_steps_per_epoch": "int", "batch_size": "int",
    "learning_rate": "float", "patience": "int?",
    "validation_fraction": "float", "test_fraction": "float", "extra_inputs": "str",
    "output_normalization": "str", "temperature": "choose|float?", "jitter_copies": "int",
    "jitter_scale": "float",
    "min_variance": "float", "num_samples": "int", "strategy": "str", "resume": "bool",
    "data_service": "str?", "force": "bool", "seed": "int", "limit": "int?", "verbose": "int"}


_TYPE_WORDS = {"paths": "a path or a list of paths", "str": "a string", "int": "an integer",
               "float": "a number", "bool": "true or false", "strs": "a list of strings",
               "auto|float": '"auto" or a number', "choose|float": '"choose" or a number'}


#: Settings that do not change the student (where and how verbosely it runs, and what
#: is evaluated after training).
NOT_FINGERPRINTED = ("out", "resume", "verbose", "strategy", "data_service", "ood",
                     "num_samples", "force")


def _is_int(value):
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _type_ok(kind, value):
  if kind.endswith("?"):
    return value is None or _type_ok(kind[:-1], value)
  if kind == "paths":
    return (isinstance(value, (tuple, list))
            and all(isinstance(v, (str, os.PathLike)) for v in value))
  if kind == "strs":
    return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
  if kind == "str":
    return isinstance(value, (str, os.PathLike))
  if kind == "bool":
    return isinstance(value, (bool, np.bool_))
  if kind == "int":
    return _is_int(value)
  if kind in ("auto|float", "choose|float"):
    word = kind.split("|")[0]
    return (isinstance(value, str) and value == word) or _type_ok("float", value)
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)))


#: The kinds of distillation inputs `extra_inputs` may name.
EXTRA_KINDS = ("mixup", "jitter", "far", "box", "marginal")


def parse_extra_inputs(spec):
  """`extra_inputs` -> "auto" or a list of (kind, share of the training rows or None).

  Raises:
    DistillError: an unknown kind or a share that is not a number >= 0.
  """
  spec = str(spec).strip().lower()
  if spec in ("auto", "none"):
    return spec if spec == "auto" else []
  parts = []
  for item in spec.split("+"):
    kind, _, share = item.strip().partition(":")
    if kind not in EXTRA_KINDS:
      raise DistillError(f"extra_inputs: {kind!r} is not a kind of input (kinds: "
                         f"{', '.join(EXTRA_KINDS)}; joined by '+', e.g. mixup+far:0.5), "
                         f"in {spec!r}.")
    value = None
    if share:
      try:
        value = float(share)
      except ValueError:
        value = -1.0
      if not (np.isfinite(value) and value >= 0):
        raise DistillError(f"extra_inputs: the share after {kind}: must be a number >= 0 "
                           f"(of the training rows), got {share!r}.")
    parts.append((kind, value))
  return parts


def check_config(config):
  """Checks every setting's type and range before any work; `DistillError` names it."""
  for name, kind in FIELD_TYPES.items():
    value = getattr(config, name)
    if not _type_ok(kind, value):
      raise DistillError(f"{name} must be {_TYPE_WORDS[kind.rstrip('?')]}, got "
                         f"{value!r} ({type(value).__name__}).")
  if not config.teacher:
    raise DistillError("--teacher is required: .keras files, SavedModel folders or one "
                       ".npz of the members' outputs.")
  if not config.train:
    raise DistillError("--train is required (a .npz, tfds:NAME[:SPLIT], an image folder "
                       "or a .csv).")
  for name in ("epochs", "batch_size", "patience", "num_samples", "jitter_copies", "limit",
               "min_steps", "min_steps_per_epoch"):
    value = getattr(config, name)
    if value is not None and value < (0 if name == "jitter_copies" else 1):
      raise DistillError(f"{name} must be a positive integer, got {value!r}.")
  for name in ("learning_rate", "jitter_scale", "min_variance"):
    value = getattr(config, name)
    if not (np.isfinite(value) and (value >= 0 if name == "jitter_scale" else value > 0)):
      raise DistillError(f"{name} must be a finite number "
                         f"{'>= 0' if name == 'jitter_scale' else '> 0'}, got {value!r}.")
  if config.noise_variance != "auto" and not (np.isfinite(config.noise_variance)
                                              and config.noise_variance > 0):
    raise DistillError(f"noise_variance must be \"auto\" or a number > 0, got "
                       f"{config.noise_variance!r}.")
  for name in ("validation_fraction", "test_fraction"):
    if not 0 < getattr(config, name) < 1:
      raise DistillError(f"{name} must be in (0, 1), got {getattr(config, name)!r}.")
  parse_extra_inputs(config.extra_inputs)
  if config.temperature not in (None, "choose") and not (np.isfinite(config.temperature)
                                                         and config.temperature >= 1):
    raise DistillError(f"temperature must be a number >= 1 (the loss's starting "
                       f"temperature, annealed to 1) or \"choose\", got "
                       f"{config.temperature!r}.")
  choices = {"strategy": STRATEGIES,
             "teacher_output": conventions_lib.CLASSIFICATION_OUTPUTS,
             "variance": conventions_lib.VARIANCES,
             "image_scale": conventions_lib.IMAGE_SCALES,
             "output_normalization": OUTPUT_NORMALIZATIONS}
  for name, allowed in choices.items():
    if getattr(config, name) not in allowed:
      raise DistillError(f"{name} must be one of {', '.join(allowed)}, got "
                         f"{getattr(config, name)!r}.")
  if config.task not in (None, "classification", "regression"):
    raise DistillError(f"task must be classification or regression, got {config.task!r}.")
  if config.method not in (None, "auto"):
    tasks = [t for t in methods_lib.TASKS if t == config.task or config.task is None]
    known = [t for t in tasks if _method_or_none(config.method, t) is not None]
    if not known:
      listing = "; ".join(f"{t}: {', '.join(methods_lib.names(t))}" for t in tasks)
      raise DistillError(f"method {config.method!r} is not a method ({listing}).")
    if config.temperature is not None and all(
        _method_or_none(config.method, t).temperature is None for t in known):
      refuse_temperature(config.method, tasks)
  if config.keras not in (None, 2, 3):
    raise DistillError(f"keras must be 3 (Keras 3, `import keras`) or 2 (tf_keras), got "
                       f"{config.keras!r}.")
  if config.keras == 3 and config.strategy == "multi-worker":
    raise DistillError("keras 3 students cannot train under the multi-worker strategy "
                       "(Keras 3's fit does not take its per-replica values): pass --keras "
                       "2 (tf_keras), or leave --keras out.")
  student = str(config.student)
  if student not in STUDENTS and not student.endswith(".keras"):
    raise DistillError(f"student must be one of {', '.join(STUDENTS)} or a .keras "
                       f"backbone, got {student!r}.")


def refuse_temperature(method, tasks):
  """The one-line refusal of `temperature` for a method whose loss is not annealed
  (named before any work by `check_config`; from the task, by the job)."""
  annealed = dict.fromkeys(m for t in tasks for m in methods_lib.names(t)
                           if methods_lib.get(m, t).temperature is not None)
  raise DistillError(f"temperature: method {method} has no annealed temperature (only "
                     f"{', '.join(annealed) or 'none'}); leave temperature out.")


def student_keras(config):
  """The student's Keras, 2 or 3: `config.keras`, or when None 3 (2 under the
  multi-worker strategy)."""
  if config.keras is not None:
    return config.keras
  return 2 if config.strategy == "multi-worker" else 3


def _method_or_none(name, task):
  try:
    return methods_lib.get(name, task)
  except ValueError:
    return None
