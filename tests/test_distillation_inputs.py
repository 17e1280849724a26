"""The inputs the teacher labels for the student in td.distill (extra_inputs, aux) and
the report's synthetic far points."""

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill._keras import keras
from tfp_distill.job import config as config_lib

FAST = {"epochs": 2, "verbose": 0}


def test_extra_inputs_specs_parse_or_name_the_problem():
  assert config_lib.parse_extra_inputs("auto") == "auto"
  assert config_lib.parse_extra_inputs("none") == []
  assert config_lib.parse_extra_inputs("mixup+far:0.5") == [("mixup", None), ("far", 0.5)]
  assert config_lib.parse_extra_inputs("jitter+marginal:2") == [("jitter", None),
                                                                 ("marginal", 2.0)]
  with pytest.raises(td.job.DistillError, match="'noise' is not a kind of input"):
    config_lib.parse_extra_inputs("mixup+noise")
  with pytest.raises(td.job.DistillError, match="the share after far: must be a number"):
    config_lib.parse_extra_inputs("far:-1")


@pytest.fixture(scope="module", name="job")
def job_fixture():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 300)
  centres = rng.normal(size=(3, 4)) * 3
  x = (centres[y] + rng.normal(size=(300, 4))).astype(np.float32)
  members = [td.models.mlp((4,), [16], 3, seed=s) for s in range(3)]
  for m in members:
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=10, verbose=0)
  return members, x, y


def test_mixed_inputs_aux_and_far_points(job):
  members, x, y = job
  aux = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32) * 5
  result = td.distill(members, (x, y), extra_inputs="mixup+far:0.5", aux=aux, **FAST)
  report = result.report
  sizes = report["data"]["sizes"]
  assert report["data"]["extra_inputs"] == "mixup+far+aux"
  # mixup: one per training row; far: half as many; aux: all its rows.
  assert sizes["extra_inputs"] == sizes["train"] + round(0.5 * sizes["train"]) + 50
  # No --ood and tabular inputs: the report's far points, at each distance.
  assert sorted(report["far"]) == ["0", "1", "3"]
  for block in report["far"].values():
    assert 0 <= block["ensemble"]["auroc"] <= 1 and 0 <= block["student"]["auroc"] <= 1
    assert block["fidelity"]["n"] == sizes["test"]
  with_ood = td.distill(members, (x, y), ood=aux, extra_inputs="none", **FAST).report
  assert with_ood["far"] == {} and with_ood["data"]["extra_inputs"] == "none"
  with pytest.raises(td.job.DistillError, match="aux .* shape"):
    td.distill(members, (x, y), aux=aux[:, :3], **FAST)


def test_marginal_inputs_in_a_job(job):
  members, x, y = job
  report = td.distill(members, (x, y), extra_inputs="mixup+marginal:0.5", **FAST).report
  sizes = report["data"]["sizes"]
  assert report["data"]["extra_inputs"] == "mixup+marginal"
  assert sizes["extra_inputs"] == sizes["train"] + round(0.5 * sizes["train"])


def test_a_misfit_found_when_the_members_run_is_one_line_too():
  """Members whose graph was traced for a relaxed input shape fail when they run, with
  TensorFlow's multi-line InvalidArgumentError (seen on one CI CPU): the job says in one
  line that the inputs do not fit, naming the data, its shape and TensorFlow's first line."""
  import tensorflow as tf
  from tfp_distill.job import reading

  def members(x):
    raise tf.errors.InvalidArgumentError(
        None, None, "Matrix size-incompatible: In[0]: [2,3], In[1]: [4,16]\n\t [[node]]")

  part = td.datasets.sources.DataSource(np.zeros((5, 3), np.float32), None, "aux.npz")
  with pytest.raises(td.job.DistillError) as error:
    reading.check_inputs_fit(members, part, "aux")
  message = str(error.value)
  assert message == ("--aux aux.npz: inputs of shape [3] do not fit the members: Matrix "
                     "size-incompatible: In[0]: [2,3], In[1]: [4,16]")


def test_output_normalization_comes_from_the_training_rows_alone():
  """Far inputs, where the members' extrapolations spread widely, do not change where a
  regression student's params start: that comes from the training rows (the split is
  drawn before the extra inputs, so it is the same); its input normalization covers
  every input it is trained on."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5]) + 5).astype(np.float32)
  members = []
  for s in range(3):
    member = td.models.mlp((3,), [16], 2, seed=s)
    member.compile(keras.optimizers.Adam(1e-2), "mse")
    member.fit(x, np.stack([y, np.zeros_like(y)], 1), epochs=40, verbose=0)
    members.append(member)
  weights = {}
  for spec in ("jitter", "jitter+far:2"):
    student = td.distill(members, (x, y), extra_inputs=spec, task="regression",
                         variance="softplus", epochs=1, verbose=0).student
    # Keras 3's Normalization keeps a given mean and variance in its config.
    weights[spec] = {layer.name: [np.asarray(layer.get_config()[k], np.float32)
                                  for k in ("mean", "variance")]
                     for layer in student.layers
                     if layer.name in ("input_normalization", "output_normalization")}
  assert sorted(weights["jitter"]) == ["input_normalization", "output_normalization"]
  for a, b in zip(weights["jitter"]["output_normalization"],
                  weights["jitter+far:2"]["output_normalization"], strict=True):
    np.testing.assert_array_equal(a, b)
  # Far inputs of 1 to 4 feature sd widen the inputs' variance.
  assert np.all(weights["jitter+far:2"]["input_normalization"][1] >
                weights["jitter"]["input_normalization"][1])


def test_an_image_regression_student_starts_at_its_targets_location_too():
  """Before: builtin:small_cnn (the image student) dropped the output normalization the
  job computed, so an image regressor's student started near 0 in targets of a user's
  units (here around 50) and learned them slowly."""
  rng = np.random.default_rng(0)
  brightness = rng.uniform(size=(96, 1, 1, 1))
  x = np.clip(brightness + 0.05 * rng.normal(size=(96, 8, 8, 1)), 0, 1).astype(np.float32)
  y = (50.0 + 20.0 * brightness.ravel()).astype(np.float32)
  members = []
  for s in range(2):
    member = td.models.small_cnn((8, 8, 1), 2, filters=(4,), dense_units=8, seed=s)
    member.compile(keras.optimizers.Adam(1e-2), "mse")
    member.fit(x, np.stack([y, np.zeros_like(y)], 1), epochs=80, verbose=0)
    members.append(member)
  result = td.distill(members, (x, y), (x[:16], y[:16]), task="regression",
                      variance="softplus", method="diagonal", extra_inputs="none",
                      epochs=1, verbose=0)
  layers = {layer.name: layer for layer in result.student.layers}
  assert "output_normalization" in layers
  mean = np.asarray(layers["output_normalization"].get_config()["mean"], np.float64)
  # The location's start is the members' mean output over the rows the student fits
  # (the job holds some out for early stopping), here about 60 (0 before).
  fit, _ = td.job.runner.early_stopping_split(
      td.datasets.sources.DataSource(x, y, "train"), 0.1, 0)
  z = np.stack([np.asarray(m(fit.x))[:, 0] for m in members], 1)   # [rows, members]
  tolerance = 64 * np.finfo(np.float32).eps * np.abs(z).max()     # float32 outputs
  np.testing.assert_allclose(mean.ravel()[0], z.mean(), rtol=0, atol=tolerance)


@pytest.mark.parametrize("setting,image_inputs", [("auto", False), ("auto", True),
                                                   ("on", False), ("off", True)])
def test_output_normalization_of_a_gaussian_logits_student(setting, image_inputs):
  """gaussian-logits: the normalization of the members' K - 1 centred logits
  (`td.parameterization.output_normalization`), when set, or by default for images
  (`NORMALIZED_IMAGE_METHODS`, by the test on the OOD study page); never on tabular
  rows by default."""
  from tfp_distill.job import training
  on = setting == "on" or (setting == "auto" and image_inputs
                           and "gaussian-logits" in training.NORMALIZED_IMAGE_METHODS)
  rng = np.random.default_rng(0)
  family = td.families.CategoricalLogits(4)
  method = td.methods.get("gaussian-logits", "classification")
  head, _ = method.head(family, keras_version=3)
  z = (rng.normal(size=(50, 3, 4)) * 5 + np.array([3.0, -1.0, 0.5, 2.0])).astype(np.float32)
  config = td.job.DistillConfig(output_normalization=setting)
  got, how = training.output_normalization_for(config, method, family, head, z,
                                               image_inputs)
  assert (got is not None) == on, how
  if on:
    centred = z[..., :-1] - z[..., -1:]
    want = td.parameterization.output_normalization(head, centred)
    for a, b in zip(got, want, strict=True):
      np.testing.assert_array_equal(a, b)


def test_output_normalization_on_a_dirichlet_student_is_refused_and_off_by_default():
  from tfp_distill.job import training
  family = td.families.CategoricalLogits(3)
  method = td.methods.get("end2", "classification")
  head, _ = method.head(family, keras_version=3)
  z = np.zeros((10, 2, 3), np.float32)
  for image_inputs in (False, True):
    got, how = training.output_normalization_for(td.job.DistillConfig(), method, family,
                                                 head, z, image_inputs)
    assert got is None and how.startswith("auto: off for end2")
  with pytest.raises(td.job.DistillError, match=r"^output_normalization='on': end2's "
                     r"student has no Normal head over the members' outputs to start at "
                     r"their location \(its head is a DirichletHead\)"):
    training.output_normalization_for(td.job.DistillConfig(output_normalization="on"),
                                      method, family, head, z, False)
  with pytest.raises(td.job.DistillError, match="output_normalization must be one of "
                     "auto, on, off, got 'yes'"):
    td.job.check_config(td.job.DistillConfig(teacher=("m.keras",), train="t.npz",
                                              output_normalization="yes"))


def test_output_normalization_in_a_job_says_what_it_did(job):
  """`output_normalization="on"` for a gaussian-logits student of tabular rows: the
  student has the layer, and the report and the log say so; by default it has none."""
  members, x, y = job
  result = td.distill(members, (x, y), method="gaussian-logits",
                      output_normalization="on", **FAST)
  assert "output_normalization" in [layer.name for layer in result.student.layers]
  assert result.report["output_normalization"] == {"on": True, "how": "on"}
  assert any(note.startswith("output normalization: on (on): the student's params start")
             for note in result.report["notes"])
  result = td.distill(members, (x, y), method="gaussian-logits", **FAST)
  assert "output_normalization" not in [layer.name for layer in result.student.layers]
  assert result.report["output_normalization"] == {
      "on": False, "how": "auto: off for gaussian-logits with tabular inputs"}
  # "on" for the default classification student (EnD^2, a Dirichlet): refused before
  # the teacher's targets are made.
  with pytest.raises(td.job.DistillError, match="output_normalization='on': end2's"):
    td.distill(members, (x, y), output_normalization="on", **FAST)


def test_inputs_off_the_data_get_the_longer_schedule():
  """With min_steps left out, far, box or aux inputs plan OFF_DATA_MIN_STEPS steps (the
  OOD study's regression students were unconverged at the shorter plan); a given
  min_steps or epochs is kept as it is."""
  from tfp_distill.job import training
  assert not training.off_data("none") and not training.off_data("mixup")
  assert not training.off_data("jitter")
  assert training.off_data("jitter+box") and training.off_data("mixup+far")
  assert training.off_data("aux") and training.off_data("mixup+aux")
  assert training.off_data("jitter+marginal")
  n_fit, batch = 1000, 100          # 10 steps a pass, 5 passes (50 steps) an epoch
  config = config_lib.DistillConfig(teacher=("m.keras",), train="t.npz", batch_size=batch)
  for off, steps in ((False, config_lib.DEFAULT_MIN_STEPS),
                     (True, config_lib.OFF_DATA_MIN_STEPS)):
    epochs, passes, _, how = training.schedule(config, n_fit, off)
    assert passes == 5 and epochs == steps // 50, (epochs, passes)
    assert f"at least {steps} steps" in how
  assert "off the data" in training.schedule(config, n_fit, True)[3]
  given = config_lib.DistillConfig(teacher=("m.keras",), train="t.npz", batch_size=batch,
                                   min_steps=2000)
  assert training.schedule(given, n_fit, True)[0] == 40
  given = config_lib.DistillConfig(teacher=("m.keras",), train="t.npz", epochs=7)
  assert training.schedule(given, n_fit, True)[0] == 7


@pytest.mark.slow
def test_the_report_says_which_schedule_far_inputs_got(job):
  members, x, y = job
  report = td.distill(members, (x, y), extra_inputs="mixup+far:0.25", patience=1,
                      verbose=0).report
  how = report["schedule"]["how"]
  assert f"at least {config_lib.OFF_DATA_MIN_STEPS} steps (inputs off the data" in how
