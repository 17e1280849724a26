"""Loading a file never runs code from it: .npz, .keras (either Keras), the target cache
and the Animal-MNIST pickles.

Every malicious file here carries a payload that creates a sentinel file under tmp_path
when it runs (a pickle whose `__reduce__` names `pathlib.Path.touch`, `os.system` or
`np.save`, or a Keras Lambda that touches it). Each test checks that the loader refuses
the file, with the error it gives, and that the sentinel does not exist afterwards. The
payloads are shown to be live (they do create the sentinel when run the unsafe way), so
that a missing sentinel means something.
"""

import base64
import gzip
import io
import json
import marshal
import os
import pathlib
import pickle
import shlex
import shutil
import zipfile

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill import teachers
from tfp_distill._keras import keras
from tfp_distill.datasets import images
from tfp_distill.datasets import sources


class _Touch:
  """Unpickles as `pathlib.Path(sentinel).touch()`: code that runs on `pickle.loads`."""

  def __init__(self, sentinel):
    self.sentinel = pathlib.Path(sentinel)

  def __reduce__(self):
    return pathlib.Path.touch, (self.sentinel,)


class _System:
  """Unpickles as `os.system("touch sentinel")`."""

  def __init__(self, sentinel):
    self.command = f"touch {shlex.quote(str(sentinel))}"

  def __reduce__(self):
    return os.system, (self.command,)


class _NumpySave:
  """Unpickles as `np.save(sentinel, [1])`: a NumPy global, but not an array's internals."""

  def __init__(self, sentinel):
    self.sentinel = str(sentinel)

  def __reduce__(self):
    return np.save, (self.sentinel, np.arange(1))


def test_the_pickled_payload_is_live(tmp_path):
  """Control: unpickled the unsafe way, the payloads do run (so the tests below mean
  something)."""
  for payload in (_Touch, _System):
    sentinel = tmp_path / f"{payload.__name__}_ran"
    pickle.loads(pickle.dumps(payload(sentinel)))  # the unsafe way
    assert sentinel.exists()
  path = tmp_path / "evil.npz"
  np.savez(path, z=np.array([_Touch(tmp_path / "npz_ran")], dtype=object))
  np.load(path, allow_pickle=True)["z"]  # the unsafe way
  assert (tmp_path / "npz_ran").exists()


# ----------------------------------------------------------------------------------------
# .npz: teachers' precomputed outputs and users' data.


def _malicious_npz(tmp_path, form, sentinel):
  """A file named .npz whose arrays (x and z) unpickle as the payload."""
  path = tmp_path / f"{form}.npz"
  evil = np.array([_Touch(sentinel)], dtype=object)
  if form == "object_arrays":        # a real .npz archive with pickled object arrays
    np.savez(path, x=evil, z=evil)
  elif form == "npy_object_array":   # a single .npy (object array) named .npz
    with open(path, "wb") as f:
      np.save(f, evil, allow_pickle=True)
  else:                              # a bare pickle named .npz
    path.write_bytes(pickle.dumps({"x": evil, "z": evil}))
  return path


@pytest.mark.parametrize("form,says", [
    ("object_arrays", r"cannot read array 'z' without unpickling \(object arrays are "
                      r"refused\): Object arrays cannot be loaded when allow_pickle=False"),
    ("npy_object_array", r"cannot read array 'z' without unpickling \(object arrays are "
                         r"refused\): Object arrays cannot be loaded"),
    ("bare_pickle", r"cannot read array 'z' without unpickling \(object arrays are "
                    r"refused\): This file contains pickled \(object\) data"),
])
def test_teacher_outputs_npz_with_a_pickle_is_refused(tmp_path, form, says):
  sentinel = tmp_path / "ran"
  path = _malicious_npz(tmp_path, form, sentinel)
  with pytest.raises(teachers.TeacherError, match=says):
    teachers.load_member_outputs(path)
  assert not sentinel.exists()


@pytest.mark.parametrize("form,says", [
    ("object_arrays", r"array 'x' holds Python objects \(pickled\); only numeric arrays "
                      r"are read"),
    ("npy_object_array", r"not a readable \.npz archive \(ValueError: Object arrays cannot "
                         r"be loaded when allow_pickle=False\)"),
    ("bare_pickle", r"not a readable \.npz archive \(ValueError: This file contains "
                    r"pickled \(object\) data"),
])
def test_data_npz_with_a_pickle_is_refused(tmp_path, form, says):
  sentinel = tmp_path / "ran"
  path = _malicious_npz(tmp_path, form, sentinel)
  with pytest.raises(sources.DataError, match=says) as info:
    sources.load_data(str(path))
  assert "\n" not in str(info.value)
  assert not sentinel.exists()


# ----------------------------------------------------------------------------------------
# .keras files: safe mode refuses a Lambda layer's code.


def _touching_lambda(sentinel):
  """x -> x, touching the sentinel; needs no global (it runs in whatever module loads it)."""
  path = str(sentinel)
  return lambda x: (__import__("pathlib").Path(path).touch(), x)[1]


def test_tf_keras_file_with_a_lambda_is_refused(tmp_path):
  sentinel = tmp_path / "ran"
  inputs = keras.Input((3,))
  hidden = keras.layers.Lambda(_touching_lambda(sentinel))(inputs)
  model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
  assert sentinel.exists()   # building the model called the Lambda: the payload is live
  model.save(tmp_path / "teacher.keras")
  sentinel.unlink()
  # Refused by the config check before Keras' own safe mode is reached.
  with pytest.raises(teachers.TeacherError,
                     match=r"teacher\.keras stores a Python lambda in 'function_type'"):
    teachers.load_member(tmp_path / "teacher.keras")
  assert not sentinel.exists()


def test_keras3_file_with_a_lambda_is_refused(tmp_path):
  keras3 = pytest.importorskip("keras")
  sentinel = tmp_path / "ran"
  inputs = keras3.Input((3,))
  hidden = keras3.layers.Lambda(_touching_lambda(sentinel))(inputs)
  model = keras3.Model(inputs, keras3.layers.Dense(2)(hidden))
  assert sentinel.exists()   # building the model called the Lambda: the payload is live
  model.save(tmp_path / "teacher.keras")
  sentinel.unlink()
  with pytest.raises(teachers.TeacherError, match=r"teacher\.keras stores a Python lambda"):
    teachers.load_member(tmp_path / "teacher.keras")
  assert not sentinel.exists()


def _bytecode(fn):
  """A function's code as Keras 2 stores a Lambda's (base64 of marshal)."""
  return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")


def test_tf_keras_file_naming_a_class_outside_keras_is_refused(tmp_path):
  """A safe-mode bypass: tf_keras imports whatever module config.json names, and the
  legacy Lambda there unmarshals bytecode with no safe-mode check. The metadata picks the
  loader, so any .keras file can ask for tf_keras'."""
  sentinel = tmp_path / "ran"
  config = {"module": "tensorflow.python.keras.layers.core", "class_name": "Lambda",
            "registered_name": "Lambda",
            "config": {"name": "lam", "function": [_bytecode(_touching_lambda(sentinel)),
                                                   None, [str(sentinel)]],
                       "function_type": "lambda", "module": None, "output_shape": None,
                       "output_shape_type": "raw", "output_shape_module": None,
                       "arguments": {}}}
  path = tmp_path / "teacher.keras"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
    archive.writestr("config.json", json.dumps(config))
    weights = io.BytesIO()
    np.savez(weights)   # no weights: a Lambda has none
    archive.writestr("model.weights.npz", weights.getvalue())
  refused = None
  try:
    member = teachers.load_member(path)
  except teachers.TeacherError as error:
    refused = str(error)
  else:   # what a distillation does next with a loaded teacher
    teachers.member_function(member)(np.zeros((2, 3), np.float32))
  assert not sentinel.exists(), "code from the .keras file ran"
  assert refused is not None


# ----------------------------------------------------------------------------------------
# The teacher-target cache: JSON, a protobuf and tf.data snapshot records, no pickle.


@pytest.fixture(name="cache", scope="module")
def cache_fixture(tmp_path_factory):
  """A target cache written by teacher_targets, and the inputs and ensemble that made it."""
  ensemble = td.Ensemble([td.models.mlp((1,), [4], 2, seed=s) for s in range(2)])
  x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
  folder = tmp_path_factory.mktemp("cache") / "targets"
  list(td.teacher_targets(x, ensemble, batch_size=8, cache_dir=str(folder)))
  return folder, x, ensemble


def test_the_cache_holds_no_pickle(cache):
  """What the cache is made of: a JSON manifest (read with json.load), the element spec
  as a protobuf and tf.data snapshot records of tensors (read by tf.data.Dataset.load).
  No part of it is unpickled, so a tampered file can make the cache unreadable but cannot
  carry code."""
  folder, _, _ = cache
  names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
  # The JSON marker (written first) and manifest (last); the snapshot under data/.
  fixed = {".tfp_distill.json", "data/dataset_spec.pb", "data/snapshot.metadata",
           "targets.json"}
  assert fixed < names and all(n.endswith(".snapshot") for n in names - fixed)
  assert json.loads((folder / "targets.json").read_text())["format_version"] == 3


@pytest.mark.parametrize("part,says", [
    ("targets.json", r"The target cache manifest .*targets\.json is unreadable"),
    ("dataset_spec.pb", r"The target cache file .*dataset_spec\.pb is corrupted"),
    ("snapshot.metadata", r"The target cache file .*snapshot\.metadata is corrupted"),
    ("*.snapshot", r"The target cache file .*\.snapshot is corrupted"),
])
def test_a_cache_file_replaced_by_a_pickle_does_not_run(cache, tmp_path, part, says):
  """Each part of the cache replaced by a malicious pickle: the manifest's checksums (or
  its JSON decoder) catch it before tf.data reads anything, with one line naming the
  file, and nothing runs."""
  folder, x, ensemble = cache
  tampered = tmp_path / "targets"
  shutil.copytree(folder, tampered)
  sentinel = tmp_path / "ran"
  target = sorted(tampered.rglob(part))[0]
  target.write_bytes(pickle.dumps(_Touch(sentinel)))
  with pytest.raises(ValueError, match=says) as info:
    list(td.teacher_targets(x, ensemble, batch_size=8, cache_dir=str(tampered)))
  assert "\n" not in str(info.value) and "delete the folder to rebuild" in str(info.value)
  assert not sentinel.exists()


# ----------------------------------------------------------------------------------------
# Animal-MNIST: gzipped pickles read with images.NumpyUnpickler.


def test_numpy_unpickler_reads_an_array(tmp_path):
  """Control: a real array pickle (what the animal-mnist package ships) loads."""
  path = tmp_path / "array.gz"
  array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  path.write_bytes(gzip.compress(pickle.dumps(array)))
  np.testing.assert_array_equal(images.load_numpy_pickle(path), array)


@pytest.mark.parametrize("payload,global_name", [
    (_System, "posix.system"),
    (_Touch, "pathlib.Path.touch"),
    (_NumpySave, "numpy.save"),
])
def test_numpy_unpickler_refuses_other_globals(tmp_path, payload, global_name):
  sentinel = tmp_path / "ran"
  path = tmp_path / "evil.gz"
  path.write_bytes(gzip.compress(pickle.dumps(payload(sentinel))))
  with pytest.raises(pickle.UnpicklingError,
                     match=rf"refusing to load global {global_name}: only NumPy arrays "
                           r"are allowed"):
    images.load_numpy_pickle(path)
  assert not sentinel.exists() and not pathlib.Path(f"{sentinel}.npy").exists()


def test_animal_mnist_with_a_malicious_pickle_is_refused(tmp_path):
  sentinel = tmp_path / "ran"
  labels = np.arange(10, dtype=np.int64)
  (tmp_path / "animal_data_version_3.gz").write_bytes(
      gzip.compress(pickle.dumps(_System(sentinel))))
  (tmp_path / "animal_label_version_3.gz").write_bytes(gzip.compress(pickle.dumps(labels)))
  with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global posix\.system"):
    images.load_animal_mnist(tmp_path)
  assert not sentinel.exists()


def test_a_keras_file_whose_config_inflates_is_refused_unread(tmp_path):
  """Before: a .keras file whose config.json inflated to 300 MB was read and parsed.
  Now its size in the zip's directory is checked first: a few KiB on disk, refused."""
  path = tmp_path / "bomb.keras"
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    archive.writestr("config.json", "{" + " " * (teachers.MAX_CONFIG_BYTES + 1) + "}")
  assert path.stat().st_size < 200_000
  with pytest.raises(teachers.TeacherError, match=r"config.json inflates to 32 MiB .* "
                     "refused unread"):
    teachers.load_member(path)
