"""An outside attack on `tfp-distill distill` and the library: bad folders, wrong resumes,
strategies, NaN, failures, users' conventions; each case's outcome classified.

Every case runs in fresh processes (`python -m tfp_distill ...` or `python -c ...`) with
the checkout under test first on PYTHONPATH, so the same cases measure this checkout and,
with `--baseline-src`, an older one (a git worktree). Outcomes:

```none
right         the job did what it should (refused in one line where it should refuse,
              or succeeded with the right result)
clean-error   refused in one line, but the job should have succeeded (a supported case)
traceback     a multi-line Python traceback
hang          no answer within the case's timeout
silent-wrong  exit 0 (or numbers returned) but the result is wrong, or a wrong job ran
data-lost     a file the user owned was deleted or changed
```

    python scripts/attack_distill.py --out docs/reliability/attack \\
        [--baseline-src /tmp/tfp_old --baseline-label "before (e3f77ba)"] [--fast]

Writes DIR/report.json (every case's outcome and detail per version) and DIR/report.md.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

FEATURES, CLASSES = 6, 3
OUTCOMES = ("right", "clean-error", "traceback", "hang", "silent-wrong", "data-lost")


class Runner:
  """Runs commands against one checkout (`src`, None: the installed/current one)."""

  def __init__(self, src, work):
    self.src, self.work = src, work

  def env(self, extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if self.src is not None:
      env["PYTHONPATH"] = os.path.abspath(self.src)
    env.update(extra or {})
    return env

  def cli(self, *argv, timeout=300, env=None, cwd=None):
    return self.run([sys.executable, "-m", "tfp_distill", "distill", "--quiet",
                     *map(str, argv)], timeout, env, cwd)

  def python(self, code, timeout=300, env=None):
    return self.run([sys.executable, "-c", textwrap.dedent(code)], timeout, env)

  def run(self, argv, timeout, env=None, cwd=None):
    try:
      proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            env=self.env(env), cwd=cwd or self.work, check=False)
    except subprocess.TimeoutExpired:
      return None
    return proc

  def path(self, *parts):
    return os.path.join(self.work, *parts)


def _kind_of_failure(proc):
  """"hang", "traceback", "clean-error" or None (exit 0) for a finished command."""
  if proc is None:
    return "hang"
  if proc.returncode == 0:
    return None
  err = proc.stderr.strip()
  if "Traceback (most recent call last)" in err:
    return "traceback"
  lines = [line for line in err.splitlines() if line.strip()]
  if lines and lines[-1].startswith("tfp-distill distill:"):
    return "clean-error"
  return "traceback"


def _refusal(proc):
  """A case where refusing (in one line) is right."""
  kind = _kind_of_failure(proc)
  if kind is None:
    return "silent-wrong", "exit 0: the job ran"
  if kind == "clean-error":
    return "right", proc.stderr.strip().splitlines()[-1][:200]
  return kind, (proc.stderr.strip()[-300:] if proc is not None else "no answer")


def _success(proc, check=None):
  """A case where succeeding is right; `check()` -> (ok, detail) looks at the result."""
  kind = _kind_of_failure(proc)
  if kind == "clean-error":
    return "clean-error", proc.stderr.strip().splitlines()[-1][:200]
  if kind is not None:
    return kind, (proc.stderr.strip()[-300:] if proc is not None else "no answer")
  if check is None:
    return "right", "exit 0"
  ok, detail = check()
  return ("right" if ok else "silent-wrong"), detail


def _tree(path):
  out = {}
  for base, _, names in os.walk(path):
    for name in names:
      full = os.path.join(base, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = f.read()
  return out


def _report(path):
  with open(os.path.join(path, "report.json")) as f:
    return json.loads(f.read(), parse_constant=lambda token: float("nan"))


# ---------------------------------------------------------------------------------------
# Fixtures: data and members, made once (with this checkout's Python, Keras 3).


def make_fixtures(work):
  """Blobs data, three Keras 3 logit members, and the variants the cases need."""
  from tfp_distill import _keras3
  keras = _keras3.module()
  rng = np.random.default_rng(1)
  centres = np.random.default_rng(0).normal(size=(CLASSES, FEATURES)) * 2.5

  def blobs(n, seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, CLASSES, n)
    return (centres[y] + r.normal(size=(n, FEATURES))).astype(np.float32), y

  x, y = blobs(400, 1)
  x_test, y_test = blobs(120, 2)
  np.savez(os.path.join(work, "train.npz"), x=x, y=y)
  np.savez(os.path.join(work, "test.npz"), x=x_test, y=y_test)
  x2 = x.copy()
  x2[:, 0] += 0.5
  np.savez(os.path.join(work, "train_other.npz"), x=x2, y=y)
  np.savez(os.path.join(work, "wide.npz"), x=np.zeros((20, FEATURES + 1), np.float32))

  def member(seed, activation=None, outputs=CLASSES, loss=None):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(outputs, activation=activation)])
    model.compile(keras.optimizers.Adam(1e-2), loss or keras.losses.
                  SparseCategoricalCrossentropy(from_logits=activation is None))
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    return model

  for m in range(3):
    member(m).save(os.path.join(work, f"logits_{m}.keras"))
    member(m, "softmax").save(os.path.join(work, f"softmax_{m}.keras"))
  # Regression: log-variance members on a sinusoid with noise sd 0.3.
  xr = rng.uniform(-3, 3, (400, 1)).astype(np.float32)
  yr = (np.sin(xr[:, 0]) + 0.3 * rng.normal(size=400)).astype(np.float32)
  np.savez(os.path.join(work, "reg.npz"), x=xr, y=yr)
  for m in range(3):
    keras.utils.set_random_seed(m)
    inputs = keras.Input((1,))
    h = keras.layers.Dense(32, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))

    def nll(t, out):
      return keras.ops.mean(0.5 * out[:, 1:] + 0.5 * keras.ops.square(t - out[:, :1])
                            * keras.ops.exp(-out[:, 1:]))

    model.compile(keras.optimizers.Adam(1e-2), nll)
    model.fit(xr, yr[:, None], epochs=60, batch_size=32, verbose=0)
    model.save(os.path.join(work, f"logvar_{m}.keras"))
    point = keras.Sequential([keras.Input((1,)), keras.layers.Dense(32, activation="tanh"),
                              keras.layers.Dense(1)])
    point.compile(keras.optimizers.Adam(1e-2), "mse")
    point.fit(xr, yr, epochs=60, batch_size=32, verbose=0)
    point.save(os.path.join(work, f"point_{m}.keras"))
  # Images, the Keras-tutorial way: raw 0-255 pixels, Rescaling(1/255) inside.
  from sklearn import datasets
  import tensorflow as tf
  images, labels = datasets.load_digits(return_X_y=True)
  images = np.round(images.reshape(-1, 8, 8, 1) * (255 / 16)).astype(np.uint8)
  for i in range(600):
    folder = os.path.join(work, "digits", f"d{labels[i]}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{i}.png"), "wb") as f:
      f.write(tf.io.encode_png(images[i]).numpy())
  for m in range(2):
    keras.utils.set_random_seed(m)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(32, "relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[:600].astype(np.float32), labels[:600], epochs=15, verbose=0)
    model.save(os.path.join(work, f"pixels_{m}.keras"))
  # Precomputed probabilities with rows of probability exactly 1 (forests).
  from sklearn import ensemble
  forests = [ensemble.RandomForestClassifier(20, random_state=s).fit(x, y) for s in range(3)]
  np.savez(os.path.join(work, "forest_z.npz"),
           z=np.stack([f.predict_proba(x) for f in forests], 1).astype(np.float32),
           z_test=np.stack([f.predict_proba(x_test) for f in forests], 1).astype(
               np.float32))
  # A CSV without a header (every row data), class-name labels.
  with open(os.path.join(work, "noheader.csv"), "w") as f:
    for row, label in zip(x, y):
      f.write(",".join(f"{v:.5f}" for v in row) + f",{label}.0\n")
  with open(os.path.join(work, "names.csv"), "w") as f:
    f.write(",".join(f"f{j}" for j in range(FEATURES)) + ",kind\n")
    for row, label in zip(x, y):
      f.write(",".join(f"{v:.5f}" for v in row) + f",{'abc'[label]}\n")
  # The softmax ensemble's true test NLL, for the conventions case.
  probs = np.mean([keras.models.load_model(os.path.join(work, f"softmax_{m}.keras"))
                   .predict(x_test, verbose=0) for m in range(3)], 0)
  truth = {"softmax_nll": float(-np.mean(np.log(probs[np.arange(len(y_test)), y_test])))}
  with open(os.path.join(work, "truth.json"), "w") as f:
    json.dump(truth, f)


# ---------------------------------------------------------------------------------------
# The cases: (problem, name, function(runner) -> (outcome, detail)).

CASES = []


def case(problem):
  def register(fn):
    CASES.append((problem, fn.__name__, fn))
    return fn
  return register


def _logits(r):
  return [r.path(f"logits_{m}.keras") for m in range(3)]


def _base(r, out, *extra):
  return ["--teacher", *_logits(r), "--train", r.path("train.npz"), "--test",
          r.path("test.npz"), "--epochs", "3", "--out", out, *extra]


def _users_folder(path, layout):
  for name, data in layout.items():
    full = os.path.join(path, name)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
      f.write(data)


def _folder_case(r, name, layout, resume=False):
  out = r.path(name)
  _users_folder(out, layout)
  before = _tree(out)
  proc = r.cli(*_base(r, out, *(["--resume"] if resume else [])))
  after = {k: v for k, v in _tree(out).items() if k in before}
  if after != before:
    lost = sorted(k for k in before if after.get(k) != before[k])
    return "data-lost", f"changed or deleted: {', '.join(lost)}"
  return _refusal(proc)


@case("1 data loss")
def out_with_a_users_backup_folder(r):
  return _folder_case(r, "users_backup", {"backup/chief/ckpt.index": b"mine",
                                          "backup/notes.txt": b"mine"})


@case("1 data loss")
def out_with_a_users_backup_folder_and_resume(r):
  return _folder_case(r, "users_backup_resume", {"backup/notes.txt": b"mine"}, True)


@case("1 data loss")
def out_with_a_users_results(r):
  return _folder_case(r, "users_results", {"report.json": b'{"mine": 1}',
                                           "student.keras": b"mine",
                                           "saved_model/saved_model.pb": b"mine",
                                           "logs/events": b"mine"})


@case("1 data loss")
def cache_dir_on_a_users_folder(r):
  folder = r.path("users_cache")
  _users_folder(folder, {"thesis.tex": b"months of work", "sub/data.csv": b"1,2"})
  before = _tree(folder)
  proc = r.python(f"""
      import numpy as np, tfp_distill as td
      members = [td.models.mlp((3,), [4], 2, seed=s) for s in range(2)]
      x = np.zeros((8, 3), np.float32)
      try:
        list(td.teacher_targets(x, td.Ensemble(members), cache_dir={folder!r}))
      except ValueError as e:
        print("REFUSED", e)
      """)
  if _tree(folder) != before:
    return "data-lost", "the folder's files were deleted"
  if proc is None:
    return "hang", ""
  if "REFUSED" in proc.stdout:
    return "right", proc.stdout.strip()[:200]
  return ("traceback" if proc.returncode else "silent-wrong"), proc.stderr[-300:]


def _interrupted_backup(r, name):
  """A run of 6 epochs stopped by SIGKILL in its 3rd epoch: its folder has a backup."""
  out = r.path(name)
  code = """
      import os, signal, sys
      import tfp_distill as td
      from tfp_distill import cli
      # The class both Keras' callbacks share where there is one (Keras 3 students).
      cls = getattr(td.callbacks, "StopOnNonFiniteLossMixin", td.callbacks.StopOnNonFiniteLoss)
      original = cls.on_train_batch_end
      def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 1:
          os.kill(os.getpid(), signal.SIGKILL)
        original(self, batch, logs)
      cls.on_train_batch_end = on_train_batch_end
      sys.exit(cli.main(sys.argv[1:]))
  """
  argv = ["distill", "--quiet", "--teacher", *_logits(r), "--train", r.path("train.npz"),
          "--test", r.path("test.npz"), "--epochs", "6", "--out", out]
  r.run([sys.executable, "-c", textwrap.dedent(code), *argv], 300)
  return out


def _resume_case(r, name, *changed):
  out = _interrupted_backup(r, name)
  if not os.path.isdir(os.path.join(out, "backup")):
    return "traceback", "the interrupted run left no backup"
  # The changed flag comes last: argparse keeps the last value of a repeated flag.
  argv = ["--teacher", *_logits(r), "--train", r.path("train.npz"), "--test",
          r.path("test.npz"), "--epochs", "6", "--out", out, "--resume", *changed]
  return _refusal(r.cli(*argv))


@case("2 wrong resume")
def resume_with_another_seed(r):
  return _resume_case(r, "resume_seed", "--seed", "1")


@case("2 wrong resume")
def resume_with_another_learning_rate(r):
  return _resume_case(r, "resume_lr", "--learning-rate", "0.01")


@case("2 wrong resume")
def resume_with_another_train_file(r):
  return _resume_case(r, "resume_train", "--train", r.path("train_other.npz"))


@case("2 wrong resume")
def resume_with_another_batch_size(r):
  return _resume_case(r, "resume_batch", "--batch-size", "64")


@case("2 wrong resume")
def resume_with_other_epochs(r):
  return _resume_case(r, "resume_epochs", "--epochs", "8")


@case("2 wrong resume")
def resume_with_another_method(r):
  return _resume_case(r, "resume_method", "--method", "gaussian-logits")


@case("2 wrong resume")
def toml_resume_false_string(r):
  out = _interrupted_backup(r, "toml_resume")
  config = r.path("resume.toml")
  with open(config, "w") as f:
    f.write('resume = "false"\n')
  proc = r.cli(*_base(r, out, "--config", config))
  if _kind_of_failure(proc) is None:
    report = _report(out)
    if report.get("resumed_from_epoch", 0):
      return "silent-wrong", f"resumed from epoch {report['resumed_from_epoch']}"
    return "right", "started afresh"
  return _refusal(proc)


@case("2 wrong resume")
def two_runs_on_one_folder(r):
  out, go, started = r.path("shared_out"), r.path("go"), r.path("started")
  code = f"""
      import os, sys, time
      import tfp_distill as td
      from tfp_distill import cli
      cls = getattr(td.callbacks, "StopOnNonFiniteLossMixin", td.callbacks.StopOnNonFiniteLoss)
      original = cls.on_train_batch_end
      def on_train_batch_end(self, batch, logs=None):
        open({started!r}, "w").close()
        while not os.path.exists({go!r}):
          time.sleep(0.05)
        original(self, batch, logs)
      cls.on_train_batch_end = on_train_batch_end
      sys.exit(cli.main(sys.argv[1:]))
  """
  first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), "distill",
                            "--quiet", *map(str, _base(r, out))], env=r.env(),
                           cwd=r.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
  deadline = time.monotonic() + 240
  while not os.path.exists(started) and time.monotonic() < deadline and first.poll() is None:
    time.sleep(0.1)
  second = r.cli(*_base(r, out, "--seed", "5"))
  with open(go, "w"):
    pass
  first.communicate(timeout=300)
  if _kind_of_failure(second) is None:
    return "silent-wrong", "both runs exited 0 on one folder"
  return _refusal(second)


@case("2 wrong resume")
def cache_reused_for_other_inputs(r):
  folder = r.path("cache_inputs")
  proc = r.python(f"""
      import numpy as np, tfp_distill as td
      members = [td.models.mlp((3,), [4], 2, seed=s) for s in range(2)]
      ens = td.Ensemble(members)
      x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
      list(td.teacher_targets(x, ens, cache_dir={folder!r}))
      try:
        out = list(td.teacher_targets(x + 1, ens, cache_dir={folder!r}, shuffle=False))
        print("REUSED")
      except ValueError as e:
        print("REFUSED", e)
      """)
  if proc is None:
    return "hang", ""
  if "REFUSED" in proc.stdout:
    return "right", proc.stdout.strip()[:200]
  if "REUSED" in proc.stdout:
    return "silent-wrong", "another job's targets were read"
  return "traceback", proc.stderr[-300:]


@case("2 wrong resume")
def cache_reused_by_another_teacher(r):
  folder = r.path("cache_teacher")
  proc = r.python(f"""
      import numpy as np, tfp_distill as td
      x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
      a = td.Ensemble([td.models.mlp((3,), [4], 2, seed=s) for s in range(2)])
      b = td.Ensemble([td.models.mlp((3,), [4], 2, seed=s + 10) for s in range(2)])
      list(td.teacher_targets(x, a, cache_dir={folder!r}))
      try:
        list(td.teacher_targets(x, b, cache_dir={folder!r}))
        print("REUSED")
      except ValueError as e:
        print("REFUSED", e)
      """)
  if proc is None:
    return "hang", ""
  if "REFUSED" in proc.stdout:
    return "right", proc.stdout.strip()[:200]
  if "REUSED" in proc.stdout:
    return "silent-wrong", "another teacher's targets were read"
  return "traceback", proc.stderr[-300:]


def _strategy_case(r, name, strategy, devices=1, workers=None):
  out = r.path(name)
  env = {}
  if workers:
    port = _free_port()
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{port}"]},
                                   "task": {"type": "worker", "index": 0}})
  code = f"""
      import sys
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(
          cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})
      from tfp_distill import cli
      sys.exit(cli.main(sys.argv[1:]))
  """
  argv = [sys.executable, "-c", textwrap.dedent(code), "distill", "--quiet",
          *map(str, _base(r, out, "--strategy", strategy))]
  return _success(r.run(argv, 300, env))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@case("3 strategy")
def mirrored_on_one_device(r):
  return _strategy_case(r, "mirrored_one", "mirrored")


@case("3 strategy")
def multi_worker_with_one_worker(r):
  return _strategy_case(r, "worker_one", "multi-worker", workers=1)


_NAN_PREAMBLE = """
    import numpy as np, tensorflow as tf, tfp_distill as td
    family = td.families.CategoricalLogits(3)
    members = [td.models.mlp((4,), [8], 3, seed=s) for s in range(3)]
    student = td.models.mlp((4,), [8], 3, head=td.heads.DirichletHead(3), seed=7)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    x[2] = np.nan
"""


def _nan_case(r, body):
  proc = r.python(_NAN_PREAMBLE + textwrap.indent(textwrap.dedent(body), "    "))
  if proc is None:
    return "hang", ""
  if "PLAUSIBLE" in proc.stdout:
    return "silent-wrong", proc.stdout.strip()[-200:]
  if "NAN" in proc.stdout or "REFUSED" in proc.stdout:
    return "right", proc.stdout.strip()[-200:]
  return "traceback", proc.stderr[-300:]


@case("4 silent NaN")
def nan_row_through_predict_uncertainty(r):
  return _nan_case(r, """
      try:
        u = td.predict_uncertainty(student, family, x)
        print("PLAUSIBLE" if np.isfinite(u["prediction"][2]).all() else "NAN",
              u["prediction"][2], u["epistemic"][2])
      except ValueError as e:
        print("REFUSED", e)
      """)


@case("4 silent NaN")
def nan_row_through_the_ensemble(r):
  return _nan_case(r, """
      z = tf.function(lambda t: td.Ensemble(members)(t))(tf.constant(x)).numpy()
      print("PLAUSIBLE" if np.isfinite(z[2]).all() else "NAN", z[2, 0])
      """)


@case("4 silent NaN")
def nan_row_through_the_served_signature(r):
  return _nan_case(r, """
      import tempfile
      path = td.export_saved_model(student, family, tempfile.mkdtemp() + "/s")
      out = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(x))
      p = out["prediction"].numpy()[2]
      print("PLAUSIBLE" if np.isfinite(p).all() else "NAN", p)
      """)


@case("4 silent NaN")
def zero_monte_carlo_samples(r):
  return _nan_case(r, """
      head = td.heads.NormalHead
      s = td.models.mlp((4,), [8], head.params_size(3), head=head(3), seed=1)
      x[2] = 0.0
      try:
        u = td.predict_uncertainty(s, family, x, num_samples=0)
        print("PLAUSIBLE: results without an error", u["prediction"][0])
      except ValueError as e:
        print("REFUSED", e)
      """)


def _one_line_case(r, *argv, env=None, timeout=300):
  return _refusal(r.cli(*argv, env=env, timeout=timeout))


@case("5 one-line failures")
def out_naming_a_file(r):
  with open(r.path("a_file"), "w") as f:
    f.write("x")
  return _one_line_case(r, *_base(r, r.path("a_file")))


@case("5 one-line failures")
def wrong_width_test_data(r):
  return _one_line_case(r, "--teacher", *_logits(r), "--train", r.path("train.npz"),
                        "--test", r.path("wide.npz"), "--out", r.path("wide_out"))


@case("5 one-line failures")
def toml_value_of_the_wrong_type(r):
  config = r.path("types.toml")
  with open(config, "w") as f:
    f.write('patience = "3"\n')
  return _one_line_case(r, *_base(r, r.path("types_out"), "--config", config))


@case("5 one-line failures")
def negative_learning_rate(r):
  return _one_line_case(r, *_base(r, r.path("neg_lr"), "--learning-rate", "-0.1"))


@case("5 one-line failures")
def one_member_teacher(r):
  return _one_line_case(r, "--teacher", _logits(r)[0], "--train", r.path("train.npz"),
                        "--out", r.path("one_member"))


@case("5 one-line failures")
def data_service_where_nothing_listens(r):
  return _one_line_case(r, *_base(r, r.path("service_out"), "--data-service",
                                  f"localhost:{_free_port()}"), timeout=90)


@case("5 one-line failures")
def ctrl_c_during_training(r):
  out = r.path("ctrl_c")
  proc = subprocess.Popen([sys.executable, "-m", "tfp_distill", "distill", "--quiet",
                           *map(str, _base(r, out)[:-4]), "--epochs", "200", "--out", out],
                          env=r.env(), cwd=r.work, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while not os.path.isdir(os.path.join(out, "backup")) and time.monotonic() < deadline:
    time.sleep(0.2)
  time.sleep(1.0)
  proc.send_signal(signal.SIGINT)
  try:
    _, err = proc.communicate(timeout=120)
  except subprocess.TimeoutExpired:
    proc.kill()
    return "hang", ""
  done = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
  outcome, detail = _refusal(done)
  if outcome == "right" and "--resume" not in detail:
    return "clean-error", "no hint that --resume continues: " + detail
  return outcome, detail


@case("5 one-line failures")
def read_only_out(r):
  out = r.path("read_only")
  os.makedirs(out)
  if os.geteuid() == 0:   # root writes anyway: emulate with a path under /proc
    out = "/proc/tfp_distill_attack/out"
  else:
    os.chmod(out, 0o555)
  return _one_line_case(r, *_base(r, out))


@case("6 smaller")
def teacher_giving_nan(r):
  from tfp_distill import _keras3
  keras = _keras3.module()
  model = keras.models.load_model(_logits(r)[0])
  model.layers[-1].bias.assign(np.full(CLASSES, np.nan, np.float32))
  path = r.path("nan_teacher.keras")
  model.save(path)
  outcome, detail = _one_line_case(r, "--teacher", path, _logits(r)[1], "--train",
                                   r.path("train.npz"), "--out", r.path("nan_teacher_out"))
  # Blamed on the inputs unless the message clears them ("although those inputs are
  # finite", "not the data").
  cleared = "inputs are finite" in detail or "not the data" in detail
  if outcome == "right" and "input" in detail.lower() and not cleared:
    return "clean-error", "blamed on the inputs: " + detail
  return outcome, detail


@case("6 smaller")
def keras_file_whose_config_inflates(r):
  import zipfile
  path = r.path("bomb.keras")
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    archive.writestr("config.json", "{" + " " * (300 * 2 ** 20) + "}")
  start = time.monotonic()
  outcome, detail = _one_line_case(r, "--teacher", path, _logits(r)[0], "--train",
                                   r.path("train.npz"), "--out", r.path("bomb_out"))
  if outcome == "right" and "inflate" not in detail:
    return "clean-error", f"read the 300 MB config first ({time.monotonic() - start:.0f} s): "\
        + detail
  return outcome, detail


@case("6 smaller")
def history_after_resume(r):
  out = _interrupted_backup(r, "history")
  proc = r.cli("--teacher", *_logits(r), "--train", r.path("train.npz"), "--test",
               r.path("test.npz"), "--epochs", "6", "--out", out, "--resume")

  def check():
    report = _report(out)
    n = len(report.get("history", {}).get("loss", []))
    return n == report["epochs_run"], f"history of {n} epochs, {report['epochs_run']} run"
  return _success(proc, check)


# Users' ensembles (the conventions issue).

@case("users' ensembles")
def softmax_members(r):
  out = r.path("softmax_out")
  proc = r.cli("--teacher", *[r.path(f"softmax_{m}.keras") for m in range(3)], "--train",
               r.path("train.npz"), "--test", r.path("test.npz"), "--epochs", "3",
               "--out", out)

  def check():
    with open(r.path("truth.json")) as f:
      truth = json.load(f)["softmax_nll"]
    nll = _report(out)["ensemble"]["nll"]
    return abs(nll - truth) < 1e-3 * max(1.0, truth), f"ensemble NLL {nll:.4f}, true {truth:.4f}"
  return _success(proc, check)


@case("users' ensembles")
def log_variance_members(r):
  out = r.path("logvar_out")
  proc = r.cli("--teacher", *[r.path(f"logvar_{m}.keras") for m in range(3)], "--train",
               r.path("reg.npz"), "--epochs", "3", "--out", out)

  def check():
    report = _report(out)
    kind = report.get("conventions", {}).get("outputs", {}).get("kind", "softplus (assumed)")
    return kind == "log-variance", f"read as {kind}"
  return _success(proc, check)


@case("users' ensembles")
def point_prediction_members(r):
  return _success(r.cli("--teacher", *[r.path(f"point_{m}.keras") for m in range(3)],
                        "--train", r.path("reg.npz"), "--epochs", "3", "--out",
                        r.path("point_out")))


@case("users' ensembles")
def raw_pixel_members_with_rescaling(r):
  out = r.path("pixels_out")
  proc = r.cli("--teacher", *[r.path(f"pixels_{m}.keras") for m in range(2)], "--train",
               r.path("digits"), "--epochs", "2", "--out", out)

  def check():
    accuracy = _report(out)["ensemble"]["accuracy"]
    return accuracy > 0.8, f"ensemble accuracy {accuracy:.3f}"
  return _success(proc, check)


@case("users' ensembles")
def precomputed_probabilities_with_certain_rows(r):
  out = r.path("forest_out")
  proc = r.cli("--teacher", r.path("forest_z.npz"), "--train", r.path("train.npz"),
               "--test", r.path("test.npz"), "--epochs", "3", "--out", out)

  def check():
    with open(os.path.join(out, "report.json")) as f:
      text = f.read()
    strict = "NaN" not in text and "Infinity" not in text
    return strict, "strict JSON" if strict else "report.json holds NaN (not JSON)"
  return _success(proc, check)


@case("users' ensembles")
def csv_without_a_header(r):
  out = r.path("noheader_out")
  proc = r.cli("--teacher", *_logits(r), "--train", r.path("noheader.csv"), "--epochs",
               "3", "--out", out)

  def check():
    sizes = _report(out)["data"]["sizes"]
    total = sizes["train"] + sizes["early_stopping"] + sizes["test"]
    return total == 400, f"{total} of 400 rows used"
  return _success(proc, check)


@case("users' ensembles")
def csv_with_class_names(r):
  return _success(r.cli("--teacher", *_logits(r), "--train", r.path("names.csv"),
                        "--epochs", "3", "--out", r.path("names_out")))


def run_all(src, work, only=None):
  runner = Runner(src, work)
  results = []
  for problem, name, fn in CASES:
    if only and name not in only:
      continue
    start = time.perf_counter()
    try:
      outcome, detail = fn(runner)
    except Exception as error:  # pylint: disable=broad-except
      outcome, detail = "traceback", f"the case itself failed: {error!r}"[:300]
    results.append({"problem": problem, "case": name, "outcome": outcome,
                    "detail": " ".join(str(detail).split())[:300],
                    "seconds": time.perf_counter() - start})
    print(json.dumps(results[-1]), flush=True)
  return results


def _markdown(versions):
  names = list(versions)
  lines = ["# An outside attack on `tfp-distill distill` and the library", "",
           "Each case runs in fresh processes against each checkout (scripts/"
           "attack_distill.py). Outcomes: right (refused in one line where it should, or "
           "succeeded with the right result), clean-error (refused in one line a supported "
           "case), traceback, hang, silent-wrong (exit 0 or numbers with a wrong result, "
           "or a wrong job), data-lost.", "",
           "| outcome | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
  for outcome in OUTCOMES:
    lines.append(f"| {outcome} | " + " | ".join(
        str(sum(r["outcome"] == outcome for r in versions[n])) for n in names) + " |")
  lines.append("| cases | " + " | ".join(str(len(versions[n])) for n in names) + " |")
  lines += ["", "| problem | case | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names)]
  by_case = {n: {r["case"]: r for r in versions[n]} for n in names}
  for problem, case_name, _ in CASES:
    if case_name not in by_case[names[0]]:
      continue
    cells = [f"{by_case[n][case_name]['outcome']}" for n in names]
    lines.append(f"| {problem} | `{case_name}` | " + " | ".join(cells) + " |")
  lines += ["", "Details (the last line of stderr, or what was checked) are in "
            "report.json.", ""]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("reports", "attack"))
  parser.add_argument("--baseline-src", default=None)
  parser.add_argument("--baseline-label", default="baseline")
  parser.add_argument("--cases", default=None, help="comma-separated case names")
  parser.add_argument("--fast", action="store_true",
                      help="smoke mode: three quick cases, this checkout only")
  args = parser.parse_args(argv)
  only = set(args.cases.split(",")) if args.cases else None
  if args.fast:
    only = {"out_with_a_users_results", "negative_learning_rate",
            "nan_row_through_the_ensemble"}
  versions = {"after (this checkout)": None}
  if args.baseline_src and not args.fast:
    versions = {args.baseline_label: args.baseline_src, **versions}
  os.makedirs(args.out, exist_ok=True)
  results = {}
  with tempfile.TemporaryDirectory() as fixtures:
    make_fixtures(fixtures)
    for label, src in versions.items():
      with tempfile.TemporaryDirectory() as work:
        for name in os.listdir(fixtures):
          source = os.path.join(fixtures, name)
          (shutil.copytree if os.path.isdir(source) else shutil.copy)(
              source, os.path.join(work, name))
        print(f"== {label}", flush=True)
        results[label] = run_all(src, work, only)
  with open(os.path.join(args.out, "report.json"), "w") as f:
    json.dump({"versions": results, "cases": len(CASES)}, f, indent=2)
  with open(os.path.join(args.out, "report.md"), "w") as f:
    f.write(_markdown(results))
  print(_markdown(results))
  return results


if __name__ == "__main__":
  main()
