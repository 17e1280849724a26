"""Distillation inputs off the data: which mix keeps a student faithful on far points,
chosen on a proxy built from the training rows alone, then measured.

For each small tabular set (scikit-learn's wine and breast cancer, classification; UCI
yacht and energy, regression, raw targets) and seed:

1. **Selection, training rows only.** The training rows' first principal component
   splits them: the 15% with the largest score are a proxy out-of-distribution set, the
   rest the proxy training rows. Five Keras 3 members are trained on the proxy training
   rows, and `td.distill` distils them with each input mix (`MIXES`: the method's default
   inputs alone, plus far points or the data's widened box, as many as the training rows
   or a quarter of that), with the proxy OOD rows
   as `ood` and a fifth of the other rows held out as the proxy's test rows. A mix is
   admissible if the student's in-distribution score on those held-out rows is within
   `IN_DISTRIBUTION_SLACK` of the default inputs' student (far inputs can cost accuracy
   on the data). Among admissible mixes the choice (`choose`, `--choice`) is by
   fidelity on the proxy OOD rows: the mixes that meet more of the proxy's targets
   (AUROC no more than 0.02 below the ensemble's; mean epistemic uncertainty within 1.5x
   of the ensemble's), then the highest Spearman correlation of the student's epistemic
   uncertainty to the ensemble's there. `--choice auroc` is the rule of the 2026-12-06
   run: the largest OOD AUROC minus the ensemble's (ties within 0.01 to the mean nearer
   the ensemble's), which rewards a student that ranks the proxy rows *above* the
   ensemble. Nothing of the test rows or of the reported far points is seen.
2. **Measurement.** Five members on all the training rows; each mix distilled; the
   report's far block (the test rows moved 0, 1 and 3 feature sd beyond the data,
   `td.datasets.far.far_points`): AUROC of the epistemic uncertainty (test rows vs far
   points) for ensemble and student, the ratio of their means, and the student's
   Spearman correlation to the ensemble there, beside a second ensemble's (five members
   of other seeds: the noise ceiling). In distribution: the NLL gap (classification) or
   RMSE ratio (regression) on the test rows.

    python scripts/ood_inputs_study.py --out docs/ood_inputs [--seeds 1] [--mixes ...] [--fast]
        [--method gaussian-logits]   # the classification sets' method (default end2)

Writes DIR/report.json, DIR/report.md and DIR/magnitude.png (`figure`). Members and students as in
`scripts/distill_defaults.py` (two hidden layers of 64; `td.distill` defaults: its
automatic schedule plans 3000 optimizer steps, 12000 with far or box inputs, and early
stopping may end sooner; `--min-steps N` fixes one plan for every mix).
"""

import argparse
import importlib.util
import json
import os
import time

import numpy as np

from tfp_distill.experiments import input_choice

#: name -> extra_inputs spec with "{default}" the method's own kind (mixup or jitter). The
#: ":0.25" mixes add a quarter as many far or box inputs as training rows (the others as
#: many).
MIXES = {"default": "{default}", "default+far": "{default}+far",
         "default+far:0.25": "{default}+far:0.25", "default+box": "{default}+box",
         "default+box:0.25": "{default}+box:0.25"}
#: The choice rule and its constants are the library's (`td.experiments.input_choice`):
#: an admissible mix's in-distribution score on the proxy's held-out training rows is
#: within IN_DISTRIBUTION_SLACK of the default inputs' student; the proxy's targets are
#: an AUROC no more than PROXY_AUROC_TOLERANCE below the ensemble's and a mean within
#: PROXY_RATIO_FACTOR.
IN_DISTRIBUTION_SLACK = input_choice.IN_DISTRIBUTION_SLACK
PROXY_AUROC_TOLERANCE = input_choice.PROXY_AUROC_TOLERANCE
PROXY_RATIO_FACTOR = input_choice.PROXY_RATIO_FACTOR
CHOICES = input_choice.RULES
SETS = ("wine", "breast_cancer", "yacht", "energy")
_DEFAULT_KIND = {"classification": "mixup", "regression": "jitter"}


def _sibling(name):
  """A module of this folder (the data and members of scripts/distill_defaults.py)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def pca_holdout(x, share=0.15):
  """(proxy train index, proxy OOD index): the rows with the largest first-principal-
  component scores (the top `share`) are held out."""
  centred = x - x.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  score = centred @ vt[0]
  order = np.argsort(score)
  k = max(1, int(round(share * len(x))))
  return np.sort(order[:-k]), np.sort(order[-k:])


def _distill(td, members, train, test, task, mix, ood=None, min_steps=None, seed=0,
             method=None):
  spec = MIXES[mix].format(default=_DEFAULT_KIND[task])
  settings = {"extra_inputs": spec, "min_steps": min_steps, "verbose": 0, "seed": seed,
              "task": task, "force": True, "method": (method or {}).get(task)}
  if task == "regression":
    settings["variance"] = "softplus"      # the members' convention (as they are built)
  return td.distill(members, train, test, ood, **settings).report


def _epistemic(td, members, task, x):
  family = (td.families.CategoricalLogits(int(members[0].outputs[0].shape[-1]))
            if task == "classification" else td.families.HeteroscedasticNormal())
  u = td.predict_uncertainty(td.Ensemble(members, family=family), family, x)
  return u["epistemic"]


def _proxy_score(report):
  """The proxy's view of one student: OOD AUROC gap and log mean ratio on the held-out
  principal-component rows, and its in-distribution score on the held-out inner rows."""
  ood = report.get("ood") or {}
  ens, stu = ood.get("ensemble"), ood.get("student")
  if not ens or not stu:
    return None
  ratio = stu["mean_out"] / max(ens["mean_out"], 1e-30)
  return {"auroc_gap": stu["auroc"] - ens["auroc"], "log_mean_ratio": float(np.log(ratio)),
          "student_auroc": stu["auroc"], "ensemble_auroc": ens["auroc"],
          "ood_spearman": (ood.get("fidelity") or {}).get("spearman"),
          **_in_distribution(report)}


def admissible(scores):
  """The mixes whose in-distribution score on the proxy is within `IN_DISTRIBUTION_SLACK`
  of the default inputs' (the default always is)."""
  return input_choice.admissible(scores, base="default")


proxy_targets_met = input_choice.proxy_targets_met


def choose(scores, rule=input_choice.DEFAULT_RULE):
  """The mix to use among the admissible ones (`input_choice.choose` with the default
  inputs as the in-distribution reference).

  rule "fidelity": the most proxy targets met (`proxy_targets_met`), then the highest
  Spearman to the ensemble on the proxy OOD rows, then the mean nearer the ensemble's.
  rule "auroc": the best proxy AUROC gap; within 0.01 of it, the mean nearer the
  ensemble's (the 2026-12-06 run's rule).
  """
  return input_choice.choose(scores, rule, base="default")


def _in_distribution(report):
  ens, stu = report["ensemble"], report["student"]
  if "accuracy" in ens:
    out = {"nll_gap": stu["nll"] - ens["nll"], "accuracy_gap": ens["accuracy"] -
           stu["accuracy"]}
  else:
    out = {"rmse_ratio": stu["rmse"] / ens["rmse"]}
  epistemic = (report.get("fidelity") or {}).get("epistemic") or {}
  out["mean_ratio"] = epistemic.get("mean_ratio")
  out["spearman"] = epistemic.get("spearman")
  out["ensemble_mean"] = epistemic.get("ensemble_mean")   # the ratio's denominator
  return out


def read_reports(folders):
  """The report.json of each run folder (for `--merge`), in order."""
  parts = []
  for folder in folders:
    with open(os.path.join(folder, "report.json")) as f:
      parts.append(json.load(f))
  return parts


def job_fit_rows(x, y, seed, validation_fraction=0.1):
  """The training rows a `td.distill(..., seed=seed)` job fits (the rest it holds out for
  early stopping): its report's far points are built from these, so the second
  ensemble's ceiling is scored on the same points."""
  from tfp_distill.datasets import sources   # pylint: disable=import-outside-toplevel
  from tfp_distill.job import runner   # pylint: disable=import-outside-toplevel
  fit, _ = runner.early_stopping_split(sources.DataSource(x, y, "train"),
                                       validation_fraction, seed)
  return fit.x


def far_rows(report, ceiling=None):
  """{distance: ensemble and student AUROC, mean ratio, Spearman (and the ceiling's)}
  from a `td.distill` report's far block."""
  out = {}
  for d, block in (report.get("far") or {}).items():
    ens, stu = block["ensemble"], block["student"]
    out[d] = {"ensemble_auroc": ens["auroc"], "student_auroc": stu["auroc"],
              "mean_ratio": stu["mean"] / max(ens["mean"], 1e-30),
              "ensemble_mean": ens["mean"],
              "spearman": (block.get("fidelity") or {}).get("spearman")}
    if ceiling is not None:
      out[d]["ceiling_spearman"] = ceiling.get(d)
  return out


def run_one(td, keras, dd, name, seed, args):
  """Selection and measurement for one set and seed; returns a list of rows."""
  from scipy import stats
  x, y, x_test, y_test, task = dd._data(name, seed)  # pylint: disable=protected-access
  count, epochs = (2, 5) if args.fast else (5, 200)
  rows = []
  # 1. Selection on the training rows alone.
  keep, held = pca_holdout(x)
  rng = np.random.default_rng(seed)
  inner = rng.permutation(keep)
  k = max(1, len(inner) // 5)
  proxy_test, proxy_train = np.sort(inner[:k]), np.sort(inner[k:])
  members = dd._members(keras, x[proxy_train], y[proxy_train], task, seed + 100, count,  # pylint: disable=protected-access
                        epochs)
  scores = {}
  for mix in args.mix_names:
    report = _distill(td, members, (x[proxy_train], y[proxy_train]),
                      (x[proxy_test], y[proxy_test]), task, mix, ood=x[held],
                      min_steps=args.min_steps, seed=seed, method=methods_by_task(args))
    scores[mix] = _proxy_score(report)
    print(json.dumps({"set": name, "seed": seed, "stage": "proxy", "mix": mix,
                      **scores[mix]}), flush=True)
  chosen = choose(scores, args.choice)
  picks = {rule: choose(scores, rule) for rule in CHOICES}   # what each rule would pick
  # 2. Measurement: members on all training rows, a second ensemble as the ceiling.
  members = dd._members(keras, x, y, task, seed, count, epochs)  # pylint: disable=protected-access
  second = dd._members(keras, x, y, task, seed + 500, count, epochs)  # pylint: disable=protected-access
  from tfp_distill.datasets import far as far_lib
  # The points of the students' reports: built from the rows each job fits (before
  # 2026-12-06's seeds 5-7 runs, from all the training rows: the same construction and
  # seed, feature scales from 10% more rows).
  far = far_lib.far_points(job_fit_rows(x, y, seed), x_test, td.report.FAR_DISTANCES,
                           "random", seed=0)
  ceiling = {f"{d:g}": float(stats.spearmanr(_epistemic(td, members, task, xf),
                                             _epistemic(td, second, task, xf))[0])
             for d, xf in far.items()}
  for mix in args.mix_names:
    start = time.perf_counter()
    report = _distill(td, members, (x, y), (x_test, y_test), task, mix,
                      min_steps=args.min_steps, seed=seed, method=methods_by_task(args))
    row = {"set": name, "seed": seed, "task": task, "method": report.get("method"),
           "mix": mix, "chosen": mix == chosen, "picks": picks,
           "proxy": scores[mix], "seconds": time.perf_counter() - start,
           "schedule": {"how": report["schedule"]["how"],
                        "epochs": report["schedule"]["epochs"],
                        "epochs_run": report["epochs_run"],
                        "best_epoch": report["schedule"]["best_epoch"]},
           **_in_distribution(report), "far": far_rows(report, ceiling)}
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def _markdown(rows, args, wall=None):
  lines = ["# Distillation inputs off the data: far-point fidelity by input mix", "",
           "Five Keras 3 members per set and seed; `td.distill` with each input mix "
           f"({_schedule_words(args.min_steps)}). The mix is chosen on a PCA hold-out of the "
           f"training rows ({_choice_words(_rule(args))}); the far "
           "columns are the report's far points 1 and 3 feature sd beyond the data "
           "(AUROC of the epistemic uncertainty, test rows vs far points; mean ratio "
           "student / ensemble; Spearman to the ensemble, beside a second ensemble's).",
           "A mix may be chosen only if its in-distribution score on the proxy's held-out "
           "training rows is within "
           f"{IN_DISTRIBUTION_SLACK['rmse_ratio']:g}x (RMSE ratio) or "
           f"+{IN_DISTRIBUTION_SLACK['nll_gap']:g} nats (NLL gap) of the default inputs'. "
           "In distribution: the test rows' score and the student's mean epistemic "
           "uncertainty there over the ensemble's.",
           "", "| set | seed | mix | chosen | proxy AUROC gap / mean ratio / Spearman | "
           "proxy in-dist | in-dist | "
           "mean ratio | far 1: AUROC ens / stu | mean ratio | Spearman (ceiling) | far 3: "
           "AUROC ens / stu | mean ratio | Spearman (ceiling) | epochs: run of planned "
           "(best) |",
           "|---|---:|---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

  def cell(f, d):
    b = f.get(d)
    if not b:
      return ["-", "-", "-"]
    spear = "-" if b["spearman"] is None else f"{b['spearman']:.2f}"
    ceil = "-" if b["ceiling_spearman"] is None else f"{b['ceiling_spearman']:.2f}"
    return [f"{b['ensemble_auroc']:.3f} / {b['student_auroc']:.3f}",
            f"{b['mean_ratio']:.2f}", f"{spear} ({ceil})"]

  def in_dist(r):
    if not r:
      return "-"
    return (f"NLL gap {r['nll_gap']:+.3f}" if "nll_gap" in r
            else f"RMSE x{r['rmse_ratio']:.2f}")

  def epochs(r):
    sch = r.get("schedule")
    if not sch:
      return "-"
    best = "-" if sch["best_epoch"] is None else sch["best_epoch"] + 1   # 1-based
    return f"{sch['epochs_run']} of {sch['epochs']} ({best})"

  for r in rows:
    proxy = "-" if r["proxy"] is None else (
        f"{r['proxy']['auroc_gap']:+.3f} / {np.exp(r['proxy']['log_mean_ratio']):.2f} / "
        + ("-" if r["proxy"].get("ood_spearman") is None
           else f"{r['proxy']['ood_spearman']:.2f}"))
    ratio = "-" if r.get("mean_ratio") is None else f"{r['mean_ratio']:.2f}"
    lines.append(f"| {r['set']} | {r['seed']} | {r['mix']} | {'yes' if r['chosen'] else ''}"
                 f" | {proxy} | {in_dist(r['proxy'])} | {in_dist(r)} | {ratio} | "
                 + " | ".join(cell(r["far"], "1") + cell(r["far"], "3") + [epochs(r)]) + " |")
  took = "" if wall is None else f", {wall / 60:.1f} min"
  merged = getattr(args, "merge", None)
  how = (f"; run as {len(merged)} processes side by side, one per part of the sets "
         "(`--sets`), joined with `--merge`, the time that of the longest" if merged else "")
  method = f" --method {args.method}" if getattr(args, "method", None) else ""
  if _rule(args) != input_choice.DEFAULT_RULE:
    method += f" --choice {_rule(args)}"
  first = getattr(args, "first_seed", 0)
  first = f" --first-seed {first}" if first else ""
  lines += ["", f"Command: `python scripts/ood_inputs_study.py --seeds {args.seeds}{first} "
            f"--sets {args.sets}{method} --out {args.out}`; 2 CPU cores{took}{how}."]
  return "\n".join(lines) + "\n"


def methods_by_task(args):
  """{task: method name} from --method ("gaussian-logits" or "classification=...,
  regression=..."); a task left out gets td.distill's default."""
  spec = getattr(args, "method", None)
  if not spec:
    return {}
  if "=" not in spec:
    return {"classification": spec}
  return dict(part.split("=", 1) for part in spec.split(","))


def _rule(args):
  """The choice rule of a run (the runs before `--choice` existed used "auroc")."""
  return getattr(args, "choice", "auroc")


def _choice_words(rule):
  if rule == "auroc":
    return "the largest student OOD AUROC minus the ensemble's on the held-out rows"
  return ("the most proxy targets met on the held-out rows, AUROC within "
          f"{PROXY_AUROC_TOLERANCE:g} of the ensemble's and mean within "
          f"{PROXY_RATIO_FACTOR:g}x, then the highest Spearman to the ensemble there")


def _schedule_words(min_steps):
  if min_steps is None:
    return ("the library's schedule: at least 3000 optimizer steps, 12000 with far or box "
            "inputs, early stopping on held-out training rows")
  return f"min_steps {min_steps}"


def summary(rows, tolerance=0.02, factor=1.5):
  """Per set and mix, over seeds: the mean of each figure, and the targets met.

  The targets: far-point AUROC at 1 and 3 sd no more than `tolerance` below the
  ensemble's; the student's mean epistemic uncertainty within `factor` of the
  ensemble's on the test rows and at 1 and 3 sd; Spearman to the ensemble at 1 and 3 sd
  at least the second ensemble's. Returns a list of dicts, one per (set, mix).
  """
  groups = {}
  for r in rows:
    groups.setdefault((r["set"], r["mix"]), []).append(r)
  out = []
  for (name, mix), group in groups.items():
    def mean(get):
      values = [v for v in (get(r) for r in group) if v is not None]
      return float(np.mean(values)) if values else None
    row = {"set": name, "mix": mix, "seeds": len(group),
           "chosen": sum(r["chosen"] for r in group)}
    key = "nll_gap" if "nll_gap" in group[0] else "rmse_ratio"
    row[key] = mean(lambda r, k=key: r[k])
    row["mean_ratio"] = mean(lambda r: r.get("mean_ratio"))
    met = {"auroc": True, "magnitude": True, "spearman": True}
    ratios = [r.get("mean_ratio") for r in group]
    row["far0_mean_ratio"] = mean(lambda r: r["far"]["0"]["mean_ratio"])
    for d in ("1", "3"):
      row[f"far{d}_auroc_gap"] = mean(lambda r, d=d: r["far"][d]["student_auroc"] -
                                      r["far"][d]["ensemble_auroc"])
      row[f"far{d}_mean_ratio"] = mean(lambda r, d=d: r["far"][d]["mean_ratio"])
      row[f"far{d}_spearman"] = mean(lambda r, d=d: r["far"][d]["spearman"])
      row[f"far{d}_ceiling"] = mean(lambda r, d=d: r["far"][d]["ceiling_spearman"])
      met["auroc"] &= row[f"far{d}_auroc_gap"] >= -tolerance
      met["spearman"] &= (row[f"far{d}_spearman"] is not None and
                          row[f"far{d}_spearman"] >= row[f"far{d}_ceiling"])
      ratios += [r["far"][d]["mean_ratio"] for r in group]
    met["magnitude"] = all(v is not None and 1 / factor <= v <= factor for v in ratios)
    row["met"] = met
    out.append(row)
  return out


def summary_markdown(rows):
  """The summary table (`summary`) in Markdown."""
  lines = ["| set | mix | chosen (of seeds) | in-dist | mean ratio, test / far 1 / far 3 "
           "| AUROC gap far 1 / far 3 | Spearman far 3 (ceiling) | targets met |",
           "|---|---|---:|---:|---:|---:|---:|---|"]

  def f(v, spec):
    return "-" if v is None else format(v, spec)

  for r in summary(rows):
    ind = (f"NLL gap {r['nll_gap']:+.3f}" if "nll_gap" in r
           else f"RMSE x{r['rmse_ratio']:.2f}")
    met = ", ".join(k for k, v in r["met"].items() if v) or "none"
    lines.append(
        f"| {r['set']} | {r['mix']} | {r['chosen']} of {r['seeds']} | {ind} | "
        f"{f(r['mean_ratio'], '.2f')} / {f(r['far1_mean_ratio'], '.2f')} / "
        f"{f(r['far3_mean_ratio'], '.2f')} | {f(r['far1_auroc_gap'], '+.3f')} / "
        f"{f(r['far3_auroc_gap'], '+.3f')} | {f(r['far3_spearman'], '.2f')} "
        f"({f(r['far3_ceiling'], '.2f')}) | {met} |")
  return "\n".join(lines) + "\n"


def rule_picks(rows, tolerance=0.02, factor=1.5):
  """What each choice rule picked per set and seed, and how its pick fared at 3 sd.

  Returns:
    ({(set, seed): {rule: {"mix", "auroc_gap", "mean_ratio", "spearman"}}},
     {rule: {"met": AUROC within `tolerance` or above, "within": mean ratio within
     `factor`, "n"}}), over the rows that record their `picks` (runs since 2026-12-06).
  """
  by_key = {}
  for r in rows:
    if "picks" in r:
      by_key.setdefault((r["set"], r["seed"]), {})[r["mix"]] = r
  picks, counts = {}, {}
  for key, mixes in by_key.items():
    picks[key] = {}
    for rule, mix in next(iter(mixes.values()))["picks"].items():
      far = mixes[mix]["far"]["3"]
      cell = {"mix": mix, "auroc_gap": far["student_auroc"] - far["ensemble_auroc"],
              "mean_ratio": far["mean_ratio"], "spearman": far["spearman"]}
      picks[key][rule] = cell
      c = counts.setdefault(rule, {"met": 0, "within": 0, "n": 0})
      c["n"] += 1
      c["met"] += cell["auroc_gap"] >= -tolerance
      c["within"] += 1 / factor <= cell["mean_ratio"] <= factor
  return picks, counts


def rules_markdown(rows):
  """`rule_picks` as Markdown: a row per set and seed, a cell per rule (the mix, then
  AUROC gap / mean ratio / Spearman at 3 sd), and the counts."""
  picks, counts = rule_picks(rows)
  rules = list(counts)
  lines = ["| set, seed | " + " | ".join(f"{r} rule" for r in rules) + " |",
           "|---|" + "---|" * len(rules)]
  for (name, seed), cells in picks.items():
    parts = []
    for rule in rules:
      c = cells[rule]
      rho = "n/a" if c["spearman"] is None else f"{c['spearman']:.2f}"
      parts.append(f"{c['mix']}: {c['auroc_gap']:+.3f} / {c['mean_ratio']:.2f}x / {rho}")
    lines.append(f"| {name}, {seed} | " + " | ".join(parts) + " |")
  lines.append("| AUROC within 0.02 or above; mean ratio within 1.5x | " + " | ".join(
      f"{counts[r]['met']} of {counts[r]['n']}; {counts[r]['within']} of {counts[r]['n']}"
      for r in rules) + " |")
  return "\n".join(lines) + "\n"


def figure(rows, path):
  """The student's mean epistemic uncertainty over the ensemble's as the inputs move
  away from the data (the test rows, then 0, 1 and 3 sd beyond it), a panel per set, a
  line per mix (means over seeds, log scale)."""
  from tfp_distill import plots
  panels = {}
  for r in summary(rows):
    ys = [r["mean_ratio"]] + [r[f"far{d}_mean_ratio"] for d in ("0", "1", "3")]
    panels.setdefault(r["set"], {})[r["mix"]] = ([-1, 0, 1, 3], ys)
  return plots.plot_lines(path, panels, "sd beyond the data (-1: the test rows)",
                          log_y=True, title="mean epistemic uncertainty, student / "
                          "ensemble (target: 0.67-1.5)")


def _write(out, rows, args, wall):
  os.makedirs(out, exist_ok=True)
  figure(rows, os.path.join(out, "magnitude.png"))
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump({"rows": rows, "args": vars(args), "wall_time_s": wall}, f, indent=2)
  rules = ""
  if any("picks" in r for r in rows):
    rules = ("\n## The rules' picks\n\nWhat each choice rule picks from the same proxy "
             "scores, then at 3 sd: AUROC gap to the ensemble / mean ratio / Spearman.\n\n"
             + rules_markdown(rows))
  text = (_markdown(rows, args, wall) + rules + "\n## Over seeds\n\nMeans over the seeds; "
          "targets: AUROC at 1 and 3 sd within 0.02 of the ensemble's, mean ratio within "
          "1.5x on the test rows and at 1 and 3 sd (every seed), Spearman at 1 and 3 sd at "
          "least the ceiling's.\n\n" + summary_markdown(rows))
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(text)
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("reports", "ood_inputs"))
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--first-seed", type=int, default=0,
                      help="seeds first-seed .. first-seed + seeds - 1 (data split, "
                           "members, students)")
  parser.add_argument("--sets", default=",".join(SETS))
  parser.add_argument("--min-steps", type=int, default=None,
                      help="one schedule for every mix (default: the library's, which "
                           "plans more steps with far or box inputs)")
  parser.add_argument("--method", default=None,
                      help="the classification sets' td.distill method (e.g. "
                           "gaussian-logits), or task=method pairs joined by commas "
                           "(default: td.distill's, end2 and mvn)")
  parser.add_argument("--mixes", default=",".join(MIXES),
                      help="comma-separated names of MIXES (default: all; 'default' is "
                           "always included)")
  parser.add_argument("--choice", choices=CHOICES, default=input_choice.DEFAULT_RULE,
                      help="how the mix is chosen on the proxy (see `choose`; default "
                           "%(default)s; auroc: the 2026-12-06 run's rule)")
  parser.add_argument("--fast", action="store_true", help="smoke mode: one set, tiny")
  parser.add_argument("--merge", nargs="+", metavar="DIR",
                      help="write --out from the report.json of runs on other sets "
                           "(e.g. two processes, a part of the sets each); trains nothing")
  args = parser.parse_args(argv)
  if args.merge:
    parts = read_reports(args.merge)
    rows = [r for part in parts for r in part["rows"]]
    args.seeds = max(p["args"]["seeds"] for p in parts)
    args.first_seed = parts[0]["args"].get("first_seed", 0)
    args.min_steps = parts[0]["args"].get("min_steps")
    args.method = parts[0]["args"].get("method")
    args.choice = parts[0]["args"].get("choice", "auroc")   # older runs: the AUROC rule
    args.sets = ",".join(dict.fromkeys(r["set"] for r in rows))
    print(_write(args.out, rows, args, max(p["wall_time_s"] for p in parts)))
    return rows
  args.mix_names = ["default"] + [m for m in args.mixes.split(",") if m != "default"]
  unknown = [m for m in args.mix_names if m not in MIXES]
  if unknown:
    parser.error(f"--mixes: unknown {unknown}; known: {', '.join(MIXES)}")
  import tfp_distill as td
  from tfp_distill import _keras3
  keras = _keras3.module()
  start = time.perf_counter()
  dd = _sibling("distill_defaults")
  sets = ["wine"] if args.fast else args.sets.split(",")
  if args.fast:
    args.min_steps = 50
  rows = []
  for name in sets:
    for seed in range(args.first_seed, args.first_seed + (1 if args.fast else args.seeds)):
      rows += run_one(td, keras, dd, name, seed, args)
  wall = time.perf_counter() - start
  print(_write(args.out, rows, args, wall))
  return rows


if __name__ == "__main__":
  main()
