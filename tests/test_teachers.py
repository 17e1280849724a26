"""Teachers from anywhere: Keras 3 and tf_keras models, files, SavedModels, callables, and
precomputed outputs."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
import tolerance
from tfp_distill import teachers
from tfp_distill._keras import keras

keras3 = pytest.importorskip("keras")


def _keras3_member(seed, outputs=3):
  keras3.utils.set_random_seed(seed)
  inputs = keras3.Input((4,))
  hidden = keras3.layers.Dense(8, activation="relu")(inputs)
  return keras3.Model(inputs, keras3.layers.Dense(outputs)(hidden), name=f"k3_{seed}")


def _tf_keras_member(seed, outputs=3):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(4,)),
                           keras.layers.Dense(outputs)], name=f"tk_{seed}")


X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
# The members' rounding: Dense(8) on 4 features (a 4-term dot product and a bias: 6 eps),
# a ReLU (4), Dense(3) on 8 (10): 20 eps of the outputs' magnitude between two
# evaluations of the same weights (another kernel, a graph, a SavedModel).
MEMBER_ULPS = 20


def _same(got, want, ulps=MEMBER_ULPS, scale=None):
  tolerance.assert_close(got, want, dtype=np.float32, ulps=ulps, scale=scale)


def test_keras3_tf_keras_and_callable_members_in_one_ensemble():
  k3, tk = _keras3_member(0), _tf_keras_member(1)
  weights = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)

  def linear(x):
    return tf.matmul(x, weights)

  ensemble = td.Ensemble([k3, tk, linear], family=td.families.CategoricalLogits(3))
  z = ensemble(X).numpy()
  assert z.shape == (6, 3, 3)
  _same(z[:, 0], np.asarray(k3(X)))
  _same(z[:, 1], tk(X).numpy())
  # A 4-term dot product: 5 eps of sum |x_i w_i|.
  _same(z[:, 2], X @ weights, ulps=5, scale=np.abs(X) @ np.abs(weights))
  # Inside a tf.data map too (the teacher-in-the-pipeline path).
  streamed = next(iter(td.teacher_targets(X, ensemble, batch_size=6, shuffle=False)))
  _same(streamed[1].numpy(), z)
  assert not ensemble.vectorized and "Keras 3 model" in ensemble.vectorize_reason
  with pytest.raises(td.vectorized.NotVectorizableError, match="member 1 is a tf_keras"):
    td.Ensemble([k3, tk], vectorize=True)
  # Keras 3 members of one architecture stack (td.keras3.vectorized).
  pair = [k3, _keras3_member(1)]
  stacked = td.Ensemble(pair, vectorize=True)
  assert stacked.vectorized
  # One batched matmul per layer against one per member (MEMBER_ULPS).
  _same(stacked(X).numpy(), np.stack([np.asarray(m(X)) for m in pair], axis=1))
  u = td.predict_uncertainty(ensemble, td.families.CategoricalLogits(3), X)
  assert u["epistemic"].shape == (6,) and np.all(u["epistemic"] >= -1e-6)


def test_from_files_reads_either_keras_and_saved_models(tmp_path):
  k3, tk = _keras3_member(3), _tf_keras_member(4)
  k3.save(tmp_path / "k3.keras")
  tk.save(tmp_path / "tk.keras")
  exported = _keras3_member(5)
  exported.export(str(tmp_path / "k3_saved_model"), verbose=False)

  class Linear(tf.Module):
    def __init__(self):
      super().__init__()
      self.w = tf.Variable(np.eye(4, 3, dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
      return tf.matmul(x, self.w)

  tf.saved_model.save(Linear(), str(tmp_path / "module"), signatures={})   # its __call__
  paths = [tmp_path / "k3.keras", tmp_path / "tk.keras", tmp_path / "k3_saved_model",
           tmp_path / "module"]
  ensemble = td.Ensemble.from_files(paths)
  assert teachers.describe(ensemble.members[0]).startswith("Keras 3 model")
  assert teachers.describe(ensemble.members[1]).startswith("tf_keras model")
  assert ensemble.members[2].signature == "serving_default"
  assert ensemble.members[3].signature is None
  z = ensemble(X).numpy()
  for i, expected in enumerate([np.asarray(k3(X)), tk(X).numpy(), np.asarray(exported(X)),
                                X @ np.eye(4, 3)]):
    _same(z[:, i], expected)
  # An ensemble of Keras 3 members saves and loads (each member by its own Keras).
  td.Ensemble([k3, tk]).save(str(tmp_path / "saved"))
  again = td.Ensemble.from_files([str(tmp_path / "saved")])
  _same(again(X).numpy(), z[:, :2])
  with pytest.raises(ValueError, match="member 2 is a SavedModel"):
    ensemble.save(str(tmp_path / "nope"))


def test_bad_teacher_files_name_the_file(tmp_path):
  missing = tmp_path / "missing.keras"
  with pytest.raises(teachers.TeacherError, match="missing.keras does not exist"):
    td.Ensemble.from_files([missing])
  text = tmp_path / "notes.keras"
  text.write_text("not a model")
  with pytest.raises(teachers.TeacherError, match="notes.keras is not a Keras model file"):
    td.Ensemble.from_files([text])
  other = tmp_path / "weights.h5"
  other.write_bytes(b"\0")
  with pytest.raises(teachers.TeacherError, match="weights.h5 is not a teacher model"):
    td.Ensemble.from_files([other])
  folder = tmp_path / "folder"
  folder.mkdir()
  with pytest.raises(teachers.TeacherError, match="not a SavedModel"):
    td.Ensemble.from_files([folder])
  np.savez(tmp_path / "z.npz", z=np.zeros((2, 3, 4)))
  with pytest.raises(teachers.TeacherError, match="holds arrays, not a model"):
    td.Ensemble.from_files([tmp_path / "z.npz"])
  for error in (teachers.TeacherError, ValueError):
    with pytest.raises(error):
      td.Ensemble.from_files([missing])


def test_members_that_do_not_fit_give_clear_errors():
  ensemble = td.Ensemble([_keras3_member(0), _keras3_member(1, outputs=5),
                          _tf_keras_member(2)])
  with pytest.raises(ValueError, match=r"member 1 \(Keras 3 model 'k3_1'\) gives shape "
                                       r"\[6, 5\], member 0 gives \[6, 3\]"):
    ensemble(X)
  with pytest.raises(ValueError, match=r"Member 0 \(Keras 3 model 'k3_0'\) cannot take "
                                       r"inputs of shape \[6, 7\]"):
    td.Ensemble([_keras3_member(0)])(np.zeros((6, 7), np.float32))
  with pytest.raises(ValueError, match="member 1 is of type str, not a Keras model"):
    td.Ensemble([_tf_keras_member(0), "model.keras"])
  with pytest.raises(teachers.TeacherError, match="returns 2 outputs"):
    td.Ensemble([lambda x: {"a": x, "b": x}])(X)


def test_keras3_on_another_backend_is_refused_clearly(monkeypatch):
  # Keras 3's JAX or PyTorch backends are not installed here (its NumPy backend imports
  # JAX): the backend Keras 3 reports is replaced for this test.
  model = _keras3_member(0)
  monkeypatch.setattr(keras3.backend, "backend", lambda: "jax")
  with pytest.raises(ValueError, match=r"Keras 3 member 0 \(Keras 3 model 'k3_0'\) must run "
                                       r"on Keras 3's TensorFlow backend, but this process "
                                       r"uses 'jax'"):
    td.Ensemble([model])


def test_load_member_outputs(tmp_path):
  z = np.random.default_rng(1).normal(size=(5, 3, 2))
  np.savez(tmp_path / "z.npz", z=z)
  got = teachers.load_member_outputs(tmp_path / "z.npz", num_examples=5)
  assert got.dtype == np.float32 and got.shape == (5, 3, 2)
  _same(got, z, ulps=1)      # one float64 -> float32 rounding
  with pytest.raises(teachers.TeacherError, match="has 5 rows but the training data has 4"):
    teachers.load_member_outputs(tmp_path / "z.npz", num_examples=4)
  np.savez(tmp_path / "no_z.npz", logits=z)
  with pytest.raises(teachers.TeacherError, match=r"no array 'z' \(arrays: logits\)"):
    teachers.load_member_outputs(tmp_path / "no_z.npz")
  np.savez(tmp_path / "flat.npz", z=z[:, 0])
  with pytest.raises(teachers.TeacherError, match=r"\[n, members, params\]"):
    teachers.load_member_outputs(tmp_path / "flat.npz")
  bad = z.copy()
  bad[3, 2, 1] = np.nan
  np.savez(tmp_path / "nan.npz", z=bad)
  with pytest.raises(teachers.TeacherError, match="first at row 3, member 2"):
    teachers.load_member_outputs(tmp_path / "nan.npz")
  np.savez(tmp_path / "pickled.npz", z=np.array([{"a": 1}], dtype=object))
  with pytest.raises(teachers.TeacherError, match="without unpickling"):
    teachers.load_member_outputs(tmp_path / "pickled.npz")
  with pytest.raises(teachers.TeacherError, match="does not exist"):
    teachers.load_member_outputs(tmp_path / "nope.npz")


def test_ods_perturbation_runs_on_keras3_members():
  ensemble = td.Ensemble([_keras3_member(0), _keras3_member(1)])
  ods = td.perturb.ODS(step_size=0.1, clip=None)
  x_new = ods(X, ensemble, seed=3).numpy()
  assert x_new.shape == X.shape and np.all(np.isfinite(x_new))
  assert not np.allclose(x_new, X)
