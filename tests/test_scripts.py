"""Every benchmark script runs in its smoke mode and prints finite figures.

A test whose data is missing skips through `load_or_skip` (tests/conftest.py), which
fails it instead where the data is required (TFP_DISTILL_REQUIRE_DATA=1, as in CI).
"""

import argparse
import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill.datasets import images as images_data
from tfp_distill.datasets import uci as uci_data

import tolerance

SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
  spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_throughput_smoke(tmp_path):
  result = _load("throughput").main(["--smoke", "--json", str(tmp_path / "t.json")])
  for key in ("teacher_in_tf_data_examples_per_s", "teacher_in_train_step_examples_per_s",
              "teacher_in_train_step_unguarded_examples_per_s",
              "student_quadrature_ms", "student_monte_carlo_ms", "ensemble_ms"):
    assert math.isfinite(result[key]) and result[key] > 0, key
  assert (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_uci_table_smoke(tmp_path, load_or_skip):
  load_or_skip(uci_data.data_dir)
  report = _load("uci_table").main(["--smoke", "--out", str(tmp_path)])
  assert set(report["results"]) == {"yacht"}
  summary = (tmp_path / "summary.md").read_text()
  assert "| yacht | 1 |" in summary and "*Deep Ens. 2017*" in summary
  # --no-run summarises the finished splits without training.
  again = _load("uci_table").main(["--smoke", "--no-run", "--out", str(tmp_path)])
  assert again["results"] == report["results"]


@pytest.mark.slow
def test_uci_select_smoke_on_validation_rows(tmp_path, load_or_skip):
  load_or_skip(uci_data.data_dir)
  summary = _load("uci_select").main(["--smoke", "--variants", "constant,cosine",
                                      "--out", str(tmp_path)])
  # The ratios and gaps are those of the saved validation splits, recomputed here.
  saved = [json.loads((tmp_path / "cosine" / "yacht" / f"val_split_{i:02d}.json")
                      .read_text()) for i in range(2)]
  assert all(s["evaluated_on"] == "validation" for s in saved)
  ratios = [s["metrics"]["full"]["rmse"] / s["metrics"]["ensemble"]["rmse"] for s in saved]
  # float64 from the same JSON numbers: a quotient per split and a mean of 2 (3) on
  # either side.
  tolerance.assert_close(summary["yacht"]["cosine"]["full"]["rmse_ratio"][0],
                         np.mean(ratios), dtype=np.float64, ulps=2 * (1 + 3))
  assert "| yacht | constant | full |" in (tmp_path / "summary.md").read_text()
  with pytest.raises(SystemExit):
    _load("uci_select").main(["--smoke", "--variants", "nope", "--out", str(tmp_path)])


def test_uci_unimodal_gap_smoke(tmp_path, load_or_skip):
  load_or_skip(uci_data.data_dir)
  result = _load("uci_unimodal_gap").main(["--smoke", "--json", str(tmp_path / "g.json")])
  (row,) = result["yacht"]
  assert all(math.isfinite(v) for v in row.values())
  # float64: gap = normal - mixture, and each NLL + log(y_std) before the subtraction
  # here: 3 eps of the NLLs' sizes.
  tolerance.assert_close(row["gap"], row["normal_nll"] - row["mixture_nll"],
                         dtype=np.float64, ulps=3,
                         scale=abs(row["normal_nll"]) + abs(row["mixture_nll"]))
  assert row["median_epistemic_over_aleatoric"] > 0
  assert json.loads((tmp_path / "g.json").read_text())["yacht"][0] == row


def test_uci_targets_against_hand_computed_verdicts():
  def cell(mean, stderr=0.0):
    return {"mean": mean, "stderr": stderr}

  def models(ratio, gap, ens_se):
    return {"ensemble": {"rmse": cell(2.0), "nll": cell(1.0, ens_se)},
            **{m: {"rmse": cell(2.0 * ratio), "nll": cell(1.0 + gap)}
               for m in ("full", "diagonal", "mixture")}}

  report = {"results": {
      "a": models(1.05, 0.01, 0.02),    # (a) met, (b) met: +0.01 <= 0.02
      "b": models(1.05, 0.03, 0.02),    # (a) met, (b) not: +0.03 > 0.02
      "c": models(1.12, 0.01, 0.02),    # (a) not (RMSE 12% worse), (b) met
      "d": models(1.00, 0.25, 0.30)}}   # (a) not (0.25 nats), (b) met
  text = "\n".join(_load("uci_table").targets_markdown(report))
  rows = {line.split(" | ")[0][2:]: line for line in text.splitlines()
          if line.startswith("| ") and not line.startswith("| data set")}
  assert rows["a"].endswith("| met | +0.010 vs 0.020 | met |")
  assert rows["b"].endswith("| met | +0.030 vs 0.020 | not met |")
  assert "| not met | +0.010 vs 0.020 | met |" in rows["c"]
  assert "| not met | +0.250 vs 0.300 | met |" in rows["d"]
  assert "(a) met on 2 of 4 sets; (b) met on 3 of 4." in text


def test_uci_scripts_read_the_measured_reports(tmp_path):
  """uci_table's summary and uci_compare read the measured reports in docs/uci (written
  before td.report.header: seconds per split under "timings_s") and new ones alike."""
  docs = SCRIPTS.parent / "docs" / "uci"
  table = _load("uci_table")
  assert "| boston | 20 |" in table.summary_markdown(
      json.loads((docs / "2026-11-30" / "report.json").read_text()))   # no fidelity yet
  old = json.loads((docs / "report.json").read_text())
  text = table.summary_markdown(old)
  assert "| boston | 20 |" in text and "full MRE" in text
  new = dict(old, seconds_per_split=old["timings_s"], timings_s={"total": 1.0},
             wall_time_s=1.0)
  result = _load("uci_compare").compare(old, new)
  assert result["total"]["speedup"] == 1.0
  assert table.summary_markdown(new) == text


@pytest.mark.slow
def test_ods_throughput_smoke(tmp_path):
  result = _load("ods_throughput").main(["--smoke", "--json", str(tmp_path / "o.json")])
  for name in ("none", "gaussian", "ods"):
    for where in ("tf_data", "train_step"):
      value = result[f"{name}_in_{where}_examples_per_s"]
      assert math.isfinite(value) and value > 0, (name, where)


@pytest.mark.slow
def test_uci_perturbation_smoke(tmp_path, capsys, load_or_skip):
  load_or_skip(uci_data.data_dir)
  rows = _load("uci_perturbation").main(["--smoke", "--out", str(tmp_path), "--dataset",
                                         "yacht", "--splits", "2", "--step", "0.5"])
  plain, moved, diff, stderr, n = rows["yacht"]["nll"]
  assert n == 2 and all(math.isfinite(v) for v in (plain, moved, diff, stderr))
  # float64: a mean of 2 differences against the difference of 2 means (3 + 3 + 1 eps of
  # the NLLs' sizes).
  assert abs(diff - (moved - plain)) <= tolerance.atol(
      dtype=np.float64, ulps=7, scale=abs(moved) + abs(plain))
  assert "| yacht | NLL |" in capsys.readouterr().out


def test_uci_compare_against_hand_computed_values(tmp_path):
  def report(mean, stderr, seconds, splits):
    return {"results": {"yacht": {"full": {"rmse": {"mean": mean, "stderr": stderr}}}},
            "timings_s": {"yacht": seconds}, "num_splits": {"yacht": splits}}

  old = report(1.0, 0.3, {"ensemble": 7.0, "full": 5.0}, 20)
  new = report(1.5, 0.4, {"ensemble": 1.0, "students": 3.0}, 20)
  paths = []
  for name, r in (("old", old), ("new", new)):
    paths.append(str(tmp_path / f"{name}.json"))
    with open(paths[-1], "w") as f:
      json.dump(r, f)
  result = _load("uci_compare").main(paths + ["--markdown", str(tmp_path / "c.md")])
  cell = result["metrics"]["yacht"]["full"]["rmse"]
  # difference 0.5 over sqrt(0.3^2 + 0.4^2) = 0.5: exactly 1 standard error. float64
  # from decimal inputs (1 eps each): the hypot (3), the difference and the quotient:
  # within 8 eps; the timings' sums and quotient of small integers are exact.
  def close(value, want):
    return math.isclose(value, want, rel_tol=8 * tolerance.eps(np.float64), abs_tol=0)
  assert close(cell["z"], 1.0) and close(cell["stderr"], 0.5)
  assert result["timing"]["yacht"]["speedup"] == 12.0 / 4.0
  assert result["total"]["old_s"] == 240.0
  assert "1 of 1" in (tmp_path / "c.md").read_text()


@pytest.mark.slow
def test_images_select_smoke(tmp_path, capsys, load_or_skip):
  load_or_skip(images_data.load_fashion_mnist)
  _load("images_select").main(["--smoke", "--variants", "published", "--students",
                               "dirichlet", "--out", str(tmp_path)])
  printed = capsys.readouterr().out
  assert "| EnD^2 Dirichlet | published (chosen) |" in printed
  assert (tmp_path / "selection.json").exists()
  with pytest.raises(SystemExit):
    _load("images_select").main(["--smoke", "--variants", "nope", "--out", str(tmp_path)])


@pytest.mark.slow
def test_divergence_sweep_smoke_and_its_counts(tmp_path, load_or_skip):
  load_or_skip(uci_data.data_dir)
  load_or_skip(images_data.load_fashion_mnist)
  module = _load("divergence_sweep")
  summary = module.main(["--smoke", "--quiet", "--datasets", "yacht", "--out",
                         str(tmp_path)])
  for kind in ("full", "diagonal", "mixture"):
    cell = summary["uci"]["yacht"][kind]
    assert cell["runs"] == 2 and cell["non_finite"] == 0 and math.isfinite(
        cell["nll"]["mean"])
  assert {s: c["runs"] for s, c in summary["images"]["10x"].items()} == {
      "dirichlet": 1, "gaussian": 1, "mixture": 1}
  lines = (tmp_path / "runs.jsonl").read_text().splitlines()
  assert len(lines) == 5                       # 2 UCI seeds + 3 image students
  module.main(["--smoke", "--quiet", "--datasets", "yacht", "--out", str(tmp_path)])
  assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 5   # all reused
  # The counts, on hand-made runs: one diverged UCI student, one diverged image student.
  uci_runs = [{"dataset": "d", "seed": s, "ensemble_finite": True, "seconds": 1.0,
               "ensemble_seconds": 2.0, "students": {
                   "full": {"finite": s != 1, "nll": None if s == 1 else 1.0 + s,
                            "error": "The training loss became nan" if s == 1 else None}}}
              for s in range(3)]
  image_runs = [{"student": "gaussian", "lr_factor": 3.0, "seed": s, "finite": s == 0,
                 "accuracy": 0.5 if s == 0 else None, "nll": 1.0 if s == 0 else None,
                 "error": None if s == 0 else "boom", "seconds": 1.0, "test_images": 7}
                for s in range(2)]
  args = module.argparse.Namespace(seeds=3, image_train=5, image_epochs=1, image_seeds=2,
                                   image_lr_factors="3")
  counted = module.summarize(uci_runs, image_runs, args)
  cell = counted["uci"]["d"]["full"]
  assert (cell["runs"], cell["non_finite"]) == (3, 1)
  assert cell["nll"] == {"mean": 2.0, "sd": math.sqrt(2.0), "n": 2}   # seeds 0 and 2
  assert counted["images"]["3x"]["gaussian"]["non_finite"] == 1
  assert counted["uci_seconds"] == 5.0
  text = module.markdown(counted)
  assert "| d | yes | 1/3, NLL 2.000 ± 1.414 |" in text
  assert "- UCI d full seed 1: The training loss became nan" in text
  assert "- images 3x gaussian seed 1: boom" in text


@pytest.mark.slow
def test_own_ensemble_example_smoke(tmp_path, load_or_skip):
  for loader in (images_data.load_fashion_mnist, images_data.load_mnist_ood):
    load_or_skip(loader)
  report = _load("own_ensemble_example").main(["--smoke", "--out", str(tmp_path)])
  assert report["task"] == "classification" and report["num_members"] == 2
  assert report["teacher_outputs_from"] == "this process"
  assert all(math.isfinite(v) for v in report["student"].values())
  assert (tmp_path / "student" / "saved_model").exists()
  # The same members, distilled again with other inputs into another folder.
  again = _load("own_ensemble_example").main(
      ["--smoke", "--out", str(tmp_path), "--reuse-members", "--extra-inputs",
       "mixup+box:0.5", "--student-dir", "student_box"])
  assert again["example"]["members_reused"] and again["data"]["extra_inputs"] == "mixup+box"
  assert again["ensemble"] == report["ensemble"]          # the same members' metrics
  # The Gaussian-over-logits student, and a second ensemble as the noise ceiling.
  gaussian = _load("own_ensemble_example").main(
      ["--smoke", "--out", str(tmp_path), "--reuse-members", "--method", "gaussian-logits",
       "--ceiling", "--student-dir", "student_gaussian"])
  assert gaussian["method"] == "gaussian-logits"
  ceiling = gaussian["example"]["ceiling"]
  assert sorted(ceiling) == ["ood", "test"]
  assert all(-1 <= v <= 1 for v in ceiling.values()), ceiling
  assert (tmp_path / "ceiling_member_1.keras").exists()
  # Rescoring a saved EnD^2 student (a closed-form mutual information) gives the fidelity
  # its own report measured, up to float32 rounding; the Gaussian student's is Monte Carlo.
  scores = _load("own_ensemble_example").main(
      ["--out", str(tmp_path), "--rescore", "student", "student_gaussian"])
  fidelity = report["ood"]["fidelity"]
  n = fidelity["n"]
  # A mean of n float32 terms on each side of the ratio.
  tolerance.assert_close(scores["student"]["mean_ratio"], fidelity["mean_ratio"],
                         dtype=np.float32, ulps=4 * n)
  assert abs(scores["student"]["spearman"] - fidelity["spearman"]) < 2 / n, scores
  assert -1 <= scores["student_gaussian"]["spearman"] <= 1
  # The seed-to-seed spread of the mean mutual information: none for the EnD^2 student
  # (closed form: the same numbers at every seed), finite for the Gaussian one.
  data = [str(tmp_path / "test.npz"), str(tmp_path / "mnist.npz")]
  spread_script = _load("mc_mean_spread")
  closed = spread_script.main(["--student", str(tmp_path / "student"), "--data", *data,
                               "--seeds", "2", "--num-samples", "20"])
  for kinds in closed.values():
    for figures in kinds.values():
      assert figures["means"][0] == figures["means"][1] and figures["half_range_percent"] == 0
  sampled = spread_script.main(["--student", str(tmp_path / "student_gaussian"), "--data",
                                *data, "--seeds", "2", "--num-samples", "20"])
  assert all(math.isfinite(f["half_range_percent"]) and f["half_range_percent"] >= 0
             for kinds in sampled.values() for f in kinds.values())
  # The choice on corruptions of held-out training images, over the three students
  # (no reported OOD sets here; the second ensemble as the ceiling row).
  chosen = _load("image_choose_inputs").main(
      ["--out", str(tmp_path), "--students", "student", "student_box", "student_gaussian",
       "--base", "end2=student", "--base", "all=student", "--size", "40",
       "--no-reported", "--corrupted-test", "10"])
  assert chosen["chosen"]["end2"] in ("student", "student_box")
  assert chosen["chosen"]["gaussian-logits"] == "student_gaussian"
  assert chosen["settings"]["size"] == 40 and chosen["ceiling"] is not None
  assert chosen["settings"]["ood"] == ["corrupted test images"]
  assert all(0 <= s["reported"]["corrupted test images"]["student_auroc"] <= 1
             for s in chosen["students"].values())
  table = (tmp_path / "choice" / "choice.md").read_text()
  assert all(f"| {name} |" in table for name in ("student", "student_box",
                                                 "student_gaussian", "second ensemble (ceiling)"))


def test_serve_load_smoke(tmp_path, capsys):
  module = _load("serve_load")
  # The identity check is bit for bit: one ulp apart is not identical.
  one = {"p": np.float32([1.0, 2.0])}
  assert module._identical(one, {"p": np.float32([1.0, 2.0])})
  ulp_up = np.nextafter(np.float32(2), np.float32(3))
  assert not module._identical(one, {"p": np.float32([1.0, ulp_up])})
  result = module.main(["--smoke", "--json", str(tmp_path / "s.json")])
  assert result["untrained"] and set(result["results"]) == {"small_cnn_dirichlet",
                                                            "mlp_full_covariance"}
  for model, rows in result["results"].items():
    assert [r["threads"] for r in rows] == [1, 2], model
    for r in rows:
      for key in ("p50_ms", "p99_ms", "requests_per_s", "examples_per_s"):
        assert math.isfinite(r[key]) and r[key] > 0, (model, r["threads"], key)
      assert r["p50_ms"] <= r["p99_ms"]
      assert r["errors"] == 0 and r["first_error"] is None, (model, r)
      assert r["identical_outputs"] and r["threads_with_identical_outputs"] == r["threads"]
  assert json.loads((tmp_path / "s.json").read_text())["results"] == result["results"]
  printed = capsys.readouterr().out
  assert "| small_cnn_dirichlet | 2 |" in printed and "untrained" in printed
  assert f"TensorFlow {result['machine']['tensorflow']}" in printed


def test_pca_holdout_holds_out_the_far_end_of_the_first_component():
  """The held-out rows are those with the largest scores on the first principal component
  (NumPy's SVD of the centred rows; its sign is SVD's, so the test takes either end)."""
  module = _load("ood_inputs_study")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3)) * np.array([5.0, 1.0, 0.5])   # PC1 is the first feature
  keep, held = module.pca_holdout(x, share=0.15)
  assert len(held) == 30 and len(keep) == 170
  assert set(keep) | set(held) == set(range(200)) and not set(keep) & set(held)
  first = x[:, 0]
  # The 30 rows at one end of feature 0, which carries almost all the variance.
  top, bottom = set(np.argsort(first)[-30:]), set(np.argsort(first)[:30])
  assert set(held) in (top, bottom)


def test_ood_inputs_choice_keeps_in_distribution_accuracy():
  """A mix whose student is worse on the proxy's held-out training rows than the default
  inputs' by more than the slack is never chosen, however good its OOD AUROC; among the
  others the best AUROC gap wins, and a near tie goes to the nearer magnitude."""
  module = _load("ood_inputs_study")
  slack = module.IN_DISTRIBUTION_SLACK
  reg = {"default": {"auroc_gap": -0.2, "log_mean_ratio": -1.0, "rmse_ratio": 1.0},
         "default+far": {"auroc_gap": 0.3, "log_mean_ratio": 0.1,
                         "rmse_ratio": 1.0 * slack["rmse_ratio"] * 1.01},
         "default+box": {"auroc_gap": 0.1, "log_mean_ratio": 0.9, "rmse_ratio": 1.0},
         "default+far:0.25": {"auroc_gap": 0.095, "log_mean_ratio": 0.2,
                              "rmse_ratio": 1.0 * slack["rmse_ratio"] * 0.99}}
  assert module.admissible(reg) == ["default", "default+box", "default+far:0.25"]
  rule = {"rule": "auroc"}
  assert module.choose(reg, **rule) == "default+far:0.25"   # within 0.01 of box, nearer size
  reg["default+box"]["auroc_gap"] = 0.2
  assert module.choose(reg, **rule) == "default+box"
  cls = {"default": {"auroc_gap": 0.0, "log_mean_ratio": 0.0, "nll_gap": 0.05},
         "default+far": {"auroc_gap": 0.5, "log_mean_ratio": 0.0,
                         "nll_gap": 0.05 + slack["nll_gap"] + 1e-3}}
  assert module.choose(cls, **rule) == "default"
  assert module.choose(cls, "fidelity") == "default"
  with pytest.raises(ValueError, match="rule"):
    module.choose(cls, "best")


def test_ood_inputs_fidelity_choice_prefers_targets_met_then_rank():
  """The fidelity rule: more proxy targets met (AUROC not more than 0.02 below the
  ensemble's, mean within 1.5x) beats fewer, however high the AUROC; then Spearman."""
  module = _load("ood_inputs_study")
  scores = {
      # AUROC far above the ensemble's but 3x too large: one target.
      "default": {"auroc_gap": 0.3, "log_mean_ratio": np.log(3.0), "ood_spearman": 0.9,
                  "rmse_ratio": 1.0},
      # Both targets, the lower Spearman.
      "default+far": {"auroc_gap": -0.019, "log_mean_ratio": np.log(1.49),
                      "ood_spearman": 0.6, "rmse_ratio": 1.0},
      # Both targets, the higher Spearman.
      "default+box": {"auroc_gap": 0.0, "log_mean_ratio": np.log(0.7),
                      "ood_spearman": 0.7, "rmse_ratio": 1.0}}
  assert [module.proxy_targets_met(s) for s in scores.values()] == [1, 2, 2]
  assert module.choose(scores, "fidelity") == "default+box"
  scores["default+box"]["auroc_gap"] = -0.021                   # one target now
  assert module.choose(scores, "fidelity") == "default+far"
  assert module.choose(scores, "auroc") == "default" == module.choose(scores)


def test_ood_inputs_summary_says_which_targets_are_met():
  module = _load("ood_inputs_study")

  def row(seed, auroc, ratio, spearman):
    block = {"ensemble_auroc": 0.8, "student_auroc": auroc, "mean_ratio": ratio,
             "spearman": spearman, "ceiling_spearman": 0.6}
    return {"set": "s", "mix": "m", "seed": seed, "chosen": seed == 0, "rmse_ratio": 1.0,
            "mean_ratio": 1.2, "far": {"0": dict(block), "1": dict(block),
                                       "3": dict(block)}}

  (good,) = module.summary([row(0, 0.79, 1.4, 0.7), row(1, 0.785, 0.7, 0.65)])
  assert good["met"] == {"auroc": True, "magnitude": True, "spearman": True}
  assert good["chosen"] == 1 and good["seeds"] == 2
  assert good["far3_auroc_gap"] == pytest.approx(-0.0125)
  # One seed's ratio outside 1.5x fails the magnitude; a mean AUROC 0.03 below fails it.
  (bad,) = module.summary([row(0, 0.77, 1.6, 0.5), row(1, 0.77, 1.0, 0.5)])
  assert bad["met"] == {"auroc": False, "magnitude": False, "spearman": False}
  assert "| s | m | 1 of 2 |" in module.summary_markdown([row(0, 0.79, 1.4, 0.7),
                                                         row(1, 0.785, 0.7, 0.65)])


@pytest.mark.slow
def test_ood_inputs_methods_by_task():
  methods = _load("ood_inputs_study").methods_by_task
  assert methods(argparse.Namespace(method=None)) == {}
  assert methods(argparse.Namespace(method="gaussian-logits")) == {
      "classification": "gaussian-logits"}
  assert methods(argparse.Namespace(method="classification=end2,regression=diagonal")) == {
      "classification": "end2", "regression": "diagonal"}


def test_ood_inputs_study_smoke(tmp_path):
  rows = _load("ood_inputs_study").main(["--fast", "--mixes", "default+far", "--method",
                                         "gaussian-logits", "--out", str(tmp_path)])
  assert [r["mix"] for r in rows] == ["default", "default+far"]
  assert {r["method"] for r in rows} == {"gaussian-logits"}
  assert sum(r["chosen"] for r in rows) == 1
  for r in rows:
    assert math.isfinite(r["proxy"]["auroc_gap"]) and math.isfinite(r["nll_gap"])
    assert -1 <= r["proxy"]["ood_spearman"] <= 1
    assert set(r["far"]) == {"0", "1", "3"}
    assert all(0 <= b["student_auroc"] <= 1 for b in r["far"].values())
  text = (tmp_path / "report.md").read_text()
  assert "| wine | 0 | default+far |" in text and "## Over seeds" in text
  assert "--method gaussian-logits" in text
  merged = _load("ood_inputs_study").main(["--merge", str(tmp_path), "--out",
                                           str(tmp_path / "merged")])
  assert merged == rows and "--sets wine" in (tmp_path / "merged" / "report.md").read_text()


@pytest.mark.slow
def test_distill_defaults_smoke(tmp_path):
  rows = _load("distill_defaults").main(["--fast", "--out", str(tmp_path)])
  assert {r["version"] for r in rows} == {"defaults", "30 one-pass epochs"}
  assert all("error" not in r and math.isfinite(r["nll_gap"]) for r in rows)
  assert (tmp_path / "report.md").exists()


def test_uci_ood_inputs_compares_runs_split_by_split(tmp_path):
  module = _load("uci_ood_inputs")

  def split(folder, i, ens, stu, second=None, spearman=0.8, ratio=1.0):
    auroc = {"ensemble": {"epistemic": ens, "total": ens},
             "full": {"epistemic": stu, "total": stu}}
    if second is not None:
      auroc["second_ensemble"] = {"epistemic": second, "total": second}
    result = {"dataset": "yacht", "split": i, "n_ood": 31, "ood_auroc": auroc,
              "fidelity_ood": {"full": {"epistemic": {"spearman": spearman,
                                                      "mean_ratio": ratio}}},
              "metrics": {"ensemble": {"rmse_in": 1.0, "nll_in": 1.0},
                          "full": {"rmse_in": 1.1, "nll_in": 1.2}}}
    path = tmp_path / folder / "yacht" / f"ood_split_{i:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))

  for i, (ens, a, b) in enumerate([(0.8, 0.6, 0.79), (0.7, 0.6, 0.69), (0.9, 0.6, 0.9)]):
    split("a", i, ens, a, second=ens + 0.01)
    split("b", i, ens, b, ratio=0.5)
  split("b", 3, 0.5, 0.5)              # a split only one run has is left out
  (row,) = module.compare({"a": module.load_run(tmp_path / "a"),
                           "b": module.load_run(tmp_path / "b")})
  assert row["splits"] == 3 and row["ensemble"][0] == pytest.approx(0.8)
  assert row["second_ensemble"][0] == pytest.approx(0.81)
  assert row["runs"]["a"]["gap"][0] == pytest.approx(-0.2) and not row["runs"]["a"]["met"]
  assert row["runs"]["b"]["gap"][0] == pytest.approx(-2 / 300) and row["runs"]["b"]["met"]
  assert row["runs"]["b"]["mean_ratio"][0] == pytest.approx(0.5)
  assert row["runs"]["a"]["rmse_ratio"][0] == pytest.approx(1.1)
  text = module.markdown([row])
  assert "| yacht (3, 31) | 0.800 +- 0.058 | 0.810 +- 0.058 |" in text
  assert "**met (of 1)** | | | 0 | 1 |" in text
  # Runs of other ensembles are refused, not compared.
  split("c", 0, 0.1, 0.1)
  split("c", 1, 0.7, 0.6)
  split("c", 2, 0.9, 0.6)
  with pytest.raises(ValueError, match="ensembles differ"):
    module.compare({"a": module.load_run(tmp_path / "a"),
                    "c": module.load_run(tmp_path / "c")})
  module.main([f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--out", str(tmp_path / "o")])
  assert "scripts/uci_ood_inputs.py a=" in (tmp_path / "o" / "report.md").read_text()


def test_uci_ood_inputs_puts_the_chosen_mixes_together_split_by_split(tmp_path):
  module = _load("uci_ood_inputs")

  def split(folder, name, i, stu):
    result = {"dataset": name, "split": i, "n_ood": 31,
              "ood_auroc": {"ensemble": {"epistemic": 0.8}, "full": {"epistemic": stu}},
              "fidelity_ood": {"full": {"epistemic": {"spearman": 0.5, "mean_ratio": 1.0}}},
              "metrics": {"ensemble": {"rmse_in": 1.0, "nll_in": 1.0},
                          "full": {"rmse_in": 1.0, "nll_in": 1.0}}}
    path = tmp_path / folder / name / f"ood_split_{i:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))

  for i in range(2):
    split("box", "yacht", i, 0.6 + i / 100)
    split("box", "energy", i, 0.7)
  split("far", "yacht", 1, 0.9)
  runs = {"box": module.load_run(tmp_path / "box"), "far": module.load_run(tmp_path / "far")}
  run, missing = module.chosen_run(runs, {"yacht": ["box", "far"], "energy": ["far", "box"]})
  assert [r["ood_auroc"]["full"]["epistemic"] for r in run["yacht"]] == [0.6, 0.9]
  assert "energy" not in run and missing == [("energy", 0, "far")]
  (tmp_path / "choice").mkdir()
  (tmp_path / "choice" / "choice.json").write_text(json.dumps(
      {"chosen": {"yacht": ["box", "far"], "energy": ["far", "box"]},
       "pooled": {"yacht": "box", "energy": "box"}}))
  # far is a source only: its one split does not narrow the table to that split.
  tables = module.main([f"box={tmp_path / 'box'}", "--choice", str(tmp_path / "choice"),
                        "--from", f"far={tmp_path / 'far'}", "--out", str(tmp_path / "o")])
  (row,) = tables["full"]                        # energy left out: one chosen split unrun
  assert row["set"] == "yacht" and row["splits"] == 2
  assert list(row["runs"]) == ["box", "chosen", "pooled"]
  assert row["runs"]["chosen"]["auroc"][0] == pytest.approx(0.75)
  assert row["runs"]["pooled"]["auroc"][0] == pytest.approx(0.605)   # box on both splits
  saved = json.loads((tmp_path / "o" / "report.json").read_text())
  assert saved["missing"] == [["energy", 0, "far"]]
  assert "--from far=" in (tmp_path / "o" / "report.md").read_text()
  with pytest.raises(SystemExit):
    module.main([f"box={tmp_path / 'box'}", "--from", f"far={tmp_path / 'far'}"])


def test_uci_ood_regions_smoke(tmp_path, load_or_skip):
  load_or_skip(uci_data.data_dir)
  out = _load("uci_ood_regions").main(["--fast", "--dataset", "yacht", "--box-share",
                                       "0.2", "--marginal-share", "0.2",
                                       "--student-min-steps", "50", "--json",
                                       str(tmp_path / "r.json")])
  assert list(out["regions"]) == ["train", "test", "held out", "box (ranges)",
                                  "box (widened by 0.5)"]
  for r in out["regions"].values():
    assert r["ensemble_mean"] > 0 and r["student_mean"] > 0
    assert r["ratio"] == pytest.approx(r["student_mean"] / r["ensemble_mean"])
  assert all(0 <= v <= 1 for v in out["auroc"].values())
  assert json.loads((tmp_path / "r.json").read_text())["dataset"] == "yacht"


def test_ood_inputs_report_names_its_choice_rule():
  module = _load("ood_inputs_study")
  args = argparse.Namespace(min_steps=None, seeds=2, sets="yacht", out="o")
  old = module._markdown([], args)        # a run from before --choice: the AUROC rule  # pylint: disable=protected-access
  assert "--choice" not in old and "largest student OOD AUROC" in old   # now the default
  args.choice = "fidelity"
  new = module._markdown([], args)  # pylint: disable=protected-access
  assert "--choice fidelity" in new and "then the highest Spearman" in new


def test_uci_choose_inputs_passes_its_arguments(tmp_path, monkeypatch):
  # `run_choice` itself runs end to end in test_input_choice.py; here, what the script
  # hands it: --fast drops the mixes' step floor (and only there: the module's mixes are
  # not changed in place), the rest goes through as given.
  from tfp_distill.experiments import uci as uci_experiment
  from tfp_distill.experiments import uci_choice
  calls = []

  def run_choice(*args):
    calls.append(args)
    return {"settings": {"candidates": ["jitter", "box"], "share": 0.2, "rule": "auroc"},
            "splits": {}, "chosen": {}}

  monkeypatch.setattr(uci_choice, "run_choice", run_choice)
  floors = {m: mix.get("student_min_steps") for m, mix in uci_choice.INPUT_MIXES.items()}
  script = _load("uci_choose_inputs")
  script.main(["--fast", "--out", str(tmp_path), "--datasets", "yacht", "--splits", "1",
               "--candidates", "jitter", "box", "--share", "0.2", "--rule", "auroc"])
  script.main(["--out", str(tmp_path)])
  (out, sets, splits, candidates, config, data_dir, share, rule, mixes), full = calls
  assert (out, sets, splits, candidates, share, rule) == (
      str(tmp_path), ["yacht"], 1, ["jitter", "box"], 0.2, "auroc")
  assert config == uci_experiment.UCIConfig.fast() and data_dir is None
  assert all("student_min_steps" not in mix for mix in mixes.values())
  assert {m: mix.get("student_min_steps") for m, mix in uci_choice.INPUT_MIXES.items()} \
      == floors
  assert full[4] == uci_experiment.UCIConfig() and full[8] is uci_choice.INPUT_MIXES
  assert full[1] == list(uci_data.UCI_DATASETS) and full[3] == list(uci_choice.CANDIDATES)


def test_temperature_study_summary_against_hand_computed_means():
  """Geometric means of the ratios, the AUROC gap at 3 sd and the within-1.5x count,
  per (mix, temperature), from rows of two sets."""
  module = _load("temperature_study")

  def row(ratio, r1, r3, gap, nll, t=2.5, mix="default"):
    far = {"1": {"mean_ratio": r1, "student_auroc": 0.5, "ensemble_auroc": 0.5,
                 "spearman": 0.2},
           "3": {"mean_ratio": r3, "student_auroc": 0.7 + gap, "ensemble_auroc": 0.7,
                 "spearman": None}}
    return {"set": "wine", "seed": 0, "mix": mix, "temperature": t, "nll_gap": nll,
            "accuracy_gap": 0.0, "mean_ratio": ratio, "spearman": 0.5, "far": far}
  rows = [row(1.2, 0.9, 0.8, -0.01, 0.02), row(0.5, 2.0, 0.2, -0.05, 0.00),
          row(1.0, 1.0, 1.0, 0.0, 0.0, t=10.0)]
  rows.append(dict(rows[-1], method="gaussian-logits", temperature=None))
  s = module.summary(rows)
  both = s[("default", "end2, T = 2.5")]
  assert both["n"] == 2 and both["within"] == 1            # the second row is not
  np.testing.assert_allclose(both["ratio_test"], np.sqrt(1.2 * 0.5), rtol=1e-12)
  np.testing.assert_allclose(both["ratio_3"], np.sqrt(0.8 * 0.2), rtol=1e-12)
  np.testing.assert_allclose(both["auroc_gap_3"], -0.03, atol=1e-12)
  np.testing.assert_allclose(both["nll_gap"], 0.01, atol=1e-12)
  assert both["spearman_3"] == 0.0                          # n/a counts as no rank
  assert s[("default", "end2, T = 10")]["within"] == 1
  assert s[("default", "gaussian-logits")]["n"] == 1
  args = type("Args", (), {"commands": "`c`", "merged": False})()
  text = module.markdown(rows, args, 60.0)
  assert "| default | end2, T = 2.5 | 2 | +0.0100 |" in text and "n/a" in text
  assert "| wine | 0 | default | gaussian-logits |" in text


def test_ood_inputs_rule_picks_count_each_rules_pick_at_3_sd():
  """Each rule's pick is looked up among the same set-seed's rows; its AUROC gap and
  mean ratio at 3 sd are counted against 0.02 and 1.5x."""
  module = _load("ood_inputs_study")

  def row(mix, gap, ratio, picks, seed=5):
    return {"set": "wine", "seed": seed, "mix": mix, "picks": picks,
            "far": {"3": {"student_auroc": 0.8 + gap, "ensemble_auroc": 0.8,
                          "mean_ratio": ratio, "spearman": 0.5}}}
  picks = {"fidelity": "default", "auroc": "default+box"}
  rows = [row("default", -0.25, 0.1, picks), row("default+box", 0.01, 0.9, picks),
          row("default", -0.01, 1.6, {"fidelity": "default", "auroc": "default"}, 6),
          {"set": "wine", "seed": 0, "mix": "default", "far": {}}]   # no picks: left out
  cells, counts = module.rule_picks(rows)
  assert set(cells) == {("wine", 5), ("wine", 6)}
  assert cells[("wine", 5)]["auroc"]["mix"] == "default+box"
  np.testing.assert_allclose(cells[("wine", 5)]["fidelity"]["auroc_gap"], -0.25, atol=1e-12)
  assert counts == {"fidelity": {"met": 1, "within": 0, "n": 2},
                    "auroc": {"met": 2, "within": 1, "n": 2}}
  text = module.rules_markdown(rows)
  assert "| wine, 5 | default: -0.250 / 0.10x / 0.50 | default+box: +0.010 / 0.90x / 0.50 |" in text
  assert "1 of 2; 0 of 2 | 2 of 2; 1 of 2 |" in text


def test_ood_inputs_ceiling_points_are_the_jobs_far_points(monkeypatch):
  """The second ensemble's Spearman (the ceiling) is scored on the far points the
  students' reports use: built from the rows the job fits, not all the training rows."""
  import keras as keras3
  module = _load("ood_inputs_study")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(120, 3)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64)
  seen = []
  original = td.report.far_points_block

  def spy(student_u, teacher, teacher_family, train_x, test_x, u_test):
    seen.append(np.asarray(train_x))
    return original(student_u, teacher, teacher_family, train_x, test_x, u_test)
  monkeypatch.setattr(td.report, "far_points_block", spy)
  members = []
  for m in range(2):
    keras3.utils.set_random_seed(m)
    model = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2)])
    model.compile("adam", keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    members.append(model)
  td.distill(members, (x, y), (x[:30], y[:30]), epochs=1, seed=7, force=True, verbose=0)
  (train_x,) = seen
  np.testing.assert_array_equal(module.job_fit_rows(x, y, seed=7), train_x)
  assert len(train_x) == 108                          # 10% held out for early stopping
