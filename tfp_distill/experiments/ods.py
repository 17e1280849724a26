"""The output-diversified sampling study (`tfp-distill ods`): Nam et al.'s table [1] on
Fashion-MNIST, and ODS for the distribution students.

```none
Fashion-MNIST train ──► deep ensemble of M small CNNs (DeepEns-M; NLL of every size 1..M
                        │  gives the deep-ensemble-equivalent curve)
                        └─► teacher: its first E members (DeepEns-E)
BatchEnsemble-E students (td.models.batch_ensemble_cnn), member i <- teacher i:
  batchens      labels only, CE
  kd            (1 - a) CE(y, student_i(x)) + a T^2 KL(teacher_i(x) || student_i(x))
  kd-gaussian   the KL on x' = clip(x + s eps) (the CE stays on x: labels_on="clean")
  kd-ods        the KL on x' = ODS step toward teacher disagreement (td.perturb.ODS)
  kd-confods    the KL on x' = ConfODS step (td.perturb.ConfODS)
distribution students of the same teacher (one small CNN each), without / with ODS:
  dirichlet, dirichlet-ods    EnD^2 (td.losses.DirichletNLL, temperature annealed)
  gaussian, gaussian-ods      Gaussian over the K - 1 centred logits (EnsembleNLL)
every student: ACC, NLL, Brier, ECE, calibrated NLL, DEE on the test set; OOD AUROC of
MNIST and Animal-MNIST; mean +- std over seeds. The teacher's disagreement on clean vs
perturbed training images measures the diversity each perturbation creates.
```

The teacher runs inside the training step (`td.Distiller`): ODS needs its gradients, and
`scripts/ods_throughput.py` measured the train step twice as fast as tf.data for this.

#### References

[1]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021.
     arXiv:2110.14149.

[2]: Ashukha, Lyzhov, Molchanov, Vetrov. Pitfalls of In-Domain Uncertainty Estimation and
     Ensembling in Deep Learning. ICLR 2020. arXiv:2002.06470.
"""

import dataclasses
import hashlib
import itertools
import json
import os
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill import plots
from tfp_distill._keras import keras
from tfp_distill.experiments import _common
from tfp_distill.experiments import images as images_lib
# The seed-paired targets and the report's Markdown are ods_report's (this module runs
# the study); their names are importable from here as before.
from tfp_distill.experiments.ods_report import format_markdown
from tfp_distill.experiments.ods_report import labels_of
from tfp_distill.experiments.ods_report import paired_difference
from tfp_distill.experiments.ods_report import targets

__all__ = ["METHODS", "OdsConfig", "format_markdown", "paired_difference", "perturbation",
           "run_ods"]

#: Every method the study knows, in table order. A study method is a `td.methods` method
#: (`_REGISTRY`) and a perturbation of its inputs (`_PERTURBED`); the names stay as the
#: saved runs have them (a run's folder is keyed by its method name, `OdsConfig.run_key`).
METHODS = ("batchens", "kd", "kd-gaussian", "kd-ods", "kd-confods",
           "dirichlet", "dirichlet-ods", "gaussian", "gaussian-ods")

_BATCH_ENSEMBLE = ("batchens", "kd", "kd-gaussian", "kd-ods", "kd-confods")
_PERTURBED = {"kd-gaussian": "gaussian", "kd-ods": "ods", "kd-confods": "confods",
              "dirichlet-ods": "ods", "gaussian-ods": "ods"}
#: The registry method (loss, and head for the distribution students) of each study
#: method; "batchens" trains on labels only. The KD students keep a BatchEnsemble of E
#: members as in Nam et al. (the registry's "kd" student is one Categorical head): only
#: their loss comes from the registry.
_REGISTRY = {"kd": "kd", "kd-gaussian": "kd", "kd-ods": "kd", "kd-confods": "kd",
             "dirichlet": "end2", "dirichlet-ods": "end2",
             "gaussian": "gaussian-logits", "gaussian-ods": "gaussian-logits"}


@dataclasses.dataclass(frozen=True)
class OdsConfig:
  """Configuration of the ODS study (defaults: the Fashion-MNIST run on 2 CPU cores).

  Attributes:
    dataset, data_dir, num_train, num_test: as `images.ImagesConfig`.
    num_members: int M, size of the deep ensemble trained (DEE is measured up to M).
    num_teachers: int E <= M, the teacher is the first E members and the BatchEnsemble
      students have E members.
    filters, dense_units: the small CNN of every member and student.
    member_epochs, member_batch_size, learning_rate: member training (Adam).
    student_epochs, student_batch_size: student training (Adam, same learning rate).
    kd_temperature, kd_alpha: T and a of the KD loss (1 - a) CE + a T^2 KL (T = 1 as
      in the run behind Nam et al.'s published CIFAR-100 numbers [1]).
    step_size: ODS / ConfODS step (per-example L2 norm step_size * sqrt(D), so an RMS
      change of step_size per pixel; 1/255 is their code's default [1]).
    labels_on: "clean" (CE on the clean batch, KL on the perturbed one, as in their code)
      or "perturbed" (both on the perturbed batch); see `td.Distiller`.
    ods_temperature: T of the teacher's softmax in ODS.
    gaussian_scale: standard deviation of the Gaussian-noise baseline (the same RMS change
      per pixel as a full ODS step, before clipping).
    initial_temperature, anneal_start, anneal_end, smoothing: EnD^2 schedule (as
      `ImagesConfig`).
    num_samples: Monte Carlo samples for the Gaussian-over-logits student.
    methods: tuple of names in `METHODS`.
    seeds: tuple of ints, one trained student per method and seed.
    diversity_step_sizes: step sizes (and Gaussian scales) at which the teacher's
      disagreement is measured.
    diversity_size: training images used for the disagreement measurement.
    ood_sets: tuple of "mnist", "animal_mnist".
    ensemble_seed: int, seed of the deep ensemble.
    verbose: int, 0 silent, 1 progress bars.
  """

  dataset: str = "fashion_mnist"
  data_dir: str = None
  num_train: int = None
  num_test: int = None
  num_members: int = 8
  num_teachers: int = 4
  filters: tuple = (16, 32)
  dense_units: int = 64
  member_epochs: int = 10
  member_batch_size: int = 128
  learning_rate: float = 1e-3
  student_epochs: int = 8
  student_batch_size: int = 128
  kd_temperature: float = 1.0
  kd_alpha: float = 0.9
  step_size: float = 1. / 255.
  labels_on: str = "clean"
  ods_temperature: float = 1.0
  gaussian_scale: float = 1. / 255.
  initial_temperature: float = 2.5
  anneal_start: int = 2
  anneal_end: int = 6
  smoothing: float = 1e-4
  num_samples: int = 100
  methods: tuple = METHODS
  seeds: tuple = (0, 1)
  diversity_step_sizes: tuple = (1. / 255., 0.02, 0.05, 0.1, 0.2)
  diversity_size: int = 2000
  ood_sets: tuple = ("mnist", "animal_mnist")
  ensemble_seed: int = 0
  verbose: int = 1

  def __post_init__(self):
    unknown = set(self.methods) - set(METHODS)
    if unknown or not self.methods:
      raise ValueError(f"Unknown methods {sorted(unknown)}; known: {list(METHODS)}.")
    if not 2 <= self.num_teachers <= self.num_members:
      raise ValueError(f"Need 2 <= num_teachers <= num_members, got {self.num_teachers} "
                       f"and {self.num_members}.")
    if not self.seeds:
      raise ValueError("seeds must name at least one seed.")
    if self.labels_on not in ("clean", "perturbed"):
      raise ValueError(f'labels_on must be "clean" or "perturbed", got {self.labels_on!r}.')

  @classmethod
  def fast(cls, **overrides):
    """A tiny configuration for smoke tests (about a minute on 2 CPU cores)."""
    config = dict(num_train=512, num_test=256, num_members=3, num_teachers=2,
                  filters=(4, 8), dense_units=16, member_epochs=1, student_epochs=2,
                  anneal_start=0, anneal_end=1, num_samples=10, seeds=(0, 1),
                  diversity_step_sizes=(0.05, 0.2), diversity_size=128, verbose=0)
    config.update(overrides)
    return cls(**config)

  def images_config(self):
    """The `ImagesConfig` whose ensemble cache this study shares."""
    return images_lib.ImagesConfig(
        dataset=self.dataset, data_dir=self.data_dir, num_train=self.num_train,
        num_test=self.num_test, num_members=self.num_members, filters=self.filters,
        dense_units=self.dense_units, member_epochs=self.member_epochs,
        member_batch_size=self.member_batch_size, learning_rate=self.learning_rate,
        seed=self.ensemble_seed, verbose=self.verbose)

  def run_key(self, method):
    """Hash of every setting a trained `method` student depends on, and no other.

    A run of "kd" is reused when only the ODS step changes, a run of "kd-ods" when only
    the Gaussian scale changes, and so on; seeds, methods, evaluation settings and
    verbosity never enter.
    """
    if method not in METHODS:
      raise ValueError(f"Unknown method {method!r}; known: {list(METHODS)}.")
    values = dataclasses.asdict(self)
    unused = {"methods", "seeds", "diversity_step_sizes", "diversity_size", "ood_sets",
              "verbose", "num_test", "data_dir", "num_samples"}
    kind = _PERTURBED.get(method)
    if kind is None:
      unused |= {"step_size", "ods_temperature", "gaussian_scale", "labels_on"}
    elif kind == "gaussian":
      unused |= {"step_size", "ods_temperature"}
    else:
      unused.add("gaussian_scale")
    if method not in _BATCH_ENSEMBLE or method == "batchens":
      unused |= {"kd_temperature", "kd_alpha", "labels_on"}   # no KD loss, or no labels
    if not method.startswith("dirichlet"):
      unused |= {"initial_temperature", "anneal_start", "anneal_end", "smoothing"}
    for field in unused:
      values.pop(field)
    values["method"] = method
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()
                        ).hexdigest()[:10]

  def eval_key(self, curve_size):
    """Hash of the evaluation settings a saved run's metrics depend on."""
    values = [self.num_test, self.num_samples, list(self.ood_sets), int(curve_size)]
    return hashlib.sha1(json.dumps(values, default=str).encode()).hexdigest()[:10]


def perturbation(kind, config, step_size=None):
  """The perturbation a method trains on: None, Gaussian, ODS or ConfODS (clip [0, 1])."""
  step = config.step_size if step_size is None else step_size
  if kind is None:
    return None
  if kind == "gaussian":
    return td.perturb.Gaussian(config.gaussian_scale if step_size is None else step_size)
  cls = {"ods": td.perturb.ODS, "confods": td.perturb.ConfODS}[kind]
  return cls(step, temperature=config.ods_temperature)


def _student(method, config, seed, family):
  """(model, `_common.RegistryStudent` or None for plain label training, callbacks, uses
  labels)."""
  k = family.num_classes
  init = 10 ** 6 + 1000 * seed
  name = method.replace("-", "_")
  if method == "batchens":
    return (td.models.batch_ensemble_cnn(
        (28, 28, 1), k, config.num_teachers, filters=config.filters,
        dense_units=config.dense_units, seed=init, name=name), None, [], True)
  if method in _BATCH_ENSEMBLE:
    spec = _common.registry_student(_REGISTRY[method], "classification", family,
                                    temperature=config.kd_temperature,
                                    alpha=config.kd_alpha)
    model = td.models.batch_ensemble_cnn(
        (28, 28, 1), k, config.num_teachers, filters=config.filters,
        dense_units=config.dense_units, seed=init, name=name)
    return model, spec, [], True
  if _REGISTRY[method] == "end2":
    spec = _common.registry_student("end2", "classification", family,
                                    temperature=config.initial_temperature,
                                    smoothing=config.smoothing)
    callbacks = [spec.annealing(config.anneal_start, config.anneal_end,
                                config.initial_temperature)]
  else:
    spec = _common.registry_student(_REGISTRY[method], "classification", family)
    callbacks = []
  model = td.models.small_cnn((28, 28, 1), spec.params_size, head=spec.head,
                              filters=config.filters, dense_units=config.dense_units,
                              seed=init, name=name)
  return model, spec, callbacks, False


def _train(method, config, seed, family, teacher, x, y):
  """Trains one student; returns (student, per-epoch training losses)."""
  student, spec, callbacks, labelled = _student(method, config, seed, family)
  data = tf.data.Dataset.from_tensor_slices((x, y) if labelled else x)
  data = (data.shuffle(len(x), seed=seed + 7, reshuffle_each_iteration=True)
          .batch(config.student_batch_size).prefetch(tf.data.AUTOTUNE))
  optimizer = keras.optimizers.Adam(config.learning_rate)
  if spec is None:
    student.compile(optimizer=optimizer, loss=td.losses.member_cross_entropy)
    model = student
  else:
    model = td.Distiller(student, teacher, spec.loss,
                         perturbation=perturbation(_PERTURBED.get(method), config),
                         seed=seed, labels_on=config.labels_on)
    model.compile(optimizer=optimizer)
  bar = td.callbacks.ProgressBar(f"{method} (seed {seed})", disable=not config.verbose)
  history = model.fit(data, epochs=config.student_epochs, verbose=0,
                      callbacks=callbacks + [bar])
  losses = [float(v) for v in history.history["loss"]]
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(f"{method} (seed {seed}): the training loss became "
                             f"non-finite ({losses}).")
  return student, losses


def _predictor(method, student, family, config):
  """x -> dict of NumPy arrays: prediction [n, K], total [n], epistemic [n]. A
  BatchEnsemble is decomposed as the ensemble of its members; a distribution student
  with the family its registry method names."""
  decomposition = (None if method in _BATCH_ENSEMBLE else
                   td.methods.get(_REGISTRY[method], "classification")
                   .decomposition_family(family))

  def predict(x):
    out = student(x, training=False)
    if decomposition is None:
      u = td.decompose_ensemble(out, family)
    else:
      u = td.decompose(out, decomposition, num_samples=config.num_samples, seed=0)
    return {k: u[k].numpy() for k in ("prediction", "total", "epistemic")}
  return predict


def _log(p):
  return np.log(np.clip(np.asarray(p, np.float64), 1e-30, 1.))


def _evaluate(predict, x_test, y_test, ood, ensemble_curve, seed):
  """Clean metrics (ACC, NLL, Brier, ECE, calibrated NLL, DEE) and OOD AUROC."""
  clean = _common.batched(predict, x_test)
  result = _common.classification_metrics(y_test, clean["prediction"], quantile_ece=True)
  result["calibrated_nll"] = td.metrics.cross_validated_nll(
      y_test, _log(clean["prediction"]), seed=seed)
  result["dee"] = td.metrics.deep_ensemble_equivalent(result["calibrated_nll"],
                                                      ensemble_curve)
  result["mean_mutual_information"] = float(np.mean(clean["epistemic"]))
  for set_name, x_ood in ood.items():
    out = _common.batched(predict, x_ood)
    for score, key in (("total", "total"), ("mi", "epistemic")):
      result[f"ood_auroc_{score}_{set_name}"] = float(
          td.metrics.auroc(np.r_[np.zeros(len(x_test)), np.ones(len(x_ood))],
                           np.r_[clean[key], out[key]]))
  return result


def _deep_ensemble_curve(member_logits, labels, config):
  """Metrics of deep ensembles of sizes 1..M (mean over up to 8 member subsets per size)."""
  m = member_logits.shape[1]
  shifted = member_logits - member_logits.max(-1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))       # [n, M, K]
  rng = np.random.default_rng(config.ensemble_seed + 5)
  curve = []
  for size in range(1, m + 1):
    subsets = list(itertools.combinations(range(m), size))
    if len(subsets) > 8:
      subsets = [subsets[i] for i in rng.choice(len(subsets), 8, replace=False)]
    rows = []
    for subset in subsets:
      probs = np.exp(log_p[:, list(subset)]).mean(axis=1)
      row = _common.classification_metrics(labels, probs, quantile_ece=True)
      row["calibrated_nll"] = td.metrics.cross_validated_nll(labels, _log(probs),
                                                            seed=config.ensemble_seed)
      rows.append(row)
    curve.append({"size": size, "subsets": len(subsets),
                  **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}})
  return curve


def _diversity(teacher, x, config, family):
  """The teacher's disagreement on clean and perturbed images, per perturbation and step.

  Returns dict kind -> list of {"step_size", "mutual_information", "disagreement",
  "rms_change"}: the mean mutual information of the teacher's members, the fraction of
  member pairs whose top classes differ, and the RMS change per pixel of x' - x.
  """
  def measure(x_new):
    z = teacher.predict_targets(x_new, batch_size=500)
    u = td.decompose_ensemble(z, family)
    top = z.argmax(-1)                                           # [n, E]
    e = top.shape[1]
    pairs = [(i, j) for i in range(e) for j in range(i + 1, e)]
    differ = np.mean([np.mean(top[:, i] != top[:, j]) for i, j in pairs])
    change = np.sqrt(np.mean(np.square(x_new - x)))
    return {"mutual_information": float(np.mean(u["epistemic"].numpy())),
            "disagreement": float(differ), "rms_change": float(change)}

  out = {"clean": [{"step_size": 0.0, **measure(x)}]}
  for kind in ("gaussian", "ods", "confods"):
    out[kind] = []
    for step in config.diversity_step_sizes:
      p = perturbation(kind, config, step_size=step)
      parts = [p(tf.constant(x[i:i + 500]), teacher,
                 tf.constant([config.ensemble_seed, i], tf.int64)).numpy()
               for i in range(0, len(x), 500)]
      out[kind].append({"step_size": float(step), **measure(np.concatenate(parts))})
  return out


def _summary(runs, methods):
  """method -> metric -> (mean, std over seeds, n)."""
  out = {}
  for method in methods:
    rows = [r["metrics"] for r in runs.get(method, [])]
    if not rows:
      continue
    out[method] = {}
    for key in rows[0]:
      values = np.array([r[key] for r in rows], np.float64)
      spread = (float(np.std(values, ddof=1)) if len(values) > 1 and np.all(
          np.isfinite(values)) else float("nan"))
      out[method][key] = (float(np.mean(values)), spread, len(values))
  return out


def run_ods(out_dir, config=None):
  """Runs the ODS study and writes its report folder.

  Writes report.json, report.md, methods.png (ACC, NLL, calibrated NLL, DEE per method,
  mean +- std over seeds), diversity.png (the teacher's disagreement against the step
  size), the deep ensemble (ensemble_<key>/, shared with `tfp-distill images` settings of
  the same ensemble), and one folder per trained student run,
  runs/<method>_<run key>_seed<seed>/ (the student's .keras file and its metrics; a rerun
  with the same settings of that method reuses the student, and its metrics too unless
  the evaluation settings changed).

  Args:
    out_dir: str, report folder (created).
    config: `OdsConfig` (default: the full configuration).

  Returns:
    dict, the report (as in report.json).

  Raises:
    FileNotFoundError: a data set is not installed (the message says how to install it).
    FloatingPointError: a training loss became NaN or Inf.
  """
  config = config or OdsConfig()
  os.makedirs(out_dir, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  family = td.families.CategoricalLogits(10)
  images_config = config.images_config()
  (x_train, y_train, x_test, y_test), ood, ensemble, reused = _common.image_study_inputs(
      images_config, config.ood_sets, family, out_dir, timings)
  teacher = td.Ensemble(ensemble.members[:config.num_teachers], family=family)

  t = time.perf_counter()
  curve = _deep_ensemble_curve(ensemble.predict_targets(x_test, batch_size=2000), y_test,
                               config)
  teachers = {f"DeepEns-{row['size']}": {k: v for k, v in row.items()
                                         if k not in ("size", "subsets")}
              for row in curve if row["size"] in (1, config.num_teachers, len(curve))}
  timings["deep_ensemble_curve"] = time.perf_counter() - t

  t = time.perf_counter()
  diversity = _diversity(teacher, x_train[:config.diversity_size], config, family)
  timings["diversity"] = time.perf_counter() - t

  # Wall time of this call's students (training the new ones, evaluating, loading the
  # rest); the training time of every run in the report goes in the report apart.
  t = time.perf_counter()
  runs = _runs(out_dir, config, family, teacher, (x_train, y_train), (x_test, y_test), ood,
               [row["calibrated_nll"] for row in curve])
  timings["students"] = time.perf_counter() - t

  summary = _summary(runs, config.methods)
  files = {"report_json": "report.json", "report_md": "report.md",
           "methods": "methods.png", "diversity": "diversity.png"}
  t = time.perf_counter()
  _figures(out_dir, files, config, summary, teachers, diversity)
  timings["figures"] = time.perf_counter() - t
  timings["total"] = time.perf_counter() - start

  report = {
      **td.report.header(config, timings),
      "methods": {m: _REGISTRY.get(m) for m in config.methods},
      "ensemble_reused": reused,
      "sizes": {"train": int(len(x_train)), "test": int(len(x_test)),
                **{f"ood_{name}": int(len(x)) for name, x in ood.items()}},
      "deep_ensemble_curve": curve,
      "teachers": teachers,
      "diversity": diversity,
      "summary": summary,
      "runs": runs,
      "targets": targets(runs, config.num_members),
      "train_seconds_all_runs": sum(r["train_seconds"] for rs in runs.values() for r in rs),
      "files": files,
  }
  _common.write_report(out_dir, files, report, format_markdown(report))
  return report


def _runs(out_dir, config, family, teacher, train, test, ood, ensemble_nlls):
  """Every (seed, method) student: its run.json read back (runs/<method>_<run key>_seed<s>/)
  when trained and evaluated with these settings, re-evaluated when only the evaluation
  settings changed, else trained, evaluated and saved. Returns {method: [run, ...]}."""
  runs = {}
  eval_key = config.eval_key(len(ensemble_nlls))
  for seed in config.seeds:
    for method in config.methods:
      folder = os.path.join(out_dir, "runs",
                            f"{method}_{config.run_key(method)}_seed{seed}")
      path = os.path.join(folder, "run.json")
      if os.path.exists(path):
        with open(path) as f:
          run = json.load(f)
        if run.get("eval_key") == eval_key:
          runs.setdefault(method, []).append(run)
          continue
        # Trained with the same settings, evaluated with others: evaluate again.
        student = keras.models.load_model(os.path.join(folder, "student.keras"),
                                          compile=False)
      else:
        tic = time.perf_counter()
        student, losses = _train(method, config, seed, family, teacher, *train)
        run = {"method": method, "seed": seed, "training_loss": losses,
               "train_seconds": time.perf_counter() - tic}
        os.makedirs(folder, exist_ok=True)
        student.save(os.path.join(folder, "student.keras"))
      run["metrics"] = _evaluate(_predictor(method, student, family, config), *test, ood,
                                 ensemble_nlls, seed)
      run["eval_key"] = eval_key
      with open(path, "w") as f:
        json.dump(run, f, indent=2)
      runs.setdefault(method, []).append(run)
  return runs


def _figures(out_dir, files, config, summary, teachers, diversity):
  """methods.png (ACC, NLL, calibrated NLL, DEE per method) and diversity.png."""
  labels = labels_of(config.num_teachers)
  panels = {metric: {labels[m]: summary[m][key][:2] for m in summary}
            for metric, key in (("accuracy", "accuracy"), ("NLL", "nll"),
                                ("calibrated NLL", "calibrated_nll"), ("DEE", "dee"))}
  m = config.num_members   # a DEE beyond the measured curve is drawn at M
  panels["DEE"] = {k: (min(v[0], m), v[1]) for k, v in panels["DEE"].items()}
  teacher_name = f"DeepEns-{config.num_teachers}"
  reference = {"accuracy": {teacher_name: teachers[teacher_name]["accuracy"]},
               "NLL": {teacher_name: teachers[teacher_name]["nll"]},
               "calibrated NLL": {teacher_name: teachers[teacher_name]["calibrated_nll"]},
               "DEE": {teacher_name: float(config.num_teachers)}}
  plots.plot_method_bars(os.path.join(out_dir, files["methods"]), panels, reference,
                         title=f"{config.dataset}: students of {teacher_name}, mean +- std "
                               f"over {len(config.seeds)} seeds (a DEE beyond {m} is "
                               f"drawn at {m})")
  line_panels = {}
  for quantity in ("mutual_information", "disagreement"):
    line_panels[f"teacher {quantity.replace('_', ' ')}"] = {
        kind: ([r["step_size"] for r in rows], [r[quantity] for r in rows])
        for kind, rows in diversity.items() if kind != "clean"}
    clean = diversity["clean"][0][quantity]
    steps = list(config.diversity_step_sizes)
    line_panels[f"teacher {quantity.replace('_', ' ')}"]["clean"] = (
        steps, [clean] * len(steps))
  plots.plot_lines(os.path.join(out_dir, files["diversity"]), line_panels,
                   "step size (Gaussian: noise scale)",
                   title=f"{teacher_name} on {config.diversity_size} training images")
