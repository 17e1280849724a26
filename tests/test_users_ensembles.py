"""Users' ensembles read correctly (td.distill, td.conventions): members trained here as
users write them (Keras 3 and scikit-learn), on small real data sets that ship with
scikit-learn. For each convention the report's ensemble metrics equal an independent
NumPy computation from the members' own outputs, or the job refuses in one line naming
the argument.

Tolerances: the job computes in float32 from outputs the members computed in float32;
the references below recompute in float64 from the same float32 outputs. A mean over
n rows of terms of size s agrees to about n * eps32 * s (eps32 = 1.2e-7); with n <= 600
and the terms here (NLLs and squared errors below ~50) `rtol=1e-4` covers it with room.
Probabilities are floored at td.conventions.PROBABILITY_FLOOR (1e-8) before their log,
which moves no probability by more than K * 1e-8.
"""

import json

import numpy as np
import pytest

import tfp_distill as td

keras = pytest.importorskip("keras")
datasets = pytest.importorskip("sklearn.datasets")

RTOL = 1e-4
FAST = {"epochs": 2, "verbose": 0}


def _split(x, y, seed=0, test=0.3):
  order = np.random.default_rng(seed).permutation(len(x))
  k = int(len(x) * test)
  return (x[order[k:]], y[order[k:]]), (x[order[:k]], y[order[:k]])


def _standard(x):
  return ((x - x.mean(0)) / np.maximum(x.std(0), 1e-12)).astype(np.float32)


@pytest.fixture(scope="module", name="wine")
def wine_fixture():
  x, y = datasets.load_wine(return_X_y=True)
  return _split(_standard(x), y.astype(np.int64))


def _classifier(activation, k, features, seed, epochs=40, x=None, y=None):
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((features,)),
                            keras.layers.Dense(16, activation="relu"),
                            keras.layers.Dense(k, activation=activation)])
  from_logits = activation in (None, "linear")
  if activation == "log_softmax":
    loss = lambda t, p: keras.losses.sparse_categorical_crossentropy(t, p, from_logits=True)
  elif k == 1:
    loss = keras.losses.BinaryCrossentropy(from_logits=from_logits)
  else:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
  model.compile(keras.optimizers.Adam(1e-2), loss)
  model.fit(x, y.astype(np.float32) if k == 1 else y, epochs=epochs, batch_size=32,
            verbose=0)
  return model


def _categorical_reference(probs, y):
  """Accuracy, NLL, Brier, ECE (15 equal-width bins, (lower, upper]) in float64."""
  p = np.asarray(probs, np.float64)
  n, k = p.shape
  confidence, predicted = p.max(1), p.argmax(1)
  correct = (predicted == y).astype(np.float64)
  ece = 0.0
  edges = np.linspace(0, 1, 16)
  for lower, upper in zip(edges[:-1], edges[1:]):
    inside = (confidence > lower) & (confidence <= upper)
    if inside.any():
      ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
  onehot = np.eye(k)[y]
  return {"accuracy": correct.mean(),
          "nll": -np.mean(np.log(np.maximum(p[np.arange(n), y], 1e-12))),
          "brier": np.mean(np.sum((p - onehot) ** 2, 1)), "ece": ece}


def _assert_metrics(report, reference, keys=None):
  for key in keys or reference:
    np.testing.assert_allclose(report[key], reference[key], rtol=RTOL, atol=1e-6,
                               err_msg=key)


def _strict_json(report):
  """report.json must be RFC 8259 JSON: no NaN or Infinity."""
  def refuse(token):
    raise AssertionError(f"non-JSON constant {token} in the report")
  return json.loads(json.dumps(report), parse_constant=refuse)


@pytest.mark.parametrize("activation,kind", [("softmax", "probs"), (None, "logits"),
                                             ("log_softmax", "log-probs")])
def test_multiclass_members_of_every_output_kind(wine, activation, kind):
  """Before: softmax members were read as logits (a wine-like set gave the ensemble NLL
  0.574 where the true value was 0.038). Now the kind is read from the models and the
  outputs, and the ensemble's metrics are the members' own."""
  (x, y), (x_test, y_test) = wine
  members = [_classifier(activation, 3, 13, s, x=x, y=y) for s in range(3)]
  result = td.distill(members, (x, y), (x_test, y_test), **FAST)
  report = _strict_json(result.report)
  outputs = report["conventions"]["outputs"]
  assert outputs["kind"] == kind and outputs["decided_by"] == "outputs", outputs
  raw = np.stack([m.predict(x_test, verbose=0) for m in members], 1).astype(np.float64)
  if kind == "probs":
    probs = raw.mean(1)
  else:
    e = np.exp(raw - raw.max(-1, keepdims=True))
    probs = (e / e.sum(-1, keepdims=True)).mean(1)
  _assert_metrics(report["ensemble"], _categorical_reference(probs, y_test))
  assert report["ensemble"]["nll"] < 0.3            # a good ensemble, read right
  assert report["conventions"]["ensemble_check"]["at_chance"] is False


def test_a_given_convention_that_contradicts_the_outputs_is_refused(wine):
  (x, y), _ = wine
  members = [_classifier("softmax", 3, 13, s, epochs=5, x=x, y=y) for s in range(2)]
  with pytest.raises(td.job.DistillError, match=r"--teacher-output log-probs, but member 0"
                     r"'s outputs are not log-probabilities"):
    td.distill(members, (x, y), teacher_output="log-probs", **FAST)
  # Read as logits on purpose: the user said so, and the report says the user did.
  result = td.distill(members, (x, y), teacher_output="logits", **FAST)
  assert result.report["conventions"]["outputs"]["decided_by"] == "argument"


@pytest.fixture(scope="module", name="cancer")
def cancer_fixture():
  x, y = datasets.load_breast_cancer(return_X_y=True)
  return _split(_standard(x), y.astype(np.int64))


@pytest.mark.parametrize("activation,kind", [("sigmoid", "sigmoid"), (None, "logit")])
def test_binary_members_with_one_output(cancer, activation, kind):
  (x, y), (x_test, y_test) = cancer
  members = [_classifier(activation, 1, 30, s, epochs=15, x=x, y=y) for s in range(3)]
  result = td.distill(members, (x, y), (x_test, y_test), **FAST)
  report = _strict_json(result.report)
  assert report["conventions"]["outputs"]["kind"] == kind
  assert report["family"]["config"]["num_classes"] == 2
  out = np.stack([m.predict(x_test, verbose=0)[:, 0] for m in members], 1)
  p1 = out if kind == "sigmoid" else 1 / (1 + np.exp(-out.astype(np.float64)))
  p1 = np.clip(p1, 1e-8, 1 - 1e-8).mean(1)
  _assert_metrics(report["ensemble"],
                  _categorical_reference(np.stack([1 - p1, p1], 1), y_test))


def test_precomputed_probabilities_with_certain_rows_from_scikit_learn(cancer, tmp_path):
  """Before: any test example with exactly zero ensemble uncertainty (members that all
  say probability 1.0) crashed the report after training ("`reference` must have no
  zero entries"), and nothing was written."""
  ensemble_lib = pytest.importorskip("sklearn.ensemble")
  (x, y), (x_test, y_test) = cancer
  forests = [ensemble_lib.RandomForestClassifier(n_estimators=20, random_state=s)
             .fit(x, y) for s in range(3)]
  z = np.stack([f.predict_proba(x) for f in forests], 1).astype(np.float32)
  z_test = np.stack([f.predict_proba(x_test) for f in forests], 1).astype(np.float32)
  certain = np.all(z_test.max(-1) == 1.0, axis=1)
  assert certain.sum() > 10                  # rows where every member says 1.0
  result = td.distill({"train": z, "test": z_test}, (x, y), (x_test, y_test),
                      out=tmp_path / "run", **FAST)
  report = _strict_json(json.loads((tmp_path / "run" / "report.json").read_text()))
  assert report["conventions"]["outputs"]["kind"] == "probs"
  reference = _categorical_reference(z_test.mean(1), y_test)
  _assert_metrics(report["ensemble"], reference, ["accuracy", "nll", "brier"])
  # Three forests of 20 trees give probabilities in multiples of 1/60, and the 15 ECE
  # bins have edges at multiples of 4/60: rows sit exactly on edges, where float32 or
  # float64 rounding decides their bin. Moving a row between adjacent bins changes the
  # ECE by at most 2/n; a handful of rows move.
  assert abs(report["ensemble"]["ece"] - reference["ece"]) <= 10 / len(y_test)
  epistemic = report["fidelity"]["epistemic"]
  assert epistemic["n"] == len(x_test) and 0 <= epistemic["sym_relative_error"] <= 1
  assert result.report["speed"] is None        # no teacher model to time


# ---------------------------------------------------------------------------------------
# Regression.


@pytest.fixture(scope="module", name="diabetes")
def diabetes_fixture():
  """Targets of standard deviation 3: the members' variances (about 4) are where the
  readings differ (for variances much above 10, softplus(s) = s to float precision and
  for variances much below 1 softplus(s) = exp(s): those readings are then the same,
  and the job says so)."""
  x, y = datasets.load_diabetes(return_X_y=True)
  return _split(_standard(x), 3 * _standard(y))


def _gaussian_nll(convention):
  """A Keras 3 loss for members giving [mu, s] with s read by `convention`."""
  ops = keras.ops

  def variance(s):
    return {"log-variance": ops.exp(s), "softplus": ops.softplus(s) + 1e-3,
            "variance": s}[convention]

  def loss(y_true, out):
    mu, s = out[:, :1], out[:, 1:]
    var = variance(s)
    return ops.mean(0.5 * ops.log(var) + 0.5 * ops.square(y_true - mu) / var)
  return loss


def _regressor(convention, seed, x, y):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((x.shape[1],))
  h = keras.layers.Dense(32, activation="relu")(inputs)
  mu = keras.layers.Dense(1)(h)
  # A variance output must be positive: a softplus activation keeps it so.
  s = keras.layers.Dense(1, activation="softplus" if convention == "variance" else None,
                         bias_initializer=keras.initializers.Constant(
                             {"variance": 4.0, "log-variance": 1.4,
                              "softplus": 4.0}[convention]))(h)
  model = keras.Model(inputs, keras.layers.Concatenate()([mu, s]))
  # Adam at 1e-2, not 3e-2: at 3e-2 the members fitted their 310 training rows so
  # closely that their variances there shrank towards where the readings agree, and the
  # likelihood evidence for log-variance sat at 3.0 standard errors, on the job's
  # threshold, where one CPU's rounding over 40 epochs decided the test (failed on an
  # AMD EPYC: 2.97). At 1e-2 it is 5.0 (measured, the same members otherwise).
  model.compile(keras.optimizers.Adam(1e-2), _gaussian_nll(convention))
  model.fit(x, y[:, None], epochs=40, batch_size=32, verbose=0)
  return model


def _mixture_nll(mu, var, y):
  """NLL of y [n] under the members' equal mixture of N(mu, var) [n, M], float64."""
  log_n = -0.5 * (np.log(2 * np.pi * var) + (y[:, None] - mu) ** 2 / var)
  top = log_n.max(1, keepdims=True)
  return float(-np.mean(top[:, 0] + np.log(np.exp(log_n - top).mean(1))))


@pytest.mark.slow
@pytest.mark.parametrize("convention", ["log-variance", "softplus", "variance"])
def test_two_output_regressors_of_every_variance_convention(diabetes, convention):
  """Before: log-variance members were read as softplus (the aleatoric variance came out
  42% too low, the NLL wrong). Now the convention with the highest likelihood of the
  labelled training rows is chosen, and the report's NLL is the members' own."""
  (x, y), (x_test, y_test) = diabetes
  members = [_regressor(convention, s, x, y) for s in range(3)]
  result = td.distill(members, (x, y), (x_test, y_test), **FAST)
  report = _strict_json(result.report)
  outputs = report["conventions"]["outputs"]
  assert outputs["decided_by"] == "likelihood", outputs
  assert outputs["kind"] == convention or (
      "give the same variances" in outputs["reason"] and convention in outputs["reason"])
  out = np.stack([m.predict(x_test, verbose=0) for m in members], 1).astype(np.float64)
  mu, s = out[..., 0], out[..., 1]
  var = {"log-variance": np.exp(s), "softplus": np.logaddexp(0, s) + 1e-3,
         "variance": s}[convention]
  np.testing.assert_allclose(report["ensemble"]["nll"], _mixture_nll(mu, var, y_test),
                             rtol=RTOL)
  np.testing.assert_allclose(report["ensemble"]["rmse"],
                             np.sqrt(np.mean((mu.mean(1) - y_test) ** 2)), rtol=RTOL)


@pytest.mark.slow
def test_point_prediction_members(diabetes):
  """Before: one-output members (trained with MSE) were refused with no way forward."""
  (x, y), (x_test, y_test) = diabetes
  members = []
  for seed in range(3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    members.append(model)
  result = td.distill(members, (x, y), (x_test, y_test), **FAST)
  report = _strict_json(result.report)
  outputs = report["conventions"]["outputs"]
  assert outputs["kind"] == "point" and "too small if the members trained" in outputs[
      "reason"]
  mu = np.stack([m.predict(x_test, verbose=0)[:, 0] for m in members], 1).astype(
      np.float64)
  np.testing.assert_allclose(report["ensemble"]["rmse"],
                             np.sqrt(np.mean((mu.mean(1) - y_test) ** 2)), rtol=RTOL)
  noise = outputs["noise_variance"][0]
  # The job's estimate, recomputed: residuals of the mean minus the members' spread on
  # the evidence rows of train (all of them here: fewer than 2048).
  mu_train = np.stack([m.predict(x, verbose=0)[:, 0] for m in members], 1).astype(
      np.float64)
  expected = np.mean((y - mu_train.mean(1)) ** 2) - np.mean(mu_train.var(1))
  np.testing.assert_allclose(noise, expected, rtol=RTOL)
  np.testing.assert_allclose(report["ensemble"]["nll"], _mixture_nll(
      mu, np.full_like(mu, noise), y_test), rtol=RTOL)
  # The ensemble's epistemic part is the members' spread, its aleatoric the noise.
  u = td.predict_uncertainty(result.teacher, result.teacher_family, x_test)
  np.testing.assert_allclose(u["epistemic"], mu.var(1), rtol=1e-3, atol=1e-3)
  np.testing.assert_allclose(u["aleatoric"], noise, rtol=1e-4)
  with pytest.raises(td.job.DistillError, match="noise_variance must be"):
    td.distill(members, (x, y), noise_variance=-1.0, **FAST)


def test_a_variance_convention_too_close_to_call_is_refused():
  """Rows whose evidence splits between two readings that give different variances: a
  variance (s2 = s = 2) and a softplus (s2 = softplus(2) + 1e-3 = 2.128). Per row the NLL
  difference is 0.031 - 0.015 r^2, which averages to 0 over squared residuals of 0.2
  and 3.92, and both readings are calibrated (mean r^2 / s2 = 1.03 and 0.97, standard
  errors near 0.5): one line naming --variance and both readings."""
  r = np.sqrt([0.2, 3.92, 0.2, 3.92]) * np.array([1, 1, -1, -1])
  y = np.arange(4.0)
  z = np.zeros((4, 2, 2))
  z[..., 0] = (y + r)[:, None]
  z[..., 1] = 2.0
  with pytest.raises(td.conventions.ConventionError,
                     match=r"read as (variance|softplus) .* read as (variance|softplus) .*"
                           r"Pass --variance \S+ or --variance \S+\.$"):
    td.conventions.detect_regression(z, y)


# ---------------------------------------------------------------------------------------
# Images, written the Keras-tutorial way: raw 0-255 pixels, Rescaling(1/255) inside.


@pytest.fixture(scope="module", name="digits")
def digits_fixture(tmp_path_factory):
  """scikit-learn's 8x8 digits as PNG files in one folder per class (0-255 pixels)."""
  import tensorflow as tf
  images, labels = datasets.load_digits(return_X_y=True)
  images = np.round(images.reshape(-1, 8, 8, 1) * (255.0 / 16.0)).astype(np.uint8)
  root = tmp_path_factory.mktemp("digits")
  for split, rows in (("train", range(0, 1400)), ("test", range(1400, 1797))):
    for i in rows:
      folder = root / split / f"digit_{labels[i]}"
      folder.mkdir(parents=True, exist_ok=True)
      (folder / f"{i}.png").write_bytes(tf.io.encode_png(images[i]).numpy())
  return root, images.astype(np.float32), labels.astype(np.int64)


def _image_member(seed, rescale, x, y):
  keras.utils.set_random_seed(seed)
  layers = [keras.Input((8, 8, 1))]
  if rescale:
    layers.append(keras.layers.Rescaling(1.0 / 255))
  layers += [keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
             keras.layers.Dense(10)]
  model = keras.Sequential(layers)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x if rescale else x / 255.0, y, epochs=15, batch_size=64, verbose=0)
  return model


def _digit_probs(members, x):
  logits = np.stack([m.predict(x, verbose=0) for m in members], 1).astype(np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).mean(1)


def test_image_members_get_the_pixels_they_expect(digits):
  """Before: members with Rescaling(1/255) inside were fed [0, 1] pixels, and the report
  showed a chance-level "ensemble" (accuracy 0.17 against a true 0.98) and distilled it.
  Now the folder is read raw (as Keras reads it) and the members' first layer says which
  scale they take; the built-in student fits 8x8 images and rescales for itself."""
  root, images, labels = digits
  members = [_image_member(s, True, images[:1400], labels[:1400]) for s in range(2)]
  result = td.distill(members, str(root / "train"), str(root / "test"), **FAST)
  report = _strict_json(result.report)
  image = report["conventions"]["image_scale"]
  assert image["scale"] == "raw" and "first layer" in image["decided_by"], image
  # The folder's class order: digit_0 .. digit_9, as the members number them.
  _assert_metrics(report["ensemble"], _categorical_reference(
      _digit_probs(members, images[1400:]), labels[1400:]))
  assert report["ensemble"]["accuracy"] > 0.85
  assert report["student_model"] == "builtin:small_cnn"


def test_image_members_without_a_scaling_layer(digits):
  """Members trained on [0, 1] pixels with no layer that says so: a ReLU network ranks
  classes alike at any input scale (the accuracies tie) but is far more confident at 255
  times its inputs, so the evidence cannot decide and the job asks for --image-scale;
  given, the ensemble is the members' own."""
  root, images, labels = digits
  members = [_image_member(s, False, images[:1400], labels[:1400]) for s in range(2)]
  with pytest.raises(td.job.DistillError, match=r"input scale cannot be told.*Pass "
                     r"--image-scale raw or --image-scale unit\.$"):
    td.distill(members, str(root / "train"), **FAST)
  result = td.distill(members, str(root / "train"), str(root / "test"), image_scale="unit",
                      **FAST)
  assert result.report["conventions"]["image_scale"]["decided_by"] == "argument"
  _assert_metrics(result.report["ensemble"], _categorical_reference(
      _digit_probs(members, images[1400:] / 255.0), labels[1400:]))


def test_an_ensemble_at_chance_stops_before_training(digits, tmp_path):
  root, images, labels = digits
  members = [_image_member(s, True, images[:1400], labels[:1400]) for s in range(2)]
  with pytest.raises(td.job.DistillError, match=r"The ensemble is at chance level: "
                     r"accuracy .* check --image-scale"):
    td.distill(members, str(root / "train"), image_scale="unit", out=tmp_path / "o",
               **FAST)
  assert not (tmp_path / "o" / "student.keras").exists()
  result = td.distill(members, str(root / "train"), image_scale="unit", force=True, **FAST)
  assert "the ensemble itself is at chance level" in result.report["verdict"]["summary"]


# ---------------------------------------------------------------------------------------
# Data files.


def test_csv_classification_with_class_names_and_no_header(wine, tmp_path):
  """Before: classification from a CSV was impossible (labels read as floats) and a CSV
  without a header lost its first row."""
  (x, y), (x_test, y_test) = wine
  names = np.array(["barolo", "grignolino", "barbera"])
  members = [_classifier(None, 3, 13, s, x=x, y=y) for s in range(2)]
  for part, (xs, ys) in (("train", (x, y)), ("test", (x_test, y_test))):
    with open(tmp_path / f"{part}.csv", "w") as f:
      for row, label in zip(xs, ys):
        f.write(",".join(f"{v:.6f}" for v in row) + f",{names[label]}\n")
  result = td.distill(members, str(tmp_path / "train.csv"), str(tmp_path / "test.csv"),
                      classes=list(names), **FAST)
  report = result.report
  assert report["task"] == "classification"
  assert report["data"]["sizes"]["test"] == len(x_test)       # no row lost to a header
  logits = np.stack([m.predict(x_test, verbose=0) for m in members], 1).astype(np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  _assert_metrics(report["ensemble"],
                  _categorical_reference((e / e.sum(-1, keepdims=True)).mean(1), y_test))
  # Whole-number float labels are class labels when the members classify them.
  result = td.distill(members, (x, y.astype(np.float32)), **FAST)
  assert result.report["task"] == "classification"
  assert "whole-number labels" in result.report["conventions"]["task"]["decided_by"]


def test_speed_ups_of_any_size_print_right():
  from tfp_distill import report as report_lib
  assert [report_lib._times(r) for r in (0.0451, 0.245, 3.81, 12.44, 128.2)] == [
      "0.0451x", "0.245x", "3.81x", "12.4x", "128x"]


def test_distill_returns_the_result_and_saves_the_folder(wine, tmp_path):
  (x, y), (x_test, y_test) = wine
  members = [_classifier(None, 3, 13, s, x=x, y=y) for s in range(2)]
  result = td.distill(td.Ensemble(members), (x, y), (x_test, y_test), method="dirichlet",
                      **FAST)
  assert result.method.name == "end2"                       # the alias resolves
  u = result.predict_uncertainty(x_test)
  assert u["prediction"].shape == (len(x_test), 3) and u["epistemic"].shape == (len(x_test),)
  files = result.save(tmp_path / "run")
  for name in files.values():
    assert (tmp_path / "run" / name).exists(), name
  saved = json.loads((tmp_path / "run" / "report.json").read_text())
  assert saved["method"] == "end2" and saved["verdict"] == _strict_json(
      result.report)["verdict"]


def test_two_target_point_regressors():
  """Several targets: members giving two point predictions per row; the report's RMSE
  and NLL (a mixture of diagonal Normals over both targets) are the members' own."""
  rng = np.random.default_rng(0)
  x = rng.uniform(-2, 2, (300, 3)).astype(np.float32)
  y = (np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], 1)
       + 0.1 * rng.normal(size=(300, 2))).astype(np.float32)
  (x, y), (x_test, y_test) = _split(x, y)
  members = []
  for seed in range(2):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(32, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    members.append(model)
  report = _strict_json(td.distill(members, (x, y), (x_test, y_test), **FAST).report)
  assert report["conventions"]["outputs"]["kind"] == "point"
  assert report["family"]["config"]["event_size"] == 2
  mu = np.stack([m.predict(x_test, verbose=0) for m in members], 1).astype(np.float64)
  noise = np.asarray(report["conventions"]["outputs"]["noise_variance"])
  np.testing.assert_allclose(report["ensemble"]["rmse"],
                             np.sqrt(np.mean((mu.mean(1) - y_test) ** 2)), rtol=RTOL)
  log_n = -0.5 * (np.log(2 * np.pi * noise) + (y_test[:, None] - mu) ** 2 / noise).sum(-1)
  top = log_n.max(1, keepdims=True)
  nll = -np.mean(top[:, 0] + np.log(np.exp(log_n - top).mean(1)))
  np.testing.assert_allclose(report["ensemble"]["nll"], nll, rtol=RTOL)
  assert np.isfinite(report["student"]["nll"])
