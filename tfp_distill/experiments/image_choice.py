"""Images: a student's distillation inputs chosen on corruptions of held-out training
images (`input_choice`), never on the reported OOD sets.

The saved students of `tfp-distill distill` runs on the same members and training file
(`scripts/own_ensemble_example.py --reuse-members --extra-inputs ... --student-dir ...`)
are scored on a proxy built from the training images alone:

```none
train.npz ─► the job's validation rows (never fitted by a student) ─► `size` of them
             │                                                         (proxy test)
             └► the same images, each corrupted at severity 5 by every PROXY_CORRUPTIONS
                                                                       (proxy OOD)
members, each student ─► mutual information, NLL ─► input_choice.proxy_score ─► choose
```

The members were trained on every training image, the validation rows included: the
proxy asks how the students follow the ensemble from images it knows to corrupted
versions of them. The noise corruptions are left out of the proxy, because the `box`
and `far` inputs of images are noise images and noisy training images: a proxy of noise
would grade those candidates on their own inputs.

The reported OOD sets (MNIST, Animal-MNIST) are scored beside the choice
(`reported_scores`) and never enter it.
"""

import json
import os

import numpy as np

from tfp_distill.datasets import corruptions
from tfp_distill.experiments import input_choice

#: Severity-5 corruptions of the proxy OOD set: every non-noise one of
#: `td.datasets.corruptions` (see the module docstring for why not the noise ones).
PROXY_CORRUPTIONS = ("gaussian_blur", "defocus_blur", "contrast", "brightness",
                     "pixelate", "rotate", "shear")
PROXY_SEVERITY = 5


def corruption_proxy(x, names=PROXY_CORRUPTIONS, severity=PROXY_SEVERITY, seed=0):
  """The proxy OOD images: every image of x under every corruption of `names`.

  Args:
    x: float images [n, h, w] or [n, h, w, c] in [0, 1].
    names: corruption names (`td.datasets.corruptions.CORRUPTIONS`), not empty.
    severity: int in 1..5.
    seed: int; corruption i uses the seed (seed, i), so the proxy is reproducible.

  Returns:
    (images [len(names) * n, ...] (corruption-major), kind int64 [len(names) * n]: the
    index in `names` of each image's corruption).

  Raises:
    ValueError: no names, or an unknown one (and `corrupt`'s errors for x, severity).
  """
  names = tuple(names)
  if not names:
    raise ValueError("corruption_proxy: names is empty.")
  unknown = [n for n in names if n not in corruptions.CORRUPTIONS]
  if unknown:
    raise ValueError(f"corruption_proxy: unknown corruptions {unknown}; choose from "
                     f"{sorted(corruptions.CORRUPTIONS)}.")
  parts = [corruptions.corrupt(x, name, severity, seed=(seed, i))
           for i, name in enumerate(names)]
  kind = np.repeat(np.arange(len(names), dtype=np.int64), len(x))
  return np.concatenate(parts, axis=0), kind


def proxy_test_rows(n_train, validation_fraction, seed, size):
  """Rows of the training file for the proxy: `size` of the job's validation rows.

  The job holds out `td.job.runner.early_stopping_split(train, validation_fraction,
  seed)` for early stopping; its students never fit those rows. A random `size` of
  them (or all, if fewer) are drawn with `np.random.default_rng(seed)`. (A job given
  no test file first carves its test rows out of train: `run_image_choice` refuses
  those students.)

  Returns:
    sorted int64 array of row numbers.
  """
  from tfp_distill.datasets import sources
  from tfp_distill.job import runner
  source = sources.DataSource(np.zeros((n_train, 1), np.float32), None, "train")
  _, val = runner.early_stopping_split(source, validation_fraction, seed)
  rows = np.asarray(val.index, np.int64)
  if size < len(rows):
    rows = np.random.default_rng(seed).choice(rows, size, replace=False)
  return np.sort(rows)


def reported_scores(ensemble_test, ensemble_ood, student_test, student_ood):
  """A student on a reported OOD set (never used by the choice): AUROC of both (test
  images negative), the gap, the mean ratios on the test images and the OOD set, and
  the Spearman on the OOD set."""
  score = input_choice.proxy_score(ensemble_test, ensemble_ood, student_test, student_ood)
  return {"ensemble_auroc": score["ensemble_auroc"],
          "student_auroc": score["student_auroc"], "auroc_gap": score["auroc_gap"],
          "mean_ratio_test": float(np.mean(student_test) / np.mean(ensemble_test)),
          "mean_ratio_ood": float(np.exp(score["log_mean_ratio"])),
          "spearman": score["ood_spearman"]}


#: The images' rule: "fidelity", as when the image students were chosen. The test that made
#: "auroc" `input_choice.DEFAULT_RULE` was on tabular sets; on the own-ensemble images the
#: AUROC rule would pick an EnD^2 student that overshoots the proxy (docs/studies/
#: ood-inputs.md), and no image test decided between the rules in advance.
IMAGE_RULE = "fidelity"


def choose_by_method(scores, methods, base, rule=IMAGE_RULE):
  """The choice among each method's students, and among all of them, by `rule`
  (`input_choice.choose`).

  Args:
    scores: {folder: proxy score dict with "nll_gap"}.
    methods: {folder: method name}.
    base: {method: folder of its default inputs} (the reference of `admissible`), and
      "all": the reference folder across methods; a method missing from it is compared
      with its best NLL.

  Returns:
    {method: folder chosen among its students, ..., "all": folder chosen among all}.
  """
  chosen = {}
  for method in sorted(set(methods.values())):
    group = {f: s for f, s in scores.items() if methods[f] == method}
    chosen[method] = input_choice.choose(group, rule, base=base.get(method))
  chosen["all"] = input_choice.choose(scores, rule, base=base.get("all"))
  return chosen


def _spearman(value):
  """A Spearman for the tables: n/a where one side was constant (None)."""
  return "n/a" if value is None else f"{value:.3f}"


def _report(out, folder):
  with open(os.path.join(out, folder, "report.json")) as f:
    return json.load(f)


def _load(out, folder):
  """(report, Keras 3 student, its family) of a saved student folder."""
  import tfp_distill as td
  import tfp_distill.keras3  # noqa: F401  registers the heads and losses with Keras
  from tfp_distill import _keras3
  report = _report(out, folder)
  model = _keras3.module().models.load_model(os.path.join(out, folder, "student.keras"))
  return report, model, td.families.get(report["student_family"])


def _uncertainty(td, model, family, xs, labels=None):
  """Mutual information [n] on each of xs, and the NLL on xs[0] if labels are given."""
  out = [td.predict_uncertainty(model, family, x) for x in xs]
  mi = [np.asarray(o["epistemic"], np.float64) for o in out]
  nll = (None if labels is None
         else float(td.metrics.categorical_nll(labels, out[0]["prediction"])))
  return mi, nll


def run_image_choice(out, folders, base, size=1000, seed=0, ood=None, log=print,
                     rule=IMAGE_RULE):
  """Scores the saved students `out/FOLDER` on the corruption proxy and chooses.

  Args:
    out: the folder holding each student folder (report.json, student.keras), and
      optionally a second ensemble as ceiling_member_*.keras
      (`scripts/own_ensemble_example.py --ceiling`). The members, training and test
      files are the ones the students' reports name.
    folders: student folders under out, all distilled from the same members, training
      and test files with the same seed and validation share (refused otherwise).
    base: {method: folder}: each method's default-input student (and "all").
    size: validation rows in the proxy (x7 corrupted images).
    seed: the proxy's seed.
    ood: {name: images [n, 28, 28, 1] in [0, 1]}: reported OOD sets, scored beside.
    log: callable(str) for progress.
    rule: the rule of `input_choice.choose` (default `IMAGE_RULE`).

  Returns:
    dict: "settings", "students" {folder: {"method", "inputs", "proxy", "reported"}},
    "ceiling" (None, or the same scores for a second ensemble, `ceiling_member_*.keras`
    in out, beside the students: the noise ceiling of the Spearman), "chosen"
    (`choose_by_method`).
  """
  import glob

  import tfp_distill as td
  from tfp_distill import _keras3
  keras = _keras3.module()
  ood = dict(ood or {})
  reports = {f: _report(out, f) for f in folders}
  shared = ("teacher", "train", "test", "seed", "validation_fraction")
  configs = {json.dumps({k: r["config"].get(k) for k in shared}) for r in reports.values()}
  if len(configs) != 1:
    raise ValueError("run_image_choice: the students differ in members, files, seed or "
                     f"validation share ({', '.join(shared)}: {sorted(configs)}).")
  config = json.loads(configs.pop())
  not_keras = [p for p in config["teacher"] or [] if not str(p).endswith(".keras")]
  if not config["teacher"] or not_keras:
    raise ValueError("run_image_choice: scores Keras 3 `.keras` members; the students' "
                     f"teacher is {config['teacher']!r}.")
  for key in ("train", "test"):
    if not config[key] or not os.path.exists(config[key]):
      raise ValueError(f"run_image_choice: the students' reports name {key} file "
                       f"{config[key]!r}, which is not here (the proxy needs it).")
  train, test = np.load(config["train"]), np.load(config["test"])
  sizes = reports[folders[0]]["data"]["sizes"]
  if sizes["train"] + sizes["early_stopping"] != len(train["x"]):
    raise ValueError(f"run_image_choice: {config['train']} has {len(train['x'])} rows, "
                     f"but the job fitted {sizes['train']} and held out "
                     f"{sizes['early_stopping']}: it was not split as the proxy assumes "
                     "(e.g. no test file was given).")
  rows = proxy_test_rows(len(train["x"]), config["validation_fraction"], config["seed"],
                         size)
  x_in, y_in = train["x"][rows], train["y"][rows]
  x_out, _ = corruption_proxy(x_in, seed=seed)
  xs = [x_in, x_out, test["x"], *ood.values()]
  paths = config["teacher"]
  # The members' family as the job read it (their output kind and class count).
  family = td.families.get(reports[folders[0]]["family"])
  teacher = td.Ensemble([keras.models.load_model(p) for p in paths], family=family)
  (e_in, e_out, e_test, *e_ood), e_nll = _uncertainty(td, teacher, family, xs, y_in)
  log(f"ensemble of {len(paths)}: proxy AUROC "
      f"{td.metrics.ood_detection(e_in, e_out)['auroc']:.3f}, NLL {e_nll:.4f}")
  students, scores, methods = {}, {}, {}
  for folder in folders:
    report, model, student_family = _load(out, folder)
    (s_in, s_out, s_test, *s_ood), s_nll = _uncertainty(td, model, student_family, xs,
                                                        y_in)
    score = input_choice.proxy_score(e_in, e_out, s_in, s_out)
    score["nll_gap"] = s_nll - e_nll
    scores[folder], methods[folder] = score, report["method"]
    students[folder] = {
        "method": report["method"], "inputs": report["config"].get("extra_inputs") or "auto",
        "proxy": score,
        "reported": {name: reported_scores(e_test, e, s_test, s)
                     for name, e, s in zip(ood, e_ood, s_ood)}}
    log(f"{folder}: proxy AUROC gap {score['auroc_gap']:+.3f}, mean ratio "
        f"{np.exp(score['log_mean_ratio']):.2f}, Spearman {_spearman(score['ood_spearman'])}, "
        f"NLL gap {score['nll_gap']:+.4f}")
  ceiling = None
  second = sorted(glob.glob(os.path.join(out, "ceiling_member_*.keras")))
  if second:   # a second ensemble of other seeds: the noise ceiling of the Spearman
    other = td.Ensemble([keras.models.load_model(p) for p in second], family=family)
    (c_in, c_out, c_test, *c_ood), c_nll = _uncertainty(td, other, family, xs, y_in)
    ceiling = {"proxy": dict(input_choice.proxy_score(e_in, e_out, c_in, c_out),
                             nll_gap=c_nll - e_nll),
               "reported": {name: reported_scores(e_test, e, c_test, c)
                            for name, e, c in zip(ood, e_ood, c_ood)}}
  return {"settings": {"size": len(rows), "seed": seed, "severity": PROXY_SEVERITY,
                       "corruptions": list(PROXY_CORRUPTIONS), "members": len(paths),
                       "base": base, "ood": list(ood), "rule": rule},
          "students": students, "ceiling": ceiling,
          "chosen": choose_by_method(scores, methods, base, rule)}


def format_markdown(result):
  """The selection table: each student's proxy scores, and its reported OOD scores."""
  settings, students = result["settings"], result["students"]
  ood = settings["ood"]
  lines = ["# Images: inputs chosen on corruptions of held-out training images", "",
           f"Proxy: {settings['size']} of the job's validation rows (never fitted by a "
           f"student) against the same images under {len(settings['corruptions'])} "
           f"corruptions at severity {settings['severity']} "
           f"({', '.join(settings['corruptions'])}); rule "
           f"`{settings.get('rule', 'fidelity')}` "
           "(`tfp_distill.experiments.input_choice.choose`), NLL within 0.02 nats of "
           "each method's default-input student. Proxy cells: AUROC gap / mean MI ratio "
           "/ Spearman on the corrupted images / NLL gap to the ensemble on the clean "
           "ones. Reported cells (not used by the choice): AUROC gap / mean MI ratio on "
           "the OOD set / Spearman.", "",
           "| student | method | inputs | proxy | " + " | ".join(ood) + " |",
           "|---|---|---|---|" + "---|" * len(ood)]
  rows = list(students.items())
  if result.get("ceiling"):
    rows.append(("second ensemble (ceiling)", dict(result["ceiling"], method="", inputs="")))
  for folder, s in rows:
    p = s["proxy"]
    cells = [f"{p['auroc_gap']:+.3f} / {np.exp(p['log_mean_ratio']):.2f} / "
             f"{_spearman(p['ood_spearman'])} / {p['nll_gap']:+.4f}"]
    for name in ood:
      r = s["reported"][name]
      cells.append(f"{r['auroc_gap']:+.3f} / {r['mean_ratio_ood']:.2f} / "
                   f"{_spearman(r['spearman'])}")
    lines.append(f"| {folder} | {s['method']} | {s['inputs']} | "
                 + " | ".join(cells) + " |")
  ensemble = next(iter(students.values()))
  lines += ["", "Ensemble AUROC: proxy "
            f"{ensemble['proxy']['ensemble_auroc']:.3f}; " + "; ".join(
                f"{name} {ensemble['reported'][name]['ensemble_auroc']:.3f}"
                for name in ood) + ".", "",
            "Chosen: " + "; ".join(f"{method}: **{folder}**"
                                   for method, folder in result["chosen"].items()) + ".",
            ""]
  return "\n".join(lines)
