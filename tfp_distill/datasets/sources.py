"""A user's own data, from where users keep it: `.npz`, tfds, image folders, `.csv`.

`load_data(spec)` turns one string (what a user types after `tfp-distill distill`) into a
`DataSource` of NumPy arrays; `holdout_split` sets part of it aside for evaluation.

```none
spec               read with                            x                     y
data.npz           np.load(allow_pickle=False): x, y    float32 [n, ...]      'y' or None
tfds:NAME[:SPLIT]  tfds builder, as_supervised=True     float32 [n, ...]      the label
images/            keras image_dataset_from_directory   float32 [n, h, w, c]  int64 [n]
  <class>/*.png      (one subfolder per class)
table.csv          csv module: numbers (header optional)  float32 [n, cols-1]  float32 [n],
                     or class names in the target column                   or int64 [n]
```

`tfds:` specs need tensorflow-datasets, which `pip install "tfp_distill[studies]"`
installs; without it they raise a one-line `DataError` that says so.

Integer labels come back int64 [n] (classification), float targets float32 [n] or
[n, d] (regression); images scaled to [0, 1] (uint8 / 255), whatever the source, or
left as raw 0-255 values with `image_scale="raw"` (`DataSource.pixel_scale`). Every
source is checked the same way afterwards: `x` numeric and not empty, as many labels as inputs,
no NaN/Inf in `x` or in float `y`, class labels >= 0. `limit` keeps the first examples.

Why the loader is this strict: the distill command trains for minutes on what it gets
here, so a problem found after loading (a NaN loss, a label count off by one) costs far
more than one found now. Every bad input is a `DataError` (a `ValueError`) whose message
is one line that names the file or name and the problem, so the command can print it as
is. Nothing is unpickled: `.npz` files with object arrays are refused, not trusted.

#### Examples

```python
from tfp_distill.datasets import sources
data = sources.load_data("data.npz")               # x float32 [n, ...], y or None
data = sources.load_data("tfds:mnist:test")        # x float32 [10000, 28, 28, 1] in [0, 1]
data = sources.load_data("photos/", image_size=64) # one subfolder per class
train, test = sources.holdout_split(data, fraction=0.1, seed=0)
```
"""

import contextlib
import csv
import dataclasses
import io
import os
import re
import zipfile

import numpy as np

from tfp_distill import _optional

__all__ = ["DataError", "DataSource", "check_source", "holdout_split", "load_data"]

#: What `load_data` accepts, for error messages.
ACCEPTED_FORMS = ("a .npz file with arrays 'x' (and 'y'), 'tfds:NAME[:SPLIT]', a folder "
                  "of images with one subfolder per class, or a .csv table (a header "
                  "row optional)")

#: Image file endings that Keras' `image_dataset_from_directory` reads.
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")

# NAME may carry a config and a version ("mnist/config:3.0.1"); SPLIT may hold slices
# with colons ("train[:80%]").
_TFDS_SPEC = re.compile(r"^tfds:(?P<name>[^:\[\]]+(?::[\d*]+(?:\.[\d*]+)*)?)"
                        r"(?::(?P<split>.+))?$")


class DataError(ValueError):
  """Bad input data; the message is one line naming the file (or name) and the problem."""

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))


@dataclasses.dataclass
class DataSource:
  """Examples loaded from one place.

  Attributes:
    x: float32 array [n, ...]: inputs; images are [n, height, width, channels] in [0, 1].
    y: array [n] or [n, d], or None: int64 class labels [n] for classification, float32
      targets [n] or [n, d] for regression, or None when the source has no labels.
    name: str: what was loaded, for reports ("data.npz", "tfds:mnist:test",
      "folder images/ (3 classes)", "table.csv").
    class_names: tuple of str, or None: the class of each label value, in label order
      (image folders: the subfolder names; tfds: the ClassLabel names).
    index: int64 array [n] or None: for a part made by `holdout_split`, the rows of the
      source it came from (to split arrays aligned with the source the same way).
    pixel_scale: None (not images decoded here), 255 (raw 0-255 pixel values, as
      `keras.utils.image_dataset_from_directory` gives them) or 1 (scaled to [0, 1]).
  """
  x: np.ndarray
  y: np.ndarray | None
  name: str
  class_names: tuple | None = None
  index: np.ndarray | None = None
  pixel_scale: int | None = None


def _first_line(error):
  """The first line of an exception's message, with its type, at most 200 characters."""
  text = str(error).strip().splitlines()
  text = text[0] if text else ""
  text = text if len(text) <= 200 else text[:197] + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_data(spec, *, split=None, target_column=None, image_size=None, limit=None,
              image_scale="unit", classes=None):
  """Loads a user's data set from a `.npz` file, tfds, a folder of images or a `.csv`.

  Args:
    spec: str or path-like: one of
      `PATH.npz` (arrays `x` [n, ...] and optional `y` [n] or [n, d]);
      `tfds:NAME[:SPLIT]` (a tensorflow-datasets set with (input, label) pairs; NAME may
        carry a config and version, `cifar10:3.0.2:test`; SPLIT may slice, `train[:10%]`);
      `DIR` (a folder with one subfolder of images per class, `.png/.jpg/.jpeg/.bmp/.gif`);
      `PATH.csv` (numeric rows, a header row optional: the first row is a header when
        a column that is numeric below it is not numeric in it; the target is one column,
        numbers or class names).
    split: str or None: the tfds split when `spec` names none (default "train"); only
      for `tfds:` specs.
    target_column: str or None: the `.csv` column to predict (default: the last column);
      only for `.csv` tables.
    image_size: int, (height, width) or None: the size images are resized to (bilinear);
      default: the size of the first image found. Only for image folders.
    limit: int or None: keep only the first `limit` examples.
    image_scale: "unit" (images scaled to [0, 1]) or "raw" (0-255 pixel values, as
      `keras.utils.image_dataset_from_directory` reads them; `DataSource.pixel_scale`
      says which). Applies to image folders and tfds images.
    classes: None, or the class names in the order the labels should number them (a
      `.csv` whose target column holds names: "cat" -> its index in `classes`). Without
      it, names are numbered in sorted order (as Keras numbers class subfolders).

  Returns:
    A `DataSource`: `x` float32 [n, ...] (images [n, height, width, channels] in [0, 1]
    or 0-255, see `image_scale`;
    a flat `x` [n] becomes [n, 1]); `y` int64 [n] (integer labels), float32 [n] or
    [n, d] (regression targets), or None; `name`; `class_names` for image folders and
    tfds sets with class labels.

  Raises:
    DataError: (a `ValueError`) with a one-line message naming the file and the
      problem: a missing file, an unknown form or tfds name, a data set that is not
      prepared and cannot be downloaded, a pickled array, a missing `x`, a non-numeric
      value, `len(x) != len(y)`, no examples, NaN/Inf values, negative class labels,
      or an option that does not apply to this kind of source.
  """
  if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                            or limit < 1):
    raise DataError(f"limit must be a positive int or None; got {limit!r}.")
  if image_scale not in ("unit", "raw"):
    raise DataError(f"image_scale must be 'unit' or 'raw'; got {image_scale!r}.")
  raw = os.fspath(spec)
  kind = _kind(raw)
  _check_options(raw, kind, split=split, target_column=target_column,
                 image_size=image_size)
  if classes is not None:
    classes = tuple(str(c) for c in classes)
    if kind not in ("csv", "folder"):
      raise DataError(f"{raw}: classes applies to .csv tables and image folders (the "
                      "names of their classes), not to this source.")
    if len(set(classes)) != len(classes) or len(classes) < 2:
      raise DataError(f"classes must name at least 2 distinct classes; got {classes!r}.")
  if kind == "npz":
    source = _load_npz(raw)
  elif kind == "tfds":
    source = _load_tfds(raw, split, limit, image_scale)
  elif kind == "folder":
    source = _load_folder(raw, image_size, limit, image_scale, classes)
  else:
    source = _load_csv(raw, target_column, classes)
  return _checked(source, limit)


def holdout_split(source, fraction=0.1, seed=0):
  """Splits a `DataSource` at random into a training part and a held-out part.

  The held-out part is `round(n * fraction)` examples (at least one, and at least one
  left for training), drawn by `np.random.default_rng(seed).permutation(n)`; both parts
  keep the original order of their examples. The same source, fraction and seed always
  give the same split.

  Args:
    source: `DataSource` with `x` [n, ...] and `y` [n, ...] or None.
    fraction: float in (0, 1): the share held out.
    seed: int: seed of the permutation.

  Returns:
    `(train, test)`: `DataSource`s with `x` [n - k, ...] and [k, ...] (`y` alike),
    named like "data.npz (90% train part)" and "data.npz (10% held out, seed 0)";
    disjoint, and together all `n` examples.

  Raises:
    ValueError: `fraction` outside (0, 1).
    DataError: fewer than 2 examples.
  """
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
      0 < fraction < 1):
    raise ValueError(f"fraction must be a number in (0, 1); got {fraction!r}.")
  n = len(source.x)
  if n < 2:
    raise DataError(f"{source.name}: {n} example(s) cannot be split into a training "
                    "part and a held-out part; need at least 2.")
  n_test = min(max(int(round(n * fraction)), 1), n - 1)
  order = np.random.default_rng(seed).permutation(n)
  test_index, train_index = np.sort(order[:n_test]), np.sort(order[n_test:])

  def part(index, name):
    return DataSource(x=source.x[index],
                      y=None if source.y is None else source.y[index],
                      name=name, class_names=source.class_names,
                      index=index.astype(np.int64) if source.index is None
                      else source.index[index], pixel_scale=source.pixel_scale)

  percent = round(100 * fraction, 2)
  return (part(train_index, f"{source.name} ({100 - percent:g}% train part)"),
          part(test_index, f"{source.name} ({percent:g}% held out, seed {seed})"))


# ----------------------------------------------------------------------------------------
# Which kind of spec.


def _kind(raw):
  if raw.startswith("tfds:"):
    return "tfds"
  lower = raw.lower()
  if os.path.isdir(raw):
    return "folder"
  if lower.endswith((".npz", ".csv")):
    if not os.path.exists(raw):
      raise DataError(f"{raw}: no such file.")
    if not os.path.isfile(raw):
      raise DataError(f"{raw}: not a regular file.")
    return lower[-3:]
  what = "not a directory, and its ending is not .npz or .csv" if os.path.exists(
      raw) else "no such file or directory"
  raise DataError(f"{raw}: {what}; expected {ACCEPTED_FORMS}.")


def _check_options(raw, kind, *, split, target_column, image_size):
  """Refuses options that the kind of source would silently ignore."""
  for option, value, wanted in (("split", split, "tfds"),
                                ("target_column", target_column, "csv"),
                                ("image_size", image_size, "folder")):
    if value is not None and kind != wanted:
      applies = {"tfds": "'tfds:' data sets", "csv": ".csv tables",
                 "folder": "image folders"}[wanted]
      raise DataError(f"{raw}: {option}={value!r} applies only to {applies}.")


# ----------------------------------------------------------------------------------------
# .npz


def _load_npz(path):
  try:
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f"{path}: not a readable .npz archive ({_first_line(e)}).") from e
  if not isinstance(archive, np.lib.npyio.NpzFile):  # an .npy array named .npz
    raise DataError(f"{path}: a single .npy array, not an .npz archive with 'x' "
                    "(save with np.savez(path, x=..., y=...)).")
  with archive:
    names = list(archive.files)
    if "x" not in names:
      listed = ", ".join(names) if names else "none"
      raise DataError(f"{path} has no array 'x' (arrays: {listed}).")
    arrays = {}
    for key in ("x", "y"):
      if key not in names:
        continue
      try:
        arrays[key] = archive[key]
      except ValueError as e:  # allow_pickle=False refuses object arrays.
        raise DataError(f"{path}: array '{key}' holds Python objects (pickled); only "
                        "numeric arrays are read, save it with a numeric dtype.") from e
      except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: array '{key}' cannot be read "
                        f"({_first_line(e)}).") from e
  return DataSource(x=arrays["x"], y=arrays.get("y"), name=path)


# ----------------------------------------------------------------------------------------
# tensorflow-datasets


def _load_tfds(raw, split, limit, image_scale="unit"):
  match = _TFDS_SPEC.match(raw)
  if not match:
    raise DataError(f"{raw}: expected 'tfds:NAME' or 'tfds:NAME:SPLIT' "
                    "(e.g. 'tfds:mnist:test').")
  name = match.group("name")
  split = match.group("split") or split or "train"
  label = f"tfds:{name}:{split}"
  try:
    tfds = _optional.require("tensorflow_datasets", label)
  except _optional.MissingExtraError as e:
    raise DataError(str(e)) from e
  from tensorflow_datasets.core import registered
  try:
    builder = tfds.builder(name)
  except registered.DatasetNotFoundError as e:
    raise DataError(f"tensorflow-datasets does not know {name!r} ({label}).") from e
  except Exception as e:  # pylint: disable=broad-except
    # A name that does not parse or a builder that cannot be made: name the cause.
    raise DataError(f"{label}: tensorflow-datasets cannot make a builder for {name!r} "
                    f"({_first_line(e)}).") from e
  try:
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    # No internet, a manual download, a missing optional module: any of these leaves
    # the set unprepared; the first line of the cause says which.
    raise DataError(f"{label}: not prepared in the tfds data dir {builder.data_dir} "
                    f"and could not be downloaded ({_first_line(e)}); prepare it where "
                    "there is internet (tfds build) and set TFDS_DATA_DIR.") from e
  if builder.info.supervised_keys is None:
    raise DataError(f"{label}: this data set has no (input, label) pairs "
                    "(supervised_keys), so it cannot be loaded as x and y.")
  try:
    dataset = builder.as_dataset(split=split, as_supervised=True)
  except Exception as e:  # pylint: disable=broad-except
    splits = ", ".join(sorted(builder.info.splits.keys())) or "unknown"
    raise DataError(f"{label}: cannot read split {split!r} (splits: {splits}; "
                    f"{_first_line(e)}).") from e
  if limit is not None:
    dataset = dataset.take(limit)
  xs, ys = [], []
  try:
    for x, y in tfds.as_numpy(dataset.batch(1024)):
      xs.append(x)
      ys.append(y)
  except Exception as e:  # pylint: disable=broad-except
    # Examples of different shapes cannot be batched.
    raise DataError(f"{label}: cannot stack the examples into one array "
                    f"({_first_line(e)}).") from e
  if not xs:
    raise DataError(f"{label}: no examples.")
  x, y = np.concatenate(xs), np.concatenate(ys)
  pixel_scale = None
  if x.dtype == np.uint8 and x.ndim == 4:  # images [n, h, w, c]
    x = x.astype(np.float32)
    pixel_scale = 255
    if image_scale == "unit":
      x, pixel_scale = x / np.float32(255.0), 1
  class_names = None
  label_key = builder.info.supervised_keys[1]
  names = (getattr(builder.info.features[label_key], "names", None)
           if isinstance(label_key, str) else None)
  if names and np.issubdtype(y.dtype, np.integer):
    class_names = tuple(names)
  return DataSource(x=x, y=y, name=label, class_names=class_names,
                    pixel_scale=pixel_scale)


# ----------------------------------------------------------------------------------------
# A folder of images, one subfolder per class.


def _image_files(folder):
  """Yields image files under `folder`, in the order Keras indexes them."""
  for root, dirs, files in sorted(os.walk(folder), key=lambda walked: walked[0]):
    del dirs
    for file in sorted(files):
      if file.lower().endswith(IMAGE_FORMATS):
        yield os.path.join(root, file)


def _load_folder(folder, image_size, limit, image_scale="unit", classes=None):
  import tensorflow as tf
  from tfp_distill._keras import keras
  if os.path.exists(os.path.join(folder, "saved_model.pb")):
    raise DataError(f"{folder}: a TensorFlow SavedModel (it holds saved_model.pb), a "
                    "model, not data; pass the data set.")
  subdirs = sorted(entry for entry in os.listdir(folder)
                   if os.path.isdir(os.path.join(folder, entry))
                   and not entry.startswith("."))
  first = next((file for subdir in subdirs
                for file in _image_files(os.path.join(folder, subdir))), None)
  if first is None:
    loose = any(file.lower().endswith(IMAGE_FORMATS) for file in os.listdir(folder))
    problem = ("has images but no class subfolders; put each class's images in a "
               "subfolder named after the class" if loose else
               "no images in class subfolders" if subdirs else
               "an empty folder (no class subfolders with images)")
    raise DataError(f"{folder}: {problem} (formats: {', '.join(IMAGE_FORMATS)}).")
  try:
    image = tf.io.decode_image(tf.io.read_file(first), expand_animations=False)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"{first}: not a readable image ({_first_line(e)}).") from e
  height, width, channels = (int(d) for d in image.shape)
  if image_size is None:
    image_size = (height, width)
  elif isinstance(image_size, int) and not isinstance(image_size, bool):
    image_size = (image_size, image_size)
  image_size = tuple(image_size)
  if len(image_size) != 2 or not all(
      isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_size):
    raise DataError(f"{folder}: image_size must be a positive int or (height, width); "
                    f"got {image_size!r}.")
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # "Found n files belonging to ..."
      dataset = keras.utils.image_dataset_from_directory(
          folder, labels="inferred", label_mode="int", shuffle=False,
          color_mode="grayscale" if channels == 1 else "rgb", batch_size=256,
          image_size=image_size)
  except ValueError as e:
    raise DataError(f"{folder}: Keras cannot index the images ({_first_line(e)}).") from e
  class_names = tuple(dataset.class_names)
  xs, ys, count = [], [], 0
  try:
    for x, y in dataset:
      xs.append(x.numpy())
      ys.append(y.numpy())
      count += len(xs[-1])
      if limit is not None and count >= limit:
        break
  except tf.errors.OpError as e:
    raise DataError(f"{folder}: an image cannot be read ({_first_line(e)}).") from e
  x = np.clip(np.concatenate(xs), 0.0, 255.0).astype(np.float32)
  pixel_scale = 255
  if image_scale == "unit":
    x, pixel_scale = x / np.float32(255.0), 1
  y = np.concatenate(ys).astype(np.int64)
  if classes is not None:         # renumber the subfolders in the members' class order
    missing = [c for c in class_names if c not in classes]
    if missing:
      raise DataError(f"{folder}: subfolder {missing[0]!r} is not one of classes "
                      f"({', '.join(classes)}).")
    y = np.asarray([classes.index(class_names[i]) for i in range(len(class_names))],
                   np.int64)[y]
    class_names = classes
  return DataSource(x=x, y=y, name=f"folder {folder.rstrip(os.sep)}{os.sep} "
                    f"({len(class_names)} classes)", class_names=class_names,
                    pixel_scale=pixel_scale)


# ----------------------------------------------------------------------------------------
# .csv


def _is_number(cell):
  try:
    float(cell)
  except ValueError:
    return False
  return True


def _has_header(rows):
  """Whether the first row names the columns: some column is numeric in the rows below
  it (up to 100) but not in the first. A first row of numbers is always data."""
  first = rows[0]
  below = rows[1:101]
  if all(_is_number(cell) for cell in first):
    return False
  if not below:
    return True
  for j, cell in enumerate(first):
    if not _is_number(cell) and all(j < len(row) and _is_number(row[j]) for row in below):
      return True
  # No column tells: the first row is as non-numeric as the rest (e.g. text columns).
  return all(not _is_number(cell) for cell in first)


def _load_csv(path, target_column, classes=None):
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      rows = [(line, row) for line, row in enumerate(csv.reader(f), start=1)
              if any(cell.strip() for cell in row)]
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path}: not a readable .csv table ({_first_line(e)}).") from e
  if not rows:
    raise DataError(f"{path}: empty (expected rows of numbers, a header row optional).")
  cells = [[cell.strip() for cell in row] for _, row in rows]
  if _has_header(cells):
    header, rows = cells[0], rows[1:]
  else:
    header = [f"column {j + 1}" for j in range(len(cells[0]))]
    if target_column is not None:
      raise DataError(f"{path} has no header row, so no column is named "
                      f"{target_column!r}.")
  if len(header) < 2:
    raise DataError(f"{path}: {len(header)} column(s); need inputs and a target (at least "
                    "2 columns, comma-separated).")
  if not rows:
    raise DataError(f"{path}: a header row and no data rows.")
  if target_column is None:
    target = len(header) - 1
  elif target_column in header:
    target = header.index(target_column)
  else:
    raise DataError(f"{path} has no column {target_column!r} "
                    f"(columns: {', '.join(header)}).")
  values = np.empty((len(rows), len(header)), np.float64)
  names = []
  text_target = not all(_is_number(row[target].strip()) for _, row in rows
                        if len(row) == len(header))
  for i, (line, row) in enumerate(rows):
    if len(row) != len(header):
      raise DataError(f"{path} line {line}: {len(row)} cells, but the "
                      f"{'header' if header[0] != 'column 1' else 'first row'} has "
                      f"{len(header)} columns.")
    for j, cell in enumerate(row):
      if j == target and text_target:
        names.append(cell.strip())
        continue
      try:
        values[i, j] = float(cell)
      except ValueError:
        shown = repr(cell.strip()) if cell.strip() else "empty cell"
        raise DataError(f"{path} line {line} (row {i + 1}), column {header[j]!r}: "
                        f"{shown} is not a number.") from None
  x = np.delete(values, target, axis=1)
  if not text_target:
    return DataSource(x=x, y=values[:, target], name=path)
  # Class names in the target column: numbered in the members' order (`classes`), or
  # in sorted order.
  order = classes if classes is not None else tuple(sorted(set(names)))
  lookup = {name: k for k, name in enumerate(order)}
  unknown = next((i for i, name in enumerate(names) if name not in lookup), None)
  if unknown is not None:
    raise DataError(f"{path} row {unknown + 1}: label {names[unknown]!r} is not one of "
                    f"classes ({', '.join(order)}).")
  y = np.asarray([lookup[name] for name in names], np.int64)
  return DataSource(x=x, y=y, name=path, class_names=tuple(order))


# ----------------------------------------------------------------------------------------
# The checks that every source passes.


def _non_finite(name, what, original, cast):
  """Raises if `original` has NaN/Inf, or `cast` (float32) overflowed; rows are axis 0."""
  for values, problem in ((original, "NaN/Inf values"),
                          (cast, "values too large for float32")):
    bad = ~np.isfinite(values)
    if bad.any():
      rows = bad.reshape(len(bad), -1).any(axis=1)
      raise DataError(f"{name}: {what} has {int(bad.sum())} {problem} "
                      f"(first at row {int(np.argmax(rows))}).")


def _numeric(name, what, array):
  array = np.asarray(array)
  if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
          or array.dtype == np.bool_):
    raise DataError(f"{name}: {what} has dtype {array.dtype}; expected numbers "
                    "(int or float).")
  if array.ndim == 0:
    raise DataError(f"{name}: {what} is a scalar; expected an array with one row per "
                    "example.")
  return array


def check_source(source, limit=None):
  """Casts, limits and checks a `DataSource` made from arrays, as `load_data` checks what
  it loads (one-line `DataError`s); returns the checked copy."""
  return _checked(source, limit)


def _checked(source, limit):
  """Casts, limits and checks a raw `DataSource`; see `load_data`."""
  name = source.name
  x = _numeric(name, "x", source.x)
  y = None if source.y is None else _numeric(name, "y", source.y)
  if y is not None and len(x) != len(y):
    raise DataError(f"{name}: x has {len(x)} examples but y has {len(y)}; "
                    "they must match.")
  if limit is not None:
    x = x[:limit]
    y = None if y is None else y[:limit]
  if len(x) == 0:
    raise DataError(f"{name}: no examples (x is empty, shape {tuple(x.shape)}).")
  with np.errstate(over="ignore"):  # overflow is reported below, by row
    x32 = x.astype(np.float32)
  if x32.ndim == 1:
    x32 = x32[:, None]
  if np.issubdtype(x.dtype, np.floating):
    _non_finite(name, "x", x, x32)
  if y is not None:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
      if y.ndim != 1:
        raise DataError(f"{name}: integer y (class labels) must have shape [n]; got "
                        f"{list(y.shape)} (one-hot labels? store their argmax; "
                        "regression targets? store them as float).")
      y = y.astype(np.int64)
      if (y < 0).any():
        raise DataError(f"{name}: y has {int((y < 0).sum())} negative class labels "
                        f"(first at row {int(np.argmax(y < 0))}); labels are 0..classes-1.")
    else:
      if y.ndim > 2:
        raise DataError(f"{name}: float y (regression targets) must have shape [n] or "
                        f"[n, d]; got {list(y.shape)}.")
      with np.errstate(over="ignore"):
        y32 = y.astype(np.float32)
      _non_finite(name, "y", y, y32)
      y = y32
  return DataSource(x=x32, y=y, name=name, class_names=source.class_names,
                    pixel_scale=source.pixel_scale)
