"""temperature="choose" (`td.job.choice`): a student at each candidate temperature, the
one kept chosen on corrupted held-out training images; its refusals in one line."""

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill.experiments import image_choice
from tfp_distill.job import choice

keras3 = pytest.importorskip("keras")

SIDE, CLASSES = 10, 3


def _bars(n, seed):
  """Images [n, 10, 10, 1] in [0, 1]: class k is a bright bar across rows 3k..3k+2, at a
  random brightness, on noise."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, CLASSES, n)
  x = rng.uniform(0, 0.3, (n, SIDE, SIDE, 1))
  for k in range(CLASSES):
    x[y == k, 3 * k:3 * k + 3] += rng.uniform(0.3, 0.7, ((y == k).sum(), 1, 1, 1))
  return np.clip(x, 0, 1).astype(np.float32), y


@pytest.fixture(scope="module", name="members")
def members_fixture():
  x, y = _bars(600, 0)
  models = []
  for m in range(3):
    keras3.utils.set_random_seed(10 + m)
    model = keras3.Sequential([keras3.Input((SIDE, SIDE, 1)), keras3.layers.Flatten(),
                               keras3.layers.Dense(16, activation="relu"),
                               keras3.layers.Dense(CLASSES)])
    model.compile(keras3.optimizers.Adam(1e-2),
                  keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    models.append(model)
  return models, (x, y), _bars(200, 1)


def test_choose_trains_both_and_keeps_the_student_it_scored(members, tmp_path):
  models, train, test = members
  result = td.distill(models, train, test, temperature="choose", epochs=4, verbose=0,
                      out=tmp_path / "run")
  record = result.report["temperature_choice"]
  assert set(record["candidates"]) == {"1", "2.5"}
  # The NLL guard's reference: the default of image inputs.
  assert record["default"] == 1.0 and record["rule"] == "proxy-auroc"
  # The kept one is what the rule picks from the recorded scores: the best AUROC gap
  # among those within 0.02 nats of the default's NLL, the default on a near tie ...
  keyed = record["candidates"]
  near = [t for t in keyed if keyed[t]["nll_gap"] <= keyed["1"]["nll_gap"] + 0.02]
  best = max(near, key=lambda t: keyed[t]["auroc_gap"])
  expected = 1.0 if keyed[best]["auroc_gap"] <= keyed["1"]["auroc_gap"] + 0.005 else 2.5
  assert record["chosen"] == expected
  # ... and the student returned (and saved) is the one trained at that temperature.
  assert result.report["schedule"]["temperature"]["initial"] == record["chosen"]
  assert result.report["config"]["temperature"] == "choose"
  # Rescore the returned student on the proxy the job built: same numbers.
  x, y = train
  _, val = td.job.runner.early_stopping_split(
      td.datasets.sources.DataSource(x, y, "train"), 0.1, 0)
  rows = choice.proxy_rows(len(x), 0.1, 0)
  np.testing.assert_array_equal(rows, np.sort(val.index))   # all 60 early-stopping rows
  x_out, scale, how = choice.proxy_images(x[rows], None, 0)
  assert record["proxy"]["rows"] == len(rows) == len(val.x)
  assert record["proxy"]["images"] == len(x_out) == 7 * len(rows)
  assert record["proxy"]["nll_against"] == "labels"
  assert (record["proxy"]["pixel_scale"], record["proxy"]["pixel_scale_by"]) == (scale, how)
  assert scale == 1 and how.startswith("their values span [")   # in [0, 1]: read
  ensemble = choice.ensemble_view(result.teacher, result.teacher_family,
                                  result.teacher.predict_targets(x[rows]), x_out)
  score = choice.score_student(result.student, result.family, ensemble, x[rows],
                               x_out, y[rows])
  kept = record["candidates"][f"{record['chosen']:g}"]
  for key in ("student_auroc", "ensemble_auroc", "log_mean_ratio", "nll_gap"):
    np.testing.assert_allclose(score[key], kept[key], atol=1e-4, err_msg=key)
  text = (tmp_path / "run" / "report.md").read_text()
  assert "chosen (temperature='choose')" in text and "| 2.5 |" in text
  # Each candidate's backup is gone once the job is done; nothing named backup is left.
  assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith("backup")]


def test_images_start_end2_at_temperature_1_unless_told(members):
  """The default of image inputs (the seed 3 test of docs/studies/ood-inputs.md); a
  temperature given is used as given."""
  models, train, test = members
  result = td.distill(models, train, test, epochs=4, verbose=0)
  assert choice.IMAGE_TEMPERATURE == 1.0 and result.report["data"]["image_inputs"]
  assert result.report["schedule"]["temperature"]["initial"] == 1.0
  np.testing.assert_array_equal(result.report["history"]["temperature"], [1.0] * 4)
  assert "loss temperature: 1 throughout (the default for image inputs)" in \
      result.report["notes"]
  told = td.distill(models, train, test, epochs=4, temperature=2.5, verbose=0)
  np.testing.assert_allclose(told.report["history"]["temperature"], [2.5, 2.5, 1.75, 1.0])
  assert "(temperature set)" in " ".join(told.report["notes"])


def test_a_killed_choose_run_resumes_each_candidate_from_its_own_backup(members, tmp_path,
                                                                       monkeypatch):
  """Killed after both candidates trained (while the second is scored): each candidate's
  backup (backup_t1, backup_t2.5) holds its finished training, and a resumed run keeps
  the same candidate with the same scores as an uninterrupted run."""
  models, train, test = members
  settings = {"temperature": "choose", "epochs": 3, "verbose": 0}
  full = td.distill(models, train, test, out=tmp_path / "full", **settings)
  real, calls = choice.score_student, []

  def killed_on_the_second(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real(*args, **kwargs)
  monkeypatch.setattr(choice, "score_student", killed_on_the_second)
  with pytest.raises(KeyboardInterrupt):
    td.distill(models, train, test, out=tmp_path / "killed", **settings)
  monkeypatch.setattr(choice, "score_student", real)
  folder = tmp_path / "killed"
  assert (folder / "backup_t1").exists() and (folder / "backup_t2.5").exists()
  assert not (folder / "report.json").exists()
  resumed = td.distill(models, train, test, out=folder, resume=True, **settings)
  assert resumed.report["resumed_from_epoch"] == 3      # restored, not retrained
  got, want = (r.report["temperature_choice"] for r in (resumed, full))
  assert got["chosen"] == want["chosen"]
  for t in want["candidates"]:
    for key in ("student_auroc", "log_mean_ratio", "nll_gap"):
      # The same weights restored: equal up to the float32 sums of the scoring.
      np.testing.assert_allclose(got["candidates"][t][key], want["candidates"][t][key],
                                 rtol=1e-5, atol=1e-6, err_msg=f"{t} {key}")
  assert not [p for p in folder.iterdir() if p.name.startswith("backup")]


def test_choose_refuses_in_one_line_where_there_is_no_proxy(members):
  models, (x, y), _ = members
  flat = x.reshape(len(x), -1)
  tabular = [keras3.Sequential([keras3.Input((SIDE * SIDE,)), keras3.layers.Dense(CLASSES)])
             for _ in range(2)]
  with pytest.raises(td.job.DistillError, match="not images .* set a number"):
    td.distill(tabular, (flat, y), temperature="choose", epochs=1, verbose=0)
  z = np.stack([np.asarray(m(x)) for m in models], 1)
  with pytest.raises(td.job.DistillError, match="needs teacher models"):
    td.distill(z, (x, y), temperature="choose", epochs=1, verbose=0)
  with pytest.raises(td.job.DistillError, match="gaussian-logits has no annealed"):
    td.distill(models, (x, y), method="gaussian-logits", temperature="choose", verbose=0)
  with pytest.raises(td.job.DistillError,
                     match='temperature must be "choose" or a number, got .warm.'):
    td.distill(models, (x, y), temperature="warm", verbose=0)


def test_proxy_images_in_either_pixel_scale():
  x, _ = _bars(30, 2)
  unit, scale, _ = choice.proxy_images(x, None, seed=3)
  raw, scale_raw, _ = choice.proxy_images(x * np.float32(255), None, seed=3)
  assert (scale, scale_raw) == (1, 255)
  assert choice.proxy_images(x * np.float32(255), 255, seed=3)[1:] == (
      255, "the job's image scale")
  assert unit.shape == (7 * 30, SIDE, SIDE, 1) and unit.min() >= 0 and unit.max() <= 1
  # Corrupted in [0, 1] and scaled back: 255 times the unit-scale proxy, to float32
  # rounding of values up to 255.
  np.testing.assert_allclose(raw, 255 * unit, atol=255 * 8 * np.finfo(np.float32).eps)
  expected, _ = image_choice.corruption_proxy(x, seed=3)
  np.testing.assert_allclose(unit, expected, atol=4 * np.finfo(np.float32).eps)
  with pytest.raises(td.job.DistillError, match=r"these span \[-0\.9"):
    choice.proxy_images(2 * x - 1, None, seed=0)
  # The proxy's rows: at most PROXY_ROWS of the early-stopping rows, sorted.
  rows = choice.proxy_rows(20 * choice.PROXY_ROWS, 0.1, seed=0)
  _, val = td.job.runner.early_stopping_split(td.datasets.sources.DataSource(
      np.zeros((20 * choice.PROXY_ROWS, 1), np.float32), None, "train"), 0.1, 0)
  assert len(rows) == choice.PROXY_ROWS and np.all(np.diff(rows) > 0)
  assert np.all(np.isin(rows, val.index))


def test_choose_keeps_the_best_proxy_auroc_unless_near_the_default():
  """The rule of the seeds 4-5 test: the default unless another candidate separates the
  corrupted images more than 0.005 better, within the NLL guard."""
  def score(auroc_gap, nll_gap):
    return {"auroc_gap": auroc_gap, "nll_gap": nll_gap, "log_mean_ratio": 0.0,
            "ood_spearman": 0.5, "student_auroc": 0.8, "ensemble_auroc": 0.8}
  assert choice.choose({1.0: score(0.05, 0.03), 2.5: score(0.06, 0.03)}, 1.0) == 2.5
  assert choice.choose({1.0: score(0.05, 0.03), 2.5: score(0.054, 0.03)}, 1.0) == 1.0
  assert choice.choose({1.0: score(0.05, 0.03), 2.5: score(0.04, 0.03)}, 1.0) == 1.0
  # Better on the proxy, but 0.021 nats worse than the default in NLL: not admissible.
  assert choice.choose({1.0: score(0.05, 0.03), 2.5: score(0.09, 0.051)}, 1.0) == 1.0
  assert choice.choose({1.0: score(0.09, 0.03), 2.5: score(0.05, 0.03)}, 2.5) == 1.0


def test_nll_gap_against_labels_or_the_ensembles_predictions():
  p_ens = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
  p_stu = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
  y = np.array([0, 2])
  expected = np.mean(-np.log([0.5, 0.6])) - np.mean(-np.log([0.7, 0.8]))
  np.testing.assert_allclose(choice.nll_gap(p_stu, p_ens, y), expected, rtol=1e-6)
  kl = np.mean([np.sum(p_ens[i] * np.log(p_ens[i] / p_stu[i])) for i in range(2)])
  np.testing.assert_allclose(choice.nll_gap(p_stu, p_ens), kl, rtol=1e-12)
  assert choice.nll_gap(p_ens, p_ens) == 0.0


def test_an_interrupted_choose_run_names_each_backup(tmp_path):
  """Before: the --resume hint named out/backup, which a choose run never writes."""
  from tfp_distill import cli
  config = td.job.DistillConfig(teacher=("m.keras",), train="t.npz", temperature="choose")
  backups = td.job.runner.backup_names(config)
  assert backups == ("backup_t1", "backup_t2.5")
  assert td.job.runner.backup_names(td.job.DistillConfig(temperature=1.0)) == ("backup",)
  line = cli.failure_line("distill", KeyboardInterrupt(), str(tmp_path), backups)
  assert line == ("tfp-distill distill: interrupted; run the same command with --resume to "
                  "continue from the last finished epoch (the backups in "
                  f"{tmp_path / 'backup_t1'}, {tmp_path / 'backup_t2.5'}).")


def test_a_gaussian_logits_student_of_images_starts_at_the_members_centred_logits(
    members):
  """Image inputs: the gaussian-logits student gets the output normalization by default
  (`td.job.training.NORMALIZED_IMAGE_METHODS`), fitted to the members' K - 1 centred
  logits on the training rows (the early-stopping rows held out). ("off":
  test_distillation_inputs.py.)"""
  models, train, test = members
  result = td.distill(models, train, test, method="gaussian-logits", epochs=1, verbose=0)
  assert result.report["output_normalization"] == {
      "on": True, "how": "auto: gaussian-logits with image inputs"}
  layer = result.student.get_layer("output_normalization")
  x, y = train
  fit, _ = td.job.runner.early_stopping_split(
      td.datasets.sources.DataSource(x, y, "train"), 0.1, 0)
  z = np.stack([np.asarray(m(fit.x)) for m in models], 1)          # [rows, members, K]
  head, _ = result.method.head(result.teacher_family, keras_version=3)
  want = td.parameterization.output_normalization(head, z[..., :-1] - z[..., -1:])
  # float32 logits through two Keras runs (the job's batches, this one's), stored as
  # float32: errors of a few ulps of the logits' magnitude, squared in the variances.
  eps, scale = np.finfo(np.float32).eps, max(1.0, float(np.abs(z).max()))
  for name, expected in zip(("mean", "variance"), want, strict=True):
    got = np.asarray(layer.get_config()[name], np.float64).ravel()
    np.testing.assert_allclose(got, expected, rtol=64 * eps, atol=64 * eps * scale ** 2)
