"""How much NLL an ensemble loses when its predictive is replaced by one Normal.

A student whose predictive over y is unimodal (the mixture student's Normal; the
distribution students' q~(y | x), a continuous scale mixture of Normals with one mode)
cannot reach the NLL of the ensemble's equally weighted mixture of M Normals where that
mixture is far from Normal. This script measures the gap for the ensemble itself, with no
student involved, on validation rows carved from each split's training rows (the test
rows are not touched):

```none
gap = NLL( N(y; mean of the mixture, variance of the mixture) ) - NLL( mixture )   >= 0 typ.
```

Usage:
  python scripts/uci_unimodal_gap.py --dataset naval,protein,boston --splits 3
  python scripts/uci_unimodal_gap.py --smoke       # seconds; for the tests
"""

import argparse
import dataclasses
import json

import numpy as np

import tfp_distill as td
from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import uci


def gap(name, split, config, data_dir=None):
  """{"mixture_nll", "normal_nll", "gap", "median_epistemic_over_aleatoric"} (orig. units)."""
  data = uci_data.validation_part(uci_data.load_uci(name, split, data_dir),
                                  seed=config.seed)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  ensemble = uci.train_ensemble(data, family, config, config.seed + 1000 * split)
  z = ensemble.predict_targets(data.x_test)
  mixture = float(td.metrics.gaussian_mixture_nll(
      data.y_test, family.mean(z)[..., 0], family.variance(z)[..., 0]))
  u = td.decompose_ensemble(z, family)
  normal = float(td.metrics.gaussian_nll(data.y_test, u["prediction"], u["total"]))
  log_scale = float(np.log(data.y_std))
  return {"mixture_nll": mixture + log_scale, "normal_nll": normal + log_scale,
          "gap": normal - mixture,
          "median_epistemic_over_aleatoric": float(np.median(
              np.asarray(u["epistemic"]) / np.asarray(u["aleatoric"])))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", default="naval,protein,boston")
  parser.add_argument("--splits", type=int, default=3)
  parser.add_argument("--members", type=int, default=None)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--json", default=None, help="also write the figures here")
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)
  config = uci.UCIConfig.fast() if args.smoke else uci.UCIConfig(verbose=0)
  if args.members:
    config = dataclasses.replace(config, num_members=args.members)
  names = ["yacht"] if args.smoke else [n for n in args.dataset.split(",") if n]
  splits = 1 if args.smoke else args.splits
  results = {name: [gap(name, i, config, args.data_dir) for i in range(splits)]
             for name in names}
  print("| data set | split | mixture NLL | one Normal NLL | gap | median epistemic / "
        "aleatoric |\n|---|---:|---:|---:|---:|---:|")
  for name, rows in results.items():
    for i, r in enumerate(rows):
      print(f"| {name} | {i} | {r['mixture_nll']:.3f} | {r['normal_nll']:.3f} | "
            f"{r['gap']:+.3f} | {r['median_epistemic_over_aleatoric']:.2f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == "__main__":
  main()
