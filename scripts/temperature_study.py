"""The EnD^2 student's starting temperature, and the Gaussian-over-logits student beside
it: which brings the size of the epistemic uncertainty (mutual information) nearer the
ensemble's, on the data and off it?

EnD^2 ([2] of DESIGN.md, sec. 4) fits its Dirichlet at a raised temperature first and
anneals to 1 (`td.distill(temperature=T)`: T held for the first quarter of the epochs,
linear to 1 by three quarters; the library's default T is 2.5). The OOD study found the
EnD^2 students' mutual information off the data 0.01-0.72x the ensemble's on the small
classification sets (docs/studies/ood-inputs.md); on images the Gaussian-over-logits
student stayed within 1.5x. For each set, seed, method (and starting temperature, for
end2) and input mix, one student from the same five members:

    python scripts/temperature_study.py --temperatures 1,2.5,5,10 --seeds 2 \\
        --mixes default,default+box --out docs/ood_inputs/temperature [--fast]
    python scripts/temperature_study.py --methods gaussian-logits --seeds 2 \\
        --mixes default,default+box --out DIR
    python scripts/temperature_study.py --merge DIR1 DIR2 --out DIR   # trains nothing

Data, members (five Keras 3 MLPs) and mixes as `scripts/ood_inputs_study.py` (the mixes
are its `MIXES`: "default" is mixup); every student sees the same members. Each row: the
NLL and accuracy gap on the test rows, the mean ratio and Spearman of the student's
mutual information to the ensemble's there, and on far points (the test rows moved 0, 1
and 3 feature sd beyond the data) the AUROC of both, the mean ratio and the Spearman.
Writes DIR/report.json and DIR/report.md.
"""

import argparse
import json
import os
import time

import numpy as np

SETS = ("wine", "breast_cancer")


def _study():
  """scripts/ood_inputs_study.py as a module (its data, members, mixes and far rows)."""
  import importlib.util   # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ood_inputs_study.py")
  spec = importlib.util.spec_from_file_location("ood_inputs_study", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_set(td, keras, study, dd, name, seed, args):
  """The rows of one set and seed: a student per temperature and mix."""
  x, y, x_test, y_test, task = dd._data(name, seed)  # pylint: disable=protected-access
  count, epochs = (2, 5) if args.fast else (5, 200)
  members = dd._members(keras, x, y, task, seed, count, epochs)  # pylint: disable=protected-access
  rows = []
  students = [(m, t) for m in args.method_names
              for t in (args.temperature_values if m == "end2" else [None])]
  for mix in args.mix_names:
    for method, temperature in students:
      start = time.perf_counter()
      report = td.distill(members, (x, y), (x_test, y_test), method=method,
                          temperature=temperature, task=task, force=True, seed=seed,
                          extra_inputs=study.MIXES[mix].format(default="mixup"),
                          min_steps=args.min_steps, verbose=0,
                          output_normalization=getattr(args, "output_normalization",
                                                       "auto")).report
      row = {"set": name, "seed": seed, "mix": mix, "method": method,
             "temperature": temperature,
             "seconds": time.perf_counter() - start,
             "epochs_run": report["epochs_run"],
             "best_epoch": report["schedule"]["best_epoch"],
             **study._in_distribution(report),  # pylint: disable=protected-access
             "far": study.far_rows(report)}
      rows.append(row)
      print(json.dumps(row), flush=True)
  return rows


def student_name(row):
  """"end2, T = 2.5" or the method's name (rows before methods were recorded: end2)."""
  method = row.get("method", "end2")
  return method if row.get("temperature") is None else f"{method}, T = {row['temperature']:g}"


def summary(rows):
  """{(mix, student_name): means over the sets and seeds}: NLL gap, geometric-mean ratios
  (test rows, 1 and 3 sd), AUROC gap at 3 sd, and how many rows are within 1.5x on the
  test rows and at 1 and 3 sd together."""
  groups = {}
  for r in rows:
    groups.setdefault((r["mix"], student_name(r)), []).append(r)
  out = {}
  for key, group in groups.items():
    def geo(get, group=group):
      return float(np.exp(np.mean([np.log(max(get(r), 1e-30)) for r in group])))

    def within(r):
      ratios = [r["mean_ratio"], r["far"]["1"]["mean_ratio"], r["far"]["3"]["mean_ratio"]]
      return all(1 / 1.5 <= v <= 1.5 for v in ratios)
    out[key] = {
        "n": len(group),
        "nll_gap": float(np.mean([r["nll_gap"] for r in group])),
        "accuracy_gap": float(np.mean([r["accuracy_gap"] for r in group])),
        "ratio_test": geo(lambda r: r["mean_ratio"]),
        "ratio_1": geo(lambda r: r["far"]["1"]["mean_ratio"]),
        "ratio_3": geo(lambda r: r["far"]["3"]["mean_ratio"]),
        "auroc_gap_3": float(np.mean([r["far"]["3"]["student_auroc"]
                                      - r["far"]["3"]["ensemble_auroc"] for r in group])),
        "spearman_3": float(np.mean([r["far"]["3"]["spearman"] or 0.0 for r in group])),
        "within": sum(within(r) for r in group)}
  return out


def markdown(rows, args, wall):
  """The per-row table and the summary, as Markdown."""
  lines = ["# The EnD^2 student's starting temperature, and the Gaussian student", "",
           "Cells at 1 and 3 sd: AUROC gap to the ensemble / mean ratio / Spearman.", "",
           "| set | seed | mix | student | NLL gap | test ratio | test Spearman | 1 sd | "
           "3 sd |",
           "|---|---:|---|---:|---:|---:|---:|---|---|"]

  def far(block):
    gap = block["student_auroc"] - block["ensemble_auroc"]
    rho = block["spearman"]
    return f"{gap:+.3f} / {block['mean_ratio']:.2f}x / " + (
        "n/a" if rho is None else f"{rho:.2f}")
  for r in rows:
    rho = r["spearman"]
    lines.append(f"| {r['set']} | {r['seed']} | {r['mix']} | {student_name(r)} | "
                 f"{r['nll_gap']:+.4f} | {r['mean_ratio']:.2f}x | "
                 + ("n/a" if rho is None else f"{rho:.2f}")
                 + f" | {far(r['far']['1'])} | {far(r['far']['3'])} |")
  lines += ["", "Over the sets and seeds (ratios: geometric means; within 1.5x: rows whose "
            "test, 1 sd and 3 sd ratios all are):", "",
            "| mix | student | rows | NLL gap | accuracy gap | test ratio | 1 sd ratio | "
            "3 sd ratio | AUROC gap, 3 sd | Spearman, 3 sd | within 1.5x |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for (mix, student), s in summary(rows).items():
    lines.append(f"| {mix} | {student} | {s['n']} | {s['nll_gap']:+.4f} | "
                 f"{s['accuracy_gap']:+.4f} | {s['ratio_test']:.2f}x | {s['ratio_1']:.2f}x | "
                 f"{s['ratio_3']:.2f}x | {s['auroc_gap_3']:+.3f} | {s['spearman_3']:.2f} | "
                 f"{s['within']} of {s['n']} |")
  lines += ["", f"Commands: {args.commands}; 2 CPU cores, {wall / 60:.0f} minutes"
            + (" (the longest run)" if args.merged else "") + "."]
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("reports", "temperature"))
  parser.add_argument("--methods", default="end2",
                      help="classification methods, comma-separated (end2 is run at each "
                           "of --temperatures)")
  parser.add_argument("--temperatures", default="1,2.5,5,10",
                      help="end2's starting temperatures, comma-separated (each >= 1)")
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--first-seed", type=int, default=0)
  parser.add_argument("--sets", default=",".join(SETS))
  parser.add_argument("--mixes", default="default,default+box",
                      help="names of scripts/ood_inputs_study.py's MIXES")
  parser.add_argument("--min-steps", type=int, default=None,
                      help="one schedule for every student (default: td.distill's)")
  parser.add_argument("--output-normalization", choices=("auto", "on", "off"),
                      default="auto", help="td.distill's output_normalization")
  parser.add_argument("--fast", action="store_true",
                      help="smoke mode: wine, one seed, tiny members and students")
  parser.add_argument("--merge", nargs="+", metavar="DIR",
                      help="write --out from the report.json of other runs; trains nothing")
  args = parser.parse_args(argv)
  study = _study()
  if args.merge:
    parts = study.read_reports(args.merge)
    rows = [r for part in parts for r in part["rows"]]
    args.commands = "; ".join(_command(p["args"]) for p in parts)
    args.merged = True
    return _write(args.out, rows, args, max(p["wall_time_s"] for p in parts))
  args.temperature_values = [float(t) for t in args.temperatures.split(",")]
  if any(not t >= 1 for t in args.temperature_values):
    parser.error(f"--temperatures: each must be >= 1, got {args.temperatures}")
  args.mix_names = args.mixes.split(",")
  args.method_names = args.methods.split(",")
  unknown = [m for m in args.mix_names if m not in study.MIXES]
  if unknown:
    parser.error(f"--mixes: unknown {unknown}; known: {', '.join(study.MIXES)}")
  if args.fast:
    args.sets, args.seeds, args.min_steps = "wine", 1, 50
  import tfp_distill as td   # pylint: disable=import-outside-toplevel
  from tfp_distill import _keras3   # pylint: disable=import-outside-toplevel
  keras = _keras3.module()
  dd = study._sibling("distill_defaults")  # pylint: disable=protected-access
  start = time.perf_counter()
  rows = []
  for name in args.sets.split(","):
    for seed in range(args.first_seed, args.first_seed + args.seeds):
      rows += run_set(td, keras, study, dd, name, seed, args)
  wall = time.perf_counter() - start
  args.commands, args.merged = _command(vars(args)), False
  return _write(args.out, rows, args, wall)


def _command(args):
  """The command line of a run, from its args (a dict)."""
  methods = args.get("methods", "end2")
  flags = f" --methods {methods}" if methods != "end2" else ""
  flags += (f" --temperatures {args['temperatures']}"
            if "end2" in methods.split(",") else "")
  flags += f" --first-seed {args['first_seed']}" if args.get("first_seed") else ""
  flags += f" --min-steps {args['min_steps']}" if args.get("min_steps") else ""
  flags += (f" --output-normalization {args['output_normalization']}"
            if args.get("output_normalization", "auto") != "auto" else "")
  return (f"`python scripts/temperature_study.py{flags} --seeds {args['seeds']} --sets "
          f"{args['sets']} --mixes {args['mixes']} --out {args['out']}`")


def _write(out, rows, args, wall):
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump({"rows": rows, "args": vars(args), "wall_time_s": wall}, f, indent=2)
  text = markdown(rows, args, wall)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(text)
  print(text)
  return rows


if __name__ == "__main__":
  main()
