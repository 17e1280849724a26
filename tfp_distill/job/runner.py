"""`distill` and `run`: the job's stages in order, the result, and the folder it writes."""

import dataclasses
import importlib.util
import os
import time

import numpy as np

from tfp_distill import callbacks as callbacks_lib
from tfp_distill import ensemble as ensemble_lib
from tfp_distill import export as export_lib
from tfp_distill import job_folder
from tfp_distill import methods as methods_lib
from tfp_distill import predict as predict_lib
from tfp_distill import report as report_lib
from tfp_distill import targets as targets_lib
from tfp_distill.job import choice as choice_lib
from tfp_distill.datasets import sources
from tfp_distill.job.config import NOT_FINGERPRINTED, DistillConfig, DistillError
from tfp_distill.job.config import check_config, refuse_temperature
from tfp_distill.job.reading import (check_inputs_fit, convert_array, finite_outputs,
                                     converted_teacher, data_source, decide_image_scale,
                                     load_teacher, read_conventions)
from tfp_distill.job.training import (Training, check_output_normalization,
                                      extra_inputs_for, keras_of, make_strategy, off_data,
                                      schedule)

__all__ = ["DistillResult", "backup_names", "distill", "run"]


def early_stopping_split(source, validation_fraction, seed):
  """(fit, validation): the training rows the job fits and those it holds out for early
  stopping (`sources.holdout_split` with seed + 1). One place, so that code scoring a
  saved student on rows it never fitted (`experiments.image_choice`) gets the same rows."""
  return sources.holdout_split(source, validation_fraction, seed + 1)


@dataclasses.dataclass
class DistillResult:
  """What `distill` returns.

  Attributes:
    student: the trained student x -> distribution: a Keras 3 model (`keras=3`, the
      default; its head outputs the parameters) or a tf_keras one (`keras=2`).
    family: the family `td.predict_uncertainty(student, family, x)` takes.
    teacher_family: the family of the (converted) members' outputs.
    teacher: the converted teacher (a `td.Ensemble` whose members give the family's z),
      or None for precomputed outputs.
    conventions: `td.conventions.OutputConvention`, how the members' outputs were read.
    method: `td.methods.Method`.
    report: dict, the report (what report.json holds; strict JSON values).
  """

  student: object
  family: object
  teacher_family: object
  teacher: object
  conventions: object
  method: object
  report: dict
  _figures: dict = dataclasses.field(default_factory=dict, repr=False)

  def predict_uncertainty(self, x, batch_size=1024):
    """The student's prediction and uncertainties at x (`td.predict_uncertainty`)."""
    return predict_lib.predict_uncertainty(
        self.student, self.family, x, batch_size=batch_size,
        num_samples=self.report["config"]["num_samples"],
        seed=self.report["config"]["seed"])

  def save(self, out_dir):
    """Writes the folder `tfp-distill distill` writes (see `td.job_folder` for what may
    be written where): student.keras, saved_model/, figures, report.md, report.json.

    Returns:
      dict {kind: file name} of what was written.
    """
    folder = job_folder.JobFolder(out_dir, "out")
    with folder:
      return _save(folder, self)


def _describe(value, role):
  """A JSON description of a teacher or data argument, for the config in the report."""
  if value is None:
    return None
  if isinstance(value, (str, os.PathLike)):
    return os.fspath(value)
  if role == "teacher" and isinstance(value, (list, tuple)) and all(
      isinstance(v, (str, os.PathLike)) for v in value):
    return tuple(os.fspath(v) for v in value)
  if role == "teacher":
    return ("<objects>",)
  return f"<{role}: {type(value).__name__}>"


def _fingerprint(config, objects):
  """The job's fingerprint: result-changing settings, files' and arrays' SHA-256."""
  settings = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in NOT_FINGERPRINTED}
  paths = {"teacher": [t for t in config.teacher if not str(t).startswith("<")]}
  for role in ("train", "test", "aux"):
    value = getattr(config, role)
    paths[role] = None if value is None or str(value).startswith("<") else value
  fingerprint = job_folder.job_fingerprint(settings, paths)
  for role, value in (objects or {}).items():
    fingerprint["files"][role] = _object_digest(value)
  return fingerprint


def _object_digest(value):
  import hashlib
  digest = hashlib.sha256()
  if isinstance(value, ensemble_lib.Ensemble):
    value = value.members
  items = value if isinstance(value, (list, tuple)) else [value]
  for item in items:
    if hasattr(item, "get_weights"):
      arrays = item.get_weights()
    elif isinstance(item, sources.DataSource):
      arrays = [item.x] + ([] if item.y is None else [item.y])
    elif isinstance(item, (np.ndarray, list, tuple)) or np.isscalar(item):
      arrays = [np.asarray(item)] if not isinstance(item, tuple) else [
          np.asarray(a) for a in item]
    else:
      arrays = [np.frombuffer(repr(type(item)).encode(), np.uint8)]
    for array in arrays:
      array = np.ascontiguousarray(array)
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(array.tobytes())
  return "sha256:" + digest.hexdigest()


def distill(teacher, train, test=None, ood=None, *, aux=None, out=None, resume=False,
            **settings):
  """Distils a user's ensemble into one student: the Python API of `tfp-distill distill`.

  ```none
  result = td.distill(teacher, train, test, ood)
  result.student      the trained student (x -> distribution)
  result.family       what td.predict_uncertainty(result.student, result.family, x) takes
  result.report       the report (report.json): ensemble vs student, fidelity, OOD, speed,
                      the verdict, and every convention read from the evidence, with why
  result.save(dir)    the folder the command writes
  ```

  Args:
    teacher: the members: a list of Keras models (Keras 3 or tf_keras) or callables, a
      `td.Ensemble`, paths (`.keras` files, SavedModel folders), or precomputed outputs:
      an array z [n, members, outputs] aligned with `train`, a dict {"train": z,
      "test": z_test, "ood": z_ood}, or the path of an `.npz` holding them.
    train: the training rows: an array x, a tuple (x, y), a `tf.data.Dataset` of x or
      (x, y) (batched or not), or a spec string (`.npz`, `tfds:NAME[:SPLIT]`, an image
      folder, a `.csv`).
    test: None (a share of train is held out) or test rows, in any form `train` takes.
    ood: None or out-of-distribution inputs (labels unused).
    aux: None or unlabelled inputs the teacher labels as extra distillation inputs.
    out: None, or a folder to write as the command does (new, empty, or ours).
    resume: continue a killed run of the same job in `out`.
    **settings: the other `DistillConfig` fields (method, teacher_output, variance,
      noise_variance, image_scale, classes, task, student, epochs, batch_size,
      learning_rate, ...).

  Returns:
    `DistillResult`.

  Raises:
    DistillError: bad settings or input, evidence that cannot decide a convention (the
      message names the argument), an ensemble at chance level (unless force=True), or
      a loss that became NaN/Inf; one line, as the other errors here.
    td.datasets.sources.DataError: data that cannot be read.
    td.teachers.TeacherError: a teacher that cannot be loaded or run.
    td.job_folder.FolderError: an output folder that is not ours, or in use.

  #### Examples

  ```python
  members = [keras.models.load_model(f"member_{i}.keras") for i in range(5)]
  result = td.distill(members, (x_train, y_train), (x_test, y_test))
  print(result.report["verdict"]["summary"])
  u = result.predict_uncertainty(x_new)     # prediction, total, aleatoric, epistemic
  result.save("run")
  ```
  """
  unknown = set(settings) - {f.name for f in dataclasses.fields(DistillConfig)}
  if unknown:
    raise TypeError(f"distill() got unexpected settings: {', '.join(sorted(unknown))}.")
  objects = {}
  for role, value in (("teacher", teacher), ("train", train), ("test", test), ("ood", ood),
                      ("aux", aux)):
    described = _describe(value, role)
    if described is None or (isinstance(described, str) and described.startswith("<")) \
        or described == ("<objects>",):
      if value is not None:
        objects[role] = value
  if "classes" in settings and settings["classes"] is not None:
    settings["classes"] = tuple(settings["classes"])
  config = DistillConfig(
      teacher=_describe(teacher, "teacher") if not isinstance(teacher, str) else (teacher,),
      train=_describe(train, "train"), test=_describe(test, "test"),
      ood=_describe(ood, "ood"), aux=_describe(aux, "aux"),
      out=None if out is None else os.fspath(out), resume=bool(resume), **settings)
  return run(config, objects)


def _check_dispatcher(address, timeout=10.0):
  """Refuses a --data-service address where nothing answers (before: a silent hang)."""
  import socket
  host_port = address.split("://", 1)[-1]
  host, _, port = host_port.rpartition(":")
  if not host or not port.isdigit():
    raise DistillError(f"--data-service {address}: expected HOST:PORT (the dispatcher's "
                       "address).")
  try:
    with socket.create_connection((host, int(port)), timeout=timeout):
      pass
  except OSError as error:
    reason = "timed out" if isinstance(error, socket.timeout) else (
        error.strerror or str(error))
    raise DistillError(f"--data-service {address}: no dispatcher answers there ({reason}, "
                       f"waited up to {timeout:.0f} s); start one with tfp-distill "
                       "data-service dispatcher --port PORT, or fix the address.") from error


def run(config, objects=None):
  """Runs a job from its settings (`DistillConfig`); `objects` holds the teacher and data
  given as Python objects ({"teacher": ..., "train": ...}) instead of paths.

  Returns:
    `DistillResult` (and, when `config.out` is set, the folder is written).
  """
  objects = objects or {}
  check_config(config)
  if config.data_service:
    _check_dispatcher(config.data_service)
  # First: MultiWorkerMirroredStrategy configures the collective ops, which must happen
  # before any other TensorFlow op runs in this process.
  strategy = make_strategy(config.strategy)
  if config.out is None:
    if config.resume:
      raise DistillError("resume needs an output folder (--out) holding the backup.")
    return _Job(config, objects, strategy, None).run()
  # The output folder is claimed (or refused) and locked before any work is done.
  folder = job_folder.JobFolder(config.out, "--out")
  with folder:
    return _Job(config, objects, strategy, folder).run()


def backup_names(config):
  """The job folder's backup names: ("backup",), or one per candidate of
  temperature="choose" ("backup_t1", "backup_t2.5"; `Training`'s `tag`)."""
  temperatures = choice_lib.candidates(config)
  return (("backup",) if temperatures is None else
          tuple(f"backup{choice_lib.tag(t)}" for t in temperatures))


_OUTPUTS = ("student.keras", "saved_model", "report.json", "report.md", "fidelity.png",
            "roc.png")
#: The backups and logs a run of a folder may leave, with or without temperature="choose".
_RUN_FILES = tuple(f"{kind}{tag}" for kind in ("backup", "logs") for tag in
                   ("",) + tuple(choice_lib.tag(t) for t in choice_lib.CHOICE_TEMPERATURES))


class _Job:
  """One run of `run`, cut into the stages of the module docstring."""

  def __init__(self, config, objects, strategy, folder):
    self.config, self.objects, self.strategy, self.folder = config, objects, strategy, \
        folder
    self.timings, self.notes = {}, []
    self.start = time.perf_counter()

  def log(self, line):
    self.notes.append(line)
    if self.config.verbose:
      print(f"tfp-distill: {line}", flush=True)

  def _timed(self, stage, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    self.timings[stage] = time.perf_counter() - t
    return out

  def run(self):
    config = self.config
    fingerprint = None
    if self.folder is not None:
      fingerprint = _fingerprint(config, self.objects)
      if config.resume:   # a backup of another job is refused before any work is done
        for name in backup_names(config):
          resumable = callbacks_lib.EpochBackup(self.folder.file(name),
                                                fingerprint=fingerprint)
          if resumable.latest() is not None:
            resumable.check_fingerprint()
    data, teacher = self._timed("load", self.load)
    task, convention, skill, image = self._timed("read", self.read, data, teacher)
    prepared = self._timed("teacher_targets", self.targets, data, teacher, task,
                           convention)
    result = self._timed("student", self.train, prepared, convention, fingerprint)
    self._timed("evaluate", self.evaluate, result, data, prepared, teacher, convention,
                skill, image)
    if self.folder is not None:
      self._timed("save", _save, self.folder, result)
      for name in backup_names(config):            # finished: nothing left to resume
        self.folder.remove(name)
    return result

  # -- stage 1 ---------------------------------------------------------------------------

  def load(self):
    config = self.config
    get = lambda role: self.objects.get(role, getattr(config, role))
    data = {"train": data_source(get("train"), "train", config)}
    for role in ("test", "ood", "aux"):
      data[role] = data_source(get(role), role, config)
    teacher = load_teacher(self.objects.get("teacher", config.teacher), len(data["train"].x))
    self.log(f"teacher: {teacher.source}")
    if teacher.ensemble is None:
      if data["test"] is not None and "test" not in teacher.z:
        self.log("no z_test for --test: the ensemble's test metrics are left out")
      if data["ood"] is not None and "ood" not in teacher.z:
        self.log("no z_ood for --ood: the ensemble's OOD detection is left out")
      if config.data_service:
        raise DistillError("--data-service computes the teacher's outputs: it needs "
                           "teacher models, not precomputed outputs.")
      for role in ("test", "ood", "aux"):
        part = data[role]
        if part is not None and part.x.shape[1:] != data["train"].x.shape[1:]:
          raise DistillError(f"--{role} {part.name}: inputs of shape "
                             f"{list(part.x.shape[1:])}, the training inputs have "
                             f"{list(data['train'].x.shape[1:])}.")
    if choice_lib.candidates(config):
      choice_lib.check_choosable(None, data["train"].x, teacher.ensemble is not None)
    members = (teacher.ensemble.num_members if teacher.ensemble is not None
               else teacher.z["train"].shape[1])
    if members < 2:
      raise DistillError(f"The teacher has {members} member: an ensemble of one has no "
                         "spread to distil (its epistemic uncertainty is 0); give two "
                         "or more members.")
    return data, teacher

  # -- stage 2 ---------------------------------------------------------------------------

  def read(self, data, teacher):
    config = self.config
    image = decide_image_scale(config, data, teacher, self.log)
    if teacher.ensemble is not None:
      for role in ("train", "test", "ood", "aux"):
        if data[role] is not None:
          check_inputs_fit(teacher.ensemble, data[role], role)
    task, task_by, convention, skill = read_conventions(config, data, teacher, self.log)
    self.task_by = task_by
    return task, convention, skill, image

  # -- stage 3 ---------------------------------------------------------------------------

  def targets(self, data, teacher, task, convention):
    config = self.config
    method = methods_lib.get(config.method, task)
    if config.temperature is not None and method.temperature is None:
      refuse_temperature(method.name, [task])
    if config.output_normalization == "on":     # before the teacher's targets are made
      head, _ = method.head(convention.family, keras_version=keras_of(config).version)
      check_output_normalization(method, head)
    converted = converted_teacher(teacher, convention)
    if choice_lib.candidates(config):
      choice_lib.check_choosable(task, data["train"].x, converted is not None)
    train, test = data["train"], data["test"]
    z_train = z_test = z_ood = None
    if teacher.ensemble is None:
      z_train = convert_array(convention, teacher.z["train"])
      z_test = (None if "test" not in teacher.z
                else convert_array(convention, teacher.z["test"]))
      z_ood = (None if "ood" not in teacher.z
               else convert_array(convention, teacher.z["ood"]))
    if test is None:
      train, test = sources.holdout_split(train, config.test_fraction, config.seed)
      self.log(f"test set: {test.name}, as no test data was given")
      if z_train is not None:
        z_test, z_train = z_train[test.index], z_train[train.index]

    def outputs(x):
      if config.data_service:
        return targets_lib.service_targets(converted, x, config.data_service,
                                           verbose=config.verbose)
      return converted.predict_targets(x)

    if z_train is None:
      z_train = finite_outputs(outputs(train.x), "the training rows")
    fit, val = early_stopping_split(
        sources.DataSource(train.x, train.y, train.name), config.validation_fraction,
        config.seed)
    z_fit, z_val = z_train[fit.index], z_train[val.index]
    rng = np.random.default_rng(config.seed)
    extra_kind, x_extra = extra_inputs_for(config, method, fit.x, converted is not None,
                                        data["aux"], rng)
    if len(x_extra):
      z_fit = np.concatenate([z_fit, finite_outputs(outputs(x_extra),
                                                     f"the {extra_kind} inputs")], axis=0)
    x_fit = np.concatenate([fit.x, x_extra], axis=0)
    return {"method": method, "teacher": converted, "train": train, "test": test,
            "fit": fit, "val": val, "x_fit": x_fit, "z_fit": z_fit, "z_val": z_val,
            "z_train": z_train, "z_test": z_test, "z_ood": z_ood,
            "extra_kind": extra_kind, "n_extra": int(len(x_extra)),
            "pixel_scale": train.pixel_scale}

  # -- stage 4 ---------------------------------------------------------------------------

  def train(self, prepared, convention, fingerprint):
    config = self.config
    if not config.resume and self.folder is not None:
      # A fresh run: what an earlier run of ours left here goes (only what the folder's
      # marker lists; the user's own files stay), so the folder never mixes two runs.
      # Every backup and log name a run of this folder may have left (with or without
      # temperature="choose"), not only this run's.
      for name in _OUTPUTS + _RUN_FILES:
        self.folder.remove(name)
    epochs, passes, patience, how = schedule(config, len(prepared["x_fit"]),
                                             off_data(prepared["extra_kind"]))
    self.log(f"training: at most {epochs} epochs ({how}), early stopping after {patience} "
             "epochs without a lower held-out distillation loss")

    def trained(temperature, tag="", why=""):
      run_config = (config if temperature is None
                    else dataclasses.replace(config, temperature=temperature))
      training = Training(run_config, self.strategy, prepared["method"], convention.family,
                          prepared["pixel_scale"], prepared["x_fit"], prepared["z_fit"],
                          prepared["val"].x, prepared["z_val"], epochs, passes, patience,
                          self.folder, fingerprint, n_rows=len(prepared["fit"].x), tag=tag)
      norm = training.output_normalization
      if norm["on"]:
        self.log(f"output normalization: on ({norm['how']}): the student's params start "
                 "at the teacher's targets' location and spread on the training rows")
      elif config.output_normalization != "auto":
        self.log(f"output normalization: off ({norm['how']})")
      if training.annealing is not None:
        a = training.annealing
        if config.temperature == "choose":
          how_set = " (a candidate of temperature='choose')"
        elif config.temperature is not None:
          how_set = " (temperature set)"
        else:
          how_set = f" ({why})" if why else ""
        if a["initial"] == a["final"]:
          self.log(f"loss temperature: {a['initial']:g} throughout{how_set}")
        else:
          self.log(f"loss temperature: {a['initial']:g} for the first {a['start_epoch']} "
                   f"epochs, then down to {a['final']:g} by epoch {a['end_epoch']}"
                   f"{how_set}")
      return training, training.run()

    temperatures = choice_lib.candidates(config)
    default, why = choice_lib.default_temperature(prepared["method"], prepared["x_fit"])
    temperature_choice = None
    if temperatures is None:
      training, history = trained(default if config.temperature is None else None,
                                  why=why)
    else:       # check_choosable: images and an annealed method, so `default` is set
      training, history, temperature_choice = self._choose_temperature(
          prepared, convention, temperatures, default, trained)
    report = {"schedule": {"epochs": epochs, "passes_per_epoch": passes,
                           "patience": patience, "how": how,
                           "temperature": training.annealing,
                           "stopped_early": training.stopping.state.get("stopped_epoch")
                           is not None,
                           "best_epoch": training.stopping.state.get("best_epoch")},
              "history": history, "epochs_run": len(history.get("loss", [])),
              "resumed_from_epoch": training.start_epoch,
              "student_model": training.student_name,
              "student_keras": training.keras.version,
              "output_normalization": training.output_normalization,
              "temperature_choice": temperature_choice}
    return DistillResult(training.student, training.decomposition_family,
                         convention.family, prepared["teacher"], convention,
                         prepared["method"], report)

  def _choose_temperature(self, prepared, convention, temperatures, default, trained):
    """Trains a student at each temperature and keeps the one `td.job.choice` picks on
    corrupted validation images (`default`: the NLL guard's reference). Returns
    (training, history, the choice's record)."""
    config = self.config
    train = prepared["train"]
    rows = choice_lib.proxy_rows(len(train.x), config.validation_fraction, config.seed)
    x_in = train.x[rows]
    y_in = None if train.y is None else train.y[rows]
    x_out, scale, scale_by = choice_lib.proxy_images(x_in, prepared["pixel_scale"],
                                                     config.seed)
    ensemble = choice_lib.ensemble_view(prepared["teacher"], convention.family,
                                        prepared["z_train"][rows], x_out)
    self.log(f"temperature='choose': a student at each of "
             f"{', '.join(f'{t:g}' for t in temperatures)}, scored on {len(rows)} held-out "
             f"training images and {len(x_out)} corrupted copies of them (corrupted as "
             f"pixels in [0, {scale}]: {scale_by})")
    runs, scores = {}, {}
    for temperature in temperatures:
      training, history = trained(temperature, choice_lib.tag(temperature))
      scores[temperature] = choice_lib.score_student(
          training.student, training.decomposition_family, ensemble, x_in, x_out, y_in)
      runs[temperature] = (training, history)
      s = scores[temperature]
      self.log(f"temperature {temperature:g}: on the corrupted images AUROC "
               f"{s['student_auroc']:.3f} (ensemble {s['ensemble_auroc']:.3f}), mean MI "
               f"{np.exp(s['log_mean_ratio']):.2f}x the ensemble's, Spearman "
               + ("n/a" if s["ood_spearman"] is None else f"{s['ood_spearman']:.3f}")
               + f"; NLL gap {s['nll_gap']:+.4f} on the clean ones")
    kept = choice_lib.choose(scores, default)
    self.log(f"temperature {kept:g} kept (rule {choice_lib.RULE}: "
             f"{choice_lib.RULE_WORDS})")
    record = {"candidates": {f"{t:g}": s for t, s in scores.items()}, "chosen": kept,
              "rule": choice_lib.RULE, "default": default,
              "proxy": {"rows": int(len(rows)), "images": int(len(x_out)),
                        "corruptions": list(choice_lib.PROXY_CORRUPTIONS),
                        "severity": choice_lib.PROXY_SEVERITY,
                        "pixel_scale": scale, "pixel_scale_by": scale_by,
                        "nll_against": "labels" if y_in is not None else
                                       "the ensemble's predictions"}}
    return (*runs[kept], record)

  # -- stage 5 ---------------------------------------------------------------------------

  def evaluate(self, result, data, prepared, teacher, convention, skill, image):
    config = self.config
    evaluation = report_lib.evaluate(
        result.student, result.family, prepared["teacher"], convention.family,
        prepared["method"], prepared["test"], data["ood"],
        z_test=prepared["z_test"], z_ood=prepared["z_ood"],
        num_samples=config.num_samples, seed=config.seed, train_x=prepared["fit"].x)
    self.timings["total"] = time.perf_counter() - self.start
    sizes = {"train": int(len(prepared["fit"].x)), "extra_inputs": prepared["n_extra"],
             "early_stopping": int(len(prepared["val"].x)),
             "test": int(len(prepared["test"].x)),
             "ood": 0 if data["ood"] is None else int(len(data["ood"].x))}
    report = {
        "task": result.teacher_family.task, "method": result.method.name,
        "method_summary": result.method.summary,
        "student_model": result.report["student_model"],
        "student_keras": result.report["student_keras"],
        "strategy": {"name": config.strategy,
                     "replicas": int(self.strategy.num_replicas_in_sync)},
        "teacher_outputs_from": config.data_service or (
            "precomputed" if teacher.ensemble is None else "this process"),
        "family": report_lib.family_dict(result.teacher_family),
        "student_family": report_lib.family_dict(result.family),
        "conventions": {"task": {"value": result.teacher_family.task,
                                 "decided_by": self.task_by},
                        "outputs": convention.as_dict(), "image_scale": image,
                        "ensemble_check": skill},
        "data": {"train": prepared["train"].name, "test": prepared["test"].name,
                 "ood": None if data["ood"] is None else data["ood"].name,
                 "aux": None if data["aux"] is None else data["aux"].name,
                 "sizes": sizes, "extra_inputs": prepared["extra_kind"],
                 "image_inputs": bool(np.ndim(prepared["train"].x) == 4)},
        "num_members": int(prepared["z_train"].shape[1]),
        **evaluation["metrics"],
        "fidelity": evaluation["fidelity"],
        "ood": evaluation["ood"],
        "far": evaluation["far"],
        "speed": evaluation["speed"],
        "speedup": None if evaluation["speed"] is None else evaluation["speed"]["speedup"],
        **{k: result.report[k] for k in ("schedule", "history", "epochs_run",
                                          "resumed_from_epoch", "temperature_choice",
                                          "output_normalization")},
        "notes": list(self.notes),
    }
    report["verdict"] = report_lib.verdict(report)
    report.update(report_lib.header(config, self.timings))
    result.report = job_folder.strict_json(report)
    result._figures = evaluation["figures"]     # pylint: disable=protected-access
    return result


def _save(folder, result):
  """Writes the result's files into a claimed folder, the report last."""
  files = {"student": "student.keras", "saved_model": "saved_model",
           "report_json": "report.json", "report_md": "report.md"}
  config = result.report["config"]
  for name in ("report.json", "report.md"):      # no report beside a half-written student
    folder.remove(name)
  folder.write(files["student"], result.student.save)
  folder.write(files["saved_model"], lambda path: export_lib.export_saved_model(
      result.student, result.family, path, num_samples=config["num_samples"],
      seed=config["seed"]))
  figures = result._figures          # pylint: disable=protected-access
  if importlib.util.find_spec("matplotlib") is None:
    figures = {}
    result.report["notes"].append('figures not drawn: matplotlib is not installed '
                                  '(pip install "tfp_distill[studies]")')
  if figures.get("fidelity"):
    files["fidelity"] = "fidelity.png"
    folder.write(files["fidelity"], lambda path: report_lib.fidelity_figure(
        path, *figures["fidelity"]))
  if figures.get("roc"):
    files["roc"] = "roc.png"
    folder.write(files["roc"], lambda path: report_lib.roc_figure(path, figures["roc"]))
  result.report["files"] = files
  folder.write_text(files["report_md"], report_lib.format_markdown(result.report))
  folder.write_json(files["report_json"], result.report)
  return files
