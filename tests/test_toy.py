"""Tests of the toy data set, the toy experiment and the `tfp-distill toy` command."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from tfp_distill import cli
from tfp_distill.datasets import toy as toy_data
from tfp_distill.experiments import toy

import tolerance


def test_sinusoid_shapes_range_and_determinism():
  x, y = toy_data.sinusoid(500, low=-2., high=1., seed=3)
  assert x.shape == (500, 1) and x.dtype == np.float32
  assert y.shape == (500,) and y.dtype == np.float32
  assert np.all(x >= -2.) and np.all(x <= 1.)
  x2, y2 = toy_data.sinusoid(500, low=-2., high=1., seed=3)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  x3, _ = toy_data.sinusoid(500, low=-2., high=1., seed=4)
  assert not np.array_equal(x, x3)


def test_sinusoid_noise_matches_closed_form():
  n = 200_000
  x, y = toy_data.sinusoid(n, low=-3., high=3., seed=0)
  x = x[:, 0].astype(np.float64)
  residual = y - np.sin(x)
  variance = 0.15 / (1. + np.exp(-x))                       # eq 17, written out directly
  # float64 on either side: a sigmoid (4 eps, tolerance.FUNCTION_ULPS) or exp, sum and
  # quotient, and the product by 0.15: 2 (4 + 2) eps of the variance.
  tolerance.assert_close(toy_data.sinusoid_noise_variance(x), variance, dtype=np.float64,
                         ulps=2 * (4 + 2), scale=variance)
  # residual^2 / variance is chi^2_1: mean 1, variance 2, so the mean of n draws has
  # standard error sqrt(2 / n) ~ 0.0032; 0.015 is ~5 standard errors (plus float32
  # rounding of y, which is far below that).
  np.testing.assert_allclose(np.mean(residual**2 / variance), 1., atol=0.015)
  # Standardised residuals are N(0, 1): mean 0 within ~5 standard errors (1 / sqrt(n)).
  np.testing.assert_allclose(np.mean(residual / np.sqrt(variance)), 0., atol=0.012)
  # x ~ U[-3, 3]: mean 0 (std error sqrt(3 / n) ~ 0.0039), variance 36 / 12 = 3.
  np.testing.assert_allclose(np.mean(x), 0., atol=0.02)
  np.testing.assert_allclose(np.var(x), 3., rtol=0.01)


def test_noise_variance_limits_and_grid():
  v = toy_data.sinusoid_noise_variance(np.array([-1000., 0., 1000.]))
  # As above, relative to the largest, 0.15 (exp(-1000) underflows to exactly 0).
  tolerance.assert_close(v, [0., 0.075, 0.15], dtype=np.float64, ulps=2 * (4 + 2))
  g = toy_data.grid(-5., 5., 200)
  assert g.shape == (200, 1) and g.dtype == np.float32
  np.testing.assert_allclose(g[[0, -1], 0], [-5., 5.], atol=0.)
  with pytest.raises(ValueError):
    toy_data.sinusoid(0)
  with pytest.raises(ValueError):
    toy_data.sinusoid(10, low=1., high=1.)


def _finite_leaves(tree):
  if isinstance(tree, dict):
    for key, value in tree.items():
      if key != "n":                    # the fidelity's count of points, an int
        yield from _finite_leaves(value)
  else:
    yield tree


#: td.metrics.uncertainty_fidelity's statistics.
FIDELITY = {"pearson", "spearman", "mean_ratio", "relative_l1", "sym_relative_error", "n"}


@pytest.mark.slow
def test_run_toy_fast_writes_report(tmp_path):
  out = tmp_path / "toy"
  report = toy.run_toy(str(out), toy.ToyConfig.fast())
  with open(out / "report.json") as f:
    saved = json.load(f)
  assert saved["experiment"] == "toy"
  for key in ("config", "metrics", "fidelity", "timings_s", "versions", "date", "files",
              "wall_time_s"):
    assert key in saved, key
  assert saved["wall_time_s"] == saved["timings_s"]["total"]
  assert saved["methods"] == {"distilled": "mvn", "mixture": "mixture"}
  assert set(saved["metrics"]) == {"ensemble", "distilled", "mixture"}
  for metrics in saved["metrics"].values():
    assert set(metrics) == {"rmse", "nll", "ause"}
  for part in ("aleatoric", "epistemic", "total"):
    assert set(saved["fidelity"]["distilled"][part]) == FIDELITY
  assert set(saved["fidelity"]["mixture"]) == {"total", "prediction_rmse"}
  for key in ("ensemble", "distilled", "mixture", "evaluation", "total"):
    assert saved["timings_s"][key] >= 0.
  numbers = {k: saved[k] for k in ("metrics", "fidelity", "timings_s")}
  for value in _finite_leaves(numbers):
    assert isinstance(value, float) and math.isfinite(value), value
  assert set(saved["versions"]) >= {"tensorflow", "tensorflow_probability", "tfp_distill"}
  assert saved["config"]["num_members"] == 3
  assert saved["metrics"] == report["metrics"]
  for name in ("uncertainty.png", "sparsification.png", "variances.png", "report.md",
               "distilled.keras", "mixture.keras"):
    assert (out / name).is_file() and os.path.getsize(out / name) > 0, name
  with open(out / "uncertainty.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert (out / "ensemble" / "ensemble.json").is_file()
  text = (out / "report.md").read_text()
  assert "| ensemble |" in text and "| student | variance | Pearson r | Spearman rho |" in text


def test_markdown_of_a_report_written_before_uncertainty_fidelity():
  """The 2026-11-30 figures' report (docs/studies/toy.md) had Pearson r and the mean
  relative error per part: its table keeps those two columns."""
  cell = {"pearson": 0.9944, "mean_relative_error": 0.1999}
  report = {"config": dataclasses.asdict(toy.ToyConfig()),
            "metrics": {"ensemble": {"rmse": 0.3171, "nll": 1.4318, "ause": 0.5424}},
            "fidelity": {"distilled": {"epistemic": cell, "prediction_rmse": 0.01}},
            "timings_s": {"total": 35.0}, "versions": {"tensorflow": "2.21"},
            "date": "2026-11-30"}
  text = toy.format_markdown(report)
  assert "| student | variance | Pearson r | mean relative error |" in text
  assert "| distilled | epistemic | 0.9944 | 0.1999 |" in text


@pytest.mark.slow
def test_cli_toy_fast(tmp_path, capsys):
  # The other path than run_toy's default: the teacher in the tf.data pipeline.
  assert cli.main(["toy", "--fast", "--teacher-in", "tf_data", "--out", str(tmp_path)]) == 0
  printed = capsys.readouterr().out
  assert "report.md" in printed and "| distilled |" in printed
  assert (tmp_path / "report.json").is_file()
  with open(tmp_path / "report.json") as f:
    assert json.load(f)["config"]["teacher_in"] == "tf_data"


def test_cli_toy_overrides(tmp_path, monkeypatch):
  seen = {}

  def fake_run_toy(out_dir, config):
    seen.update(out_dir=out_dir, config=config)
    return {"files": {"report_md": "report.md"}, "wall_time_s": 0.}

  monkeypatch.setattr(toy, "run_toy", fake_run_toy)
  monkeypatch.setattr(toy, "format_markdown", lambda report: "")
  assert cli.main(["toy", "--fast", "--out", str(tmp_path), "--seed", "7", "--members",
                   "2", "--member-epochs", "4", "--student-epochs", "5",
                   "--distill-samples", "64"]) == 0
  config = seen["config"]
  assert seen["out_dir"] == str(tmp_path)
  assert (config.seed, config.num_members, config.member_epochs, config.student_epochs,
          config.distill_samples_per_epoch) == (7, 2, 4, 5, 64)
  assert config.num_train == toy.ToyConfig.fast().num_train
  assert cli.main(["toy", "--out", str(tmp_path)]) == 0
  assert seen["config"] == toy.ToyConfig()
  assert cli.main(["toy", "--out", str(tmp_path), "--no-fast-paths"]) == 0
  assert seen["config"] == toy.ToyConfig(fast_paths=False)


def test_cli_requires_a_command():
  with pytest.raises(SystemExit):
    cli.main([])
