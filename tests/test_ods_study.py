"""The ODS study (`tfp-distill ods`) end to end on a small slice of Fashion-MNIST."""

import dataclasses
import json
import math
import os
import pathlib

import numpy as np
import pytest

from tfp_distill import cli
from tfp_distill.datasets import images as images_data
from tfp_distill.experiments import ods
from tfp_distill.experiments import ods_report

import tolerance

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "ods"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory, load_or_skip):
  load_or_skip(images_data.load_fashion_mnist)
  load_or_skip(images_data.load_mnist_ood)
  load_or_skip(images_data.load_animal_mnist)
  out = str(tmp_path_factory.mktemp("ods"))
  return out, ods.run_ods(out, ods.OdsConfig.fast())


@pytest.mark.slow
def test_fast_run_writes_a_complete_report(fast_run):
  out, report = fast_run
  for name in report["files"].values():
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, "report.json")) as f:
    assert json.load(f)["summary"] == json.loads(json.dumps(report["summary"]))
  assert list(report["summary"]) == list(ods.METHODS)
  for method, runs in report["runs"].items():
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
      for key, value in run["metrics"].items():
        assert math.isfinite(value) or (key == "dee" and value == math.inf), (method, key)
      m = run["metrics"]
      assert 0 <= m["accuracy"] <= 1 and m["nll"] > 0 and 0 <= m["ece"] <= 1
      assert m["dee"] >= 1
      assert all(np.isfinite(run["training_loss"]))
      key = ods.OdsConfig.fast().run_key(method)
      assert os.path.exists(os.path.join(out, "runs", f"{method}_{key}_seed{run['seed']}",
                                         "student.keras"))
  timings = report["timings_s"]
  assert 0 < timings["students"] <= timings["total"]
  seconds = [r["train_seconds"] for runs in report["runs"].values() for r in runs]
  # float64 sums of the same positive numbers, perhaps in another order (n + 1 eps each).
  assert report["train_seconds_all_runs"] == pytest.approx(sum(seconds), rel=0, abs=(
      tolerance.atol(sum(seconds), dtype=np.float64, ulps=2 * (len(seconds) + 1))))
  # Deep ensembles of sizes 1..M; every member trained (better than chance, 10 classes).
  curve = report["deep_ensemble_curve"]
  assert [r["size"] for r in curve] == [1, 2, 3]
  assert curve[0]["subsets"] == 3 and curve[2]["subsets"] == 1
  assert set(report["teachers"]) == {"DeepEns-1", "DeepEns-2", "DeepEns-3"}
  # Diversity: ODS moves each pixel by at most the step (RMS, clipping only shrinks it);
  # ConfODS by the step times the teacher's confidence, so never more than ODS.
  div = report["diversity"]
  assert div["clean"][0]["rms_change"] == 0
  for ods_row, conf_row in zip(div["ods"], div["confods"]):
    assert 0 < ods_row["rms_change"] <= ods_row["step_size"] + 1e-6
    assert conf_row["rms_change"] <= ods_row["rms_change"] + 1e-6
    assert 0 <= ods_row["disagreement"] <= 1 and ods_row["mutual_information"] >= 0
  assert {"kd_confods_nll_below_kd", "kd_confods_dee_above_kd",
          "ods_improves_a_distribution_student"} <= set(report["targets"])
  markdown = ods.format_markdown(report)
  for text in ("+ KD + ConfODS", "EnD^2 Dirichlet + ODS", "## Diversity", "T: DeepEns-2",
               "Paired by seed", "+ KD + ConfODS vs + KD, nll: ", "## Wall time (s)"):
    assert text in markdown
  # The keys every report shares; the registry methods behind the study's names.
  assert report["wall_time_s"] == timings["total"]
  assert report["methods"]["dirichlet-ods"] == "end2" and report["methods"]["kd"] == "kd"
  assert report["methods"]["batchens"] is None        # labels only


@pytest.mark.slow
def test_rerun_reuses_the_runs_and_the_cli_runs(fast_run, capsys):
  out, report = fast_run
  assert cli.main(["ods", "--fast", "--out", out, "--methods", "kd,kd-confods",
                   "--seeds", "1"]) == 0
  with open(os.path.join(out, "report.json")) as f:
    again = json.load(f)
  assert again["ensemble_reused"]
  assert list(again["summary"]) == ["kd", "kd-confods"]
  # Reused from disk, not retrained: identical metrics.
  assert again["runs"]["kd"][0] == json.loads(json.dumps(report["runs"]["kd"][1]))
  assert "Report written to" in capsys.readouterr().out


def test_cli_passes_the_training_settings(monkeypatch):
  seen = {}

  def fake_run(out, config):
    seen["config"] = config
    raise FileNotFoundError("stop here")
  monkeypatch.setattr(ods, "run_ods", fake_run)
  with pytest.raises(SystemExit, match="stop here"):
    cli.main(["ods", "--num-train", "300", "--member-epochs", "3", "--student-epochs", "2",
              "--step-size", "0.02", "--seeds", "4,5"])
  config = seen["config"]
  assert (config.num_train, config.member_epochs, config.student_epochs) == (300, 3, 2)
  assert config.step_size == 0.02 and config.seeds == (4, 5)
  assert config.images_config().num_train == 300       # the teachers see the same images


@pytest.mark.slow
def test_changed_evaluation_settings_re_evaluate_without_retraining(fast_run):
  out, report = fast_run
  config = ods.OdsConfig.fast(num_test=128, methods=("dirichlet",), seeds=(0,))
  again = ods.run_ods(out, config)
  before, after = report["runs"]["dirichlet"][0], again["runs"]["dirichlet"][0]
  assert after["train_seconds"] == before["train_seconds"]      # the saved student
  assert after["training_loss"] == before["training_loss"]
  assert after["eval_key"] != before["eval_key"] and again["sizes"]["test"] == 128
  assert after["metrics"]["nll"] != before["metrics"]["nll"]


def test_bad_configurations_are_rejected():
  with pytest.raises(ValueError, match="Unknown methods"):
    ods.OdsConfig.fast(methods=("kd", "distill-everything"))
  with pytest.raises(ValueError, match="num_teachers"):
    ods.OdsConfig.fast(num_teachers=5)
  with pytest.raises(SystemExit, match="Unknown methods"):
    cli.main(["ods", "--fast", "--methods", "nope"])


def test_perturbation_matches_the_method():
  config = ods.OdsConfig.fast(step_size=0.07, gaussian_scale=0.03)
  assert ods.perturbation(None, config) is None
  assert ods.perturbation("gaussian", config).scale == 0.03
  assert ods.perturbation("ods", config).step_size == 0.07
  conf = ods.perturbation("confods", config, step_size=0.2)
  assert conf.confidence_scaled and conf.step_size == 0.2 and conf.clip == (0., 1.)


def test_run_keys_depend_only_on_the_settings_a_method_uses():
  base = ods.OdsConfig.fast()
  changed = {"step_size": ("kd-ods", "kd-confods", "dirichlet-ods", "gaussian-ods"),
             "gaussian_scale": ("kd-gaussian",),
             "kd_temperature": ("kd", "kd-gaussian", "kd-ods", "kd-confods"),
             "labels_on": ("kd-gaussian", "kd-ods", "kd-confods"),   # perturbed KD only
             "initial_temperature": ("dirichlet", "dirichlet-ods"),
             "student_epochs": ods.METHODS}
  values = {"step_size": 0.02, "gaussian_scale": 0.02, "kd_temperature": 3.0,
            "labels_on": "perturbed", "initial_temperature": 5.0, "student_epochs": 3}
  for field, methods in changed.items():
    other = dataclasses.replace(base, **{field: values[field]})
    for method in ods.METHODS:
      assert (base.run_key(method) != other.run_key(method)) == (method in methods), (
          field, method)
  # Seeds, method lists and evaluation settings never change a key; methods differ.
  assert ods.OdsConfig.fast(seeds=(5,), num_test=64, methods=("kd",)).run_key("kd") == (
      base.run_key("kd"))
  assert len({base.run_key(m) for m in ods.METHODS}) == len(ods.METHODS)
  with pytest.raises(ValueError, match="Unknown method"):
    base.run_key("kd-everything")


def test_targets_pair_the_seeds_and_call_ties_within_noise():
  def runs(values):
    return [{"seed": s, "metrics": {"nll": v, "dee": d}} for s, (v, d) in values.items()]
  kd = runs({0: (0.30, 1.5), 1: (0.35, 1.2), 2: (0.32, 1.4)})
  # Better by 0.010 on every seed: the seed-to-seed spread (0.02) cancels in the pairs.
  better = runs({0: (0.29, 1.6), 1: (0.34, 1.3), 2: (0.31, np.inf)})
  mean, se, n = ods.paired_difference({"kd": kd, "kd-confods": better}, "kd", "kd-confods",
                                      "nll")
  # float64 from decimal inputs of ~0.3 (1 eps each): differences, a mean of 3 (4 eps)
  # and a standard error of equal differences (8 eps), all of the inputs' size.
  def approx(value, ulps, scale=0.35):
    return pytest.approx(value, rel=0, abs=tolerance.atol(dtype=np.float64, ulps=ulps,
                                                          scale=scale))
  assert n == 3 and mean == approx(-0.01, 2 * (2 + 4)) and se == approx(0., 2 * (2 + 8))
  targets = ods_report.targets({"kd": kd, "kd-confods": better}, num_members=8)
  assert targets["kd_confods_nll_below_kd"]["verdict"] == "met"
  dee = targets["kd_confods_dee_above_kd"]     # inf is capped at M = 8 before differencing
  assert dee["difference"] == approx(np.mean([0.1, 0.1, 8 - 1.4]), 2 * (2 + 4), 8.)
  # Differences -0.01, +0.012, -0.004: mean -0.0007, s.e. 0.0065, a tie.
  mixed = runs({0: (0.29, 1.5), 1: (0.362, 1.2), 2: (0.316, 1.4)})
  row = ods_report.targets({"kd": kd, "kd-confods": mixed}, 8)["kd_confods_nll_below_kd"]
  diffs = np.array([-0.01, 0.012, -0.004])
  assert row["difference"] == approx(diffs.mean(), 2 * (2 + 4))
  assert row["standard_error"] == approx(diffs.std(ddof=1) / np.sqrt(3), 2 * (2 + 8))
  assert row["verdict"].startswith("tie")
  worse = runs({0: (0.31, 1.5), 1: (0.36, 1.2), 2: (0.33, 1.4)})
  assert ods_report.targets({"kd": kd, "kd-confods": worse}, 8)[
      "kd_confods_nll_below_kd"]["verdict"] == "not met"
  # Only seeds both methods ran are paired; one seed gives no noise estimate.
  one = runs({2: (0.31, 1.4), 7: (0.1, 9.)})
  row = ods_report.targets({"kd": kd, "kd-confods": one}, 8)["kd_confods_nll_below_kd"]
  assert row["seeds"] == 1 and row["verdict"] == "one seed only: better"


def test_old_reports_are_still_read():
  """Every measured report in docs/ods (written before td.report.header; the oldest
  before `labels_on`) still renders."""
  paths = sorted(DOCS.glob("**/report.json"))
  assert len(paths) >= 10
  for path in paths:
    report = json.loads(path.read_text())
    assert "| S: " in ods.format_markdown(report), path
