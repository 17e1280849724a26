"""UCI loader against the index files, and the benchmark protocol end to end (small)."""

import dataclasses
import json
import math
import pathlib

import numpy as np
import pytest

from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import uci

try:
  ROOT = uci_data.data_dir()
except FileNotFoundError:  # pragma: no cover - CI always has ../shared beside the clone
  ROOT = None
needs_data = pytest.mark.skipif(ROOT is None, reason="shared/data/uci not found")


@needs_data
@pytest.mark.parametrize("name", sorted(uci_data.UCI_DATASETS))
def test_loader_matches_the_index_files(name):
  folder = ROOT / uci_data.UCI_DATASETS[name]
  split = uci_data.num_splits(name) - 1   # the last split: 19, or 4 for protein
  data = uci_data.load_uci(name, split)
  raw = np.loadtxt(folder / "data.txt", ndmin=2)
  features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
  target = int(np.loadtxt(folder / "index_target.txt", dtype=int, ndmin=1)[0])
  train = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
  test = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
  assert data.x_train.shape == (len(train), len(features))
  assert data.x_test.shape == (len(test), len(features))
  # Back in original units, the rows are exactly those the index files name.
  np.testing.assert_allclose(data.x_test * data.x_std + data.x_mean, raw[test][:, features],
                             rtol=1e-5, atol=1e-4 * np.abs(raw).max())
  # float32 storage of normalised targets: ~1e-7 of the target's scale.
  np.testing.assert_allclose(data.y_test_original(), raw[test, target], rtol=1e-5,
                             atol=1e-6 * np.abs(raw[:, target]).max())
  # Normalised on the training split only: mean 0 and sd 1 there (not on the test split).
  np.testing.assert_allclose(data.y_train.mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(data.y_train.std(), 1.0, rtol=1e-4)
  np.testing.assert_allclose(data.y_mean, raw[train, target].mean(), rtol=1e-12)


@needs_data
def test_split_counts_and_errors(tmp_path, monkeypatch):
  assert uci_data.num_splits("protein") == 5 and uci_data.num_splits("yacht") == 20
  with pytest.raises(ValueError, match="20 splits"):
    uci_data.load_uci("yacht", 20)
  with pytest.raises(ValueError, match="Unknown UCI"):
    uci_data.load_uci("mnist")
  with pytest.raises(FileNotFoundError, match="looked in"):
    uci_data.load_uci("yacht", 0, path=str(tmp_path / "missing"))
  # The environment variable points at a copy: it is used before the fallback.
  copy = tmp_path / "uci" / "yacht"
  copy.mkdir(parents=True)
  for f in (ROOT / "yacht").iterdir():
    (copy / f.name).write_bytes(f.read_bytes())
  monkeypatch.setenv(uci_data.ENV_VAR, str(tmp_path / "uci"))
  assert uci_data.data_dir() == tmp_path / "uci"


@needs_data
def test_protocol_end_to_end_and_resume(tmp_path):
  config = uci.UCIConfig.fast()
  report = uci.run_uci(str(tmp_path), ["yacht"], num_splits=2, config=config)
  result = report["results"]["yacht"]
  assert set(result) == set(uci.MODELS)
  for model in uci.MODELS:
    for metric in ("rmse", "nll", "ause"):
      cell = result[model][metric]
      assert len(cell["values"]) == 2 and all(math.isfinite(v) for v in cell["values"])
      np.testing.assert_allclose(cell["mean"], np.mean(cell["values"]), rtol=1e-12)
  # RMSE in original units: yacht's targets span ~0-60, a 2-epoch ensemble is far from 0.
  assert 0.5 < result["ensemble"]["rmse"]["mean"] < 30
  assert (tmp_path / "report.md").read_text().count("*published*") >= 2
  assert (tmp_path / "sparsification_yacht.png").stat().st_size > 0
  # A rerun skips finished splits: the saved files are not rewritten.
  split_file = tmp_path / "yacht" / "split_00.json"
  before = split_file.stat().st_mtime_ns
  again = uci.run_uci(str(tmp_path), ["yacht"], num_splits=2, config=config)
  assert split_file.stat().st_mtime_ns == before
  assert again["results"] == report["results"]
  assert json.loads(split_file.read_text())["config_key"] == config.key()


def test_aggregate_standard_error():
  splits = [{"metrics": {"ensemble": {"rmse": v, "nll": 0.0, "ause": 0.0}},
             "timings_s": {"ensemble": 1.0}} for v in (1.0, 2.0, 3.0, 4.0)]
  report = uci.aggregate({"toy": splits}, uci.UCIConfig())
  cell = report["results"]["toy"]["ensemble"]["rmse"]
  # sd (ddof 1) of 1..4 is sqrt(5/3); stderr = sqrt(5/3) / 2 = 0.6455.
  np.testing.assert_allclose(cell["stderr"], np.sqrt(5 / 3) / 2, rtol=1e-12)
  assert cell["mean"] == 2.5


@needs_data
def test_cli_uci_fast(tmp_path, capsys):
  from tfp_distill import cli
  assert cli.main(["uci", "--fast", "--dataset", "yacht", "--splits", "1", "--out",
                   str(tmp_path)]) == 0
  assert "## yacht (1 splits)" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="unknown data set"):
    cli.main(["uci", "--fast", "--dataset", "mnist", "--out", str(tmp_path)])


def test_keys_of_the_saved_results():
  # The 2026-11-25 table (docs/uci/2026-11-25/report.json) has key af7f136698: its
  # protocol is fast_paths=False without XLA, and new options must keep that key there.
  old = uci.UCIConfig(fast_paths=False, student_jit_compile=False)
  assert old.key() == "af7f136698"
  assert uci.UCIConfig(perturbation_step=0.1).key() != uci.UCIConfig().key()
  # The fast paths change the draws (data orders, inputs), so they have their own key;
  # steps_per_execution and verbose change nothing.
  assert uci.UCIConfig().key() != old.key()
  assert uci.UCIConfig(steps_per_execution=3, verbose=0).key() == uci.UCIConfig().key()


@needs_data
def test_split_with_mean_disagreement_perturbation_is_finite_and_differs():
  config = uci.UCIConfig.fast(students=("full",))
  plain = uci.run_split("yacht", 0, config)
  moved = uci.run_split("yacht", 0, dataclasses.replace(config, perturbation_step=0.5))
  for result in (plain, moved):
    assert all(math.isfinite(v) for m in result["metrics"].values() for v in m.values())
  # Same members (same seeds), different distillation inputs -> a different student.
  assert moved["metrics"]["ensemble"] == plain["metrics"]["ensemble"]
  assert moved["metrics"]["full"]["nll"] != plain["metrics"]["full"]["nll"]


def test_cli_no_fast_paths_selects_the_old_protocol(tmp_path, monkeypatch):
  from tfp_distill import cli
  seen = {}

  def fake_run_uci(out_dir, names, num_splits=None, config=None, data_dir=None):
    seen["config"] = config
    return {"results": {}}

  monkeypatch.setattr(uci, "run_uci", fake_run_uci)
  monkeypatch.setattr(uci, "format_markdown", lambda report: "")
  assert cli.main(["uci", "--dataset", "yacht", "--no-fast-paths", "--out",
                   str(tmp_path)]) == 0
  assert seen["config"].key() == "af7f136698"   # the 2026-11-25 table's key
  assert cli.main(["uci", "--dataset", "yacht", "--out", str(tmp_path)]) == 0
  assert seen["config"].fast_paths and seen["config"].student_jit_compile
