"""load_data for each form of spec (npz, csv, image folder, tfds) and holdout_split."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_distill.datasets import sources
import tolerance
from tfp_distill.datasets.sources import DataError


def _error(spec, **kwargs):
  """The DataError that load_data raises, checked to be one line."""
  with pytest.raises(DataError) as info:
    sources.load_data(spec, **kwargs)
  message = str(info.value)
  assert "\n" not in message, message
  return message


# ----------------------------------------------------------------------------------------
# .npz


@pytest.mark.parametrize("y", [None, np.array([0, 2, 1, 1], np.int32),
                               np.array([0.5, -1.0, 2.0, 3.5], np.float64),
                               np.arange(8, dtype=np.float32).reshape(4, 2)])
def test_npz_round_trip(tmp_path, y):
  x = np.arange(24, dtype=np.float64).reshape(4, 3, 2)
  path = tmp_path / "data.npz"
  if y is None:
    np.savez(path, x=x)
  else:
    np.savez(path, x=x, y=y)
  data = sources.load_data(str(path))
  assert data.name == str(path)
  assert data.class_names is None
  assert data.x.dtype == np.float32 and data.x.shape == (4, 3, 2)
  np.testing.assert_array_equal(data.x, x.astype(np.float32))
  if y is None:
    assert data.y is None
  else:
    expected = np.int64 if np.issubdtype(y.dtype, np.integer) else np.float32
    assert data.y.dtype == expected and data.y.shape == y.shape
    np.testing.assert_array_equal(data.y, y.astype(expected))


def test_npz_limit_and_flat_x(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.arange(10), y=np.arange(10) % 3)
  data = sources.load_data(path, limit=4)   # a pathlib.Path is fine
  assert data.x.shape == (4, 1) and data.x.dtype == np.float32   # [n] -> [n, 1]
  np.testing.assert_array_equal(data.y, [0, 1, 2, 0])
  assert "limit" in _error(path, limit=0)


def test_npz_without_x(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, a=np.zeros(3), b=np.ones(3))
  assert _error(str(path)) == f"{path} has no array 'x' (arrays: a, b)."


def test_missing_file(tmp_path):
  for name in ("nope.npz", "nope.csv"):
    path = str(tmp_path / name)
    assert _error(path) == f"{path}: no such file."
  path = str(tmp_path / "nope")
  message = _error(path)
  assert message.startswith(f"{path}: no such file or directory; expected ")
  for form in (".npz", "tfds:NAME", "subfolder per class", ".csv"):
    assert form in message


def test_unknown_extension(tmp_path):
  path = tmp_path / "data.txt"
  path.write_text("1 2 3\n")
  message = _error(str(path))
  assert "its ending is not .npz or .csv" in message and "tfds:NAME" in message


def test_pickled_object_array_refused(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
  message = _error(str(path))
  assert message.startswith(f"{path}: array 'x' holds Python objects (pickled)")


def test_not_an_npz(tmp_path):
  path = tmp_path / "data.npz"
  path.write_bytes(b"not a zip file at all")
  assert _error(str(path)).startswith(f"{path}: not a readable .npz archive")
  np.save(tmp_path / "single.npy", np.zeros(3))
  (tmp_path / "single.npy").rename(tmp_path / "single.npz")
  assert "a single .npy array" in _error(str(tmp_path / "single.npz"))


def test_length_mismatch_and_empty(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.zeros((5, 2)), y=np.zeros(4, np.int64))
  assert _error(str(path)) == (f"{path}: x has 5 examples but y has 4; they must match.")
  np.savez(path, x=np.zeros((0, 2)))
  assert "no examples" in _error(str(path))


def test_bad_dtypes_and_labels(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.array(["a", "b"]))
  assert "x has dtype <U1; expected numbers" in _error(str(path))
  np.savez(path, x=np.zeros((3, 2)), y=np.array([0, -1, 2]))
  assert "y has 1 negative class labels (first at row 1)" in _error(str(path))
  np.savez(path, x=np.zeros((3, 2)), y=np.eye(3, dtype=np.int64))
  assert "integer y (class labels) must have shape [n]; got [3, 3]" in _error(str(path))


def test_nan_location(tmp_path):
  x = np.zeros((20, 3))
  x[12, 1] = np.nan
  x[15, 0] = np.inf
  x[15, 2] = -np.inf
  path = tmp_path / "data.npz"
  np.savez(path, x=x)
  assert _error(str(path)) == f"{path}: x has 3 NaN/Inf values (first at row 12)."
  y = np.zeros(20)
  y[7] = np.nan
  np.savez(path, x=np.zeros((20, 3)), y=y)
  assert _error(str(path)) == f"{path}: y has 1 NaN/Inf values (first at row 7)."
  x = np.zeros((20, 3))
  x[4, 0] = 1e300    # finite in float64, Inf in float32
  np.savez(path, x=x)
  assert "x has 1 values too large for float32 (first at row 4)" in _error(str(path))
  # Rows past the limit are not loaded, so not checked.
  x = np.zeros((20, 3))
  x[12, 1] = np.nan
  np.savez(path, x=x)
  assert sources.load_data(str(path), limit=12).x.shape == (12, 3)


def test_options_that_do_not_apply(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, x=np.zeros((3, 2)))
  assert "split='test' applies only to 'tfds:' data sets" in _error(str(path), split="test")
  assert "applies only to .csv tables" in _error(str(path), target_column="y")
  assert "applies only to image folders" in _error(str(path), image_size=8)


# ----------------------------------------------------------------------------------------
# .csv


def test_csv_default_last_column_and_named_target(tmp_path):
  path = tmp_path / "table.csv"
  path.write_text("a, b ,c\n1,2,3\n4,5.5,6\n\n-7,8e-1,9\n")
  data = sources.load_data(str(path))
  assert data.name == str(path)
  assert data.x.dtype == np.float32 and data.y.dtype == np.float32
  np.testing.assert_array_equal(data.x, np.float32([[1, 2], [4, 5.5], [-7, 0.8]]))
  np.testing.assert_array_equal(data.y, [3, 6, 9])
  data = sources.load_data(str(path), target_column="b")   # header names are stripped
  np.testing.assert_array_equal(data.x, [[1, 3], [4, 6], [-7, 9]])
  np.testing.assert_array_equal(data.y, np.float32([2, 5.5, 0.8]))


def test_csv_errors(tmp_path):
  path = tmp_path / "table.csv"
  path.write_text("a,b,c\n1,2,3\n4,five,6\n")
  assert _error(str(path)) == (f"{path} line 3 (row 2), column 'b': 'five' is not a "
                               "number.")
  path.write_text("a,b,c\n1,,3\n")
  assert "column 'b': empty cell is not a number" in _error(str(path))
  path.write_text("a,b,c\n1,2,3\n")
  assert _error(str(path), target_column="d") == (f"{path} has no column 'd' (columns: "
                                                  "a, b, c).")
  path.write_text("a,b,c\n1,2\n")
  assert "line 2: 2 cells, but the header has 3 columns" in _error(str(path))
  path.write_text("a,b\n1,nan\n2,3\n")
  assert _error(str(path)) == f"{path}: y has 1 NaN/Inf values (first at row 0)."
  path.write_text("a,b\n")
  assert "a header row and no data rows" in _error(str(path))
  path.write_text("a\n1\n")
  assert "at least 2 columns" in _error(str(path))
  path.write_text("1,2,cat\n3,4,dog\n")
  assert "row 2: label 'dog' is not one of classes (cat, bird)" in _error(
      str(path), classes=["cat", "bird"])


def test_csv_without_a_header_keeps_every_row(tmp_path):
  """Before: the first row was always taken as the header, so a table without one lost
  its first example silently."""
  path = tmp_path / "table.csv"
  path.write_text("0.5,1.5,2.0\n1.0,2.0,3.5\n")
  data = sources.load_data(str(path))
  np.testing.assert_array_equal(data.x, [[0.5, 1.5], [1.0, 2.0]])
  np.testing.assert_array_equal(data.y, [2.0, 3.5])
  # A header is a first row whose column is numeric below it but not in it.
  path.write_text("width,height,kind\n0.5,1.5,2\n1.0,2.0,3\n")
  assert len(sources.load_data(str(path)).x) == 2


def test_csv_class_names_are_numbered_in_the_members_order(tmp_path):
  path = tmp_path / "table.csv"
  path.write_text("a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n7,8,versicolor\n")
  data = sources.load_data(str(path))          # sorted names by default
  assert data.class_names == ("setosa", "versicolor", "virginica")
  np.testing.assert_array_equal(data.y, [0, 2, 0, 1])
  assert data.y.dtype == np.int64
  data = sources.load_data(str(path), classes=("virginica", "setosa", "versicolor"))
  np.testing.assert_array_equal(data.y, [1, 0, 1, 2])


# ----------------------------------------------------------------------------------------
# A folder of images.


def _write_png(path, value, height=5, width=4, channels=1):
  path.parent.mkdir(parents=True, exist_ok=True)
  image = tf.fill([height, width, channels], tf.constant(value, tf.uint8))
  tf.io.write_file(str(path), tf.io.encode_png(image))


def test_image_folder(tmp_path):
  root = tmp_path / "images"
  # Written out of order: labels follow the sorted subfolder names (ant, bee, cat).
  for cls, value, count in (("cat", 255, 2), ("ant", 0, 1), ("bee", 51, 3)):
    for i in range(count):
      _write_png(root / cls / f"{i}.png", value)
  (root / "bee" / "notes.txt").write_text("not an image")
  data = sources.load_data(str(root))
  assert data.name == f"folder {root}/ (3 classes)"
  assert data.class_names == ("ant", "bee", "cat")
  assert data.x.dtype == np.float32 and data.x.shape == (6, 5, 4, 1)  # first image's size
  assert data.y.dtype == np.int64
  np.testing.assert_array_equal(data.y, [0, 1, 1, 1, 2, 2])
  # 0, 51 and 255 over 255: one float32 division (eps/2 of values <= 1); every pixel of an
  # image is the same value, divided the same way.
  per_image = data.x.reshape(6, -1)
  np.testing.assert_array_equal(per_image.min(axis=1), per_image.max(axis=1))
  np.testing.assert_allclose(per_image[:, 0], [0, .2, .2, .2, 1, 1], rtol=0,
                             atol=tolerance.atol(dtype=np.float32, ulps=1, scale=1.0))
  assert sources.load_data(str(root), limit=2).y.tolist() == [0, 1]
  assert data.pixel_scale == 1
  # Raw, as keras.utils.image_dataset_from_directory gives them: the PNGs' own values.
  raw = sources.load_data(str(root), image_scale="raw")
  assert raw.pixel_scale == 255
  np.testing.assert_array_equal(raw.x.reshape(6, -1)[:, 0], [0, 51, 51, 51, 255, 255])
  # The members' class order renumbers the subfolders.
  ordered = sources.load_data(str(root), classes=("cat", "bee", "ant"))
  assert ordered.class_names == ("cat", "bee", "ant")
  np.testing.assert_array_equal(ordered.y, [2, 1, 1, 1, 0, 0])


def test_image_folder_rgb_and_image_size(tmp_path):
  root = tmp_path / "images"
  _write_png(root / "a" / "0.png", 10, height=6, width=6, channels=3)
  _write_png(root / "b" / "0.png", 20, height=9, width=7, channels=3)  # resized
  data = sources.load_data(str(root))
  assert data.x.shape == (2, 6, 6, 3)
  data = sources.load_data(str(root), image_size=3)
  assert data.x.shape == (2, 3, 3, 3)
  assert float(data.x.min()) >= 0.0 and float(data.x.max()) <= 1.0
  assert sources.load_data(str(root), image_size=(4, 2)).x.shape == (2, 4, 2, 3)
  assert "image_size must be" in _error(str(root), image_size=(0, 2))


def test_saved_model_folder_refused(tmp_path):
  root = tmp_path / "model"
  (root / "variables").mkdir(parents=True)
  (root / "saved_model.pb").write_bytes(b"")
  message = _error(str(root))
  assert message.startswith(f"{root}: a TensorFlow SavedModel") and "not data" in message


def test_empty_folders_refused(tmp_path):
  assert "an empty folder" in _error(str(tmp_path))
  (tmp_path / "cls").mkdir()
  assert "no images in class subfolders" in _error(str(tmp_path))
  _write_png(tmp_path / "loose.png", 3)
  assert "has images but no class subfolders" in _error(str(tmp_path))


# ----------------------------------------------------------------------------------------
# tensorflow-datasets (mocked: no download, no internet).


def test_tfds_mock_mnist():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6):
    data = sources.load_data("tfds:mnist:test")
    assert data.name == "tfds:mnist:test"
    assert data.x.shape == (6, 28, 28, 1) and data.x.dtype == np.float32
    assert 0.0 <= float(data.x.min()) and float(data.x.max()) <= 1.0
    assert data.y.shape == (6,) and data.y.dtype == np.int64
    assert 0 <= data.y.min() and data.y.max() <= 9
    assert data.class_names is not None and len(data.class_names) == 10
    limited = sources.load_data("tfds:mnist", split="test", limit=3)
    assert limited.name == "tfds:mnist:test" and limited.x.shape == (3, 28, 28, 1)
    assert sources.load_data("tfds:mnist").name == "tfds:mnist:train"


def test_tfds_unknown_name():
  pytest.importorskip("tensorflow_datasets")
  assert _error("tfds:no_such_data_set_xyz").startswith(
      "tensorflow-datasets does not know 'no_such_data_set_xyz'")


def test_tfds_download_failure(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")

  def offline(self, *args, **kwargs):
    raise ConnectionError("Failed to resolve host\nsecond line of detail")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
  message = _error("tfds:mnist:test")
  assert message.startswith("tfds:mnist:test: not prepared in the tfds data dir ")
  assert "could not be downloaded (ConnectionError: Failed to resolve host)" in message


# ----------------------------------------------------------------------------------------
# holdout_split


def test_holdout_split():
  source = sources.DataSource(x=np.arange(50, dtype=np.float32)[:, None],
                              y=np.arange(50, dtype=np.int64), name="data.npz",
                              class_names=("a", "b"))
  train, test = sources.holdout_split(source, fraction=0.1, seed=0)
  assert train.name == "data.npz (90% train part)"
  assert test.name == "data.npz (10% held out, seed 0)"
  assert len(test.x) == 5 and len(train.x) == 45
  assert train.class_names == test.class_names == ("a", "b")
  train_ids, test_ids = train.y.tolist(), test.y.tolist()
  assert not set(train_ids) & set(test_ids)                    # disjoint
  assert sorted(train_ids + test_ids) == list(range(50))       # covering
  np.testing.assert_array_equal(train.x[:, 0], train.y)        # x and y stay paired
  # `index` gives each part's rows in the source (to split aligned arrays alike), also
  # for a part of a part.
  np.testing.assert_array_equal(train.index, train.y)
  np.testing.assert_array_equal(test.index, test.y)
  inner_train, inner_test = sources.holdout_split(train, fraction=0.2, seed=3)
  np.testing.assert_array_equal(inner_test.index, inner_test.y)
  np.testing.assert_array_equal(inner_train.index, inner_train.y)
  again_train, again_test = sources.holdout_split(source, fraction=0.1, seed=0)
  assert again_test.y.tolist() == test_ids and again_train.y.tolist() == train_ids
  other = sources.holdout_split(source, fraction=0.1, seed=1)[1]
  assert other.y.tolist() != test_ids and other.name.endswith("seed 1)")


def test_holdout_split_edges():
  source = sources.DataSource(x=np.zeros((3, 2), np.float32), y=None, name="t.csv")
  train, test = sources.holdout_split(source, fraction=0.01)   # still one held out
  assert (len(train.x), len(test.x)) == (2, 1) and test.y is None
  train, test = sources.holdout_split(source, fraction=0.99)   # still one to train on
  assert (len(train.x), len(test.x)) == (1, 2)
  for fraction in (0, 1, -0.5, 1.5, True):
    with pytest.raises(ValueError, match="fraction must be a number in"):
      sources.holdout_split(source, fraction=fraction)
  single = sources.DataSource(x=np.zeros((1, 2), np.float32), y=None, name="one.npz")
  with pytest.raises(DataError, match="need at least 2"):
    sources.holdout_split(single, fraction=0.5)


def test_all_names_exported():
  for name in sources.__all__:
    assert hasattr(sources, name)
  assert issubclass(DataError, ValueError)
