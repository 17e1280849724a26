"""The image study (`tfp-distill images`) end to end on a small slice of Fashion-MNIST."""

import json
import math
import os
import pathlib

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill import cli
from tfp_distill.datasets import images as images_data
from tfp_distill.experiments import _common
from tfp_distill.experiments import images

import tolerance

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory, load_or_skip):
  load_or_skip(images_data.load_fashion_mnist)
  load_or_skip(images_data.load_mnist_ood)
  load_or_skip(images_data.load_animal_mnist)
  out = str(tmp_path_factory.mktemp("images"))
  return out, images.run_images(out, images.ImagesConfig.fast())


@pytest.mark.slow
def test_fast_run_writes_a_complete_report(fast_run):
  out, report = fast_run
  for name in report["files"].values():
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, "report.json")) as f:
    assert json.load(f)["metrics"] == report["metrics"]
  assert set(report["metrics"]) == {"ensemble", "member", "dirichlet", "gaussian",
                                    "mixture"}
  for name, m in report["metrics"].items():
    for key, value in m.items():
      assert math.isfinite(value), (name, key)
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["ece"] <= 1.0 and m["nll"] > 0
  # 600 training images and 2 epochs: far from converged, but the ensemble has learnt
  # something (chance is 0.1 on 10 balanced classes).
  assert report["metrics"]["ensemble"]["accuracy"] > 0.2
  # Students learn from the 600 training images plus 300 mixup inputs.
  assert report["sizes"]["train"] == 600 and report["sizes"]["distillation"] == 900
  # OOD: MI only for models with an epistemic part.
  for set_name in ("mnist", "animal_mnist"):
    per_model = report["ood"][set_name]
    assert set(per_model["member"]) == {"total"}
    assert set(per_model["dirichlet"]) == {"total", "mutual_information"}
    for scores in per_model.values():
      for r in scores.values():
        assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["aupr"] <= 1.0
  severity = report["shift"]["by_severity"]["ensemble"]["accuracy"]
  assert sorted(severity) == ["1", "2", "3", "4", "5"]
  assert set(report["shift"]["per_corruption"]) == {"gaussian_noise", "rotate"}
  assert set(report["targets"]) == {"dirichlet", "gaussian", "mixture"}
  assert "ood_auroc_mi_within_0.03_mnist" not in report["targets"]["mixture"]
  markdown = images.format_markdown(report)
  assert "## Out-of-distribution detection" in markdown and "EnD^2 Dirichlet" in markdown
  assert all(np.isfinite(report["training_loss"][s]).all() for s in report["training_loss"])
  # The students are the registry's (td.methods), the fidelity td.metrics'.
  assert report["methods"] == {"dirichlet": "end2", "gaussian": "gaussian-logits",
                               "mixture": "mixture"}
  for part in ("total", "aleatoric", "epistemic"):
    assert {"pearson", "spearman", "mean_ratio", "relative_l1"} <= set(
        report["fidelity"]["dirichlet"][part])
  assert set(report["fidelity"]["mixture"]) == {"total"}
  assert "| EnD^2 Dirichlet | epistemic |" in markdown
  assert report["wall_time_s"] == report["timings_s"]["total"]


@pytest.mark.slow
def test_rerun_reuses_the_ensemble_and_the_cli_runs(fast_run, capsys):
  out, report = fast_run
  assert not report["ensemble_reused"]
  assert cli.main(["images", "--fast", "--out", out]) == 0
  with open(os.path.join(out, "report.json")) as f:
    again = json.load(f)
  assert again["ensemble_reused"]
  # The same ensemble, reloaded from disk: identical ensemble metrics. Not a count of
  # roundings: a reloaded model may run other kernels, and metrics such as accuracy and
  # ECE jump by 1 / n when a near-tie or a bin edge flips; measured equal, 1e-6 relative
  # (~8 float32 eps) admits rounding of the continuous ones and no flip.
  for key, value in report["metrics"]["ensemble"].items():
    assert again["metrics"]["ensemble"][key] == pytest.approx(value, rel=1e-6)
  assert "Report written to" in capsys.readouterr().out


def test_bad_configuration_errors(tmp_path):
  with pytest.raises(ValueError, match="Unknown data set"):
    images.run_images(str(tmp_path), images.ImagesConfig.fast(dataset="cifar10"))


def test_mixup_inputs_are_convex_combinations_of_training_images():
  x = np.random.default_rng(0).uniform(size=(50, 28, 28, 1)).astype(np.float32)
  config = images.ImagesConfig.fast(num_extra=40)
  extra = images._extra_inputs(config, x)  # pylint: disable=protected-access
  assert extra.shape == (40, 28, 28, 1) and extra.dtype == np.float32
  # Each one equals lam x_i + (1 - lam) x_j for the pair and lam drawn from the seed.
  rng = np.random.default_rng([config.seed, 11])
  i, j = rng.integers(0, 50, 40), rng.integers(0, 50, 40)
  lam = rng.uniform(size=(40, 1, 1, 1)).astype(np.float32)
  # float32 on either side: 1 - lam, two products and a sum (4 eps of images <= 1).
  tolerance.assert_close(extra, lam * x[i] + (1 - lam) * x[j], dtype=np.float32,
                         ulps=2 * 4, scale=1.)
  np.testing.assert_array_equal(extra, images._extra_inputs(config, x))  # deterministic
  assert len(images._extra_inputs(images.ImagesConfig.fast(extra_inputs="none"), x)) == 0
  with pytest.raises(ValueError, match="extra_inputs"):
    images._extra_inputs(images.ImagesConfig.fast(extra_inputs="noise"), x)


@pytest.mark.slow
def test_select_students_on_validation_images(tmp_path, load_or_skip):
  load_or_skip(images_data.load_fashion_mnist)
  table = {"a": {}, "b": {"predictive_weight": 1.0, "student_lr_schedule": "cosine"}}
  config = images.ImagesConfig.fast()
  result = images.select_students(str(tmp_path), config, variants=("a", "b"),
                                  num_validation=200, variant_table=table)
  # 600 images: 400 to train on (and 300 mixup inputs made from them), 200 held out.
  assert result["train"] == 400 and result["validation"] == 200
  assert result["distillation"] == 700
  for variant in ("a", "b"):
    for name in ("dirichlet", "gaussian"):
      m = result["variants"][variant]["metrics"][name]
      assert all(math.isfinite(v) for v in m.values()) and -1 <= m["epistemic_pearson"] <= 1
  # The chosen variant is the one with the lowest validation NLL, per student.
  for name, chosen in result["choice"].items():
    nlls = {v: result["variants"][v]["metrics"][name]["nll"] for v in ("a", "b")}
    assert chosen == min(nlls, key=nlls.get)
  # The validation images are the held-out ones: the ensemble's accuracy there is what
  # a fresh evaluation of those images gives.
  x, y, _, _ = _common.load_images(config)
  ensemble = td.Ensemble.load(next(
      str(p) for p in tmp_path.iterdir() if p.name.startswith("ensemble_")))
  probs = td.decompose_ensemble(
      ensemble(x[-200:]), td.families.CategoricalLogits(10))
  assert result["reference"]["ensemble"]["accuracy"] == pytest.approx(
      float(np.mean(np.argmax(probs["prediction"], -1) == y[-200:])))
  # A rerun reuses the finished variants (same keys, no training).
  again = images.select_students(str(tmp_path), config, variants=("a",),
                                 num_validation=200, variant_table=table)
  assert again["variants"]["a"] == result["variants"]["a"]
  assert "(chosen)" in (tmp_path / "selection.md").read_text()
  for name in ("ensemble", "member"):
    assert 0.1 <= result["reference"][name]["mean_confidence"] <= 1.0
  with pytest.raises(ValueError, match="Unknown variants"):
    images.select_students(str(tmp_path), config, variants=("zzz",), variant_table=table)
  with pytest.raises(ValueError, match="num_validation"):
    images.select_students(str(tmp_path), config, num_validation=600, variant_table=table,
                           variants=("a",))


def test_cli_variant_choices_are_the_compared_variants():
  # pylint: disable=protected-access
  commands = cli._parser()._subparsers._group_actions[0].choices
  variant = next(a for a in commands["images"]._actions if a.dest == "variant")
  assert set(variant.choices) == set(images.VARIANTS)


def test_students_are_the_registrys_methods():
  config = images.ImagesConfig.fast()
  assert images.method_name("gaussian", config) == "gaussian-logits"
  diagonal = images.ImagesConfig.fast(gaussian_covariance="diagonal")
  assert images.method_name("gaussian", diagonal) == "gaussian-logits-diagonal"
  assert images.method_name("dirichlet", images.ImagesConfig.fast(
      dirichlet_target="proxy")) == "proxy-dirichlet"
  with pytest.raises(ValueError, match="gaussian_covariance"):
    images.method_name("gaussian", images.ImagesConfig.fast(gaussian_covariance="tied"))
  family = td.families.CategoricalLogits(10)
  built = images.build_students(images.ImagesConfig.fast(
      dirichlet_target="proxy_kl", smoothing=1e-3, predictive_weight=0.5,
      initial_temperature=4.0), family)
  # The study's settings on the registry's losses.
  loss = built["dirichlet"][1].loss
  assert (loss.target, loss.smoothing, loss.predictive_weight) == ("proxy_kl", 1e-3, 0.5)
  assert float(loss.temperature.numpy()) == 4.0
  assert built["gaussian"][1].loss.predictive_weight == 0.5
  assert built["gaussian"][1].family.reference_class
  assert built["mixture"][1].parts == ("total",)


def test_old_reports_are_still_read():
  """The measured reports in docs/images (Pearson r per part, written before
  td.metrics.uncertainty_fidelity and td.report.header) still render."""
  for name in ("report.json", "report_long.json"):
    report = json.loads((DOCS / name).read_text())
    text = images.format_markdown(report)
    assert "## Fidelity to the ensemble (Pearson r on the test set)" in text
    g = report["fidelity"]["gaussian"]
    assert f"mean r = {g['logit_mean']:.3f}" in text
  selection = json.loads((DOCS / "select" / "selection.json").read_text())
  assert "(chosen)" in images.selection_markdown(selection)
