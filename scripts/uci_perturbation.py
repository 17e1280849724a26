"""Does moving the distillation inputs up the members' disagreement help UCI students?

Runs (or resumes) the UCI protocol twice on the same splits, seeds and ensembles, with
the full-covariance student only: once as in the benchmark (training inputs plus jittered
copies), once with every distillation batch moved by `td.perturb.MeanDisagreement(step)`
(the regression analogue of ODS). Prints, per data set, the student's RMSE and NLL
(original units) in both runs and their paired difference (perturbed - plain, mean +-
standard error over splits; negative is better).

Usage:
  python scripts/uci_perturbation.py --out reports/uci_perturbation \\
      --dataset yacht,energy,boston --splits 10 --step 0.2
  python scripts/uci_perturbation.py --smoke --out /tmp/uci_perturbation   # seconds
"""

import argparse
import dataclasses
import os

import numpy as np

from tfp_distill.experiments import uci


def paired_rows(plain, perturbed, model="full"):
  """name -> metric -> (plain mean, perturbed mean, paired mean diff, its stderr, n)."""
  rows = {}
  for name in plain["results"]:
    rows[name] = {}
    for metric in ("rmse", "nll"):
      a = np.array(plain["results"][name][model][metric]["values"])
      b = np.array(perturbed["results"][name][model][metric]["values"])
      d = b - a
      stderr = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
      rows[name][metric] = (a.mean(), b.mean(), d.mean(), stderr, len(d))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "uci_perturbation"))
  parser.add_argument("--dataset", default="yacht,energy,boston")
  parser.add_argument("--splits", type=int, default=10)
  parser.add_argument("--step", type=float, default=0.2,
                      help="MeanDisagreement step size (normalised inputs)")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny configuration (seconds; not for results)")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.dataset.split(",") if n.strip()]
  # The table compares the full student only: no second ensemble (the noise ceiling),
  # and the smoke run's students skip XLA (its compilation would take most of the run).
  base = (uci.UCIConfig.fast(student_jit_compile=False) if args.smoke
          else uci.UCIConfig())
  plain = dataclasses.replace(base, students=("full",), reference_ensemble=False)
  moved = dataclasses.replace(plain, perturbation_step=args.step)
  reports = {label: uci.run_uci(os.path.join(args.out, label), names, args.splits, config)
             for label, config in (("plain", plain), (f"step_{args.step:g}", moved))}
  plain_report, moved_report = reports.values()
  print(f"\nFull-covariance student, {args.splits} splits, MeanDisagreement step "
        f"{args.step:g} (paired difference: perturbed - plain; negative is better)\n")
  print("| data set | metric | plain | perturbed | difference | splits |")
  print("|---|---|---|---|---|---|")
  rows = paired_rows(plain_report, moved_report)
  for name, metrics in rows.items():
    for metric, (a, b, d, se, n) in metrics.items():
      print(f"| {name} | {metric.upper()} | {a:.3f} | {b:.3f} | {d:+.3f} +- {se:.3f} | {n} |")
  return rows


if __name__ == "__main__":
  main()
