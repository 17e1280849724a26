"""Choosing an image student's inputs on corruptions of held-out training images
(`td.experiments.image_choice`)."""

import json

import numpy as np
import pytest

from tfp_distill.datasets import corruptions
from tfp_distill.datasets import sources
from tfp_distill.experiments import image_choice
from tfp_distill.experiments import input_choice


def test_corruption_proxy_is_every_image_under_every_corruption():
  x = np.random.default_rng(0).uniform(size=(6, 28, 28, 1)).astype(np.float32)
  out, kind = image_choice.corruption_proxy(x, seed=3)
  names = image_choice.PROXY_CORRUPTIONS
  assert out.shape == (6 * len(names), 28, 28, 1) and out.dtype == np.float32
  np.testing.assert_array_equal(kind, np.repeat(np.arange(len(names)), 6))
  for i, name in enumerate(names):
    np.testing.assert_array_equal(out[kind == i],
                                  corruptions.corrupt(x, name, 5, seed=(3, i)))
  again, _ = image_choice.corruption_proxy(x, seed=3)
  np.testing.assert_array_equal(out, again)
  # No noise corruption in the proxy: the box and far inputs of images are noise.
  assert not {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"} & set(names)


def test_corruption_proxy_refuses_unknown_or_no_corruptions():
  x = np.zeros((2, 28, 28, 1), np.float32)
  with pytest.raises(ValueError, match="unknown corruptions"):
    image_choice.corruption_proxy(x, names=("blur",))
  with pytest.raises(ValueError, match="empty"):
    image_choice.corruption_proxy(x, names=())


def test_proxy_test_rows_are_the_jobs_validation_rows():
  n, fraction, seed = 500, 0.1, 4
  source = sources.DataSource(np.zeros((n, 1), np.float32), None, "train")
  fit, val = sources.holdout_split(source, fraction, seed + 1)   # as the job splits
  rows = image_choice.proxy_test_rows(n, fraction, seed, size=1000)
  np.testing.assert_array_equal(rows, np.sort(val.index))
  assert not set(rows) & set(fit.index)
  some = image_choice.proxy_test_rows(n, fraction, seed, size=20)
  assert len(some) == 20 and set(some) <= set(rows) and np.all(np.diff(some) > 0)
  np.testing.assert_array_equal(some, image_choice.proxy_test_rows(n, fraction, seed, size=20))


def test_reported_scores_are_the_proxy_score_plus_the_test_ratio():
  # proxy_score itself is checked against scikit-learn and SciPy in test_input_choice.py.
  rng = np.random.default_rng(2)
  e_test, e_ood = rng.gamma(2.0, 1.0, 300), rng.gamma(3.0, 1.0, 200)
  s_test, s_ood = e_test * rng.uniform(0.5, 1.5, 300), e_ood * rng.uniform(0.5, 1.5, 200)
  r = image_choice.reported_scores(e_test, e_ood, s_test, s_ood)
  p = input_choice.proxy_score(e_test, e_ood, s_test, s_ood)
  assert (r["ensemble_auroc"], r["student_auroc"], r["auroc_gap"], r["spearman"]) == (
      p["ensemble_auroc"], p["student_auroc"], p["auroc_gap"], p["ood_spearman"])
  # A quotient of two float64 means of a few hundred terms: a few hundred ulps.
  assert r["mean_ratio_test"] == pytest.approx(s_test.mean() / e_test.mean(), rel=1e-12)
  assert r["mean_ratio_ood"] == pytest.approx(s_ood.mean() / e_ood.mean(), rel=1e-12)


def _score(gap, ratio, spearman, nll_gap):
  return {"ensemble_auroc": 0.8, "student_auroc": 0.8 + gap, "auroc_gap": gap,
          "log_mean_ratio": float(np.log(ratio)), "ood_spearman": spearman,
          "nll_gap": nll_gap}


def test_choose_by_method_chooses_within_each_method_and_over_all():
  scores = {"a": _score(0.05, 1.7, 0.44, 0.03), "b": _score(0.05, 1.4, 0.50, 0.03),
            "c": _score(0.00, 1.2, 0.90, 0.09),          # too far from a's NLL
            "g": _score(0.00, 1.3, 0.70, 0.045), "h": _score(-0.05, 1.3, 0.75, 0.04)}
  methods = {"a": "end2", "b": "end2", "c": "end2", "g": "gauss", "h": "gauss"}
  chosen = image_choice.choose_by_method(scores, methods, {"end2": "a", "all": "a"})
  assert chosen["end2"] == "b"          # c meets more targets but is not admissible
  assert chosen["gauss"] == "g"         # 2 targets met against h's 1 (no base: best NLL)
  assert chosen["all"] == "g"           # within 0.02 nats of a's NLL, 2 targets, 0.70
  assert chosen["end2"] == input_choice.choose(
      {k: scores[k] for k in "abc"}, "fidelity", base="a")


def test_the_table_says_n_a_for_a_constant_spearman():
  proxy = dict(_score(0.0, 1.2, None, 0.01))
  reported = {"ensemble_auroc": 0.8, "student_auroc": 0.8, "auroc_gap": 0.0,
              "mean_ratio_test": 1.0, "mean_ratio_ood": 1.1, "spearman": None}
  result = {"settings": {"size": 10, "severity": 5, "ood": ["MNIST"],
                         "corruptions": list(image_choice.PROXY_CORRUPTIONS)},
            "students": {"s": {"method": "end2", "inputs": "auto", "proxy": proxy,
                               "reported": {"MNIST": reported}}},
            "ceiling": None, "chosen": {"end2": "s", "all": "s"}}
  text = image_choice.format_markdown(result)
  assert "| s | end2 | auto | +0.000 / 1.20 / n/a / +0.0100 | +0.000 / 1.10 / n/a |" in text
  assert "end2: **s**" in text


def _student(folder, name, **config):
  settings = {"teacher": [str(folder / "m0.keras")], "train": str(folder / "train.npz"),
              "test": str(folder / "test.npz"), "seed": 0, "validation_fraction": 0.1}
  settings.update(config)
  (folder / name).mkdir()
  (folder / name / "report.json").write_text(json.dumps(
      {"method": "end2", "config": settings,
       "data": {"sizes": {"train": 90, "early_stopping": 10}}}))


@pytest.mark.parametrize("other, match", [
    ({"seed": 1}, "differ in members, files, seed"),
    ({"train": "elsewhere.npz"}, "differ in members, files, seed")])
def test_run_image_choice_refuses_students_of_other_jobs(tmp_path, other, match):
  _student(tmp_path, "a")
  _student(tmp_path, "b", **other)
  with pytest.raises(ValueError, match=match):
    image_choice.run_image_choice(str(tmp_path), ["a", "b"], {})


def test_run_image_choice_refuses_what_it_cannot_score(tmp_path):
  x = np.zeros((100, 28, 28, 1), np.float32)
  np.savez(tmp_path / "test.npz", x=x[:5], y=np.zeros(5, np.int64))
  _student(tmp_path, "outputs", teacher=[str(tmp_path / "z.npz")])
  with pytest.raises(ValueError, match=r"\.keras` members"):
    image_choice.run_image_choice(str(tmp_path), ["outputs"], {})
  _student(tmp_path, "a")
  with pytest.raises(ValueError, match="train file .* not here"):
    image_choice.run_image_choice(str(tmp_path), ["a"], {})
  # 120 rows, but the job fitted 90 and held out 10: it carved a test set first.
  np.savez(tmp_path / "train.npz", x=np.zeros((120, 28, 28, 1), np.float32),
           y=np.zeros(120, np.int64))
  with pytest.raises(ValueError, match="120 rows, but the job fitted 90 and held out 10"):
    image_choice.run_image_choice(str(tmp_path), ["a"], {})
