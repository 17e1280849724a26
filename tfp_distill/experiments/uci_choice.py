"""UCI PCA hold-out: the students' inputs chosen per set and split on a proxy of the
training rows (`input_choice`), never on the held-out rows.

For each split of `td.datasets.uci.load_uci_ood`, only its training rows are used:

```none
training rows ─► input_choice.proxy_rows ─► kept ─► 90% proxy train ─► ensemble (M members)
                                            │     └► 10% proxy test
                                            └► held (both ends of the first component)
for each candidate in INPUT_MIXES: the full student on the proxy train rows, with the
candidate's inputs ─► input_choice.proxy_score on proxy test vs held ─► choose
```

The result is a choice per split (`choose_split`), saved and tabulated by `run_choice`;
the measurement is the `tfp-distill uci --ood` run of the chosen mix
(`scripts/uci_ood_inputs.py --choice`).
"""

import dataclasses
import gc
import json
import os
import time

import numpy as np

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import input_choice
from tfp_distill.experiments import uci

#: Candidate inputs, as `UCIConfig` overrides (the settings of the measured runs on the
#: study page: `tfp-distill uci --ood --box-share 0.2 --student-min-steps 12000`, ...).
INPUT_MIXES = {
    "jitter": {},
    "box": {"box_share": 0.2, "student_min_steps": 12000},
    "marginal": {"marginal_share": 2.0, "student_min_steps": 12000},
    "far": {"far_share": 4.0, "far_scale": (0.25, 1.5), "student_min_steps": 12000},
}
CANDIDATES = ("box", "marginal", "far")
#: Seed offset of the proxy ensemble (the split's own ensembles use 0 and 500).
PROXY_SEED_OFFSET = 700
STUDENT = "full"


def mix_config(config, mix, mixes=None):
  """config with the students' inputs of `mix` (a key of mixes, default `INPUT_MIXES`):
  the full student alone, no second ensemble."""
  mixes = INPUT_MIXES if mixes is None else mixes
  if mix not in mixes:
    raise ValueError(f"uci_choice: unknown mix {mix!r}; choose from {sorted(mixes)}.")
  return dataclasses.replace(config, students=(STUDENT,), reference_ensemble=False,
                             **mixes[mix])


def proxy_split(data, share=0.1, seed=0):
  """The proxy of a split's training rows: a `UCIOODSplit` whose x_ood are the training
  rows `input_choice.proxy_rows` holds out, x_test a random tenth of the others, and
  x_train the rest (all in the split's normalisation; no test or held-out row)."""
  kept, held = input_choice.proxy_rows(data.x_train, share)
  kept = np.random.default_rng([seed, data.split, 7]).permutation(kept)
  n_test = max(1, len(kept) // 10)
  test, train = np.sort(kept[:n_test]), np.sort(kept[n_test:])
  x, y = data.x_train, data.y_train
  return uci_data.UCIOODSplit(data.name, data.split, x[train], y[train], x[test], y[test],
                              data.x_mean, data.x_std, data.y_mean, data.y_std,
                              x_ood=x[held], y_ood=y[held])


def choose_split(name, split, candidates=CANDIDATES, config=None, data_dir=None,
                 share=0.1, rule=input_choice.DEFAULT_RULE, mixes=None):
  """Scores each candidate mix on the proxy of one split's training rows.

  Args:
    name: UCI data set short name.
    split: int >= 0 (`load_uci_ood`'s split).
    candidates: names of mixes.
    config: `uci.UCIConfig` (its members, student and seed; its inputs are replaced by
      each candidate's) or None.
    data_dir: optional UCI data directory.
    share: the proxy OOD share of the training rows (`input_choice.proxy_rows`).
    rule: `input_choice.choose`'s rule.
    mixes: {name: `UCIConfig` overrides}, default `INPUT_MIXES`.

  Returns:
    dict: "dataset", "split", "chosen", "scores" ({mix: `input_choice.proxy_score`
    plus "rmse_ratio" (the student's RMSE over the ensemble's on the proxy test rows)
    and "seconds"}), "n_proxy" (train / test / ood rows), "share", "rule",
    "ensemble_seconds".
  """
  config = config or uci.UCIConfig()
  if not candidates:
    raise ValueError("choose_split: no candidates.")
  data = uci_data.load_uci_ood(name, split, data_dir, seed=config.seed)
  proxy = proxy_split(data, share, config.seed)
  family = td.families.HeteroscedasticNormal(1, min_variance=config.min_variance)
  seed = config.seed + 1000 * split
  tic = time.perf_counter()
  ensemble = uci.train_ensemble(proxy, family, config, seed + PROXY_SEED_OFFSET)
  ensemble_seconds = time.perf_counter() - tic
  views = {}
  for where, x, y in (("in", proxy.x_test, proxy.y_test), ("out", proxy.x_ood, proxy.y_ood)):
    views[where] = uci.evaluate_model("ensemble", ensemble, family, x, y)[0]
  scores = {}
  for mix in candidates:
    mixed = mix_config(config, mix, mixes)
    tic = time.perf_counter()
    student = uci.distil_together((STUDENT,), proxy, ensemble, family, mixed,
                                  seed)[STUDENT]
    seconds = time.perf_counter() - tic
    u_in = uci.evaluate_model(STUDENT, student, family, proxy.x_test, proxy.y_test)[0]
    u_out = uci.evaluate_model(STUDENT, student, family, proxy.x_ood, proxy.y_ood)[0]
    score = input_choice.proxy_score(views["in"]["epistemic"], views["out"]["epistemic"],
                                     u_in["epistemic"], u_out["epistemic"])
    rmse = {m: float(td.metrics.rmse(proxy.y_test, u["prediction"]))
            for m, u in (("ensemble", views["in"]), ("student", u_in))}
    score["rmse_ratio"] = rmse["student"] / max(rmse["ensemble"], 1e-30)
    score["seconds"] = seconds
    if not all(np.isfinite(v) for k, v in score.items() if k != "ood_spearman"):
      raise FloatingPointError(f"{name} split {split} proxy, {mix}: {score}")
    scores[mix] = score
  return {"dataset": data.name, "split": split,
          "chosen": input_choice.choose(scores, rule), "scores": scores,
          "n_proxy": {"train": len(proxy.x_train), "test": len(proxy.x_test),
                      "ood": len(proxy.x_ood)},
          "share": share, "rule": rule, "ensemble_seconds": ensemble_seconds}


def pooled_choice(results, rule=input_choice.DEFAULT_RULE):
  """One mix for a set from the proxies of all its splits: each candidate's proxy scores
  averaged over the splits, then `input_choice.choose` on the means.

  A single split's proxy holds few rows on small sets (yacht: 24), and its choice is
  noisy; the mean over several proxies of the same task is steadier. (This rule was
  added after the per-split choices of 2026-12-06 were seen: see the study page.)

  Args:
    results: `choose_split` results of one set (any splits), the same candidates.
    rule: `input_choice.choose`'s rule.

  Returns:
    (mix, {mix: mean scores}).
  """
  means = {}
  for mix in results[0]["scores"]:
    cells = [r["scores"][mix] for r in results]
    spearman = [c["ood_spearman"] for c in cells if c["ood_spearman"] is not None]
    means[mix] = {k: float(np.mean([c[k] for c in cells]))
                  for k in ("auroc_gap", "log_mean_ratio", "rmse_ratio")}
    means[mix]["ood_spearman"] = float(np.mean(spearman)) if spearman else None
  return input_choice.choose(means, rule), means


def _key(config, candidates, share, rule, mixes):
  fields = {"config": config.key(), "candidates": list(candidates),
            "mixes": {c: mixes[c] for c in candidates}, "share": share, "rule": rule}
  return json.dumps(fields, sort_keys=True)


def run_choice(out_dir, datasets, num_splits=5, candidates=CANDIDATES, config=None,
               data_dir=None, share=0.1, rule=input_choice.DEFAULT_RULE, mixes=None):
  """Runs (or resumes) `choose_split` for every set and split; writes the table.

  Each split is saved as `<out_dir>/<set>/choice_split_<i>.json` with a key of the
  settings; a rerun with the same settings reads it back. Writes
  `<out_dir>/choice.json` and `<out_dir>/choice.md` (`format_markdown`).

  Returns:
    {"settings": ..., "splits": {set: [choose_split results]}, "chosen": {set:
    [mix per split]}, "pooled": {set: `pooled_choice`'s mix}}.
  """
  config = config or uci.UCIConfig()
  mixes = INPUT_MIXES if mixes is None else mixes
  unknown = [c for c in candidates if c not in mixes]
  if unknown or not candidates:
    raise ValueError(f"run_choice: candidates must be names of {sorted(mixes)}; got "
                     f"{list(candidates)}.")
  key = _key(config, candidates, share, rule, mixes)
  splits = {}
  for name in datasets:
    for split in range(num_splits):
      path = os.path.join(out_dir, name, f"choice_split_{split:02d}.json")
      result = None
      if os.path.exists(path):
        with open(path) as f:
          saved = json.load(f)
        if saved.get("key") == key:
          result = saved
      if result is None:
        result = choose_split(name, split, candidates, config, data_dir, share, rule,
                              mixes)
        result["key"] = key
        keras.backend.clear_session()
        gc.collect()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
          json.dump(result, f)
        os.replace(path + ".tmp", path)
        if config.verbose:
          line = "; ".join(f"{m} gap {s['auroc_gap']:+.3f} ratio "
                           f"{np.exp(s['log_mean_ratio']):.2f}"
                           for m, s in result["scores"].items())
          print(f"{name} proxy split {split}: {line} -> {result['chosen']}", flush=True)
      splits.setdefault(name, []).append(result)
  report = {"settings": {"candidates": list(candidates),
                         "mixes": {c: mixes[c] for c in candidates},
                         "share": share, "rule": rule, "config_key": config.key(),
                         "num_splits": num_splits},
            "splits": splits,
            "chosen": {name: [r["chosen"] for r in rs] for name, rs in splits.items()},
            "pooled": {name: pooled_choice(rs, rule)[0] for name, rs in splits.items()}}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "choice.json"), "w") as f:
    json.dump(report, f, indent=1)
  with open(os.path.join(out_dir, "choice.md"), "w") as f:
    f.write(format_markdown(report))
  return report


def format_markdown(report):
  """The selection table: per set and split, each candidate's proxy AUROC gap, mean
  ratio, Spearman and RMSE ratio, and the mix chosen."""
  settings = report["settings"]
  candidates = settings["candidates"]
  lines = ["# UCI PCA hold-out: inputs chosen on a proxy of the training rows", "",
           f"Proxy: both ends ({settings['share']:.0%} of the training rows) of their "
           "first principal component held out, a proxy ensemble on 90% of the rest, "
           "the full student distilled with each candidate's inputs; rule "
           f"`{settings['rule']}` (`tfp_distill.experiments.input_choice.choose`). Cells: AUROC "
           "gap to the proxy ensemble / mean epistemic ratio / Spearman on the proxy "
           "OOD rows / RMSE ratio on the proxy test rows.", "",
           "| set | split | proxy ensemble AUROC | "
           + " | ".join(candidates) + " | chosen |",
           "|---|---:|---:|" + "---|" * len(candidates) + "---|"]
  for name, results in report["splits"].items():
    for r in results:
      cells = []
      for mix in candidates:
        s = r["scores"][mix]
        spearman = "n/a" if s["ood_spearman"] is None else f"{s['ood_spearman']:.2f}"
        cells.append(f"{s['auroc_gap']:+.3f} / {np.exp(s['log_mean_ratio']):.2f} / "
                     f"{spearman} / {s['rmse_ratio']:.3f}")
      ensemble = next(iter(r["scores"].values()))["ensemble_auroc"]
      lines.append(f"| {name} | {r['split']} | {ensemble:.3f} | " + " | ".join(cells)
                   + f" | **{r['chosen']}** |")
  lines += ["", "Chosen per split: " + "; ".join(
      f"{name} " + ", ".join(mixes) for name, mixes in report["chosen"].items()) + "."]
  if report.get("pooled"):
    lines += ["", "Pooled over the splits (each candidate's proxy scores averaged, then "
              "the same rule; `uci_choice.pooled_choice`): " + "; ".join(
                  f"{name} {mix}" for name, mix in report["pooled"].items()) + "."]
  lines.append("")
  return "\n".join(lines)
