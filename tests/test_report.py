"""td.report.verdict: where a student falls short of its ensemble, said in words."""

import pytest

import tfp_distill as td


def _report(ood_student, ood_ensemble, far=None):
  """A report of a student equal to its ensemble on the test rows, but for `ood`/`far`."""
  metrics = {"accuracy": 0.9, "nll": 0.3, "brier": 0.15, "ece": 0.02}
  return {"task": "classification", "method": "end2", "ensemble": dict(metrics),
          "student": dict(metrics),
          "fidelity": {"epistemic": {"spearman": 0.9, "mean_ratio": 1.0}},
          "ood": {"ensemble": {"score": "epistemic", **ood_ensemble},
                  "student": {"score": "epistemic", **ood_student}},
          "far": far or {}}


def test_a_faithful_student_is_ok():
  report = _report({"auroc": 0.84, "mean_out": 0.25}, {"auroc": 0.85, "mean_out": 0.2})
  result = td.report.verdict(report)
  assert result["ok"] and result["shortfalls"] == []


@pytest.mark.parametrize("ratio,short", [(0.4, True), (1.0 / 1.49, False), (1.49, False),
                                         (1.6, True)])
def test_the_size_of_the_uncertainty_on_the_ood_inputs(ratio, short):
  """The student's mean epistemic uncertainty on the OOD inputs outside 1/1.5-1.5x the
  ensemble's is a shortfall (a threshold set on the ensemble's cannot be reused), even
  when the AUROC is as good."""
  report = _report({"auroc": 0.85, "mean_out": 0.2 * ratio},
                   {"auroc": 0.85, "mean_out": 0.2})
  result = td.report.verdict(report)
  said = [s for s in result["shortfalls"] if "on the OOD inputs" in s]
  assert bool(said) == short and result["ok"] == (not short)
  if short:
    assert f"{ratio:.3g}x the ensemble's ({0.2 * ratio:.3g} against 0.2)" in said[0]
    assert any("inputs away from the training rows" in a for a in result["advice"])


@pytest.mark.parametrize("extra,says", [
    (None, "distil on inputs away from the training rows too"),
    ("mixup", "distil on inputs away from the training rows too"),
    ("mixup+box", "this run already distilled on box inputs: try far inputs instead, or "
                  "unlabelled data near the OOD inputs (aux)"),
    ("mixup+far+box", "this run already distilled on far and box inputs: try unlabelled "
                      "data near the OOD inputs (aux)"),
    ("aux", "this run already distilled on aux inputs: try far or box inputs instead, or "
            "other unlabelled data, nearer the OOD inputs (aux)")])
def test_the_advice_off_the_data_names_the_inputs_the_run_used(extra, says):
  """Before: a run on mixup+box inputs that fell short was told to try box inputs."""
  report = _report({"auroc": 0.70, "mean_out": 0.2}, {"auroc": 0.85, "mean_out": 0.2})
  report["data"] = {"extra_inputs": extra}
  advice = td.report.verdict(report)["advice"]
  assert sum(says in a for a in advice) == 1, advice


def test_a_diagonal_gaussian_student_short_is_pointed_to_the_full_covariance_one():
  report = _report({"auroc": 0.70, "mean_out": 0.4}, {"auroc": 0.85, "mean_out": 0.2})
  report["method"] = "gaussian-logits-diagonal"
  advice = td.report.verdict(report)["advice"]
  assert sum(a.startswith("method gaussian-logits (a full-covariance Normal") for a in
             advice) == 1
  report["method"] = "gaussian-logits"
  assert not any("full-covariance" in a for a in td.report.verdict(report)["advice"])


def test_an_ood_auroc_drop_and_far_points_are_shortfalls():
  far = {"3": {"ensemble": {"score": "epistemic", "auroc": 0.9, "mean": 1.0},
               "student": {"score": "epistemic", "auroc": 0.6, "mean": 0.2}}}
  report = _report({"auroc": 0.80, "mean_out": 0.2}, {"auroc": 0.85, "mean_out": 0.2}, far)
  shortfalls = td.report.verdict(report)["shortfalls"]
  assert shortfalls == [
      "OOD AUROC 0.800 against the ensemble's 0.850",
      "on far points 3 sd beyond the data its epistemic AUROC is 0.600 against the "
      "ensemble's 0.900",
      "on far points 3 sd beyond the data its mean epistemic uncertainty is 0.2x the "
      "ensemble's (0.2 against 1)"]


def test_a_size_shortfall_on_the_test_rows_gives_both_means():
  """Before: only the ratio, which reads the same for 0.05 against 0.008 nats (members
  that agree) as for 5 against 0.8."""
  report = _report({"auroc": 0.85, "mean_out": 0.2}, {"auroc": 0.85, "mean_out": 0.2})
  report["fidelity"]["epistemic"].update(mean_ratio=0.0503 / 0.00824, student_mean=0.0503,
                                         ensemble_mean=0.00824)
  said = td.report.verdict(report)["shortfalls"]
  assert said == ["its mean epistemic uncertainty is 6.1x the ensemble's (0.0503 against "
                  "0.00824; outside 0.667x-1.5x): a threshold set on the ensemble's "
                  "cannot be reused on the student"]
  del report["fidelity"]["epistemic"]["student_mean"]      # an older report: the ratio
  assert td.report.verdict(report)["shortfalls"][0].startswith(
      "its mean epistemic uncertainty is 6.1x the ensemble's (outside 0.667x-1.5x)")


def test_an_end2_student_short_off_the_data_is_told_of_the_temperature():
  """Advice names the starting temperature the report records, and only for EnD^2
  students that fall short off the data after a start above 1."""
  report = _report({"auroc": 0.70, "mean_out": 0.05}, {"auroc": 0.85, "mean_out": 0.2})
  report["schedule"] = {"temperature": {"initial": 2.5, "final": 1.0, "start_epoch": 3,
                                        "end_epoch": 11}}
  advice = td.report.verdict(report)["advice"]
  assert any("started at temperature 2.5: a run at temperature 1" in a for a in advice)
  report["schedule"]["temperature"]["initial"] = 1.0
  assert not any("temperature 1" in a for a in td.report.verdict(report)["advice"])
  report["schedule"]["temperature"]["initial"] = 2.5
  report["method"] = "gaussian-logits"
  assert not any("temperature 1" in a for a in td.report.verdict(report)["advice"])
  report["method"], report["ood"]["student"] = "end2", {"score": "epistemic", "auroc": 0.85,
                                                         "mean_out": 0.2}
  assert td.report.verdict(report)["ok"]      # nothing short: no advice at all
  assert td.report.verdict(report)["advice"] == []
