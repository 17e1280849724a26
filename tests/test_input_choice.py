"""Choosing the distillation inputs on a proxy of the training rows (`input_choice`),
and the UCI PCA hold-out's choice per split (`uci_choice`)."""

import json

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk_metrics

from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import input_choice
from tfp_distill.experiments import uci
from tfp_distill.experiments import uci_choice

from test_uci import needs_data


def test_proxy_rows_holds_out_both_ends_of_the_first_component():
  rng = np.random.default_rng(0)
  x = np.stack([rng.normal(0, 10, 200), rng.normal(0, 0.1, 200)], axis=1)
  kept, held = input_choice.proxy_rows(x, share=0.1)
  assert len(held) == 20 and len(kept) == 180
  assert set(kept) | set(held) == set(range(200)) and not set(kept) & set(held)
  order = np.argsort(x[:, 0])          # feature 0 carries the variance: its two ends
  assert set(held) == set(order[:10]) | set(order[-10:])
  assert np.all(np.diff(held) > 0) and np.all(np.diff(kept) > 0)
  # Standardized, both features weigh alike: the component is their diagonal, not
  # feature 0 alone (feature 1 = feature 0 / 100 plus noise, so the ends differ).
  x_raw = np.stack([x[:, 0], x[:, 0] / 100 + rng.normal(0, 0.1, 200)], axis=1)
  _, held_std = input_choice.proxy_rows(x_raw, share=0.1, standardize=True)
  z = (x_raw - x_raw.mean(0)) / x_raw.std(0)
  _, _, vt = np.linalg.svd(z, full_matrices=False)
  score = z @ vt[0]
  assert set(held_std) == set(np.argsort(score)[:10]) | set(np.argsort(score)[-10:])


def test_proxy_rows_is_the_same_whatever_the_sign_and_order_of_the_rows():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(101, 3)) @ np.diag([3.0, 1.0, 0.2])
  _, held = input_choice.proxy_rows(x, share=0.2)
  _, held_neg = input_choice.proxy_rows(-x, share=0.2)
  assert set(held) == set(held_neg)
  perm = rng.permutation(len(x))
  _, held_perm = input_choice.proxy_rows(x[perm], share=0.2)
  assert set(perm[held_perm]) == set(held)


def test_proxy_rows_ties_go_by_row_number():
  # Rows repeated exactly: within a tie, rows are ranked by number, so the low end
  # holds the first rows of the lowest value and the high end the last of the highest.
  x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), 4, axis=0)
  _, held = input_choice.proxy_rows(x, share=1 / 3)
  np.testing.assert_array_equal(held, [0, 1, 10, 11])
  _, held = input_choice.proxy_rows(x[::-1].copy(), share=1 / 3)   # rows 8-11 now lowest
  np.testing.assert_array_equal(held, [2, 3, 8, 9])


@pytest.mark.parametrize("x, share, match", [
    (np.zeros((3, 2)), 0.1, "n >= 4"), (np.zeros(5), 0.1, "n >= 4"),
    (np.full((5, 2), np.nan), 0.1, "NaN"), (np.zeros((5, 2)), 0.0, "share"),
    (np.zeros((5, 2)), 0.6, "share"), (np.zeros((5, 2)), True, "share")])
def test_proxy_rows_refuses_bad_input(x, share, match):
  with pytest.raises(ValueError, match=match):
    input_choice.proxy_rows(x, share)


def test_proxy_score_matches_references():
  rng = np.random.default_rng(2)
  ens_in, ens_out = rng.gamma(2.0, 1.0, 50), rng.gamma(4.0, 1.0, 30)
  stu_in, stu_out = ens_in * rng.uniform(0.5, 1.5, 50), ens_out * rng.uniform(0.2, 1.0, 30)
  s = input_choice.proxy_score(ens_in, ens_out, stu_in, stu_out)
  labels = np.r_[np.zeros(50), np.ones(30)]
  eps = float(10 * np.finfo(np.float32).eps)
  assert s["ensemble_auroc"] == pytest.approx(
      sk_metrics.roc_auc_score(labels, np.r_[ens_in, ens_out]), abs=eps)
  assert s["student_auroc"] == pytest.approx(
      sk_metrics.roc_auc_score(labels, np.r_[stu_in, stu_out]), abs=eps)
  assert s["auroc_gap"] == pytest.approx(s["student_auroc"] - s["ensemble_auroc"], abs=eps)
  assert s["log_mean_ratio"] == pytest.approx(np.log(stu_out.mean() / ens_out.mean()),
                                              rel=1e-12)
  assert s["ood_spearman"] == pytest.approx(stats.spearmanr(stu_out, ens_out)[0], abs=1e-6)


def test_admissible_without_a_base_is_relative_to_the_best():
  slack = input_choice.IN_DISTRIBUTION_SLACK["rmse_ratio"]
  scores = {"a": {"rmse_ratio": 1.10}, "b": {"rmse_ratio": 1.0},
            "c": {"rmse_ratio": slack * 0.999}}
  assert input_choice.admissible(scores) == ["b", "c"]
  assert input_choice.admissible(scores, base="a") == ["a", "b", "c"]
  cls = {"a": {"nll_gap": 0.0}, "b": {"nll_gap": 0.03}}
  assert input_choice.admissible(cls) == ["a"]


def test_choose_refuses_an_empty_table_and_an_unknown_rule():
  with pytest.raises(ValueError, match="no scores"):
    input_choice.choose({})
  with pytest.raises(ValueError, match="rule"):
    input_choice.choose({"a": {"rmse_ratio": 1.0}}, rule="best")


def test_choose_with_no_base_drops_a_mix_that_costs_accuracy():
  scores = {"box": {"auroc_gap": -0.01, "log_mean_ratio": 0.0, "ood_spearman": 0.5,
                    "rmse_ratio": 1.0},
            "far": {"auroc_gap": 0.0, "log_mean_ratio": 0.0, "ood_spearman": 0.9,
                    "rmse_ratio": 1.2}}
  fidelity = {"rule": "fidelity"}
  assert input_choice.choose(scores, **fidelity) == "box"
  assert input_choice.choose(scores) == "box"        # the default rule: AUROC, guarded too
  scores["far"]["rmse_ratio"] = 1.01
  assert input_choice.choose(scores, **fidelity) == "far"
  scores["far"]["ood_spearman"] = None           # undefined rank correlation: last
  assert input_choice.choose(scores, **fidelity) == "box"
  assert input_choice.DEFAULT_RULE == "auroc"        # the seeds 5-7 test's outcome


@needs_data
def test_the_proxy_of_a_split_uses_its_training_rows_only():
  data = uci_data.load_uci_ood("yacht", 1)
  proxy = uci_choice.proxy_split(data, share=0.1, seed=0)
  parts = np.concatenate([proxy.x_train, proxy.x_test, proxy.x_ood])
  assert len(parts) == len(data.x_train)
  key = lambda a: sorted(map(tuple, np.round(a, 5)))   # rows as a multiset
  assert key(parts) == key(data.x_train)
  assert len(proxy.x_ood) == 2 * round(0.05 * len(data.x_train))
  assert len(proxy.x_test) == (len(data.x_train) - len(proxy.x_ood)) // 10
  assert proxy.x_mean is data.x_mean and proxy.y_std == data.y_std
  again = uci_choice.proxy_split(data, share=0.1, seed=0)
  np.testing.assert_array_equal(again.x_test, proxy.x_test)


def test_mix_config_refuses_an_unknown_mix_and_keeps_one_student():
  config = uci_choice.mix_config(uci.UCIConfig(), "far")
  assert config.students == ("full",) and not config.reference_ensemble
  assert config.far_share == 4.0 and tuple(config.far_scale) == (0.25, 1.5)
  assert config.student_min_steps == 12000
  with pytest.raises(ValueError, match="unknown mix"):
    uci_choice.mix_config(uci.UCIConfig(), "boxes")


@needs_data
def test_run_choice_end_to_end_saves_resumes_and_tabulates(tmp_path, monkeypatch):
  # Tiny students: the mixes' step floor is the study's, not a test's.
  mixes = {"box": {"box_share": 0.2, "student_min_steps": 20},
           "far": {"far_share": 0.5, "far_scale": (0.25, 1.5), "student_min_steps": 20}}
  config = uci.UCIConfig.fast()
  with pytest.raises(ValueError, match="candidates"):
    uci_choice.run_choice(str(tmp_path), ["yacht"], 1, ("box", "marginal"), config,
                          mixes=mixes)
  report = uci_choice.run_choice(str(tmp_path), ["yacht"], num_splits=1,
                                 candidates=("box", "far"), config=config, mixes=mixes)
  (result,) = report["splits"]["yacht"]
  assert result["chosen"] in ("box", "far") and report["chosen"]["yacht"] == [result["chosen"]]
  for s in result["scores"].values():
    assert 0 <= s["student_auroc"] <= 1 and 0 <= s["ensemble_auroc"] <= 1
    assert np.isfinite(s["log_mean_ratio"]) and s["rmse_ratio"] > 0
  assert result["chosen"] == input_choice.choose(result["scores"])
  saved = json.loads((tmp_path / "yacht" / "choice_split_00.json").read_text())
  assert saved["chosen"] == result["chosen"]
  # A rerun with the same settings reads the split back; other settings rerun it.
  def fail(*args, **kwargs):
    raise AssertionError("reran a saved split")
  monkeypatch.setattr(uci_choice, "choose_split", fail)
  again = uci_choice.run_choice(str(tmp_path), ["yacht"], num_splits=1,
                                candidates=("box", "far"), config=config, mixes=mixes)
  assert again["splits"]["yacht"][0]["scores"] == result["scores"]
  with pytest.raises(AssertionError, match="reran"):
    uci_choice.run_choice(str(tmp_path), ["yacht"], num_splits=1,
                          candidates=("box", "far"), config=config, share=0.2, mixes=mixes)
  table = (tmp_path / "choice.md").read_text()
  assert f"**{result['chosen']}**" in table and "| yacht | 0 |" in table
  assert report["pooled"] == {"yacht": result["chosen"]}   # one split: its own choice


def test_pooled_choice_averages_the_proxies_of_a_set():
  def result(box_gap, far_gap, far_spearman):
    return {"scores": {
        "box": {"auroc_gap": box_gap, "log_mean_ratio": 0.0, "ood_spearman": 0.5,
                "rmse_ratio": 1.0},
        "far": {"auroc_gap": far_gap, "log_mean_ratio": np.log(1.2),
                "ood_spearman": far_spearman, "rmse_ratio": 1.0}}}
  # Each split alone: far wins split 0 (both meet, higher Spearman), box split 1 (far
  # misses the AUROC); pooled, far's mean gap -0.015 still meets, and its Spearman wins.
  results = [result(0.0, 0.0, 0.9), result(0.0, -0.03, None)]
  rule = "fidelity"
  assert [input_choice.choose(r["scores"], rule) for r in results] == ["far", "box"]
  mix, means = uci_choice.pooled_choice(results, rule)
  assert mix == "far"
  assert means["far"]["auroc_gap"] == pytest.approx(-0.015)
  assert means["far"]["ood_spearman"] == pytest.approx(0.9)   # the defined one
  assert means["far"]["log_mean_ratio"] == pytest.approx(np.log(1.2))
  results.append(result(0.0, -0.05, 0.9))                      # mean gap -0.0267: misses
  assert uci_choice.pooled_choice(results, rule)[0] == "box"
  assert uci_choice.pooled_choice(results)[0] == "box"         # AUROC: box's 0.0 is best
