"""Choose a UCI student method on validation rows, never on the test rows.

Each variant is a set of `UCIConfig` overrides applied to every data set alike (a method,
not a per-set tuning). For every split, 10% of the training rows are held out as the
validation set (`td.datasets.uci.validation_part`); the ensemble and the students train on the rest.
The summary gives, per data set and variant, each student's RMSE relative to its own
ensemble's and its NLL minus the ensemble's (mean +- standard error over splits), the
figures that the UCI targets are stated in.

Usage:
  python scripts/uci_select.py --dataset naval,protein,boston --splits 3 \\
      --variants constant,cosine --out reports/uci_select
  python scripts/uci_select.py --smoke --out /tmp/uci_select      # seconds; for the tests
"""

import argparse
import dataclasses
import json
import os

import numpy as np

from tfp_distill.experiments import uci

#: name -> UCIConfig overrides.
VARIANTS = {
    "constant": {"student_lr_schedule": "constant", "student_hidden": (75,)},
    "cosine": {"student_lr_schedule": "cosine", "student_hidden": (75,)},
    "cosine_60": {"student_lr_schedule": "cosine", "student_epochs": 60,
                  "student_hidden": (75,)},
    "cosine_jitter1": {"student_lr_schedule": "cosine", "jitter_copies": 1.0,
                       "student_hidden": (75,)},
    "wide": {"student_lr_schedule": "constant", "student_hidden": (150,)},
    "cosine_wide": {"student_lr_schedule": "cosine", "student_hidden": (150,)},
}


def _gaps(report, name):
  """student -> {"rmse_ratio", "nll_gap"} -> (mean, stderr) over splits."""
  models = report["results"][name]
  ens_rmse = np.array(models["ensemble"]["rmse"]["values"])
  ens_nll = np.array(models["ensemble"]["nll"]["values"])
  out = {}
  for student in uci.STUDENTS:
    if student not in models:
      continue
    ratio = np.array(models[student]["rmse"]["values"]) / ens_rmse
    gap = np.array(models[student]["nll"]["values"]) - ens_nll
    out[student] = {k: (float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))
                        if len(v) > 1 else 0.0)
                    for k, v in (("rmse_ratio", ratio), ("nll_gap", gap))}
  return out


def summary_markdown(summary):
  lines = ["| data set | variant | student | RMSE / ensemble | NLL - ensemble |",
           "|---|---|---|---:|---:|"]
  for name, variants in summary.items():
    for variant, students in variants.items():
      for student, gaps in students.items():
        (r, rs), (g, gs) = gaps["rmse_ratio"], gaps["nll_gap"]
        lines.append(f"| {name} | {variant} | {student} | {r:.3f} +- {rs:.3f} | "
                     f"{g:+.3f} +- {gs:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "uci_select"))
  parser.add_argument("--dataset", default="naval,protein")
  parser.add_argument("--splits", type=int, default=3)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--members", type=int, default=None)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)
  names = [n for n in args.dataset.split(",") if n]
  variants = [v for v in args.variants.split(",") if v]
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
  # The smoke run's students skip XLA: compiling their step would take most of its time.
  base = (uci.UCIConfig.fast(student_jit_compile=False) if args.smoke
          else uci.UCIConfig())
  base = dataclasses.replace(base, reference_ensemble=False)
  if args.members:
    base = dataclasses.replace(base, num_members=args.members)
  if args.smoke:
    names, args.splits = ["yacht"], 2
  summary = {name: {} for name in names}
  for variant in variants:
    config = dataclasses.replace(base, **VARIANTS[variant])
    report = uci.run_uci(os.path.join(args.out, variant), names, num_splits=args.splits,
                         config=config, data_dir=args.data_dir, validation=True)
    for name in names:
      summary[name][variant] = _gaps(report, name)
  text = summary_markdown(summary)
  with open(os.path.join(args.out, "summary.json"), "w") as f:
    json.dump({"variants": {v: VARIANTS[v] for v in variants}, "splits": args.splits,
               "summary": summary}, f, indent=2)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(text)
  print(text)
  return summary


if __name__ == "__main__":
  main()
