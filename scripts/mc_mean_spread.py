"""How much a Monte Carlo student's mean uncertainty moves with the seed of its draws.

A Gaussian-over-logits student's mutual information is a Monte Carlo estimate. With
common draws (`td.predict_uncertainty`'s default) every example shares the same draws,
so their error is shared too and does not average out over a data set: the mean over
10,000 images moves with the seed. This script measures it for a saved student: the
mean epistemic uncertainty on each data set at several seeds, with common draws (as the
library has them now: moment-matched) and with independent draws per example.

Usage:
  python scripts/mc_mean_spread.py --student /tmp/own_s6/student_gauss_norm \
      --data /tmp/own_s6/test.npz /tmp/own_s6/mnist.npz --seeds 6
  python scripts/mc_mean_spread.py --student DIR --data FILE.npz --num-samples 100

DIR is a `tfp-distill distill` folder (student.keras, report.json); each FILE.npz holds
the inputs as array `x`. Prints, per data set and kind of draws, the means and their
half range over the seeds as a percentage of their average.
"""

import argparse
import json
import os

import numpy as np


def spread(values):
  """Half the range of `values` as a percentage of their mean."""
  values = np.asarray(values, np.float64)
  return float(50.0 * (values.max() - values.min()) / values.mean())


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--student", required=True, help="a tfp-distill distill folder")
  parser.add_argument("--data", nargs="+", required=True, help=".npz files with array x")
  parser.add_argument("--seeds", type=int, default=6, help="seeds 0 .. N-1")
  parser.add_argument("--num-samples", type=int, default=100)
  parser.add_argument("--json", default=None, help="also write the figures here")
  args = parser.parse_args(argv)

  import tfp_distill as td
  import tfp_distill.keras3  # noqa: F401  registers the heads and losses with Keras
  from tfp_distill import _keras3
  keras = _keras3.module()
  with open(os.path.join(args.student, "report.json")) as f:
    family = td.families.get(json.load(f)["student_family"])
  student = keras.models.load_model(os.path.join(args.student, "student.keras"))
  result = {}
  for path in args.data:
    x = np.load(path)["x"]
    name = os.path.basename(path)
    result[name] = {}
    for kind, common in (("common (moment-matched)", True), ("independent", False)):
      means = [float(np.mean(td.predict_uncertainty(
          student, family, x, num_samples=args.num_samples, seed=seed,
          common_noise=common)["epistemic"])) for seed in range(args.seeds)]
      result[name][kind] = {"means": means, "half_range_percent": spread(means)}
      print(f"{name} ({len(x)} inputs), {kind} draws: mean epistemic "
            f"{' '.join(f'{m:.4f}' for m in means)}; +-{spread(means):.1f}% over "
            f"{args.seeds} seeds", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"student": args.student, "num_samples": args.num_samples,
                 "tfp_distill": td.__version__, "means": result}, f, indent=2)
  return result


if __name__ == "__main__":
  main()
