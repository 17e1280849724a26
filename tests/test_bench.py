"""`tfp-distill bench`: the smoke configuration runs every suite and writes its report.

Speed is never asserted here (figures depend on the machine); the tests check that the
figures exist, are finite and positive, that ratios are computed from them, and that
the targets are judged by their own numbers.
"""

import json
import math
import pathlib

import pytest

from tfp_distill import cli
from tfp_distill.experiments import bench

import tolerance


def _finite_positive(timing):
  return all(math.isfinite(timing[k]) and timing[k] > 0 for k in ("min_s", "median_s"))


@pytest.mark.slow
def test_fast_bench_writes_every_suite(tmp_path):
  lines = []
  report = bench.run_bench(str(tmp_path), bench.BenchConfig.fast(), log=lines.append)
  assert set(report["suites"]) == set(bench.SUITES)
  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["machine"]["cores"] >= 1 and saved["machine"]["tensorflow"]
  # The keys every report shares (td.report.header): seconds per suite, and in all.
  assert set(saved["timings_s"]) == set(bench.SUITES) | {"figures", "total"}
  assert saved["wall_time_s"] == saved["timings_s"]["total"] > 0
  assert saved["config"]["repeats"] == 1 and saved["versions"]["tensorflow"]
  # The students timed are the registry's (td.methods), the Dirichlet in either Keras.
  assert set(report["suites"]["inference"]["small_cnn"]["students"]) == {
      "dirichlet", "dirichlet_keras3", "gaussian_logits_10"}
  assert (tmp_path / "report.md").read_text().startswith("# tfp-distill bench")
  assert (tmp_path / "ratios.png").stat().st_size > 0
  for name, entry in report["suites"]["inference"].items():
    for timings in entry["students"].values():
      assert _finite_positive(timings["predict_uncertainty"])
    for e in entry["ensembles"].values():
      t = e["timings"]
      assert all(_finite_positive(v) for v in t.values()), name
      # The same float64 quotient of the same two numbers (1 rounding at most).
      assert e["ensemble_vs_loop"] == pytest.approx(
          t["member_loop"]["min_s"] / t["ensemble"]["min_s"], abs=0,
          rel=tolerance.eps("float64"))
  for e in report["suites"]["decompose"].values():
    assert all(_finite_positive(v) for v in e["timings"].values())
  assert report["suites"]["distill"]["cache_vs_in_memory"] > 0
  for e in report["suites"]["train"].values():
    assert all(_finite_positive(v) for v in e["timings"].values())
  # Every target is judged by its own value against its goal.
  assert report["targets"]
  for t in report["targets"]:
    assert t["met"] == (t["value"] >= t["goal"] if t["higher_is_better"]
                        else t["value"] <= t["goal"])
  assert any(line.startswith("train uci_sized_mlp") for line in lines)


@pytest.mark.slow
def test_peak_memory_is_measured_in_a_fresh_process():
  config = bench.BenchConfig.fast(suites=("decompose",), memory=True, decompose_batch=256)
  out = bench._peak_memory_mb("dirichlet_closed_form", "numpy", config)  # pylint: disable=protected-access
  assert math.isfinite(out["peak_added_mb"]) and out["peak_added_mb"] >= 0


def test_cli_bench_selects_suites_and_rejects_unknown(tmp_path, capsys, monkeypatch):
  # Every suite is run for real above; here the suites are stubs that record the call.
  called = []
  for suite in bench.SUITES:
    monkeypatch.setattr(bench, f"run_{suite}",
                        lambda config, log, s=suite: called.append(s) or {})
  assert cli.main(["bench", "--fast", "--suite", "train", "--out", str(tmp_path)]) == 0
  assert called == ["train"]
  report = json.loads((tmp_path / "report.json").read_text())
  assert set(report["suites"]) == {"train"}
  printed = capsys.readouterr().out
  assert "Report written to" in printed and "# tfp-distill bench" in printed
  with pytest.raises(SystemExit, match="Unknown bench suites"):
    cli.main(["bench", "--fast", "--suite", "nothing", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="Unknown backbones"):
    cli.main(["bench", "--fast", "--backbones", "vgg", "--out", str(tmp_path)])


def test_the_measured_report_is_still_read():
  """docs/bench/report.json (written before td.report.header: "wall_s", no
  "timings_s") still renders."""
  path = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bench" / "report.json"
  report = json.loads(path.read_text())
  assert "timings_s" not in report
  text = bench.format_markdown(report)
  assert text.startswith("# tfp-distill bench") and "## Ensemble training" in text
