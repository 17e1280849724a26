"""Stages 1 and 2 of a job: load the data and the teacher, then read from the evidence
what the members take (pixel scale) and give (task, output convention), and check that
the ensemble predicts at all (`td.conventions`)."""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from tfp_distill import conventions as conventions_lib
from tfp_distill import ensemble as ensemble_lib
from tfp_distill import teachers as teachers_lib
from tfp_distill.datasets import sources
from tfp_distill.job.config import DistillError

__all__ = ["EVIDENCE_ROWS", "Teacher", "check_inputs_fit", "convert_array",
           "converted_teacher", "data_source", "decide_image_scale", "finite_outputs",
           "load_teacher", "read_conventions"]


#: Labelled training rows the conventions and the sanity check are read from.
EVIDENCE_ROWS = 2048


@dataclasses.dataclass
class Teacher:
  """The job's teacher: the user's ensemble or its precomputed outputs, as loaded."""

  ensemble: object          # the user's ensemble (raw outputs), or None
  z: dict                   # precomputed raw outputs {"train"/"test"/"ood": array}
  members: list             # member objects (for their last layer), may be empty
  source: str               # what the teacher is, for the report


def data_source(value, role, config, image_scale="raw"):
  """A DataSource from a spec, arrays, an (x, y) tuple, a Dataset or a DataSource."""
  if value is None:
    return None
  if isinstance(value, sources.DataSource):
    return value
  if isinstance(value, (str, os.PathLike)):
    return sources.load_data(os.fspath(value), limit=config.limit,
                             target_column=config.target_column if role != "ood" else None,
                             image_scale=image_scale, classes=config.classes)
  if isinstance(value, tf.data.Dataset):
    xs, ys = [], []
    batched = None
    for element in value.as_numpy_iterator():
      x, y = (element if isinstance(element, tuple) else (element, None))
      if batched is None:
        spec = value.element_spec[0] if isinstance(value.element_spec, tuple) else \
            value.element_spec
        batched = spec.shape.rank is not None and spec.shape.rank >= 1 and \
            spec.shape[0] is None
      xs.append(x if batched else x[None])
      if y is not None:
        ys.append(np.asarray(y) if batched else np.asarray(y)[None])
    if not xs:
      raise DistillError(f"{role}: the dataset is empty.")
    value = (np.concatenate(xs), np.concatenate(ys) if ys else None)
  if isinstance(value, (tuple, list)):
    if len(value) != 2:
      raise DistillError(f"{role}: expected x or (x, y), got a sequence of {len(value)}.")
    x, y = value
  else:
    x, y = value, None
  source = sources.DataSource(np.asarray(x), None if y is None else np.asarray(y),
                              f"{role} arrays")
  return sources.check_source(source, config.limit)


def load_teacher(teacher, n_train):
  """Loads the teacher: paths, model objects, an Ensemble, or precomputed outputs."""
  if isinstance(teacher, ensemble_lib.Ensemble):
    return Teacher(teacher, {}, list(teacher.members), "an Ensemble object")
  if isinstance(teacher, dict):
    z = {k: np.asarray(v, np.float32) for k, v in teacher.items()}
    if "train" not in z:
      raise DistillError("Precomputed teacher outputs must be an array [n, members, "
                         "outputs] or a dict with 'train' (and 'test', 'ood').")
    return Teacher(None, z, [], "precomputed outputs")
  if isinstance(teacher, np.ndarray):
    return Teacher(None, {"train": np.asarray(teacher, np.float32)}, [],
                    "precomputed outputs")
  if isinstance(teacher, (str, os.PathLike)):
    teacher = [teacher]
  teacher = list(teacher)
  if len(teacher) == 1 and isinstance(teacher[0], (str, os.PathLike)) and os.fspath(
      teacher[0]).endswith(".npz"):
    path = os.fspath(teacher[0])
    z = {"train": teachers_lib.load_member_outputs(path, num_examples=n_train)}
    with np.load(path, allow_pickle=False) as data:
      names = set(data.files)
    for key, role in (("z_test", "test"), ("z_ood", "ood")):
      if key in names:
        z[role] = teachers_lib.load_member_outputs(path, key=key)
    return Teacher(None, z, [], f"the members' outputs in {path}")
  paths = [t for t in teacher if isinstance(t, (str, os.PathLike))]
  if paths and len(paths) != len(teacher):
    raise DistillError("teacher: give paths or model objects, not both.")
  if paths:
    ensemble = ensemble_lib.Ensemble.from_files([os.fspath(p) for p in paths])
  else:
    ensemble = ensemble_lib.Ensemble(teacher)
  return Teacher(ensemble, {}, list(ensemble.members),
                  ", ".join(teachers_lib.describe(m) for m in ensemble.members))


def check_inputs_fit(ensemble, part, role):
  """Runs the members on two rows; a DistillError names the data and the shapes."""
  try:
    ensemble(part.x[:2])
  except tf.errors.InvalidArgumentError as error:
    # The members' graph, traced for a relaxed input shape, fails when it runs (on some
    # CPUs' kernels), not when it is traced: the same misfit, found one step later.
    first = str(error).strip().splitlines()[0]
    raise DistillError(f"--{role} {part.name}: inputs of shape {list(part.x.shape[1:])} "
                       f"do not fit the members: {first}") from error
  except ValueError as error:
    if "cannot take inputs" not in str(error):
      raise DistillError(str(error)) from error      # e.g. members of different sizes
    raise DistillError(f"--{role} {part.name}: inputs of shape {list(part.x.shape[1:])} "
                       f"do not fit the members: {error}") from error


def _is_image(source):
  return source is not None and source.x.ndim == 4


def finite_outputs(z, where):
  """z [n, members, params], or a DistillError naming the row and member that is not
  finite: the inputs were checked, so a NaN here is the teacher's (before, it was blamed
  on the inputs)."""
  bad = ~np.isfinite(z)
  if bad.any():
    row, member, _ = np.argwhere(bad)[0]
    raise DistillError(f"The teacher gives NaN/Inf on {where} ({int(bad.sum())} values; "
                       f"first at row {int(row)}, member {int(member)}) although those "
                       "inputs are finite: that member is broken (check its weights or "
                       "its last layer), not the data.")
  return z


def _evidence_rows(n, seed):
  rng = np.random.default_rng(seed + 11)
  return np.sort(rng.permutation(n)[:EVIDENCE_ROWS])


def decide_image_scale(config, data, teacher, log):
  """Chooses the pixel scale the members take; rescales the loaded images to it."""
  train = data["train"]
  if not (_is_image(train) and train.pixel_scale == 255):
    return {"scale": None, "decided_by": "not images read from files"}
  choice, by, details = config.image_scale, "argument", {}
  said = {conventions_lib.expected_pixel_scale(m) for m in teacher.members}
  if choice == "auto" and len(said) == 1 and None not in said:
    choice = said.pop()
    by = ("the members' first layer (" + ("a Rescaling by 1/255 or a Normalization of "
                                          "0-255 values" if choice == "raw" else
                                          "a Normalization of [0, 1] values") + ")")
  elif choice == "auto":
    if teacher.ensemble is None or train.y is None or not np.issubdtype(
        train.y.dtype, np.integer):
      choice, by = "raw", ("default: raw 0-255, as keras.utils.image_dataset_from_"
                           "directory reads images (no teacher model and labels to check)")
    else:
      choice, by, details = _pixel_scale_from_outputs(config, train, teacher)
  factor = 1.0 if choice == "raw" else 1.0 / 255.0
  for role in ("train", "test", "ood", "aux"):
    part = data.get(role)
    if part is not None and _is_image(part) and part.pixel_scale == 255 and factor != 1.0:
      data[role] = dataclasses.replace(part, x=part.x * np.float32(factor),
                                       pixel_scale=1)
  log(f"images fed to the members as {choice} pixels ({by})")
  return {"scale": choice, "decided_by": by, **details}


def _pixel_scale_from_outputs(config, train, teacher):
  """The scale the members classify labelled rows better on; "raw" when both give the
  same probabilities; a DistillError naming --image-scale when the accuracies tie but
  the probabilities differ (a network without an input layer that scales ranks classes
  alike at any scale, but is far more confident at 255 times its inputs)."""
  rows = _evidence_rows(len(train.x), config.seed)[:512]
  y = train.y[rows]
  probs, accuracy = {}, {}
  for name, factor in (("raw", 1.0), ("unit", 1.0 / 255.0)):
    z = teacher.ensemble.predict_targets(train.x[rows] * np.float32(factor))
    try:
      convention = conventions_lib.detect_classification(z, y, teacher.members,
                                                         config.teacher_output)
    except conventions_lib.ConventionError:
      continue
    logits = convention.convert(z).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs[name] = (e / e.sum(-1, keepdims=True)).mean(1)
    accuracy[name] = float(np.mean(probs[name].argmax(-1) == y))
  details = {"members_accuracy": accuracy, "rows": int(len(rows))}
  if len(probs) < 2:
    return "raw", "default: raw 0-255 (the outputs on one scale could not be read)", \
        details
  raw, unit = accuracy["raw"], accuracy["unit"]
  correct = {k: (p.argmax(-1) == y).astype(np.float64) for k, p in probs.items()}
  diff = correct["raw"] - correct["unit"]
  se = float(np.std(diff, ddof=1) / math.sqrt(len(diff)))
  if abs(diff.mean()) > max(3 * se, 0.01):
    choice = "raw" if raw > unit else "unit"
    return choice, (f"the members' accuracy on {len(rows)} labelled rows: {raw:.3f} on "
                    f"raw 0-255 pixels, {unit:.3f} on [0, 1] pixels"), details
  gap = float(np.max(np.abs(probs["raw"] - probs["unit"])))
  details["max_probability_gap"] = gap
  if gap <= 0.01:
    return "raw", ("the members give the same probabilities on both scales (within "
                   f"{gap:.2g}); raw 0-255, as keras.utils.image_dataset_from_directory "
                   "reads images"), details
  raise DistillError(
      f"The members' input scale cannot be told: on {len(rows)} labelled rows they score "
      f"accuracy {raw:.3f} on raw 0-255 pixels and {unit:.3f} on [0, 1] pixels, but "
      f"their probabilities differ (by up to {gap:.2f}), and no first layer says which "
      "scale they take (a Rescaling by 1/255 would). Pass --image-scale raw or "
      "--image-scale unit.")


def _whole_numbers(y):
  return np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(
      y == np.round(y))


def _infer_task(config, z, y):
  """The task from the labels and the members' outputs z [n, members, outputs]."""
  if config.task is not None:
    return config.task, "argument"
  if y is None:
    raise DistillError("No labels in --train or --test to tell classification from "
                       "regression: pass --task classification or --task regression.")
  if np.issubdtype(y.dtype, np.integer):
    return "classification", "integer labels"
  if not _whole_numbers(y):
    return "regression", "labels with fractional values"
  outputs = z.shape[-1]
  targets = 1 if y.ndim == 1 else y.shape[1]
  classes = max(outputs, 2)
  fits_classes = y.ndim == 1 and y.min() >= 0 and y.max() < classes
  fits_regression = outputs in (targets, 2 * targets)
  if fits_classes and not fits_regression:
    return "classification", "whole-number labels within the members' classes"
  if fits_regression and not fits_classes:
    return "regression", "whole-number targets that are not class indices of the members"
  if not (fits_classes or fits_regression):
    raise DistillError(f"The labels are whole numbers but fit neither task: the members "
                       f"give {outputs} outputs; pass --task.")
  # Both fit: which reading gives the ensemble skill?
  yi = y.astype(np.int64)
  if outputs == 1:
    scores = z[..., 0].mean(1)
    threshold = 0.5 if np.all((scores >= 0) & (scores <= 1)) else 0.0
    accuracy = float(np.mean((scores > threshold).astype(np.int64) == yi))
    chance = float(np.bincount(yi, minlength=2).max() / len(yi))
    skill_c = accuracy - chance
  else:
    skill = conventions_lib.classification_skill(z, yi)
    skill_c = skill["accuracy"] - skill["threshold"]
  r2 = conventions_lib.regression_skill(z[..., :targets].mean(1), y)["r2"]
  if skill_c > 0 and r2 <= 0:
    return "classification", "whole-number labels: the members' outputs classify them"
  if r2 > 0 and skill_c <= 0:
    return "regression", "whole-number targets: the members' outputs regress them"
  raise DistillError("The labels are whole numbers and the members' outputs could be "
                     "read as class scores or as regression outputs: pass --task "
                     "classification or --task regression.")


def read_conventions(config, data, teacher, log):
  """Task, output convention and the skill check, from the evidence."""
  train = data["train"]
  rows = _evidence_rows(len(train.x), config.seed)
  if teacher.ensemble is not None:
    z = finite_outputs(teacher.ensemble.predict_targets(train.x[rows]),
                       "the training rows")
  else:
    z = teacher.z["train"][rows]
  y = None if train.y is None else train.y[rows]
  task, task_by = _infer_task(config, z, y)
  if task == "classification":
    if y is not None and np.issubdtype(y.dtype, np.floating):
      y = y.astype(np.int64)
      for role in ("train", "test"):
        part = data.get(role)
        if part is not None and part.y is not None:
          data[role] = dataclasses.replace(part, y=part.y.astype(np.int64))
    try:
      convention = conventions_lib.detect_classification(
          z, y, teacher.members, config.teacher_output)
    except conventions_lib.ConventionError as error:
      raise DistillError(str(error)) from error
    k = convention.family.num_classes
    for role in ("train", "test"):
      part = data.get(role)
      if part is not None and part.y is not None:
        outside = np.flatnonzero((part.y < 0) | (part.y >= k))
        if outside.size:
          raise DistillError(
              f"{part.name}: label {int(part.y[outside[0]])} at row {int(outside[0])} is "
              f"outside the members' classes (they give {k} classes: labels 0.."
              f"{k - 1}; integer regression targets need --task regression).")
  else:
    if y is not None:
      targets = 1 if y.ndim == 1 else y.shape[1]
      if z.shape[-1] not in (targets, 2 * targets) and config.variance != "point":
        raise DistillError(f"{train.name}: y has {targets} target(s) per row but the "
                           f"members give {z.shape[-1]} outputs (expected {targets} point "
                           f"predictions or {2 * targets} values: a mean and a variance "
                           "parameter per target).")
    try:
      # Point predictions: their noise variance comes from the residuals on these rows;
      # if the members trained on them it is too small (say so; set noise_variance).
      convention = conventions_lib.detect_regression(
          z, y, config.variance, config.min_variance, config.noise_variance)
    except conventions_lib.ConventionError as error:
      raise DistillError(str(error)) from error
  log(f"task: {task} ({task_by}); {convention.describe()}")
  skill = None
  if y is not None:
    zc = convention.convert(z).numpy()
    if task == "classification":
      skill = conventions_lib.classification_skill(zc, y)
      said = (f"accuracy {skill['accuracy']:.3f} on {skill['rows']} labelled training "
              f"rows (always answering the most frequent class scores {skill['chance']:.3f})")
    else:
      skill = conventions_lib.regression_skill(convention.family.mean(zc).numpy().mean(1),
                                               y)
      said = f"R^2 {skill['r2']:.3f} on {skill['rows']} labelled training rows"
    skill["said"] = said
    log(f"ensemble check: {said}")
    if skill["at_chance"]:
      message = (f"The ensemble is at chance level: {said}. Its inputs or outputs are "
                 "probably read wrongly: check --image-scale (raw 0-255 or unit [0, 1] "
                 "pixels), --teacher-output (logits, probs, log-probs), --variance, "
                 "--classes (the members' class order) and --task; --force trains anyway.")
      if not config.force:
        raise DistillError(message)
      log("warning: " + message)
  return task, task_by, convention, skill


def converted_teacher(teacher, convention):
  """The teacher whose members give the family's z: the user's ensemble itself when its
  outputs need no conversion (logits, log-probs, softplus), else one wrapping it."""
  if teacher.ensemble is None:
    return None
  if convention.kind in ("logits", "log-probs", "softplus"):
    teacher.ensemble.family = convention.family
    return teacher.ensemble
  functions = []
  for index, (member, fn) in enumerate(zip(teacher.ensemble.members,
                                           teacher.ensemble.member_functions)):
    def converted(x, fn=fn):
      return convention.convert(fn(x))
    converted.__name__ = (f"member {index} ({teachers_lib.describe(member)}) read as "
                          f"{convention.kind}")
    functions.append(converted)
  return ensemble_lib.Ensemble(functions, family=convention.family, vectorize=False)


def convert_array(convention, z, batch=65536):
  """The members' raw outputs z [n, M, outputs] in the convention's family (NumPy), in
  batches of `batch` rows."""
  return np.concatenate([convention.convert(z[i:i + batch]).numpy()
                         for i in range(0, len(z), batch)], axis=0)
