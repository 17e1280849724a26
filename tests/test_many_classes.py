"""Tests of the Gaussian mixture, the many-classes study and `tfp-distill many-classes`."""

import json
import math
import os
import pathlib

import numpy as np
import pytest
import scipy.special
import scipy.stats

from tfp_distill import cli
from tfp_distill.datasets import mixture
from tfp_distill.experiments import many_classes

import tolerance


def _draw(seed=0, num_classes=7):
  return mixture.gaussian_mixture(num_classes, num_train=70, num_test=35, num_unlabeled=21,
                                  num_ood=40, num_ood_classes=4, dim=6, num_probe=1000,
                                  seed=seed)


def test_mixture_shapes_dtypes_balance_and_determinism():
  data = _draw()
  assert data.x_train.shape == (70, 6) and data.x_train.dtype == np.float32
  assert data.y_train.shape == (70,) and data.y_train.dtype == np.int64
  assert data.x_unlabeled.shape == (21, 6)
  assert data.x_test.shape == (35, 6) and data.y_test.shape == (35,)
  assert data.x_ood.shape == (40, 6) and data.y_ood.shape == (40,)
  assert data.means.shape == (7, 6) and data.ood_means.shape == (4, 6)
  assert data.num_classes == 7
  # Balanced: 70 / 7 = 10 per class exactly, 35 / 7 = 5, 40 / 4 = 10 per OOD component.
  np.testing.assert_array_equal(np.bincount(data.y_train, minlength=7), [10] * 7)
  np.testing.assert_array_equal(np.bincount(data.y_test, minlength=7), [5] * 7)
  np.testing.assert_array_equal(np.bincount(data.y_ood - 7, minlength=4), [10] * 4)
  again = _draw()
  for field in ("x_train", "y_train", "x_unlabeled", "x_test", "y_test", "x_ood", "y_ood",
                "means", "ood_means"):
    np.testing.assert_array_equal(getattr(data, field), getattr(again, field), field)
  assert data.scale == again.scale
  other = _draw(seed=1)
  assert not np.array_equal(data.means, other.means)
  assert not np.array_equal(data.x_train, other.x_train)


def test_split_sizes_do_not_change_other_splits():
  a = _draw()
  b = mixture.gaussian_mixture(7, num_train=70, num_test=50, num_unlabeled=0, num_ood=40,
                               num_ood_classes=4, dim=6, num_probe=1000, seed=0)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.x_ood, b.x_ood)
  np.testing.assert_array_equal(a.means, b.means)
  assert b.x_unlabeled.shape == (0, 6)


def test_ood_points_come_from_held_out_components_only():
  k = 5
  data = mixture.gaussian_mixture(k, num_train=50, num_test=10, num_ood=4000,
                                  num_ood_classes=4, dim=8, num_probe=1000, seed=3)
  assert data.y_ood.min() >= k and data.y_ood.max() < k + 4
  assert not np.isin(data.y_ood, data.y_train).any()
  # Held-out means are other points than every training mean.
  gaps = np.linalg.norm(data.ood_means[:, None] - data.means[None], axis=-1)
  assert gaps.min() > 1e-3
  # Each OOD component's points average to its mean: 1000 points of unit variance per
  # coordinate, so the standard error is 1 / sqrt(1000) ~ 0.032; 0.16 is 5 of them.
  for c in range(4):
    points = data.x_ood[data.y_ood == k + c]
    assert len(points) == 1000
    np.testing.assert_allclose(points.mean(axis=0), data.ood_means[c], atol=0.16)
  # ... and the training points of class c average to the training mean of c.
  big = mixture.gaussian_mixture(k, num_train=5000, num_test=0, dim=8, num_probe=1000,
                                 seed=3)
  for c in range(k):
    np.testing.assert_allclose(big.x_train[big.y_train == c].mean(axis=0), big.means[c],
                               atol=5. / math.sqrt(1000))


def test_bayes_log_posterior_matches_scipy():
  rng = np.random.default_rng(0)
  means = rng.normal(size=(6, 4))
  x = rng.normal(size=(50, 4)) * 2.
  log_density = np.stack([scipy.stats.multivariate_normal(m, np.eye(4)).logpdf(x)
                          for m in means], axis=1)
  lse = scipy.special.logsumexp(log_density, axis=1, keepdims=True)
  expected = log_density - lse
  # float64 on either side: each log density (d = 4: squares, a sum, constants: d + 4 eps
  # of its |terms|), the logsumexp over C = 6 classes (C + 3 eps of |lse| + log C) and
  # the subtraction: relative to each row's largest |log density| + |lse| + log C.
  scale = np.abs(log_density).max(1, keepdims=True) + np.abs(lse) + np.log(6)
  tolerance.assert_close(mixture.bayes_log_posterior(x, means), expected, dtype=np.float64,
                         ulps=2 * (4 + 4 + 6 + 3 + 1), scale=scale)


def test_calibrated_scale_reaches_the_bayes_accuracy():
  k, target = 10, 0.8
  data = mixture.gaussian_mixture(k, num_train=10, num_test=20000, dim=16, seed=4,
                                  bayes_accuracy=target, num_probe=4000)
  accuracy = np.mean(np.argmax(mixture.bayes_log_posterior(data.x_test, data.means), 1)
                     == data.y_test)
  # Probe error sqrt(0.16 / 4000) ~ 0.0063, test error sqrt(0.16 / 20000) ~ 0.0028:
  # 0.03 is over 4 combined standard errors.
  assert abs(accuracy - target) < 0.03, accuracy
  assert abs(data.probe_accuracy - target) < 1e-3
  # More classes need more separation for the same accuracy.
  many = mixture.gaussian_mixture(200, num_train=10, num_test=0, dim=16, seed=4,
                                  bayes_accuracy=target, num_probe=4000)
  assert many.scale > data.scale
  with pytest.raises(ValueError, match="bayes_accuracy"):
    mixture.calibrate_scale(np.ones((4, 2)), 0.2)
  with pytest.raises(ValueError, match="num_ood_classes"):
    mixture.gaussian_mixture(3, num_train=10, num_test=0, num_ood=5, num_ood_classes=0)


def test_fidelity_metrics_by_hand():
  metrics = many_classes._metrics  # pylint: disable=protected-access
  y = np.array([0, 1, 1, 0])
  p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
  ens_mi = np.array([0.1, 0.2, 0.4, 0.8], np.float32)
  ensemble = {"prediction": p, "total": ens_mi + 0.1, "epistemic": ens_mi}
  ood = {"prediction": p, "total": ens_mi + 1., "epistemic": ens_mi + 1.}
  m = metrics("ensemble", ensemble, ood, y, ensemble)

  def approx(value, ulps, scale=1., dtype=np.float32):   # ulps eps of scale
    return pytest.approx(value, rel=0, abs=tolerance.atol(dtype=dtype, ulps=ulps,
                                                          scale=scale))
  assert m["accuracy"] == approx(0.5, 1)     # rows 0 and 1 right, 2 and 3 wrong
  # The float32 probabilities round the decimals (1 eps of log p absolute), the logs (2
  # eps of |log p|) and a mean of 4 (5): relative to mean |log p| + 1.
  log_p = np.log([0.9, 0.8, 0.4, 0.3])
  assert m["nll"] == approx(-np.mean(log_p), 1 + 2 + 5, np.mean(np.abs(log_p)) + 1)
  assert m["ood_auroc_mi"] == approx(1., 2)  # every OOD MI exceeds every test MI
  assert "mi_pearson" not in m
  # A student whose MI is the square of the ensemble's: same ranking (Spearman 1), not
  # linear (Pearson < 1); td.metrics.uncertainty_fidelity in float64 of the float32
  # values: mean ratio sum x^2 / sum x, relative L1 sum |x^2 - x| / sum x.
  x = ens_mi.astype(np.float64)
  student = dict(ensemble, epistemic=ens_mi ** 2)
  m = metrics("proxy-dirichlet", student, ood, y, ensemble)
  assert m["mi_spearman"] == approx(1., 2, dtype=np.float64)
  assert 0.9 < m["mi_pearson"] < 1.
  squares = np.float32(ens_mi ** 2).astype(np.float64)
  # float64 sums of 4 terms (4 eps) and a quotient, of numbers below 2.
  assert m["mi_mean_ratio"] == approx(squares.sum() / x.sum(), 2 * 6, 2., np.float64)
  assert m["mi_relative_l1"] == approx(np.abs(squares - x).sum() / x.sum(), 2 * 10, 2.,
                                       np.float64)
  # A constant student MI has no correlation: NaN (None in the report), not an error.
  m = metrics("end2", dict(ensemble, epistemic=np.full(4, 0.3, np.float32)), ood, y,
              ensemble)
  assert math.isnan(m["mi_pearson"]) and math.isnan(m["mi_spearman"])
  assert math.isfinite(m["mi_relative_l1"])
  # Non-finite outputs give NaN metrics, not an error.
  broken = dict(student, epistemic=np.array([np.nan, 0.1, 0.1, 0.1], np.float32))
  m = metrics("end2", broken, ood, y, ensemble)
  assert all(math.isnan(v) for v in m.values())


def _leaves(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from _leaves(value)
  elif isinstance(tree, list):
    for value in tree:
      yield from _leaves(value)
  else:
    yield tree


@pytest.fixture(scope="module", name="fast_run")
def fast_run_fixture(tmp_path_factory):
  out = tmp_path_factory.mktemp("many_classes")
  report = many_classes.run_many_classes(str(out), many_classes.ManyClassesConfig.fast())
  return out, report


@pytest.mark.slow
def test_fast_run_writes_a_complete_report(fast_run):
  out, report = fast_run
  with open(out / "report.json") as f:
    saved = json.load(f)
  assert saved["experiment"] == "many_classes"
  for key in ("config", "config_key", "models", "metric_definitions", "results",
              "gaps_to_ensemble", "runs", "wall_time_s", "timings_s", "machine",
              "versions", "date", "files"):
    assert key in saved, key
  assert set(saved["results"]) == {"3", "5"}
  assert len(saved["runs"]) == 4                       # 2 K x 2 seeds
  assert saved["wall_time_s"] == saved["timings_s"]["total"] > 0.
  assert saved["config"]["classes"] == [3, 5]
  for k, per_model in saved["results"].items():
    assert set(per_model) == {"bayes", "ensemble", "end2", "proxy-dirichlet"}
    assert set(per_model["bayes"]) == {"accuracy", "nll"}
    assert set(per_model["ensemble"]) == {"accuracy", "nll", "ood_auroc_mi",
                                          "ood_auroc_total", "mean_mi_test", "mean_mi_ood"}
    for student in ("end2", "proxy-dirichlet"):
      assert set(per_model[student]) == set(per_model["ensemble"]) | {
          "mi_pearson", "mi_spearman", "mi_mean_ratio", "mi_relative_l1"}
    for name, metrics in per_model.items():
      for key, summary in metrics.items():
        values = np.asarray(summary["values"])
        assert len(values) == 2 and np.all(np.isfinite(values)), (k, name, key)
        # float64 from the same two values on either side: a mean of 2 (3 eps) and a
        # standard error (differences, squares, a sum, a root, a quotient: 6 eps).
        mean, sem = values.mean(), values.std(ddof=1) / math.sqrt(2)
        assert summary["mean"] == pytest.approx(mean, rel=0, abs=tolerance.atol(
            dtype=np.float64, ulps=2 * 3, scale=np.abs(values).max()))
        assert summary["sem"] == pytest.approx(sem, rel=0, abs=tolerance.atol(
            dtype=np.float64, ulps=2 * 6, scale=np.abs(values).max()))
        if key in ("accuracy", "ood_auroc_mi", "ood_auroc_total"):
          assert np.all((values >= 0.) & (values <= 1.)), (k, name, key)
        if key in ("mi_pearson", "mi_spearman"):
          assert np.all(np.abs(values) <= 1.), (k, name, key)
        if key in ("nll", "mi_mean_ratio", "mi_relative_l1", "mean_mi_test", "mean_mi_ood"):
          assert np.all(values >= 0.), (k, name, key)
    # Chance accuracy is 1 / K; the fast ensemble is small but beats it on average.
    assert per_model["ensemble"]["accuracy"]["mean"] > 1. / int(k)
    # The Bayes posterior is the best possible predictor: nobody beats its NLL by much
    # (200 test points: allow sampling noise of a few hundredths).
    for name in ("ensemble", "end2", "proxy-dirichlet"):
      assert per_model[name]["nll"]["mean"] > per_model["bayes"]["nll"]["mean"] - 0.05
    for student in ("end2", "proxy-dirichlet"):
      for key, gap in saved["gaps_to_ensemble"][k][student].items():
        expected = (np.asarray(per_model[student][key]["values"])
                    - np.asarray(per_model["ensemble"][key]["values"]))
        # The same float64 subtraction: 1 eps of the operands' sizes at most.
        tolerance.assert_close(gap["values"], expected, dtype=np.float64, ulps=1, scale=(
            np.abs(per_model[student][key]["values"])
            + np.abs(per_model["ensemble"][key]["values"])))
  for run in saved["runs"]:
    assert all(run["finite"].values())
    assert run["data"]["train_per_class"] == 300 / run["num_classes"]
    assert len(run["student_loss"]) == 3 and np.all(np.isfinite(run["student_loss"]))
    assert run["data"]["scale"] > 0.
  numbers = [v for v in _leaves(saved["timings_s"])]
  assert all(isinstance(v, float) and v >= 0. for v in numbers)
  assert saved == json.loads(json.dumps(report))
  for name in ("metrics_vs_classes.png", "mi_scatter.png"):
    with open(out / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert os.path.getsize(out / name) > 10_000, name
  text = (out / "report.md").read_text()
  assert "| 5 | proxy-Dirichlet |" in text and "| 3 | EnD^2 |" in text
  assert "| 3 | Bayes posterior |" in text
  assert not [p for p in os.listdir(out) if p.endswith((".keras", ".h5"))]


def test_cli_passes_its_flags_through(tmp_path, monkeypatch):
  seen = {}

  def fake_run(out_dir, config, log=None):
    seen.update(out_dir=out_dir, config=config)
    return {"files": {"report_md": "report.md"}, "wall_time_s": 0.}

  monkeypatch.setattr(many_classes, "run_many_classes", fake_run)
  monkeypatch.setattr(many_classes, "format_markdown", lambda report: "")
  assert cli.main(["many-classes", "--fast", "--classes", "3, 4", "--seeds", "7,8",
                   "--out", str(tmp_path)]) == 0
  assert seen["out_dir"] == str(tmp_path)
  assert seen["config"] == many_classes.ManyClassesConfig.fast(classes=(3, 4), seeds=(7, 8))
  assert cli.main(["many-classes"]) == 0
  assert seen["out_dir"] == os.path.join("reports", "many_classes")
  assert seen["config"] == many_classes.ManyClassesConfig()
  assert seen["config"].classes == (10, 100, 1000) and seen["config"].seeds == (0, 1, 2)
  # --student-epochs keeps the schedule's shape: held for a quarter, 1 at three quarters.
  assert cli.main(["many-classes", "--student-epochs", "24", "--classes", "1000",
                   "--seeds", "0"]) == 0
  config = seen["config"]
  assert (config.student_epochs, config.anneal_start, config.anneal_end) == (24, 6, 18)
  assert config.classes == (1000,) and config.seeds == (0,)
  assert config.num_train == many_classes.ManyClassesConfig().num_train
  assert (round(8 / 4), round(3 * 8 / 4)) == (many_classes.ManyClassesConfig().anneal_start,
                                              many_classes.ManyClassesConfig().anneal_end)
  with pytest.raises(SystemExit, match="classes"):
    cli.main(["many-classes", "--classes", "1,10", "--out", str(tmp_path)])


@pytest.mark.slow
def test_cli_fast_run_prints_the_table(tmp_path, capsys):
  assert cli.main(["many-classes", "--fast", "--classes", "4", "--seeds", "0",
                   "--out", str(tmp_path)]) == 0
  printed = capsys.readouterr().out
  assert "K=4 seed=0" in printed and "| 4 | EnD^2 |" in printed
  with open(tmp_path / "report.json") as f:
    saved = json.load(f)
  assert saved["config"]["classes"] == [4] and saved["config"]["seeds"] == [0]
  # One seed: no standard error (null in the JSON), and the table shows the mean alone.
  summary = saved["results"]["4"]["ensemble"]["accuracy"]
  assert summary["sem"] is None
  assert f"| 4 | ensemble | {summary['mean']:.4f} |" in printed


def test_old_reports_are_still_read(tmp_path):
  """The measured reports in docs/many_classes (the proxy student called "proxy", an
  alias of "proxy-dirichlet"; the MI relative error with its 1e-3 floor) still render,
  and their figure redraws."""
  docs = pathlib.Path(__file__).resolve().parents[1] / "docs" / "many_classes"
  for path in (docs / "report.json", docs / "long_schedule" / "report.json"):
    report = json.loads(path.read_text())
    assert "proxy" in report["results"]["1000"]
    text = many_classes.format_markdown(report)
    assert "| 1000 | proxy-Dirichlet |" in text and "MI rel. error" in text
    assert "MI kept" in text
    assert set(many_classes.canonical(report)["results"]["1000"]) == {
        "bayes", "ensemble", "end2", "proxy-dirichlet"}
  config = many_classes.ManyClassesConfig(**{
      k: tuple(v) if isinstance(v, list) else v for k, v in report["config"].items()})
  many_classes.metrics_figure(str(tmp_path / "m.png"), config, report["results"])
  assert (tmp_path / "m.png").stat().st_size > 10_000
