"""`tfp-distill bench`: every speed ratio measured side by side, in one run, on this machine.

```none
suite       what is timed (each figure: min and median of `repeats` timed calls, after a
            warm-up call that traces and compiles)
inference   the member loop (eager, as a new user writes it) vs td.Ensemble vs the
            stacked ensemble vs the student, all through td.predict_uncertainty (one
            call on all N inputs: batch_size=N), for MLP, small-CNN and CIFAR ResNet-18
            members, M in {5, 10, 20}; the student also by hand (eager decompose, a
            hand-written tf.function, the exported SavedModel), each on the same N
decompose   the decomposition graphs alone: closed form, Monte Carlo (T = 10, 100, 1000)
            and quadrature, eager vs tf.function vs XLA vs a NumPy reference; peak memory
            of each, measured in a fresh process
distill     distillation epochs: teacher in the train step (td.Distiller, with and
            without XLA), teacher in tf.data (td.teacher_targets), the sharded target
            cache, and targets precomputed in memory
train       ensemble training: vectorized (stacked members) vs one graph of separate
            members vs compiling and fitting each member in turn
```

Variants compared with each other are timed interleaved (each repeat runs every variant
once), so a transient slowdown of the machine touches all of them alike. Ratios are taken
between figures of the same run (min over min). `targets` checks the
figures against the goals of the speed issue and says "met" or "not met"; nothing is
tuned to them.
"""

import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill.experiments import _common
from tfp_distill.experiments.bench_report import format_markdown
from tfp_distill.experiments.bench_report import plot_ratios
from tfp_distill.experiments.bench_report import targets

__all__ = ["BenchConfig", "SUITES", "format_markdown", "run_bench"]

SUITES = ("inference", "decompose", "distill", "train")


@dataclasses.dataclass
class BenchConfig:
  """What to measure (defaults: the full benchmark, ~15-25 minutes on 2 CPU cores).

  Attributes:
    suites: tuple of suite names (see `SUITES`).
    repeats: int, timed calls per figure (min and median are reported).
    members: tuple of ensemble sizes for the inference suite.
    backbones: tuple of "mlp", "small_cnn", "resnet18" for the inference suite.
    inference_batch: dict backbone -> number of inputs per prediction call.
    mc_samples: tuple of Monte Carlo sample counts T for the Gaussian-over-logits head.
    decompose_batch: int, examples in the decomposition-only suite.
    memory: bool, measure the decomposition graphs' peak memory in fresh processes.
    distill_examples: int, distillation inputs per epoch (distill suite).
    train_uci: dict, the UCI-sized ensemble-training case.
    train_cnn: dict, the CNN ensemble-training case.
    seed: int.
  """

  suites: tuple = SUITES
  repeats: int = 5
  members: tuple = (5, 10, 20)
  backbones: tuple = ("mlp", "small_cnn", "resnet18")
  inference_batch: dict = dataclasses.field(
      default_factory=lambda: {"mlp": 2048, "small_cnn": 2048, "resnet18": 32})
  mc_samples: tuple = (10, 100, 1000)
  decompose_batch: int = 2048
  memory: bool = True
  distill_examples: int = 10_000
  train_uci: dict = dataclasses.field(default_factory=lambda: {
      "num_members": 10, "n": 400, "features": 8, "hidden": 50, "epochs": 40,
      "batch_size": 100})
  train_cnn: dict = dataclasses.field(default_factory=lambda: {
      "num_members": 5, "n": 4096, "filters": (16, 32), "dense_units": 64, "epochs": 1,
      "batch_size": 128})
  seed: int = 0

  @classmethod
  def fast(cls, **overrides):
    """Seconds, tiny sizes: for smoke tests, not for results."""
    config = dict(repeats=1, members=(2,), backbones=("mlp", "small_cnn"),
                  inference_batch={"mlp": 64, "small_cnn": 16, "resnet18": 4},
                  mc_samples=(10,), decompose_batch=64, memory=False,
                  distill_examples=256,
                  train_uci={"num_members": 2, "n": 64, "features": 3, "hidden": 8,
                             "epochs": 2, "batch_size": 32},
                  train_cnn={"num_members": 2, "n": 64, "filters": (4, 8),
                             "dense_units": 8, "epochs": 1, "batch_size": 32})
    config.update(overrides)
    return cls(**config)


# ----------------------------------------------------------------------------------------
# Timing.
# ----------------------------------------------------------------------------------------


def _block(out):
  """Waits for a result: NumPy-converts every tensor in it."""
  for value in tf.nest.flatten(out):
    if tf.is_tensor(value):
      value.numpy()
  return out


def _time_group(fns, repeats, warmup=1, min_sample_s=0.05):
  """{name: {"min_s", "median_s", "times_s", "calls_per_sample"}} per callable.

  After `warmup` untimed calls, each callable is timed `repeats` times, interleaved (each
  repeat times every callable once, so a transient slowdown of the machine touches all of
  them alike). A sample of a fast callable times a loop of calls lasting at least
  `min_sample_s` and reports the time per call: sub-millisecond figures are not one
  timer reading each.
  """
  inner = {}
  for name, fn in fns.items():
    for _ in range(warmup):
      _block(fn())
    start = time.perf_counter()
    _block(fn())
    inner[name] = max(1, int(np.ceil(min_sample_s / max(time.perf_counter() - start,
                                                        1e-6))))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(inner[name]):
        _block(fn())
      times[name].append((time.perf_counter() - start) / inner[name])
  return {name: {"min_s": float(min(t)), "median_s": float(np.median(t)),
                 "times_s": [float(v) for v in t], "calls_per_sample": inner[name]}
          for name, t in times.items()}


def _ratio(slow, fast):
  """slow / fast by the min of each (a speed-up when > 1)."""
  return float(slow["min_s"] / fast["min_s"])


def machine():
  """What the figures were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count()
  import tensorflow_probability as tfp
  return {"cpu": cpu, "cores": cores,
          "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
          "python": platform.python_version(), "tensorflow": tf.__version__,
          "tensorflow_probability": tfp.__version__, "tfp_distill": td.__version__,
          "date": datetime.date.today().isoformat()}


# ----------------------------------------------------------------------------------------
# Inference.
# ----------------------------------------------------------------------------------------


def _backbone(name, seed, output_size=None, head=None, keras_version=None):
  kwargs = {"head": head, "seed": seed, "keras_version": keras_version}
  if name == "mlp":
    return td.models.mlp((8,), [50], output_size or 2, **kwargs)
  if name == "small_cnn":
    return td.models.small_cnn(output_size=output_size or 10, **kwargs)
  if name == "resnet18":
    return td.models.resnet18_cifar(output_size=output_size or 10, **kwargs)
  raise ValueError(f"Unknown backbone {name!r}.")


def _inputs(name, n, seed):
  rng = np.random.default_rng(seed)
  if name == "mlp":
    return rng.normal(size=(n, 8)).astype(np.float32)
  shape = (28, 28, 1) if name == "small_cnn" else (32, 32, 3)
  return rng.uniform(size=(n,) + shape).astype(np.float32)


#: The timed students: label -> `td.methods` name. The labels are the report's keys (its
#: targets and docs/bench read them), naming a method and its decomposition settings.
_REGRESSION_STUDENT = "mvn"
_CLASSIFICATION_STUDENTS = {"dirichlet": "end2",
                            "gaussian_logits": "gaussian-logits-diagonal"}


def _students(name, family, mc_samples):
  """{label: (student, the family td.decompose takes, predict_uncertainty kwargs)} for one
  backbone: the registry's students (`td.methods`)."""
  if name == "mlp":
    spec = _common.registry_student(_REGRESSION_STUDENT, "regression", family)
    student = td.models.mlp((8,), [75], spec.params_size, head=spec.head, seed=100)
    spec3 = _common.registry_student(_REGRESSION_STUDENT, "regression", family,
                                     keras_version=3)
    student3 = td.models.mlp((8,), [75], spec3.params_size, head=spec3.head, seed=100)
    return {"full_covariance_quadrature": (student, spec.family, {}),
            "full_covariance_quadrature_keras3": (student3, spec3.family, {}),
            "full_covariance_monte_carlo_100": (student, spec.family, {
                "method": "monte_carlo", "num_samples": 100})}
  out = {}
  for (label, method), seed in zip(_CLASSIFICATION_STUDENTS.items(), (100, 101)):
    spec = _common.registry_student(method, "classification", family)
    student = _backbone(name, seed, spec.params_size, spec.head)
    if label == "dirichlet":
      out[label] = (student, spec.family, {})
      # The same student in Keras 3 (td.keras3's head; the same architecture).
      spec3 = _common.registry_student(method, "classification", family, keras_version=3)
      out[f"{label}_keras3"] = (_backbone(name, seed, spec3.params_size, spec3.head),
                                spec3.family, {})
      continue
    for t in (mc_samples if name != "resnet18" else (100,)):
      out[f"{label}_{t}"] = (student, spec.family, {"num_samples": t})
  return out


def _hand_paths(student, family, x, kwargs, tmp):
  """The same student through eager calls, a hand-written tf.function and its exported
  SavedModel: {name: callable}."""
  settings = {k: v for k, v in kwargs.items() if k in ("num_samples", "method")}
  hand = tf.function(lambda t: td.decompose(student(t, training=False), family, **settings))
  x_t = tf.constant(x)
  path = td.export_saved_model(student, family, os.path.join(tmp, "student"), **settings)
  served = tf.saved_model.load(path).signatures["serving_default"]
  return {
      "student_eager_decompose": lambda: td.decompose(student(x), family, **settings),
      "student_hand_tf_function": lambda: hand(x_t),
      "student_saved_model": lambda: served(x=x_t),
  }


def run_inference(config, log=print):
  """The inference suite; returns {backbone: {...}}."""
  results = {}
  for name in config.backbones:
    family = (td.families.HeteroscedasticNormal() if name == "mlp"
              else td.families.CategoricalLogits(10))
    n = config.inference_batch[name]
    x = _inputs(name, n, config.seed)
    entry = {"batch": n, "family": repr(family), "students": {}, "ensembles": {}}
    with tempfile.TemporaryDirectory() as tmp:
      students = _students(name, family, config.mc_samples)
      for label, (student, student_family, kwargs) in students.items():
        fns = {"predict_uncertainty": lambda s=student, f=student_family, k=kwargs:
               td.predict_uncertainty(s, f, x, batch_size=n, **k)}
        if label in ("dirichlet", "gaussian_logits_100", "full_covariance_quadrature"):
          fns.update(_hand_paths(student, student_family, x, kwargs, tmp))
        timings = _time_group(fns, config.repeats)
        entry["students"][label] = timings
        log(f"inference {name} student {label}: "
            f"{timings['predict_uncertainty']['min_s'] * 1e3:.1f} ms")
    for m in config.members:
      members = [_backbone(name, config.seed + 1000 * i) for i in range(m)]
      ens = td.Ensemble(members, family=family)
      stacked = td.Ensemble(members, family=family, vectorize=True)
      loop = lambda ms=members: td.decompose_ensemble(
          tf.stack([member(x) for member in ms], axis=1), family)
      timings = _time_group({
          "member_loop": loop,
          "ensemble_eager_decompose": lambda e=ens: td.decompose_ensemble(e(x), family),
          "ensemble": lambda e=ens: td.predict_uncertainty(e, family, x, batch_size=n),
          "ensemble_stacked": lambda e=stacked: td.predict_uncertainty(e, family, x,
                                                                       batch_size=n),
      }, config.repeats)
      speedups = {label: _ratio(timings["ensemble"], s["predict_uncertainty"])
                  for label, s in entry["students"].items()}
      entry["ensembles"][str(m)] = {
          "timings": timings, "student_speedup": speedups,
          "ensemble_vs_loop": _ratio(timings["member_loop"], timings["ensemble"]),
          "stacked_vs_loop": _ratio(timings["member_loop"], timings["ensemble_stacked"]),
          "stacked_vs_ensemble": _ratio(timings["ensemble"], timings["ensemble_stacked"])}
      log(f"inference {name} M={m}: loop {timings['member_loop']['min_s'] * 1e3:.0f} ms, "
          f"ensemble {timings['ensemble']['min_s'] * 1e3:.0f} ms, stacked "
          f"{timings['ensemble_stacked']['min_s'] * 1e3:.0f} ms; student speed-ups "
          + ", ".join(f"{k} {v:.1f}x" for k, v in speedups.items()))
    for label, timings in entry["students"].items():
      if "student_hand_tf_function" in timings:
        pu = timings["predict_uncertainty"]
        timings["overhead_vs_hand_tf_function"] = _ratio(pu, timings[
            "student_hand_tf_function"]) - 1.0
        timings["overhead_vs_saved_model"] = _ratio(pu, timings["student_saved_model"]) - 1.0
    results[name] = entry
  return results


# ----------------------------------------------------------------------------------------
# Decomposition graphs alone.
# ----------------------------------------------------------------------------------------


def _numpy_logit_normal(loc, scale, num_samples, rng):
  """NumPy reference: draws, softmax and the entropy terms, float32 like the graphs."""
  eps = rng.standard_normal((num_samples,) + loc.shape).astype(np.float32)
  logits = loc + scale * eps
  logits = logits - logits.max(-1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  p = np.exp(log_p)
  prediction = p.mean(0)
  total = -(prediction * np.log(prediction)).sum(-1)
  aleatoric = -(p * log_p).sum(-1).mean(0)
  return prediction, total, aleatoric, total - aleatoric


def _numpy_dirichlet(alpha):
  from scipy import special
  alpha_0 = alpha.sum(-1, keepdims=True)
  prediction = alpha / alpha_0
  total = -(prediction * np.log(prediction)).sum(-1)
  aleatoric = -(prediction * (special.digamma(alpha + 1.)
                              - special.digamma(alpha_0 + 1.))).sum(-1)
  return prediction, total, aleatoric, total - aleatoric


def _numpy_regression_mc(loc, scale, num_samples, rng, min_variance=1e-3):
  eps = rng.standard_normal((num_samples,) + loc.shape).astype(np.float32)
  z = loc + scale * eps
  mu, rho = z[..., 0], z[..., 1]
  aleatoric = (np.logaddexp(0, rho) + min_variance).mean(0)
  return mu.mean(0), aleatoric + mu.var(0), aleatoric, mu.var(0)


def _decompose_cases(config):
  """{case: (make inputs, variants)}; a variant maps inputs to a result."""
  b, k = config.decompose_batch, 10
  classes = td.families.CategoricalLogits(k)
  regression = td.families.HeteroscedasticNormal()

  def gaussian_inputs():
    rng = np.random.default_rng(config.seed)
    loc = rng.normal(size=(b, k)).astype(np.float32)
    scale = (0.5 + rng.uniform(size=(b, k))).astype(np.float32)
    return {"dist": td.heads.NormalHead.new(np.concatenate(
        [loc, np.log(np.expm1(scale - 1e-3))], -1), k), "loc": loc, "scale": scale}

  def dirichlet_inputs():
    rng = np.random.default_rng(config.seed)
    logits = rng.normal(size=(b, k)).astype(np.float32)
    dist = td.heads.DirichletHead.new(logits, k)
    return {"dist": dist, "alpha": dist.concentration.numpy()}

  def regression_inputs():
    rng = np.random.default_rng(config.seed)
    params = rng.normal(size=(b, 4)).astype(np.float32)
    dist = td.heads.NormalHead.new(params, 2)
    return {"dist": dist, "loc": dist.mean().numpy(), "scale": dist.stddev().numpy()}

  def graph_variants(family, **kwargs):
    eager_kwargs = dict(kwargs)
    return {
        "tf_function": lambda d: td.decompose(d["dist"], family, **kwargs),
        "xla": lambda d: td.decompose(d["dist"], family, jit_compile=True, **kwargs),
        "eager": lambda d: _eager_decompose(d["dist"], family, **eager_kwargs),
    }

  cases = {"dirichlet_closed_form": (dirichlet_inputs, {
      **graph_variants(classes),
      "numpy": lambda d: _numpy_dirichlet(d["alpha"])})}
  for t in config.mc_samples:
    cases[f"gaussian_logits_monte_carlo_{t}"] = (gaussian_inputs, {
        **graph_variants(classes, num_samples=t),
        "numpy": lambda d, t=t: _numpy_logit_normal(d["loc"], d["scale"], t,
                                                    np.random.default_rng(0))})
  cases["regression_quadrature"] = (regression_inputs, graph_variants(regression))
  cases["regression_monte_carlo_100"] = (regression_inputs, {
      **graph_variants(regression, method="monte_carlo", num_samples=100),
      "numpy": lambda d: _numpy_regression_mc(d["loc"], d["scale"], 100,
                                              np.random.default_rng(0))})
  return cases


def _eager_decompose(dist, family, **kwargs):
  """td.decompose with every tf.function run eagerly (op by op)."""
  tf.config.run_functions_eagerly(True)
  try:
    return td.decompose(dist, family, **kwargs)
  finally:
    tf.config.run_functions_eagerly(False)


def _peak_memory_mb(case, variant, config):
  """Peak resident memory added by one call of (case, variant), in a fresh process."""
  payload = json.dumps({"case": case, "variant": variant,
                        "config": dataclasses.asdict(config)})
  code = ("import json, sys; from tfp_distill.experiments import bench; "
          "print(json.dumps(bench._measure_memory(json.loads(sys.argv[1]))))")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", code, payload], capture_output=True,
                       text=True, env=env, timeout=600, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _resident_peak_kb():
  """The process's peak resident memory in KB (VmHWM; ru_maxrss where /proc is absent,
  which on Linux carries the parent's peak across exec)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return float(line.split()[1])
  except OSError:
    pass
  return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_resident_peak():
  """Resets VmHWM to the current resident size (Linux >= 4.0); False where unsupported."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _measure_memory(payload):
  """In a fresh process: the peak resident memory one call adds, after a warm-up on a tiny
  input (so imports and tracing are not counted) and with the inputs already made."""
  config = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v
                          for k, v in payload["config"].items()})
  make, variants = _decompose_cases(config)[payload["case"]]
  fn = variants[payload["variant"]]
  small = dataclasses.replace(config, decompose_batch=2)
  small_make, small_variants = _decompose_cases(small)[payload["case"]]
  _block(small_variants[payload["variant"]](small_make()))
  inputs = make()
  _reset_resident_peak()
  before = _resident_peak_kb()
  _block(fn(inputs))
  return {"peak_added_mb": (_resident_peak_kb() - before) / 1024.0}


def run_decompose(config, log=print):
  """The decompose suite: each case's variants timed (and their peak memory with
  `config.memory`); returns {case: {...}}."""
  results = {}
  for case, (make, variants) in _decompose_cases(config).items():
    inputs = make()
    entry = {"batch": config.decompose_batch, "peak_memory_added_mb": {},
             "timings": _time_group({v: (lambda f=fn: f(inputs))
                                     for v, fn in variants.items()}, config.repeats)}
    for variant in variants:
      if config.memory:
        entry["peak_memory_added_mb"][variant] = _peak_memory_mb(
            case, variant, config)["peak_added_mb"]
    t = entry["timings"]
    entry["tf_function_vs_eager"] = _ratio(t["eager"], t["tf_function"])
    entry["tf_function_vs_xla"] = _ratio(t["xla"], t["tf_function"])
    if "numpy" in t:
      entry["tf_function_vs_numpy"] = _ratio(t["numpy"], t["tf_function"])
    log(f"decompose {case}: " + ", ".join(f"{v} {s['min_s'] * 1e3:.1f} ms"
                                          for v, s in t.items()))
    results[case] = entry
  return results


# ----------------------------------------------------------------------------------------
# Distillation epochs.
# ----------------------------------------------------------------------------------------


def run_distill(config, log=print):
  """Seconds per distillation epoch, four ways to feed the student (regression MLPs)."""
  family = td.families.HeteroscedasticNormal()
  n, batch = config.distill_examples, 100
  rng = np.random.default_rng(config.seed)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  members = [td.models.mlp((8,), [50], 2, seed=1000 * m) for m in range(10)]
  ens = td.Ensemble(members, family=family)

  def student():   # each student its own head and loss (the registry's "mvn")
    spec = _common.registry_student(_REGRESSION_STUDENT, "regression", family)
    return td.models.mlp((8,), [75], spec.params_size, head=spec.head, seed=7), spec.loss

  def compiled_student(**kwargs):
    s, loss = student()
    s.compile(keras.optimizers.Adam(1e-3), loss=loss, **kwargs)
    return s

  fits = {}   # name -> one epoch (the warm-up epoch traces)
  for jit in (False, True):
    model, loss = student()
    distiller = td.Distiller(model, ens, loss=loss)
    distiller.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
    plain = tf.data.Dataset.from_tensor_slices(x).shuffle(n, seed=0).batch(batch).prefetch(
        tf.data.AUTOTUNE)
    fits["teacher_in_train_step" + ("_xla" if jit else "")] = (
        lambda d=distiller, p=plain: d.fit(p, epochs=1, verbose=0))
  s_stream = compiled_student()
  stream = td.teacher_targets(x, ens, batch_size=batch, seed=0)
  fits["teacher_in_tf_data"] = lambda: s_stream.fit(stream, epochs=1, verbose=0)
  z = ens.predict_targets(x)
  s_memory = compiled_student()
  fits["precomputed_in_memory"] = lambda: s_memory.fit(x, z, batch_size=batch, epochs=1,
                                                       verbose=0, shuffle=True)
  with tempfile.TemporaryDirectory() as tmp:
    cached = td.teacher_targets(x, ens, batch_size=batch, seed=0,
                                cache_dir=os.path.join(tmp, "cache"))
    for _ in cached:   # the cache is written on the first pass; time reading it
      pass
    s_cache = compiled_student()
    fits["target_cache"] = lambda: s_cache.fit(cached, epochs=1, verbose=0)
    timings = _time_group(fits, config.repeats)
  result = {"examples_per_epoch": n, "batch_size": batch, "members": 10,
            "epoch_timings": timings,
            "examples_per_s": {k: n / v["min_s"] for k, v in timings.items()},
            "cache_vs_in_memory": float(timings["target_cache"]["min_s"]
                                        / timings["precomputed_in_memory"]["min_s"])}
  log("distill: " + ", ".join(f"{k} {v['min_s']:.2f} s/epoch" for k, v in timings.items()))
  return result


# ----------------------------------------------------------------------------------------
# Ensemble training.
# ----------------------------------------------------------------------------------------


def _sequential_fit(build, x, y, family, num_members, epochs, batch_size, learning_rate):
  """The naive baseline: compile and fit each member in turn."""
  def loss(y_true, z):
    if y_true.shape.rank == z.shape.rank:
      y_true = y_true[..., 0]
    return family.nll(y_true, z)

  for m in range(num_members):
    member = build(m)
    member.compile(keras.optimizers.Adam(learning_rate), loss=loss)
    member.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)


def run_train(config, log=print):
  """The ensemble-training suite: vectorized, one-graph and sequential training timed;
  returns {case: {...}}."""
  results = {}
  rng = np.random.default_rng(config.seed)
  uci, cnn = config.train_uci, config.train_cnn
  x = rng.normal(size=(uci["n"], uci["features"])).astype(np.float32)
  y = (x[:, 0] + 0.1 * rng.normal(size=uci["n"])).astype(np.float32)
  regression = td.families.HeteroscedasticNormal()
  build = lambda s: td.models.mlp((uci["features"],), [uci["hidden"]], 2, seed=s)
  images = rng.uniform(size=(cnn["n"], 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, cnn["n"])
  classes = td.families.CategoricalLogits(10)
  build_cnn = lambda s: td.models.small_cnn(filters=tuple(cnn["filters"]),
                                            dense_units=cnn["dense_units"], seed=s)
  for case, (b, data, family, spec, lr) in {
      "uci_sized_mlp": (build, (x, y), regression, uci, 1e-2),
      "small_cnn": (build_cnn, (images, labels), classes, cnn, 1e-3)}.items():
    common = dict(num_members=spec["num_members"], epochs=spec["epochs"],
                  batch_size=spec["batch_size"], learning_rate=lr, verbose=0)
    timings = _time_group({
        "vectorized": lambda: td.train_ensemble(b, data, family, vectorize=True, **common),
        "one_graph": lambda: td.train_ensemble(b, data, family, vectorize=False, **common),
        "sequential_fit": lambda: _sequential_fit(
            b, *data, family, spec["num_members"], spec["epochs"], spec["batch_size"], lr),
    }, config.repeats)
    results[case] = {"spec": dict(spec), "timings": timings,
                     "vectorized_vs_sequential": _ratio(timings["sequential_fit"],
                                                        timings["vectorized"]),
                     "vectorized_vs_one_graph": _ratio(timings["one_graph"],
                                                       timings["vectorized"]),
                     "one_graph_vs_sequential": _ratio(timings["sequential_fit"],
                                                       timings["one_graph"])}
    log(f"train {case}: " + ", ".join(f"{k} {v['min_s']:.2f} s" for k, v in timings.items()))
  return results


# ----------------------------------------------------------------------------------------
# The run (its targets, Markdown and figure are bench_report's).
# ----------------------------------------------------------------------------------------


def run_bench(out_dir, config=None, log=print):
  """Runs the selected suites and writes report.json, report.md and ratios.png.

  Args:
    out_dir: str, report folder.
    config: `BenchConfig` or None.
    log: callable taking a line of progress.

  Returns:
    the report dict: the keys every report has (`td.report.header`; "timings_s": seconds
    per suite and "total"), "machine" (what it ran on), "suites", "targets", "files".
  """
  config = config or BenchConfig()
  unknown = set(config.suites) - set(SUITES)
  if unknown:
    raise ValueError(f"Unknown bench suites {sorted(unknown)}; known: {', '.join(SUITES)}.")
  unknown = set(config.backbones) - {"mlp", "small_cnn", "resnet18"}
  if unknown:
    raise ValueError(f"Unknown backbones {sorted(unknown)}; known: mlp, small_cnn, "
                     "resnet18.")
  os.makedirs(out_dir, exist_ok=True)
  runners = {"inference": run_inference, "decompose": run_decompose,
             "distill": run_distill, "train": run_train}
  begin = time.perf_counter()
  suites, timings = {}, {}
  for suite in SUITES:
    if suite in config.suites:
      start = time.perf_counter()
      suites[suite] = runners[suite](config, log=log)
      timings[suite] = time.perf_counter() - start
  report = {"machine": machine(), "suites": suites, "targets": targets(suites),
            "files": {"report_json": "report.json", "report_md": "report.md"}}
  tic = time.perf_counter()
  if plot_ratios(report, os.path.join(out_dir, "ratios.png")):
    report["files"]["plot"] = "ratios.png"
  timings["figures"] = time.perf_counter() - tic
  timings["total"] = time.perf_counter() - begin
  report.update(td.report.header(config, timings))
  _common.write_report(out_dir, report["files"], report, format_markdown(report))
  return report
