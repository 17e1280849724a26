"""Where a UCI student's epistemic variance falls behind the ensemble's: by region.

Trains one split of the PCA hold-out protocol (`tfp-distill uci --ood`: the ensemble and
the full-covariance student, with the students' inputs given as for `tfp-distill uci`)
and compares the student's epistemic variance with the ensemble's on the training rows,
the test rows, the held-out rows and on uniform points of the data's box (its own ranges,
and widened by half its range on each side): the mean of each, their ratio, and the
Spearman correlation. A student that matches the ensemble on box points but not on the
held-out rows has not seen inputs like those rows (docs/studies/ood-inputs.md).

    python scripts/uci_ood_regions.py --dataset yacht --split 2 --box-share 0.2 --box-expand 0
    python scripts/uci_ood_regions.py --dataset energy --split 3 --box-share 0.2
"""

import argparse
import dataclasses
import json

import numpy as np


def regions(data, rng, num_box=2000):
  """{name: inputs [k, features]}: the training, test and held-out rows and box points."""
  low, high = data.x_train.min(0), data.x_train.max(0)
  width = high - low
  shape = (num_box, data.x_train.shape[1])
  return {"train": data.x_train, "test": data.x_test, "held out": data.x_ood,
          "box (ranges)": (low + rng.uniform(size=shape) * width).astype(np.float32),
          "box (widened by 0.5)": (low - 0.5 * width + rng.uniform(size=shape) * 2 * width
                                   ).astype(np.float32)}


def compare(ensemble_u, student_u):
  """{"ensemble_mean", "student_mean", "ratio", "spearman"} of two [k] arrays."""
  from scipy import stats
  return {"ensemble_mean": float(np.mean(ensemble_u)),
          "student_mean": float(np.mean(student_u)),
          "ratio": float(np.mean(student_u) / max(np.mean(ensemble_u), 1e-30)),
          "spearman": float(stats.spearmanr(ensemble_u, student_u)[0])}


def run(args):
  import tfp_distill as td
  from tfp_distill.datasets import uci as uci_data
  from tfp_distill.experiments import uci
  config = uci.UCIConfig.fast() if args.fast else uci.UCIConfig()
  overrides = {"box_share": args.box_share, "box_expand": args.box_expand,
               "marginal_share": args.marginal_share, "far_share": args.far_share,
               "far_scale": args.far_scale, "student_min_steps": args.student_min_steps}
  config = dataclasses.replace(config, students=("full",), verbose=0,
                               **{k: v for k, v in overrides.items() if v is not None})
  data = uci_data.load_uci_ood(args.dataset, args.split, args.data_dir, seed=config.seed)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  models, _ = uci._train_models(data, family, config, config.seed + 1000 * args.split)  # pylint: disable=protected-access

  def epistemic(name, x):
    return uci.evaluate_model(name, models[name], family, x,
                              np.zeros(len(x), np.float32))[0]["epistemic"]

  out = {"dataset": args.dataset, "split": args.split, "config_key": config.key(),
         "regions": {}}
  for name, x in regions(data, np.random.default_rng(0)).items():
    out["regions"][name] = compare(epistemic("ensemble", x), epistemic("full", x))
  auroc = {m: float(td.metrics.ood_detection(epistemic(m, data.x_test),
                                             epistemic(m, data.x_ood))["auroc"])
           for m in ("ensemble", "full")}
  out["auroc"] = auroc
  print(f"{args.dataset} split {args.split}: AUROC of the held-out rows, ensemble "
        f"{auroc['ensemble']:.3f}, student {auroc['full']:.3f}")
  print("| region | ensemble mean | student mean | ratio | Spearman |")
  print("|---|---:|---:|---:|---:|")
  for name, r in out["regions"].items():
    print(f"| {name} | {r['ensemble_mean']:.4g} | {r['student_mean']:.4g} | "
          f"{r['ratio']:.2f} | {r['spearman']:.2f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
  return out


def main(argv=None):
  from tfp_distill.cli import _common
  from tfp_distill.cli import uci as cli_uci
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="yacht")
  parser.add_argument("--split", type=int, default=0)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--box-share", type=_common.nonnegative_float, default=None)
  parser.add_argument("--box-expand", type=_common.nonnegative_float, default=None)
  parser.add_argument("--marginal-share", type=_common.nonnegative_float, default=None)
  parser.add_argument("--far-share", type=_common.nonnegative_float, default=None)
  parser.add_argument("--far-scale", type=cli_uci._far_scale, default=None)  # pylint: disable=protected-access
  parser.add_argument("--student-min-steps", type=_common.positive_int, default=12000)
  parser.add_argument("--json", default=None, help="also write the figures here")
  parser.add_argument("--fast", action="store_true", help="smoke mode (tiny models)")
  return run(parser.parse_args(argv))


if __name__ == "__main__":
  main()
