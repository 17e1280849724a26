"""Two UCI reports side by side: wall time per split and every metric's change in standard
errors (e.g. the table before and after the fast paths).

For each data set, model and metric it prints the two means and the difference divided
by the combined standard error sqrt(se_a^2 + se_b^2) of the two means (the runs use other
random draws, so their splits' results are independent draws of the same protocol).

Usage:
  python scripts/uci_compare.py docs/uci/report.json reports/uci/report.json
  python scripts/uci_compare.py OLD NEW --markdown out.md
"""

import argparse
import json
import math

from tfp_distill.experiments import uci


def _total_seconds(report, name):
  per_split = sum(uci.seconds_per_split(report)[name].values())
  return per_split, per_split * report["num_splits"][name]


def compare(old, new):
  """Rows for every data set both reports hold.

  Returns:
    dict: "timing" (name -> old/new seconds per split and in all, speed-up), "metrics"
      (name -> model -> metric -> old mean, new mean, difference, combined standard error,
      difference in standard errors), "total" (old and new seconds, speed-up).
  """
  names = sorted(set(old["results"]) & set(new["results"]))
  timing, metrics = {}, {}
  total_old = total_new = 0.0
  for name in names:
    old_split, old_all = _total_seconds(old, name)
    new_split, new_all = _total_seconds(new, name)
    total_old += old_all
    total_new += new_all
    timing[name] = {"old_s_per_split": old_split, "new_s_per_split": new_split,
                    "old_s": old_all, "new_s": new_all, "speedup": old_all / new_all,
                    "splits": (old["num_splits"][name], new["num_splits"][name])}
    metrics[name] = {}
    for model, cells in new["results"][name].items():
      if model not in old["results"][name]:
        continue
      metrics[name][model] = {}
      for metric, b in cells.items():
        a = old["results"][name][model][metric]
        se = math.hypot(a["stderr"], b["stderr"])
        diff = b["mean"] - a["mean"]
        metrics[name][model][metric] = {
            "old": a["mean"], "new": b["mean"], "difference": diff, "stderr": se,
            "z": diff / se if se > 0 else float("inf") * (1 if diff else 0)}
  return {"timing": timing, "metrics": metrics,
          "total": {"old_s": total_old, "new_s": total_new,
                    "speedup": total_old / total_new if total_new else float("nan")}}


def markdown(result):
  """Two tables: wall time, and the metrics whose change exceeds 2 standard errors."""
  lines = ["| data set | splits (old, new) | s / split old | s / split new | speed-up |",
           "|---|---|---:|---:|---:|"]
  for name, t in result["timing"].items():
    lines.append(f"| {name} | {t['splits'][0]}, {t['splits'][1]} | "
                 f"{t['old_s_per_split']:.1f} | {t['new_s_per_split']:.1f} | "
                 f"{t['speedup']:.2f}x |")
  total = result["total"]
  lines.append(f"| **all** | | {total['old_s']:.0f} s | {total['new_s']:.0f} s | "
               f"**{total['speedup']:.2f}x** |")
  count = sum(len(cells) for models in result["metrics"].values()
              for cells in models.values())
  outside = [(name, model, metric, c) for name, models in result["metrics"].items()
             for model, cells in models.items() for metric, c in cells.items()
             if abs(c["z"]) > 2]
  lines += ["", f"{count - len(outside)} of {count} (data set, model, metric) means moved "
                "by less than 2 combined standard errors; the others:", "",
            "| data set | model | metric | old | new | difference / s.e. |",
            "|---|---|---|---:|---:|---:|"]
  for name, model, metric, c in outside:
    lines.append(f"| {name} | {model} | {metric} | {c['old']:.4g} | {c['new']:.4g} | "
                 f"{c['z']:+.1f} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("old", help="report.json of the earlier run")
  parser.add_argument("new", help="report.json of the later run")
  parser.add_argument("--markdown", help="also write the tables to this file")
  args = parser.parse_args(argv)
  with open(args.old) as f:
    old = json.load(f)
  with open(args.new) as f:
    new = json.load(f)
  result = compare(old, new)
  text = markdown(result)
  print(text)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(text + "\n")
  return result


if __name__ == "__main__":
  main()
