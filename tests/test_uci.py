"""UCI loader against the index files, and the benchmark protocol end to end (small)."""

import dataclasses
import json
import math
import os
import pathlib

import numpy as np
import pytest

from tfp_distill import cli
from tfp_distill.datasets import uci as uci_data
from tfp_distill.experiments import uci
from tfp_distill.experiments import uci_report

import conftest
import tolerance

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "uci"

try:
  ROOT = uci_data.data_dir()
except FileNotFoundError:  # pragma: no cover - CI always has ../shared beside the clone
  ROOT = None
# Skipped without the data, except where it is required (.ci/run): there they fail.
needs_data = pytest.mark.skipif(
    ROOT is None and os.environ.get(conftest.REQUIRE_DATA_ENV) != "1",
    reason="shared/data/uci not found")


def _root():
  """The UCI folder; where it is required but missing, the test fails saying where it
  looked (the loader's message), not with a TypeError on None."""
  return ROOT if ROOT is not None else uci_data.data_dir()


@needs_data
@pytest.mark.parametrize("name", sorted(uci_data.UCI_DATASETS))
def test_loader_matches_the_index_files(name):
  folder = _root() / uci_data.UCI_DATASETS[name]
  split = uci_data.num_splits(name) - 1   # the last split: 19, or 4 for protein
  data = uci_data.load_uci(name, split)
  raw = np.loadtxt(folder / "data.txt", ndmin=2)
  features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
  target = int(np.loadtxt(folder / "index_target.txt", dtype=int, ndmin=1)[0])
  train = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
  test = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
  assert data.x_train.shape == (len(train), len(features))
  assert data.x_test.shape == (len(test), len(features))
  # Back in original units, the rows are exactly those the index files name: normalised
  # in float64, stored in float32 (1 float32 eps of |x - mean|), mapped back in float64
  # (2 float64 eps more, far below): relative to |x| + |mean|.
  x_raw = raw[test][:, features]
  tolerance.assert_close(data.x_test * data.x_std + data.x_mean, x_raw, dtype=np.float32,
                         ulps=1 + 1, scale=np.abs(x_raw) + np.abs(data.x_mean))
  # float32 storage of normalised targets: the same bound.
  y_raw = raw[test, target]
  tolerance.assert_close(data.y_test_original(), y_raw, dtype=np.float32, ulps=1 + 1,
                         scale=np.abs(y_raw) + abs(data.y_mean))
  # Normalised on the training split only: mean 0 and sd 1 there (not on the test split).
  # Exactly so in float64; the float32 storage moves each value by 1 eps of itself, the
  # mean by at most 1 eps of mean |y| and the sd by 1 eps (2 with the squares' rounding;
  # the float64 sums here add n float64 eps, far below).
  y = data.y_train.astype(np.float64)
  tolerance.assert_close(y.mean(), 0.0, dtype=np.float32, ulps=1 + 1,
                         scale=np.abs(y).mean())
  tolerance.assert_close(y.std(), 1.0, dtype=np.float32, ulps=2 + 1)
  # The same float64 mean of the same values on either side.
  tolerance.assert_close(data.y_mean, raw[train, target].mean(), dtype=np.float64,
                         ulps=2 * (len(train) + 1), scale=np.abs(raw[train, target]).mean())


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
  for f in (_root() / "yacht").iterdir():
    (copy / f.name).write_bytes(f.read_bytes())
  monkeypatch.setenv(uci_data.ENV_VAR, str(tmp_path / "uci"))
  assert uci_data.data_dir() == tmp_path / "uci"


@pytest.fixture(scope="module", name="fast_run")
def fast_run_fixture(tmp_path_factory, load_or_skip):
  """One run of the protocol (2 splits of yacht), shared by the tests below."""
  load_or_skip(uci_data.data_dir)
  out = tmp_path_factory.mktemp("uci")
  config = uci.UCIConfig.fast()
  return out, config, uci.run_uci(str(out), ["yacht"], num_splits=2, config=config)


def _split(fast_run, split):
  """The fixture's saved `run_split` result of one split."""
  tmp_path, _, _ = fast_run
  return json.loads((tmp_path / "yacht" / f"split_{split:02d}.json").read_text())


@pytest.mark.slow
def test_protocol_end_to_end_and_resume(fast_run):
  tmp_path, config, report = fast_run
  result = report["results"]["yacht"]
  assert set(result) == set(uci.MODELS)
  for model in uci.MODELS:
    for metric in ("rmse", "nll", "ause"):
      cell = result[model][metric]
      assert len(cell["values"]) == 2 and all(math.isfinite(v) for v in cell["values"])
      # float64 means of the same 2 values (3 eps each side).
      tolerance.assert_close(cell["mean"], np.mean(cell["values"]), dtype=np.float64,
                             ulps=2 * 3, scale=np.abs(cell["values"]).max())
  # RMSE in original units: yacht's targets span ~0-60, a 2-epoch ensemble is far from 0.
  assert 0.5 < result["ensemble"]["rmse"]["mean"] < 30
  assert (tmp_path / "report.md").read_text().count("*published*") >= 2
  assert (tmp_path / "sparsification_yacht.png").stat().st_size > 0
  # The keys every report shares (td.report.header), with this call's seconds.
  saved = json.loads((tmp_path / "report.json").read_text())
  assert {"config", "versions", "date", "wall_time_s", "timings_s"} <= set(saved)
  assert saved["wall_time_s"] == saved["timings_s"]["total"] > 0
  assert set(saved["seconds_per_split"]["yacht"]) >= {"ensemble", "students"}
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
  # sd (ddof 1) of 1..4 is sqrt(5/3); stderr = sqrt(5/3) / 2 = 0.6455. float64: the sums
  # and squares of small integers are exact; / 3 and the root round, on either side.
  tolerance.assert_close(cell["stderr"], np.sqrt(5 / 3) / 2, dtype=np.float64, ulps=2 * 2)
  assert cell["mean"] == 2.5


@pytest.mark.slow
def test_cli_uci_fast(fast_run, capsys):
  tmp_path, _, _ = fast_run
  # The CLI's --fast is the fixture's config: split 0 is read back, not trained again.
  assert cli.main(["uci", "--fast", "--dataset", "yacht", "--splits", "1", "--out",
                   str(tmp_path)]) == 0
  assert "## yacht (1 splits)" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="unknown data set"):
    cli.main(["uci", "--fast", "--dataset", "mnist", "--out", str(tmp_path)])


def test_keys_of_the_saved_results():
  # The 2026-11-25 table (docs/uci/2026-11-25/report.json) has key af7f136698: its
  # protocol is fast_paths=False without XLA, and new options must keep that key there.
  old = uci.UCIConfig(**uci.UCIConfig.PROTOCOLS["2026-11-25"])
  assert old.key() == "af7f136698"
  # The 2026-11-30 table (fast paths, constant student learning rate) keeps its key too.
  assert uci.UCIConfig(**uci.UCIConfig.PROTOCOLS["2026-11-30"]).key() == "2d3c6f1ec0"
  assert uci.UCIConfig(perturbation_step=0.1).key() != uci.UCIConfig().key()
  # The fast paths change the draws (data orders, inputs), so they have their own key;
  # steps_per_execution and verbose change nothing.
  assert uci.UCIConfig().key() != old.key()
  assert uci.UCIConfig(steps_per_execution=3, verbose=0).key() == uci.UCIConfig().key()


@needs_data
@pytest.mark.slow
def test_the_second_ensemble_and_the_perturbation_change_only_what_they_should():
  # Without XLA (the fixture runs the default, XLA-compiled students): three runs of one
  # split that differ in one setting each.
  config = uci.UCIConfig.fast(students=("full",), student_jit_compile=False)
  plain = uci.run_split("yacht", 0, config)
  alone = uci.run_split("yacht", 0, dataclasses.replace(config, reference_ensemble=False))
  moved = uci.run_split("yacht", 0, dataclasses.replace(config, reference_ensemble=False,
                                                         perturbation_step=0.5))
  # The second ensemble is trained after the others and changes none of their metrics.
  assert "noise_ceiling" in plain and "noise_ceiling" not in alone
  assert alone["metrics"] == plain["metrics"]
  # MeanDisagreement: same members (same seeds), other distillation inputs -> another
  # student, finite.
  assert all(math.isfinite(v) for m in moved["metrics"].values() for v in m.values())
  assert moved["metrics"]["ensemble"] == alone["metrics"]["ensemble"]
  assert moved["metrics"]["full"]["nll"] != alone["metrics"]["full"]["nll"]


def test_cli_no_fast_paths_selects_the_old_protocol(tmp_path, monkeypatch):
  seen = {}

  def fake_run_uci(out_dir, names, num_splits=None, config=None, data_dir=None,
                   ood=False):
    seen["config"], seen["ood"] = config, ood
    return {"results": {}, "ood_auroc": {}, "protocol": None, "wall_time_s": 0.}

  monkeypatch.setattr(uci, "run_uci", fake_run_uci)
  monkeypatch.setattr(uci, "format_markdown", lambda report: "")
  monkeypatch.setattr(uci, "format_ood_markdown", lambda report: "")
  assert cli.main(["uci", "--dataset", "yacht", "--no-fast-paths", "--out",
                   str(tmp_path)]) == 0
  assert seen["config"].key() == "af7f136698"   # the 2026-11-25 table's key
  assert cli.main(["uci", "--dataset", "yacht", "--out", str(tmp_path)]) == 0
  assert seen["config"].fast_paths and seen["config"].student_jit_compile
  assert seen["config"].reference_ensemble and not seen["ood"]
  assert cli.main(["uci", "--dataset", "yacht", "--ood", "--no-reference-ensemble",
                   "--out", str(tmp_path)]) == 0
  assert seen["ood"] and not seen["config"].reference_ensemble
  # The second ensemble changes no other result, so it leaves the key alone.
  assert seen["config"].key() == uci.UCIConfig().key()
  assert cli.main(["uci", "--dataset", "yacht", "--protocol", "2026-11-30", "--out",
                   str(tmp_path)]) == 0
  assert seen["config"].key() == "2d3c6f1ec0"   # the 2026-11-30 table's key
  assert cli.main(["uci", "--dataset", "yacht", "--student-lr-schedule", "constant",
                   "--out", str(tmp_path)]) == 0
  assert seen["config"].student_lr_schedule == "constant"


# ----------------------------------------------------------------------------------------
# Fidelity of the uncertainty split and the PCA hold-out (issue 12, part 3).
# ----------------------------------------------------------------------------------------


def test_pca_holdout_takes_one_tail_of_the_first_component():
  rng = np.random.default_rng(0)
  n = 400
  t = rng.normal(size=n)                       # the dominant direction
  x = np.stack([10 * t, t + 0.3 * rng.normal(size=n), -(t + 0.6 * rng.normal(size=n)),
                rng.normal(size=n)], axis=1)
  in_rows, ood = uci_data.pca_holdout(x, 0.1)
  assert len(ood) == 40 and len(in_rows) == 360
  assert np.intersect1d(in_rows, ood).size == 0
  np.testing.assert_array_equal(np.sort(np.concatenate([in_rows, ood])), np.arange(n))
  # Reference by another route: the top eigenvector of the correlation matrix, its
  # largest-magnitude entry (x0, the feature most correlated with the others) positive.
  _, vectors = np.linalg.eigh(np.corrcoef(x, rowvar=False))
  v = vectors[:, -1] * np.sign(vectors[np.argmax(np.abs(vectors[:, -1])), -1])
  assert np.argmax(np.abs(v)) == 0
  score = ((x - x.mean(0)) / x.std(0)) @ v
  np.testing.assert_array_equal(ood, np.sort(np.argsort(-score)[:40]))
  assert t[ood].min() > np.quantile(t, 0.75)   # one tail: large t, not large |t|
  # Deterministic: a repeat call holds out the same rows.
  np.testing.assert_array_equal(uci_data.pca_holdout(x, 0.1)[1], ood)
  assert len(uci_data.pca_holdout(x[:3], 0.1)[1]) == 1     # ceil, at least one row
  for bad, match in (((x, 0.0), "fraction"), ((x, 1.0), "fraction"), ((x[:1], 0.1), "n >= 2"),
                     ((np.full((3, 2), np.nan), 0.1), "NaN")):
    with pytest.raises(ValueError, match=match):
      uci_data.pca_holdout(*bad)


@needs_data
def test_ood_split_is_deterministic_disjoint_and_normalised_on_train():
  a = uci_data.load_uci_ood("yacht", 0)
  b = uci_data.load_uci_ood("yacht", 0)
  c = uci_data.load_uci_ood("yacht", 1)
  n = len(np.loadtxt(_root() / "yacht" / "data.txt", ndmin=2))
  for d in (a, c):
    rows = np.concatenate([d.train_rows, d.test_rows, d.ood_rows])
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))     # a partition
    assert len(d.ood_rows) == math.ceil(0.1 * n)
    assert len(d.test_rows) == round(0.1 * (n - len(d.ood_rows)))
    # Normalised in float64, stored in float32: the mean moves by 1 float32 eps of the
    # mean |x| at most (summed here in float64).
    x = d.x_train.astype(np.float64)
    tolerance.assert_close(x.mean(0), np.zeros(x.shape[1]), dtype=np.float32, ulps=1 + 1,
                           scale=np.abs(x).mean(0))
    assert d.x_ood.shape == (len(d.ood_rows), d.x_train.shape[1])
  for field in ("train_rows", "test_rows", "ood_rows", "x_ood", "y_train"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  np.testing.assert_array_equal(a.ood_rows, c.ood_rows)      # one hold-out for all splits
  assert not np.array_equal(a.test_rows, c.test_rows)        # other random splits
  np.testing.assert_array_equal(a.ood_rows, uci_data.pca_holdout(
      np.loadtxt(_root() / "yacht" / "data.txt", ndmin=2)[:, :6])[1])
  with pytest.raises(ValueError, match="split"):
    uci_data.load_uci_ood("yacht", -1)
  with pytest.raises(ValueError, match="test_fraction"):
    uci_data.load_uci_ood("yacht", 0, test_fraction=1.5)


def test_aggregate_summarises_fidelity_and_the_noise_ceiling():
  def split(r, with_ceiling=True):
    agreement = {"pearson": r, "spearman": r / 2, "mean_ratio": 1.0, "relative_l1": 1 - r,
                 "sym_relative_error": 0.5, "n": 10}
    out = {"metrics": {"ensemble": {"rmse": 1.0, "nll": 0.0, "ause": 0.0}},
           "timings_s": {"ensemble": 1.0},
           "fidelity": {"full": {"epistemic": agreement, "aleatoric": agreement},
                        "mixture": {"total": agreement}}}
    if with_ceiling:
      out["noise_ceiling"] = {"epistemic": agreement}
    return out

  report = uci.aggregate({"toy": [split(0.2), split(0.4), split(0.9, False)]},
                         uci.UCIConfig())
  cell = report["fidelity"]["toy"]["full"]["epistemic"]["pearson"]
  # float64 from decimal inputs (1 eps each): a mean of 3 (4 eps) and a standard error
  # (deviations, squares, a sum, a quotient, two roots: 8 eps), on either side, of 1.
  tolerance.assert_close(cell["mean"], 0.5, dtype=np.float64, ulps=2 * (1 + 4), scale=1.)
  tolerance.assert_close(cell["stderr"], np.std([0.2, 0.4, 0.9], ddof=1) / np.sqrt(3),
                         dtype=np.float64, ulps=2 * (1 + 8), scale=1.)
  # The ceiling is summarised over the splits that have it.
  assert report["noise_ceiling"]["toy"]["epistemic"]["spearman"]["values"] == [0.1, 0.2]
  text = uci.format_markdown(report)
  assert "### Epistemic variance" in text and "second_ensemble rho" in text
  assert "full rel. L1" in text and "MRE" not in text.split("###")[-1]
  # full rho: mean 0.25 and s.e. 0.10 of 0.1, 0.2, 0.45; the ceiling rho: 0.15 +- 0.05.
  assert "| toy | 0.25 +- 0.10 | 0.150 +- 0.050 |" in text   # 2 significant digits of s.e.
  # A correlation no split defines (a constant input: None) is left out, not an error.
  undefined = [dict(split(0.2), fidelity={"full": {"epistemic": {
      "pearson": None, "spearman": None, "relative_l1": 0.1}}}) for _ in range(2)]
  summary = uci.aggregate({"toy": undefined}, uci.UCIConfig())["fidelity"]["toy"]
  assert summary["full"]["epistemic"]["pearson"] is None
  assert "| toy | - |" in uci.format_fidelity_markdown(
      dict(report, fidelity={"toy": summary}, noise_ceiling={}))


def test_old_reports_are_still_read():
  """The measured reports behind docs/uci (written before td.report.header and
  td.metrics.uncertainty_fidelity) still render: their seconds per split under
  "timings_s", their fidelity's mean relative error (MRE)."""
  report = json.loads((DOCS / "report.json").read_text())
  assert "wall_time_s" not in report and "seconds_per_split" not in report
  text = uci.format_markdown(report)
  assert "Seconds per split: ensemble" in text and "full MRE" in text
  assert uci.seconds_per_split(report) == report["timings_s"]
  ood = json.loads((DOCS / "ood" / "report.json").read_text())
  assert "PCA hold-out" in uci.format_ood_markdown(ood)
  for old in ("2026-11-25", "2026-11-30", "m5"):
    assert "## boston" in uci.format_markdown(
        json.loads((DOCS / old / "report.json").read_text()))


def test_saved_splits_of_the_old_fidelity_are_run_again():
  config = uci.UCIConfig.fast()
  old = {"pearson": 0.9, "spearman": 0.8, "mean_relative_error": 0.1}
  new = {"pearson": 0.9, "spearman": 0.8, "relative_l1": 0.1}

  def saved(cell):
    return {"config_key": config.key(), "fidelity": {"full": {"epistemic": cell}},
            "noise_ceiling": {"epistemic": cell}}
  assert not uci._complete(saved(old), config, False)  # pylint: disable=protected-access
  assert uci._complete(saved(new), config, False)  # pylint: disable=protected-access


@pytest.mark.slow
def test_split_reports_fidelity_and_noise_ceiling(fast_run):
  _, config, _ = fast_run
  result = _split(fast_run, 0)
  assert set(result["fidelity"]) == set(uci.STUDENTS)
  assert set(result["fidelity"]["mixture"]) == {"total"}
  for student in ("full", "diagonal"):
    assert set(result["fidelity"][student]) == {"epistemic", "aleatoric", "total"}
  for agreement in [result["noise_ceiling"]["epistemic"],
                    result["fidelity"]["full"]["epistemic"]]:
    assert -1 <= agreement["pearson"] <= 1 and -1 <= agreement["spearman"] <= 1
    assert agreement["relative_l1"] >= 0 and agreement["mean_ratio"] > 0
  # A split saved without the fidelity sections is rerun, not reused.
  assert not uci._complete({"config_key": config.key(), "metrics": {}}, config, False)  # pylint: disable=protected-access
  assert uci._complete(result, config, False)  # pylint: disable=protected-access


@needs_data
@pytest.mark.slow
def test_ood_protocol_end_to_end(tmp_path):
  config = uci.UCIConfig.fast(students=("full", "mixture"), student_jit_compile=False)
  report = uci.run_uci(str(tmp_path), ["yacht"], num_splits=2, config=config, ood=True)
  aurocs = report["ood_auroc"]["yacht"]
  assert set(aurocs) == {"ensemble", "full", "mixture", uci.REFERENCE}
  assert set(aurocs["mixture"]) == {"total"}
  for model, parts in aurocs.items():
    for cell in parts.values():
      assert len(cell["values"]) == 2 and all(0 <= v <= 1 for v in cell["values"])
  assert report["n_ood"]["yacht"] == 31 and report["num_splits"]["yacht"] == 2
  assert set(report["results"]["yacht"]["full"]) == {"rmse_in", "nll_in", "rmse_ood",
                                                      "nll_ood"}
  assert (tmp_path / "yacht" / "ood_split_01.json").exists()
  assert (tmp_path / "ood_auroc.png").stat().st_size > 0
  assert "PCA hold-out" in (tmp_path / "report.md").read_text()


def test_validation_part_never_touches_the_test_rows():
  rng = np.random.default_rng(0)
  data = uci_data.UCISplit("toy", 3, rng.normal(size=(50, 2)).astype(np.float32),
                           rng.normal(size=50).astype(np.float32),
                           rng.normal(size=(9, 2)).astype(np.float32),
                           rng.normal(size=9).astype(np.float32), np.zeros(2), np.ones(2),
                           0.0, 1.0)
  val = uci_data.validation_part(data, 0.1, seed=0)
  assert val.x_train.shape == (45, 2) and val.x_test.shape == (5, 2)
  rows = np.concatenate([val.x_train, val.x_test])
  # A partition of the training rows; no test row appears.
  np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(data.x_train[:, 0]))
  assert not np.isin(data.x_test[:, 0], rows[:, 0]).any()
  again = uci_data.validation_part(data, 0.1, seed=0)
  np.testing.assert_array_equal(again.x_test, val.x_test)
  with pytest.raises(ValueError, match="fraction"):
    uci_data.validation_part(data, 1.0)


def test_student_lr_schedule_cosine_decays_to_zero_and_keeps_old_keys():
  config = uci.UCIConfig(student_lr_schedule="cosine", student_epochs=2,
                         student_batch_size=10)
  optimizer = uci._student_optimizer(config, 95)          # 10 steps per epoch, 20 in all
  schedule = optimizer._learning_rate   # pylint: disable=protected-access
  # float32 cosine decay: step / total, pi times it, a cosine (4 eps, rounded pi included)
  # and 0.5 (1 + cos) lr: 8 eps of the peak rate 1e-2 (at 0, 10 and 20 steps).
  bound = dict(dtype=np.float32, ulps=8, scale=1e-2)
  tolerance.assert_close(float(schedule(0)), 1e-2, **bound)
  tolerance.assert_close(float(schedule(10)), 0.5e-2, **bound)   # half way
  tolerance.assert_close(float(schedule(20)), 0.0, **bound)
  constant = uci._student_optimizer(uci.UCIConfig(student_lr_schedule="constant"), 95)
  tolerance.assert_close(float(constant.learning_rate), 1e-2, dtype=np.float32, ulps=1)
  # "constant" is left out of the key: the 2026-11-30 table keeps its key.
  assert uci.UCIConfig(student_lr_schedule="constant",
                       student_hidden=(75,)).key() == "2d3c6f1ec0"
  assert uci.UCIConfig(student_hidden=(75,)).key() != "2d3c6f1ec0"
  with pytest.raises(ValueError, match="student_lr_schedule"):
    uci._student_optimizer(uci.UCIConfig(student_lr_schedule="step"), 10)


def test_box_inputs_and_the_longer_schedule_keep_old_keys():
  # Left at their defaults they leave every saved split's key as it was.
  assert uci.UCIConfig(box_share=0.0, box_expand=0.5, marginal_share=0.0,
                       student_min_steps=None).key() == uci.UCIConfig().key()
  assert uci.UCIConfig(marginal_share=0.2).key() != uci.UCIConfig().key()
  assert uci.UCIConfig(far_share=0.0, far_scale=[1.0, 4.0]).key() == uci.UCIConfig().key()
  assert uci.UCIConfig(far_share=0.5, far_scale=(0.25, 1.5)).key() != uci.UCIConfig(
      far_share=0.5).key()
  assert uci._num_marginal(uci.UCIConfig(marginal_share=0.2), 250) == 2000  # pylint: disable=protected-access
  assert uci.UCIConfig(box_share=0.2, box_expand=0.0).key() != uci.UCIConfig(
      box_share=0.2).key()
  assert uci.UCIConfig(box_share=0.2).key() != uci.UCIConfig().key()
  assert uci.UCIConfig(student_min_steps=12000).key() != uci.UCIConfig().key()
  # Yacht-sized: 250 rows, 9750 jittered (min_distill_samples), 2000 box inputs per
  # epoch: 120 steps of 100; 12,000 steps need 100 epochs, 30 epochs give 3,600.
  config = uci.UCIConfig(box_share=0.2, student_min_steps=12000)
  assert uci._num_box(config, 250) == 2000  # pylint: disable=protected-access
  assert uci._student_epochs(config, 12000) == 100  # pylint: disable=protected-access
  assert uci._student_epochs(uci.UCIConfig(), 12000) == 30  # pylint: disable=protected-access
  # A large set already takes more steps than the minimum: its epochs stay.
  assert uci._student_epochs(config, 100_000) == 30  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="fast_paths"):
    uci.distil_alone("full", None, None, None, uci.UCIConfig(box_share=0.2,
                                                             fast_paths=False), 0)
  words = uci_report.students_inputs_words
  assert words(dataclasses.asdict(uci.UCIConfig())) == ""
  assert "box inputs, 0.2 of" in words(dataclasses.asdict(config))
  assert "widened by 0 of its range" in words(dataclasses.asdict(
      dataclasses.replace(config, box_expand=0.0)))
  assert "at least 12000 optimizer steps" in words(dataclasses.asdict(config))


def test_cli_uci_box_share_and_min_steps(tmp_path, monkeypatch):
  seen = {}

  def fake_run_uci(out_dir, names, num_splits=None, config=None, data_dir=None,
                   ood=False):
    seen["config"] = config
    return {"results": {}, "ood_auroc": {}, "protocol": None, "wall_time_s": 0.}

  monkeypatch.setattr(uci, "run_uci", fake_run_uci)
  monkeypatch.setattr(uci, "format_ood_markdown", lambda report: "")
  assert cli.main(["uci", "--dataset", "yacht", "--ood", "--box-share", "0.2",
                   "--box-expand", "0.1", "--student-min-steps", "12000",
                   "--marginal-share", "0.3", "--far-share", "0.5", "--far-scale",
                   "0.25,1.5", "--out", str(tmp_path)]) == 0
  assert seen["config"].marginal_share == 0.3 and seen["config"].far_share == 0.5
  assert seen["config"].far_scale == (0.25, 1.5)
  assert seen["config"].box_share == 0.2 and seen["config"].student_min_steps == 12000
  assert seen["config"].box_expand == 0.1
  with pytest.raises(SystemExit):
    cli.main(["uci", "--box-share", "-1", "--out", str(tmp_path)])
  for bad in ("2", "2,1", "-1,1"):
    with pytest.raises(SystemExit):
      cli.main(["uci", "--far-scale", bad, "--out", str(tmp_path)])


@needs_data
def test_an_ood_split_with_box_inputs_and_a_step_floor_runs(tmp_path):
  config = uci.UCIConfig.fast(students=("full",), box_share=0.2, student_min_steps=150,
                              marginal_share=0.2, far_share=0.2, far_scale=(0.25, 1.5),
                              reference_ensemble=False)
  report = uci.run_uci(str(tmp_path), ["yacht"], num_splits=1, config=config, ood=True)
  assert all(0 <= v <= 1 for m in report["ood_auroc"]["yacht"].values()
             for cell in m.values() for v in cell["values"])
  assert report["config"]["box_share"] == 0.2
  assert "box inputs, 0.2 of" in (tmp_path / "report.md").read_text()
  assert "marginal inputs, 0.2 of" in (tmp_path / "report.md").read_text()
  assert "noise of 0.25 to 1.5 feature sd" in (tmp_path / "report.md").read_text()
