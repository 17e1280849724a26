"""The UCI benchmark table: runs or resumes `tfp-distill uci`, then prints a summary.

The summary has one row per data set: our ensemble and students (mean +- standard error
over splits, original units) beside the published numbers, which are marked as such.

Usage:
  python scripts/uci_table.py --out reports/uci                  # all sets, all splits
  python scripts/uci_table.py --out reports/uci --dataset yacht,boston --splits 5
  python scripts/uci_table.py --out reports/uci --no-run         # summarise what exists
  python scripts/uci_table.py --out reports/uci_old --no-fast-paths   # the 11-25 protocol
  python scripts/uci_table.py --out reports/uci_1130 --protocol 2026-11-30
  python scripts/uci_table.py --out reports/uci_m5 --members 5 --no-reference-ensemble
  python scripts/uci_table.py --smoke --out /tmp/uci_smoke       # seconds; for the tests
"""

import argparse
import glob
import json
import os

from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import uci


def _load_finished(out_dir, config):
  results = {}
  for name in sorted(uci_data.UCI_DATASETS):
    files = sorted(glob.glob(os.path.join(out_dir, name, "split_*.json")))
    splits = []
    for path in files:
      with open(path) as f:
        saved = json.load(f)
      if saved.get("config_key") == config.key():
        splits.append(saved)
    if splits:
      results[name] = splits
  return results


def targets_markdown(report, rmse_ratio=1.10, nll_gap=0.2):
  """The UCI targets per data set: students vs our ensemble.

  (a) every student within 10% RMSE and 0.2 nats of the ensemble (means over splits);
  (b) the full-covariance student's mean NLL at most one standard error (the ensemble's,
  over splits) above the ensemble's mean NLL.
  """
  lines = [f"**Targets**: (a) every student's RMSE <= {rmse_ratio:.2f} x the ensemble's "
           f"and NLL <= the ensemble's + {nll_gap} nats; (b) the full student's NLL <= the "
           "ensemble's + one standard error (the ensemble's, over splits)", "",
           "| data set | RMSE / ensemble (full, diagonal, mixture) | NLL - ensemble (full, "
           "diagonal, mixture) | (a) | full NLL - ensemble vs s.e. | (b) |",
           "|---|---|---|---|---|---|"]
  met_a = met_b = 0
  for name, models in report["results"].items():
    ens = models["ensemble"]
    students = [m for m in uci.STUDENTS if m in models]
    ratios = [models[m]["rmse"]["mean"] / ens["rmse"]["mean"] for m in students]
    gaps = [models[m]["nll"]["mean"] - ens["nll"]["mean"] for m in students]
    a = all(r <= rmse_ratio for r in ratios) and all(g <= nll_gap for g in gaps)
    b = "full" in models and gaps[students.index("full")] <= ens["nll"]["stderr"]
    met_a, met_b = met_a + a, met_b + b
    full_gap = (f"{gaps[students.index('full')]:+.3f} vs {ens['nll']['stderr']:.3f}"
                if "full" in models else "-")
    lines.append(f"| {name} | " + ", ".join(f"{r:.3f}" for r in ratios) + " | "
                 + ", ".join(f"{g:+.3f}" for g in gaps) + f" | {'met' if a else 'not met'} | "
                 f"{full_gap} | {'met' if b else 'not met'} |")
  n = len(report["results"])
  lines += ["", f"(a) met on {met_a} of {n} sets; (b) met on {met_b} of {n}.", ""]
  return lines


def summary_markdown(report):
  """One row per data set: RMSE and NLL of ours and the published models."""
  pub = report["published"]

  def ours(name, model, metric):
    cell = report["results"][name].get(model, {}).get(metric)
    return uci.format_mean_stderr(cell["mean"], cell["stderr"]) if cell else "-"

  def published(source, name, metric):
    value = pub[source].get(name, {}).get(metric)
    return "-" if value is None else f"{value:.2f}"

  lines = []
  for metric in ("rmse", "nll", "ause"):
    lines += [f"**{metric.upper()}** (lower is better; *published* columns are copied "
              "from the papers)", "",
              "| data set | splits | ensemble | full | diagonal | mixture | "
              "*ensemble 2020* | *distilled 2020* | *Deep Ens. 2017* |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in report["results"]:
      row = [name, str(report["num_splits"][name])]
      row += [ours(name, m, metric) for m in uci.MODELS]
      row += [published(s, name, metric) for s in
              ("lindqvist2020_ensemble", "lindqvist2020_distilled", "deep_ensembles2017")]
      lines.append("| " + " | ".join(row) + " |")
    lines.append("")
  lines += ["**Seconds per split** (mean over splits; all stages: ensemble, students and "
            "the second ensemble where there is one)", "",
            "| data set | splits | s / split | total s |", "|---|---:|---:|---:|"]
  for name in report["results"]:
    per_split = sum(uci.seconds_per_split(report)[name].values())
    lines.append(f"| {name} | {report['num_splits'][name]} | {per_split:.0f} | "
                 f"{per_split * report['num_splits'][name]:.0f} |")
  lines.append("")
  lines += targets_markdown(report)
  for part in ("epistemic", "aleatoric"):
    table = uci.format_fidelity_markdown(report, part)
    if table:
      lines += [f"**Fidelity of the {part} variance** to the ensemble's on the test "
                "points (`td.metrics.uncertainty_fidelity`: Spearman rho, Pearson r, "
                "relative L1; older reports: mean relative error MRE; "
                f"`{uci.REFERENCE}`: a second ensemble, the noise ceiling)", "", table, ""]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join("reports", "uci"))
  parser.add_argument("--dataset", default="all")
  parser.add_argument("--splits", type=int, default=None)
  parser.add_argument("--members", type=int, default=None)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--no-run", action="store_true",
                      help="only summarise the finished splits in --out")
  parser.add_argument("--no-fast-paths", action="store_true",
                      help="the protocol of the 2026-11-25 table (see UCIConfig.fast_paths)")
  parser.add_argument("--protocol", choices=sorted(uci.UCIConfig.PROTOCOLS),
                      default=None, help="the settings of an earlier table")
  parser.add_argument("--no-reference-ensemble", action="store_true",
                      help="skip the second ensemble (the fidelity's noise ceiling)")
  parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
  args = parser.parse_args(argv)
  # The smoke run's students skip XLA: compiling their step would take most of its time.
  config = (uci.UCIConfig.fast(student_jit_compile=False) if args.smoke
            else uci.UCIConfig())
  if args.no_fast_paths:
    args.protocol = "2026-11-25"
  if args.protocol:
    config = uci.dataclasses.replace(config, **uci.UCIConfig.PROTOCOLS[args.protocol])
  if args.no_reference_ensemble:
    config = uci.dataclasses.replace(config, reference_ensemble=False)
  if args.members:
    config = uci.dataclasses.replace(config, num_members=args.members)
  names = (sorted(uci_data.UCI_DATASETS) if args.dataset == "all"
           else args.dataset.split(","))
  if args.smoke:
    names, args.splits = ["yacht"], 1
  if args.no_run:
    report = uci.aggregate(_load_finished(args.out, config), config)
    with open(os.path.join(args.out, "report.json"), "w") as f:
      json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "report.md"), "w") as f:
      f.write(uci.format_markdown(report))
  else:
    report = uci.run_uci(args.out, names, num_splits=args.splits, config=config,
                         data_dir=args.data_dir)
  text = summary_markdown(report)
  with open(os.path.join(args.out, "summary.md"), "w") as f:
    f.write(text)
  print(text)
  return report


if __name__ == "__main__":
  main()
