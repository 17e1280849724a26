"""UCI PCA hold-out: the students' OOD detection and fidelity by distillation inputs.

Reads the saved splits of several `tfp-distill uci --ood` runs that differ only in the
students' inputs (same seeds, so the same ensembles) and writes one table per student:
for each data set, the ensemble's AUROC (and a second ensemble's, where a run has it)
and, for each run, the student's AUROC by epistemic variance, its gap to the ensemble's,
the Spearman correlation and mean ratio of its epistemic variance to the ensemble's on
the held-out rows, and its RMSE on the in-distribution test rows over the ensemble's.
The target of the OOD issue: AUROC no more than 0.02 below the ensemble's (mean over
splits).

    tfp-distill uci --ood --out reports/uci_ood/jitter
    tfp-distill uci --ood --box-share 0.2 --student-min-steps 12000 \\
        --no-reference-ensemble --out reports/uci_ood/box
    python scripts/uci_ood_inputs.py jitter=reports/uci_ood/jitter \\
        box=reports/uci_ood/box --out docs/uci/ood_inputs

With `--choice DIR` (the folder of `scripts/uci_choose_inputs.py`, inputs chosen per set
and split on a proxy of the training rows), one more column, "chosen": on each split the
run of the mix chosen there, taken from the runs named as the mixes (box=..., and with
`--from MIX=FOLDER` runs that are sources only, not columns: a run of one mix on a few
sets). Splits whose chosen mix has no run are listed, and their set left out of the
table. Where choice.json has a choice pooled over each set's splits
(`uci_choice.pooled_choice`), a "pooled" column too: that mix on every split.

    python scripts/uci_ood_inputs.py jitter=reports/uci_ood/jitter box=reports/uci_ood/box \\
        --choice reports/uci_ood/choice --from marginal=reports/uci_ood/marginal \\
        --from far=reports/uci_ood/far --out docs/uci/ood_inputs/chosen

Writes OUT/report.md and OUT/report.json.
"""

import argparse
import glob
import json
import os

import numpy as np

TOLERANCE = 0.02


def load_run(folder):
  """{data set: [split results]} from a run's saved `ood_split_*.json` files."""
  out = {}
  for path in sorted(glob.glob(os.path.join(folder, "*", "ood_split_*.json"))):
    with open(path) as f:
      result = json.load(f)
    out.setdefault(result["dataset"], []).append(result)
  return out


def _mean_se(values):
  values = np.asarray(values, np.float64)
  se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
  return float(values.mean()), float(se)


def compare(runs, student="full"):
  """Rows per data set: the splits every run has, the ensembles' AUROC and each run's
  student figures (see the module docstring).

  Args:
    runs: dict {name: {data set: [split results]}} (`load_run`).
    student: which student's figures ("full", "diagonal").

  Returns:
    list of dicts, one per data set present in every run.
  """
  names = [n for n in next(iter(runs.values())) if all(n in r for r in runs.values())]
  rows = []
  for name in names:
    by_split = [{r["split"]: r for r in run[name]} for run in runs.values()]
    splits = sorted(set.intersection(*(set(s) for s in by_split)))
    first = [by_split[0][s] for s in splits]
    ensemble = [r["ood_auroc"]["ensemble"]["epistemic"] for r in first]
    row = {"set": name, "splits": len(splits), "n_ood": first[0]["n_ood"],
           "ensemble": _mean_se(ensemble), "runs": {}}
    for run in by_split:    # the first run that trained a second ensemble on every split
      if all("second_ensemble" in run[s]["ood_auroc"] for s in splits):
        row["second_ensemble"] = _mean_se(
            [run[s]["ood_auroc"]["second_ensemble"]["epistemic"] for s in splits])
        break
    for run_name, run in zip(runs, by_split, strict=True):
      results = [run[s] for s in splits]
      if any(r["ood_auroc"]["ensemble"]["epistemic"] != e for r, e in
             zip(results, ensemble, strict=True)):
        raise ValueError(f"{run_name}: {name}'s ensembles differ from the first run's; "
                         "compare runs of the same seeds and members only.")
      auroc = [r["ood_auroc"][student]["epistemic"] for r in results]
      fid = [r["fidelity_ood"][student]["epistemic"] for r in results]
      gap = _mean_se(np.subtract(auroc, ensemble))
      row["runs"][run_name] = {
          "auroc": _mean_se(auroc), "gap": gap, "met": gap[0] >= -TOLERANCE,
          "spearman": _mean_se([f["spearman"] for f in fid]),
          "mean_ratio": _mean_se([f["mean_ratio"] for f in fid]),
          "rmse_ratio": _mean_se([r["metrics"][student]["rmse_in"] /
                                  r["metrics"]["ensemble"]["rmse_in"] for r in results]),
          "nll_in": _mean_se([r["metrics"][student]["nll_in"] for r in results])}
    rows.append(row)
  return rows


def chosen_run(runs, chosen):
  """The run of the chosen mixes: split by split, the result of the run named as the mix
  chosen on that split.

  Args:
    runs: {name: {data set: [split results]}} (`load_run`), named as the mixes.
    chosen: {data set: [mix per split 0, 1, ...]} (`choice.json`'s "chosen").

  Returns:
    (run, missing): run {data set: [split results]} for the sets whose every chosen
    split is in its mix's run; missing, a list of (data set, split, mix) that are not.
  """
  run, missing = {}, []
  for name, mixes in chosen.items():
    results = []
    for split, mix in enumerate(mixes):
      found = [r for r in runs.get(mix, {}).get(name, []) if r["split"] == split]
      if found:
        results.append(found[0])
      else:
        missing.append((name, split, mix))
    if len(results) == len(mixes):
      run[name] = results
  return run, missing


def markdown(rows, student="full"):
  """The comparison as Markdown: an AUROC table and a fidelity table."""
  runs = list(rows[0]["runs"]) if rows else []

  def ms(pair, spec=".3f"):
    return f"{pair[0]:{spec}} +- {pair[1]:{spec}}"

  lines = [f"### AUROC by epistemic variance, {student} student (gap to the ensemble)", "",
           "| data set (splits, OOD rows) | ensemble | second ensemble | "
           + " | ".join(runs) + " |", "|---|---:|---:|" + "---:|" * len(runs)]
  for r in rows:
    second = ms(r["second_ensemble"]) if "second_ensemble" in r else "-"
    cells = [f"{v['auroc'][0]:.3f} ({v['gap'][0]:+.3f}){' met' if v['met'] else ''}"
             for v in r["runs"].values()]
    lines.append(f"| {r['set']} ({r['splits']}, {r['n_ood']}) | {ms(r['ensemble'])} | "
                 f"{second} | " + " | ".join(cells) + " |")
  met = [sum(r["runs"][n]["met"] for r in rows) for n in runs]
  lines.append(f"| **met (of {len(rows)})** | | | " + " | ".join(str(m) for m in met) + " |")
  lines += ["", "### On the held-out rows: Spearman to the ensemble / mean ratio; in "
            "distribution: RMSE over the ensemble's / NLL (+- standard error)", "",
            "| data set | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
  for r in rows:
    cells = [f"{v['spearman'][0]:.2f} / {v['mean_ratio'][0]:.2f} / "
             f"x{v['rmse_ratio'][0]:.3f} / {ms(v['nll_in'])}" for v in r["runs"].values()]
    lines.append(f"| {r['set']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", metavar="NAME=FOLDER",
                      help="a name for the run's inputs and its --out folder")
  parser.add_argument("--student", action="append", default=None,
                      help="full (default) and/or diagonal")
  parser.add_argument("--out", default=None, help="write report.md and report.json here")
  parser.add_argument("--choice", default=None, metavar="DIR",
                      help="add the column of the mixes chosen per split (choice.json of "
                           "scripts/uci_choose_inputs.py)")
  parser.add_argument("--from", dest="sources", action="append", default=[],
                      metavar="MIX=FOLDER", help="with --choice: a run of one mix to take "
                      "chosen splits from, without a column of its own")
  args = parser.parse_args(argv)
  if args.sources and not args.choice:
    parser.error("--from needs --choice")
  runs, sources = {}, {}
  for item in args.runs + args.sources:
    if "=" not in item:
      parser.error(f"expected NAME=FOLDER, got {item!r}")
    name, folder = item.split("=", 1)
    sources[name] = load_run(folder)
    if not sources[name]:
      parser.error(f"{folder}: no ood_split_*.json files")
    if item in args.runs:
      runs[name] = sources[name]
  missing = []
  if args.choice:
    with open(os.path.join(args.choice, "choice.json")) as f:
      choice = json.load(f)
    chosen = choice["chosen"]
    runs["chosen"], missing = chosen_run(sources, chosen)
    if choice.get("pooled"):
      pooled = {name: [mix] * len(chosen[name]) for name, mix in choice["pooled"].items()}
      runs["pooled"], missing_pooled = chosen_run(sources, pooled)
      missing += [m for m in missing_pooled if m not in missing]
    for name, split, mix in missing:
      print(f"missing: {name} split {split} chose {mix}, which has no run of that split "
            f"(name a {mix}=FOLDER run that has it)")
    if not runs["chosen"] or ("pooled" in runs and not runs["pooled"]):
      parser.error("--choice: no set has a run of every chosen split")
  students = args.student or ["full"]
  tables = {s: compare(runs, s) for s in students}
  text = "\n".join(markdown(rows, s) for s, rows in tables.items())
  print(text)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "report.md"), "w") as f:
      command = " ".join(args.runs + [f"--from {s}" for s in args.sources])
      if args.choice:
        command += f" --choice {args.choice}"
      f.write("# UCI PCA hold-out by distillation inputs\n\nCommand: `python "
              "scripts/uci_ood_inputs.py " + command + "`\n\n" + text)
    with open(os.path.join(args.out, "report.json"), "w") as f:
      json.dump({"runs": dict(item.split("=", 1) for item in args.runs),
                 "sources": dict(item.split("=", 1) for item in args.sources),
                 "choice": args.choice, "missing": missing, "tables": tables}, f,
                indent=2)
  return tables


if __name__ == "__main__":
  main()
