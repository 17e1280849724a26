"""Divergence sweep: how many student runs end with a NaN or Inf, over seeds and rates.

Two parts (issue 14, part 3):

* UCI: every student method (full, diagonal, mixture) on every UCI set, over `--seeds`
  student seeds (default 20), at the study's default settings (`UCIConfig()`, the students
  of the benchmark table, trained together as the table trains them). Split 0 of each
  set, one ensemble per set (its own outputs are checked too). A panel that stops with
  `td.callbacks.NonFiniteLossError` is rerun student by student to name the method.
* Fashion-MNIST: the EnD^2, Gaussian-over-logits and mixture students over
  `--image-seeds` seeds (default 5) at 1x, 3x and 10x the default learning rate (1e-3).
  To fit 2 CPU cores this is a shortened protocol, stated in the output: the students
  distil the study's full ensemble (`tfp-distill images`, reused from
  `--images-ensemble-dir`, trained there if absent) on the first `--image-train` training
  images plus as many mixup inputs, for `--image-epochs` epochs with the temperature held
  for the first quarter and annealed to 1 by three quarters; each is evaluated on the
  10,000 test images.

A run counts as non-finite when training raises `NonFiniteLossError` (the library stops a
run at the first non-finite loss or gradient, see `td.Distiller(on_nonfinite=...)`), or
when the trained student's test predictions or NLL are not finite. Finished runs are kept
in `<out>/runs.jsonl` and skipped by a rerun of the same command.

Usage:
  python scripts/divergence_sweep.py --out reports/divergence \
      --json docs/reliability/divergence.json
  python scripts/divergence_sweep.py --out reports/divergence --part uci --datasets yacht,boston
  python scripts/divergence_sweep.py --smoke --out /tmp/divergence   # seconds; for the tests
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time

import numpy as np
from tqdm.auto import tqdm

import tfp_distill as td
from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import _common
from tfp_distill.experiments import images
from tfp_distill.experiments import uci

IMAGE_STUDENTS = images.STUDENTS


def _done(path):
  runs = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        run = json.loads(line)
        runs[run["key"]] = run
  return runs


def _append(path, run):
  with open(path, "a") as f:
    f.write(json.dumps(run) + "\n")


def _finite(*values):
  return bool(all(np.all(np.isfinite(np.asarray(v))) for v in values))


# ---------------------------------------------------------------------------------------
# UCI.


def _uci_students(data, ensemble, family, config, seed, log_scale):
  """{kind: {"finite", "nll", "error"}} for one seed; panel first, then one by one."""
  out = {}
  try:
    students = uci.distil_together(config.students, data, ensemble, family, config, seed)
  except td.callbacks.NonFiniteLossError as error:
    students, panel_error = {}, str(error)
    for i, kind in enumerate(config.students):   # which student diverged?
      try:
        students[kind] = uci.distil_alone(kind, data, ensemble, family, config,
                                          seed + 100 * (i + 1))
      except td.callbacks.NonFiniteLossError as single:
        out[kind] = {"finite": False, "nll": None, "error": str(single),
                     "panel_error": panel_error}
  for kind, student in students.items():
    u, nll = uci.evaluate_model(kind, student, family, data.x_test, data.y_test)
    finite = _finite(nll, *u.values())
    out[kind] = {"finite": finite, "nll": float(nll) + log_scale if finite else None,
                 "error": None if finite else "non-finite test predictions or NLL"}
  return out


def sweep_uci(out_dir, datasets, seeds, config, data_dir=None, progress=True):
  path = os.path.join(out_dir, "runs.jsonl")
  done = _done(path)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  bar = tqdm(total=len(datasets) * seeds, desc="UCI seeds", disable=not progress)
  for name in datasets:
    keys = [f"uci/{name}/{seed}" for seed in range(seeds)]
    if all(k in done for k in keys):
      bar.update(seeds)
      continue
    data = uci_data.load_uci(name, 0, data_dir)
    log_scale = float(np.log(data.y_std))
    tic = time.perf_counter()
    ensemble = uci.train_ensemble(data, family, config, config.seed)
    ensemble_seconds = time.perf_counter() - tic
    ensemble_finite = _finite(ensemble.predict_targets(data.x_test))
    for seed, key in zip(range(seeds), keys):
      if key in done:
        bar.update()
        continue
      tic = time.perf_counter()
      students = _uci_students(data, ensemble, family, config, 10_000 + 1000 * seed,
                               log_scale)
      run = {"key": key, "part": "uci", "dataset": name, "seed": seed,
             "ensemble_finite": ensemble_finite, "ensemble_seconds": ensemble_seconds,
             "seconds": time.perf_counter() - tic, "students": students}
      _append(path, run)
      done[key] = run
      bar.update()
  bar.close()
  return [done[f"uci/{name}/{seed}"] for name in datasets for seed in range(seeds)]


# ---------------------------------------------------------------------------------------
# Fashion-MNIST.


def _image_config(args, factor, seed):
  epochs = args.image_epochs
  base = images.ImagesConfig.fast() if args.smoke else images.ImagesConfig()
  return dataclasses.replace(
      base, data_dir=args.data_dir, learning_rate=base.learning_rate * factor, seed=seed,
      student_epochs=epochs, anneal_start=epochs // 4,
      anneal_end=max((3 * epochs) // 4, epochs // 4 + 1), verbose=0)


def sweep_images(out_dir, args, progress=True):
  path = os.path.join(out_dir, "runs.jsonl")
  done = _done(path)
  factors = [float(f) for f in args.image_lr_factors.split(",")]
  wanted = [(f, s, name) for f in factors for s in range(args.image_seeds)
            for name in IMAGE_STUDENTS]
  keys = [f"images/{f:g}x/{s}/{name}" for f, s, name in wanted]
  if all(k in done for k in keys):
    return [done[k] for k in keys]
  base = _image_config(args, 1.0, 0)
  family = td.families.CategoricalLogits(10)
  x_train, y_train, x_test, y_test = _common.load_images(base)
  ensemble, _ = _common.cnn_ensemble(base, family, x_train, y_train,
                                     args.images_ensemble_dir)
  x = x_train[:args.image_train]
  x = np.concatenate([x, td.targets.mixup_inputs(x, len(x), np.random.default_rng([0, 11]))])
  z = ensemble.predict_targets(x, batch_size=2000)
  bar = tqdm(total=len(wanted), desc="image students", disable=not progress)
  for (factor, seed, name), key in zip(wanted, keys):
    if key in done:
      bar.update()
      continue
    config = _image_config(args, factor, seed)
    student = images.build_students(config, family)[name]   # (model, registry student)
    tic = time.perf_counter()
    run = {"key": key, "part": "images", "student": name, "lr_factor": factor,
           "learning_rate": config.learning_rate, "seed": seed, "test_images": len(x_test)}
    try:
      losses = images.fit_student(*student, x, z, config, name)
      u = _common.batched(images.predictors(ensemble, {name: student}, family, config)[name],
                          x_test)
      probs = u["prediction"]
      finite = _finite(losses, *u.values())
      metrics = (_common.classification_metrics(y_test, probs, quantile_ece=True) if finite
                 else None)
      run.update(finite=finite, error=None if finite else "non-finite test predictions",
                 accuracy=metrics and metrics["accuracy"], nll=metrics and metrics["nll"],
                 final_loss=losses[-1])
    except td.callbacks.NonFiniteLossError as error:
      run.update(finite=False, error=str(error), accuracy=None, nll=None, final_loss=None)
    run["seconds"] = time.perf_counter() - tic
    _append(path, run)
    done[key] = run
    bar.update()
  bar.close()
  return [done[k] for k in keys]


# ---------------------------------------------------------------------------------------
# Summary.


def _mean_sd(values):
  values = [v for v in values if v is not None]
  if not values:
    return None
  return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))
          if len(values) > 1 else 0.0, "n": len(values)}


def summarize(uci_runs, image_runs, args):
  summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
      "tensorflow": __import__("tensorflow").__version__, "uci": {}, "images": {}}
  for run in uci_runs:
    row = summary["uci"].setdefault(run["dataset"], {"ensemble_finite": True})
    row["ensemble_finite"] &= run["ensemble_finite"]
    for kind, result in run["students"].items():
      cell = row.setdefault(kind, {"runs": 0, "non_finite": 0, "nll": [], "errors": []})
      cell["runs"] += 1
      cell["non_finite"] += int(not result["finite"])
      cell["nll"].append(result["nll"])
      if result["error"]:
        cell["errors"].append(f"seed {run['seed']}: {result['error']}")
  for row in summary["uci"].values():
    for kind, cell in row.items():
      if kind != "ensemble_finite":
        cell["nll"] = _mean_sd(cell["nll"])
  for run in image_runs:
    cell = summary["images"].setdefault(f"{run['lr_factor']:g}x", {}).setdefault(
        run["student"], {"runs": 0, "non_finite": 0, "accuracy": [], "nll": [],
                         "errors": []})
    cell["runs"] += 1
    cell["non_finite"] += int(not run["finite"])
    cell["accuracy"].append(run["accuracy"])
    cell["nll"].append(run["nll"])
    if run["error"]:
      cell["errors"].append(f"seed {run['seed']}: {run['error']}")
  for by_student in summary["images"].values():
    for cell in by_student.values():
      cell["accuracy"], cell["nll"] = _mean_sd(cell["accuracy"]), _mean_sd(cell["nll"])
  summary["protocol"] = {
      "uci": f"split 0 of each set, {args.seeds} student seeds, UCIConfig() defaults",
      "images": (f"{args.image_train} training images + as many mixup inputs, "
                 f"{args.image_epochs} epochs, {args.image_seeds} seeds, learning rate x "
                 f"{args.image_lr_factors} of {images.ImagesConfig().learning_rate:g}; "
                 f"tested on {image_runs[0]['test_images'] if image_runs else 0} test "
                 "images")}
  summary["uci_seconds"] = float(sum(r["seconds"] for r in uci_runs) + sum(
      {r["dataset"]: r["ensemble_seconds"] for r in uci_runs}.values()))
  summary["images_seconds"] = float(sum(r["seconds"] for r in image_runs))
  return summary


def _fmt(stat, digits=3):
  return "-" if stat is None else f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def markdown(summary):
  lines = []
  if summary["uci"]:
    kinds = [k for k in uci.STUDENTS if any(k in r for r in summary["uci"].values())]
    lines += [f"UCI ({summary['protocol']['uci']}): non-finite runs / runs, and the test "
              "NLL (mean ± sd over seeds, original units)", "",
              "| data set | ensemble finite | " + " | ".join(kinds) + " |",
              "|---|---|" + "---|" * len(kinds)]
    for name, row in summary["uci"].items():
      cells = [f"{row[k]['non_finite']}/{row[k]['runs']}, NLL {_fmt(row[k]['nll'])}"
               if k in row else "-" for k in kinds]
      lines.append(f"| {name} | {'yes' if row['ensemble_finite'] else 'NO'} | "
                   + " | ".join(cells) + " |")
    lines.append("")
  if summary["images"]:
    lines += [f"Fashion-MNIST ({summary['protocol']['images']}): non-finite runs / runs, "
              "test accuracy and NLL (mean ± sd over seeds)", "",
              "| learning rate | student | non-finite | accuracy | NLL |",
              "|---|---|---:|---|---|"]
    for factor, by_student in summary["images"].items():
      for name, cell in by_student.items():
        lines.append(f"| {factor} | {name} | {cell['non_finite']}/{cell['runs']} | "
                     f"{_fmt(cell['accuracy'], 4)} | {_fmt(cell['nll'], 4)} |")
    lines.append("")
  errors = [f"- {where}: {e}" for where, e in _errors(summary)]
  lines += ["Non-finite runs, as the library reported them:", ""] + (errors or ["- none"])
  lines += ["", f"{summary['machine']}, TensorFlow {summary['tensorflow']}, "
            f"{summary['date']}; UCI {summary['uci_seconds'] / 60:.1f} min, images "
            f"{summary['images_seconds'] / 60:.1f} min."]
  return "\n".join(lines)


def _errors(summary):
  for name, row in summary["uci"].items():
    for kind, cell in row.items():
      if kind != "ensemble_finite":
        yield from ((f"UCI {name} {kind} {e.split(':')[0]}", e.split(": ", 1)[1])
                    for e in cell["errors"])
  for factor, by_student in summary["images"].items():
    for name, cell in by_student.items():
      yield from ((f"images {factor} {name} {e.split(':')[0]}", e.split(": ", 1)[1])
                  for e in cell["errors"])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "divergence"))
  parser.add_argument("--json", default=None, help="also write the summary here")
  parser.add_argument("--part", choices=("all", "uci", "images"), default="all")
  parser.add_argument("--datasets", default=",".join(sorted(uci_data.UCI_DATASETS)))
  parser.add_argument("--seeds", type=int, default=20)
  parser.add_argument("--image-seeds", type=int, default=5)
  parser.add_argument("--image-lr-factors", default="1,3,10")
  parser.add_argument("--image-train", type=int, default=10_000)
  parser.add_argument("--image-epochs", type=int, default=8)
  parser.add_argument("--images-ensemble-dir", default=os.path.join("reports",
                                                                     "images_long"))
  parser.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
  parser.add_argument("--uci-dir", default=None, help="UCI folder")
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  if args.smoke:
    args.seeds, args.image_seeds, args.image_train, args.image_epochs = 2, 1, 300, 2
    args.image_lr_factors = "10"
    args.images_ensemble_dir = args.out
  os.makedirs(args.out, exist_ok=True)
  config = uci.UCIConfig(verbose=0)
  if args.smoke:
    # No XLA in the smoke run: compiling the students' step would take most of its time.
    config = dataclasses.replace(config, num_members=2, member_epochs=2, student_epochs=2,
                                 min_distill_samples=0, max_distill_samples=500,
                                 student_hidden=(8,), student_jit_compile=False)
  datasets = [d for d in args.datasets.split(",") if d]
  uci_runs = (sweep_uci(args.out, datasets, args.seeds, config, args.uci_dir,
                        not args.quiet) if args.part in ("all", "uci") else [])
  image_runs = (sweep_images(args.out, args, not args.quiet)
                if args.part in ("all", "images") else [])
  summary = summarize(uci_runs, image_runs, args)
  text = markdown(summary)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(text + "\n")
  for path in filter(None, (os.path.join(args.out, "summary.json"), args.json)):
    with open(path, "w") as f:
      json.dump(summary, f, indent=1)
  print(text)
  return summary


if __name__ == "__main__":
  main()
