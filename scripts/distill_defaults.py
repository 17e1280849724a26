"""The default training length of `tfp-distill distill` on small tabular data, measured.

For each small data set (scikit-learn's wine and breast cancer, classification; UCI yacht
and energy, regression, raw targets), five Keras 3 members are trained here as a user
would (logits; [mu, rho] with variance softplus(rho) + 1e-3, the convention every version
of the command reads), saved as `.keras` files, and distilled by `tfp-distill distill`
with its default settings (a schedule set by the data: at least 3,000 optimizer steps,
multi-pass epochs on small sets, early stopping), with the earlier default schedule on
this checkout (`--epochs 30 --min-steps-per-epoch 1`: 30 epochs of one pass), and with
`--baseline-src`, another checkout's defaults (e.g. the commit before the schedule).
The student's gap to its ensemble on the test rows is what a default should
keep small.

    python scripts/distill_defaults.py --out docs/own_ensemble/defaults \\
        [--baseline-src /tmp/tfp_old] [--seeds 3] [--fast]

Writes DIR/report.json and DIR/report.md (one row per data set, seed and version).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SETS = ("wine", "breast_cancer", "yacht", "energy")


def _data(name, seed):
  """(x_train, y_train, x_test, y_test, task): 70/30 split, x standardised on train."""
  if name in ("wine", "breast_cancer"):
    from sklearn import datasets
    loader = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}
    x, y = loader[name](return_X_y=True)
    task = "classification"
  else:
    from tfp_distill.datasets import uci
    folder = uci.data_dir() / {"yacht": "yacht", "energy": "energy"}[name]
    data = np.loadtxt(folder / "data.txt", ndmin=2)
    features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int, ndmin=1)[0])
    x, y = data[:, features], data[:, target]
    task = "regression"
  order = np.random.default_rng(seed).permutation(len(x))
  k = int(0.3 * len(x))
  test, train = order[:k], order[k:]
  mean, std = x[train].mean(0), np.maximum(x[train].std(0), 1e-12)
  x = ((x - mean) / std).astype(np.float32)
  y = y.astype(np.int64) if task == "classification" else y.astype(np.float32)
  return x[train], y[train], x[test], y[test], task


def _members(keras, x, y, task, seed, count, epochs):
  models = []
  for m in range(count):
    keras.utils.set_random_seed(1000 * seed + m)
    inputs = keras.Input((x.shape[1],))
    h = keras.layers.Dense(64, activation="relu")(inputs)
    h = keras.layers.Dense(64, activation="relu")(h)
    if task == "classification":
      model = keras.Model(inputs, keras.layers.Dense(int(y.max()) + 1)(h))
      model.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
      model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    else:
      ops = keras.ops
      scale = float(np.std(y))
      mu = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(
          float(np.mean(y))))(h)
      rho = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(
          float(np.log(np.expm1(scale ** 2)))))(h)
      model = keras.Model(inputs, keras.layers.Concatenate()([mu, rho]))

      def nll(y_true, out):
        var = ops.softplus(out[:, 1:]) + 1e-3
        return ops.mean(0.5 * ops.log(var) + 0.5 * ops.square(y_true - out[:, :1]) / var)

      model.compile(keras.optimizers.Adam(1e-3), nll)
      model.fit(x, y[:, None], epochs=epochs, batch_size=32, verbose=0)
    models.append(model)
  return models


def _distill(src, folder, paths, out, extra=()):
  """Runs `python -m tfp_distill distill` from checkout `src` (None: this one)."""
  env = dict(os.environ)
  if src is not None:
    env["PYTHONPATH"] = os.path.abspath(src)
  argv = [sys.executable, "-m", "tfp_distill", "distill", "--quiet", "--teacher", *paths,
          "--train", os.path.join(folder, "train.npz"), "--test",
          os.path.join(folder, "test.npz"), "--out", out, *extra]
  start = time.perf_counter()
  proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                        cwd=folder)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{src or 'this checkout'}: {proc.stderr[-2000:]}")
  with open(os.path.join(out, "report.json")) as f:
    return json.load(f), seconds


def _gaps(report):
  ens, stu = report.get("ensemble", {}), report.get("student", {})
  out = {"epochs_run": report.get("epochs_run")}
  if "accuracy" in ens:
    out.update(accuracy_gap=ens["accuracy"] - stu["accuracy"],
               nll_gap=stu["nll"] - ens["nll"], ensemble_nll=ens["nll"],
               student_nll=stu["nll"])
  else:
    out.update(rmse_ratio=stu["rmse"] / ens["rmse"], ensemble_rmse=ens["rmse"],
               student_rmse=stu["rmse"], ensemble_nll=ens.get("nll"),
               student_nll=stu.get("nll"))
  verdict = report.get("verdict")
  out["verdict"] = None if verdict is None else verdict.get("summary")
  return out


def _markdown(rows, args):
  lines = ["# Default training length of `tfp-distill distill` on small tabular data", "",
           "Five Keras 3 members (two hidden layers of 64) per set and seed; the student "
           "with the command's defaults. Gap to the ensemble on the test rows (30%): "
           "classification NLL gap (student - ensemble, nats) and accuracy drop, "
           "regression RMSE ratio (student / ensemble). Mean over seeds (min-max).", "",
           "| set | version | epochs run | NLL gap or RMSE ratio | accuracy drop | seconds |",
           "|---|---|---:|---:|---:|---:|"]
  for name in SETS:
    for version in sorted({r["version"] for r in rows}):
      every = [r for r in rows if r["set"] == name and r["version"] == version]
      part = [r for r in every if "error" not in r]
      failed = len(every) - len(part)
      if failed:
        lines.append(f"| {name} | {version} | | failed on {failed} of {len(every)} "
                     f"seeds: {every[[('error' in r) for r in every].index(True)]['error']}"
                     " | | |")
      if not part:
        continue
      ratio = [r["nll_gap"] if "nll_gap" in r else r["rmse_ratio"] for r in part]
      drop = [r.get("accuracy_gap") for r in part]
      seconds = [r["seconds"] for r in part]
      epochs = [r["epochs_run"] for r in part]
      drop_text = ("" if drop[0] is None else
                   f"{np.mean(drop):.3f} ({min(drop):.3f}-{max(drop):.3f})")
      lines.append(f"| {name} | {version} | {np.mean(epochs):.0f} | {np.mean(ratio):.2f} "
                   f"({min(ratio):.2f}-{max(ratio):.2f}) | {drop_text} | "
                   f"{np.mean(seconds):.0f} |")
  lines += ["", f"Command: `python scripts/distill_defaults.py --seeds {args.seeds}"
            + (f" --baseline-src {args.baseline_src} --baseline-label "
               f"'{args.baseline_label}'" if args.baseline_src else "")
            + "` (the baseline a git worktree of that commit); 2 CPU cores.", ""]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("reports", "distill_defaults"))
  parser.add_argument("--baseline-src", default=None,
                      help="a checkout whose `tfp-distill distill` is measured beside "
                           "this one's (e.g. a git worktree of an older commit)")
  parser.add_argument("--baseline-label", default="baseline")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--sets", default=",".join(SETS))
  parser.add_argument("--fast", action="store_true", help="smoke mode: one set, tiny")
  args = parser.parse_args(argv)
  from tfp_distill import _keras3
  keras = _keras3.module()
  sets = args.sets.split(",") if not args.fast else ["wine"]
  seeds = 1 if args.fast else args.seeds
  versions = {"defaults": (None, ()),
              "30 one-pass epochs": (None, ("--epochs", "30", "--min-steps-per-epoch", "1"))}
  if args.baseline_src:
    versions[args.baseline_label] = (args.baseline_src, ())
  rows = []
  os.makedirs(args.out, exist_ok=True)
  with tempfile.TemporaryDirectory() as work:
    for name in sets:
      for seed in range(seeds):
        x, y, x_test, y_test, task = _data(name, seed)
        folder = os.path.join(work, f"{name}_{seed}")
        os.makedirs(folder)
        np.savez(os.path.join(folder, "train.npz"), x=x, y=y)
        np.savez(os.path.join(folder, "test.npz"), x=x_test, y=y_test)
        members = _members(keras, x, y, task, seed, 2 if args.fast else 5,
                           5 if args.fast else 200)
        paths = []
        for m, model in enumerate(members):
          paths.append(os.path.join(folder, f"member_{m}.keras"))
          model.save(paths[-1])
        for version, (src, extra) in versions.items():
          try:
            report, seconds = _distill(src, folder, paths,
                                       os.path.join(folder, f"out_{len(rows)}"), extra)
          except RuntimeError as error:     # e.g. the old report's zero-uncertainty crash
            rows.append({"set": name, "seed": seed, "version": version,
                         "error": str(error).strip().splitlines()[-1][:300]})
            print(json.dumps(rows[-1]), flush=True)
            continue
          row = {"set": name, "seed": seed, "version": version, "seconds": seconds,
                 **_gaps(report)}
          rows.append(row)
          print(json.dumps(row), flush=True)
  with open(os.path.join(args.out, "report.json"), "w") as f:
    json.dump({"rows": rows, "args": vars(args)}, f, indent=2)
  with open(os.path.join(args.out, "report.md"), "w") as f:
    f.write(_markdown(rows, args))
  print(_markdown(rows, args))
  return rows


if __name__ == "__main__":
  main()
