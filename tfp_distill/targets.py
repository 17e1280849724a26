"""tf.data pipelines that stream teacher targets (x, z) for `student.fit`.

```none
inputs (+ extra_inputs) ─► check finite ─► shuffle ─► batch ─► [perturb] ─► teacher ─► (x, z)
                                        or a sharded disk cache of (x, z) ─► shuffle ─► batch
```

Functions inside a tf.data pipeline run on the CPU: right for a CPU-only machine and for
building a disk cache. To evaluate the teacher on an accelerator inside the training step,
use `td.Distiller` instead (same losses, same targets).
"""

import hashlib
import json
import os
import warnings

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfp_distill import job_folder

__all__ = ["box_inputs", "far_inputs", "jittered_batches", "jittered_inputs",
           "marginal_inputs", "mixup_inputs", "service_targets", "teacher_targets",
           "uniform_inputs"]

_CACHE_MANIFEST = "targets.json"


def uniform_inputs(low, high, num_samples, seed=0):
  """Inputs x ~ U[low, high] (a box), drawn afresh each time the dataset is iterated.

  Use it as `inputs` or `extra_inputs` of `teacher_targets` to distil on a box wider than
  the training data (the general framework's toy and UCI settings): every epoch sees new
  points.

  Args:
    low: float or float array [features], lower corner of the box.
    high: float or float array [features], upper corner (> low).
    num_samples: int, points per epoch.
    seed: int; the stream of draws is a function of the seed (stateless RNG).

  Returns:
    tf.data.Dataset of float32 x [features] (features = 1 for scalar bounds).

  Raises:
    ValueError: if high <= low anywhere, bounds are not finite, or num_samples < 1.
  """
  low = np.atleast_1d(np.asarray(low, np.float32))
  high = np.atleast_1d(np.asarray(high, np.float32))
  low, high = np.broadcast_arrays(low, high)
  if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
    raise ValueError("uniform_inputs: low and high must be finite.")
  if np.any(high <= low):
    raise ValueError(f"uniform_inputs: need high > low, got low={low}, high={high}.")
  if num_samples < 1:
    raise ValueError(f"uniform_inputs: num_samples must be >= 1, got {num_samples}.")
  low_t, width = tf.constant(low), tf.constant(high - low)

  def draw(s):
    u = tf.random.stateless_uniform(low.shape, seed=tf.stack([s, tf.constant(seed, s.dtype)]))
    return low_t + width * u

  return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(
      int(num_samples)).map(draw, num_parallel_calls=tf.data.AUTOTUNE)


def jittered_inputs(x, scale, num_samples, seed=0):
  """Training inputs plus Gaussian noise, drawn afresh each time the dataset is iterated.

  ```none
  x' = x[i] + scale * eps,   i ~ Uniform{0..n-1},  eps ~ N(0, I)
  ```
  Extra distillation inputs near the data (the general framework allows any x; UCI
  features are normalised, so one `scale` fits every feature).

  Args:
    x: float array [n, features...], the inputs to jitter.
    scale: float >= 0 or float array broadcastable to a row of x, the noise standard
      deviation.
    num_samples: int, points per epoch.
    seed: int; the stream of draws is a function of the seed (stateless RNG).

  Returns:
    tf.data.Dataset of float32 x' [features...].

  Raises:
    ValueError: for an empty x, non-finite x or scale, a negative scale, num_samples < 1.
  """
  x = np.asarray(x, np.float32)
  scale = np.asarray(scale, np.float32)
  if x.ndim < 1 or len(x) == 0:
    raise ValueError(f"jittered_inputs: x is empty (shape {x.shape}).")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(scale))):
    raise ValueError("jittered_inputs: x and scale must be finite.")
  if np.any(scale < 0):
    raise ValueError(f"jittered_inputs: scale must be >= 0, got {scale}.")
  if num_samples < 1:
    raise ValueError(f"jittered_inputs: num_samples must be >= 1, got {num_samples}.")
  x_t, scale_t = tf.constant(x), tf.constant(scale)
  n, chunk = len(x), 1024

  def draw(s):
    # One vectorised draw of `chunk` points per element of the seed stream.
    pair = tf.stack([s, tf.constant(seed, s.dtype)])
    index_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(pair, 2))
    i = tf.random.stateless_uniform([chunk], index_seed, minval=0, maxval=n,
                                    dtype=tf.int64)
    rows = tf.gather(x_t, i)
    return rows + scale_t * tf.random.stateless_normal(tf.shape(rows), noise_seed)

  chunks = -(-int(num_samples) // chunk)
  return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(
      chunks).map(draw, num_parallel_calls=tf.data.AUTOTUNE).unbatch().take(
          int(num_samples)).apply(  # unbatch hides the size; Keras needs it per epoch
              tf.data.experimental.assert_cardinality(int(num_samples)))


def mixup_inputs(x, num_samples, rng):
  """Convex combinations lam x_i + (1 - lam) x_j of random pairs of rows, drawn once.

  Inputs between the training points, where members disagree: distilling on them shows
  a student epistemic uncertainty that the training points alone barely show.

  Args:
    x: float array [n, ...].
    num_samples: int >= 0.
    rng: `np.random.Generator`; i, j and then lam ~ U(0, 1) are drawn from it in that order.

  Returns:
    float array [num_samples, ...] of x's dtype.
  """
  x = np.asarray(x)
  i, j = rng.integers(0, len(x), num_samples), rng.integers(0, len(x), num_samples)
  lam = rng.uniform(size=(num_samples,) + (1,) * (x.ndim - 1)).astype(x.dtype)
  return lam * x[i] + (1. - lam) * x[j]


def _row_scale(x):
  """Per-feature standard deviation of x [n, ...] over its rows (0 -> 1)."""
  std = np.asarray(x, np.float64).std(axis=0)
  return np.where(std > 0, std, 1.0)


def far_inputs(x, num_samples, rng, scale=(1.0, 4.0)):
  """Scaled noise around the training rows: inputs from near the data to well beyond it.

  ```none
  x' = x_i + s * sd * eps,   i ~ Uniform{0..n-1},  s ~ U[scale],  eps ~ N(0, I)
  ```
  `sd` is each feature's standard deviation over the rows. Small `s` is jitter; at a few
  standard deviations the points leave the data, where members trained on it disagree:
  a student distilled there learns how the ensemble's uncertainty grows away from the
  data, which inputs between training points (mixup) do not show.

  Args:
    x: float array [n, ...].
    num_samples: int >= 0.
    rng: `np.random.Generator` (i, s, eps drawn in that order).
    scale: (low, high) floats >= 0, the noise's range in feature standard deviations.

  Returns:
    float array [num_samples, ...] of x's dtype.
  """
  x = np.asarray(x)
  low, high = (float(v) for v in scale)
  if not 0 <= low <= high:
    raise ValueError(f"far_inputs: scale must be (low, high) with 0 <= low <= high, got "
                     f"{scale!r}.")
  i = rng.integers(0, len(x), num_samples)
  s = rng.uniform(low, high, size=(num_samples,) + (1,) * (x.ndim - 1))
  noise = rng.normal(size=(num_samples,) + x.shape[1:])
  return (x[i] + s * _row_scale(x) * noise).astype(x.dtype)


def box_inputs(x, num_samples, rng, expand=0.5):
  """Inputs drawn uniformly on the data's bounding box, widened on every side.

  ```none
  x'_f ~ U[min_f - expand * range_f, max_f + expand * range_f]      for each feature f
  ```
  The general framework's setting (its toy and UCI students distil on a box wider than
  the data). In many dimensions the box is mostly empty of data: its points are far
  from the data in most directions.

  Args:
    x: float array [n, ...].
    num_samples: int >= 0.
    rng: `np.random.Generator`.
    expand: float >= 0, the widening on each side as a share of each feature's range.

  Returns:
    float array [num_samples, ...] of x's dtype.
  """
  x = np.asarray(x)
  if not expand >= 0:
    raise ValueError(f"box_inputs: expand must be >= 0, got {expand!r}.")
  low, high = x.min(axis=0), x.max(axis=0)
  width = high - low
  u = rng.uniform(size=(num_samples,) + x.shape[1:])
  return (low - expand * width + u * (1 + 2 * expand) * width).astype(x.dtype)


def marginal_inputs(x, num_samples, rng):
  """New combinations of the data's own feature values: the product of its marginals.

  ```none
  x'_f = x[i_f, f],   i_f ~ Uniform{0..n-1} independently for each feature f
  ```
  Every feature keeps the values and the distribution it has in the data, but the
  features no longer go together: the points lie inside the data's ranges, away from
  its rows. Inputs of that kind (a design whose every setting was seen, in a combination
  that was not) are out of distribution without being out of range; box and far inputs
  rarely reach them in many dimensions (a box widened by half its range on each side
  puts 1 / 2^d of its points inside the ranges). On the UCI PCA hold-out of yacht, whose
  held-out rows lie inside every feature's range, twice as many marginal inputs as
  training and jittered ones brought the student's OOD AUROC to 0.726 against the
  ensemble's 0.740 (jitter alone: 0.517; docs/studies/ood-inputs.md).

  Args:
    x: float array [n, ...] (each element of a row is a feature).
    num_samples: int >= 0.
    rng: `np.random.Generator`.

  Returns:
    float array [num_samples, ...] of x's dtype.
  """
  x = np.asarray(x)
  flat = x.reshape(len(x), -1)
  rows = rng.integers(0, len(x), size=(num_samples, flat.shape[1]))
  picked = np.take_along_axis(flat, rows, axis=0) if num_samples else flat[:0]
  return picked.reshape((num_samples,) + x.shape[1:]).astype(x.dtype)


def jittered_batches(x, batch_size, scale, num_jittered, seed=0, drop_remainder=False,
                     num_box=0, box_expand=0.5, num_marginal=0, num_far=0,
                     far_scale=(1.0, 4.0)):
  """Batches of the rows of x and of fresh jittered copies, shuffled together each epoch.

  ```none
  epoch e:  rows   = [x_0 .. x_{n-1}] + [x[i_j] + scale * eps_j  for j < num_jittered]
                   + [u_j on the widened box (as `box_inputs`)  for j < num_box]
                   + [m_j, features of random rows (as `marginal_inputs`)
                                                               for j < num_marginal]
                   + [x[k_j] + s_j * sd * eps_j (as `far_inputs`)  for j < num_far]
            order  = a permutation of all these rows (stateless in seed, e)
            yields rows[order[b B:(b + 1) B]] for every batch b
  ```
  The same inputs as `inputs.concatenate(jittered_inputs(...))` fully shuffled, drawn for
  a whole epoch at once (one permutation, one gather, one noise draw) and sliced into
  batches, instead of one element at a time: the pipeline keeps up with small students.
  Box inputs (`num_box` > 0) are drawn afresh every epoch, uniform on the rows' bounding
  box widened by `box_expand` of each feature's range on every side, and are not
  jittered: inputs off the data, where the members disagree. Marginal and far inputs
  (`num_marginal`, `num_far` > 0) are drawn afresh every epoch too.

  Args:
    x: float array [n, features...].
    batch_size: int >= 1.
    scale: float >= 0 or float array broadcastable to a row of x, the noise sd.
    num_jittered: int >= 0, jittered rows per epoch (drawn afresh every epoch).
    seed: int; the epochs' orders and draws are a function of it.
    drop_remainder: bool, drop a last partial batch.
    num_box: int >= 0, box inputs per epoch (drawn afresh every epoch).
    box_expand: float >= 0, the box's widening on each side as a share of each
      feature's range over the rows.
    num_marginal: int >= 0, marginal inputs per epoch (`marginal_inputs`).
    num_far: int >= 0, far inputs per epoch (`far_inputs`: a random row plus noise of s
      feature standard deviations, s uniform on `far_scale`).
    far_scale: (low, high) floats, 0 <= low <= high.

  Returns:
    tf.data.Dataset of float32 batches [batch, features...], with a known size per epoch.

  Raises:
    ValueError: for an empty or non-finite x, a negative or non-finite scale,
      batch_size < 1, num_jittered < 0, num_box < 0, box_expand < 0,
      num_marginal < 0, num_far < 0 or a far_scale that is not 0 <= low <= high.
  """
  x = np.asarray(x, np.float32)
  scale = np.asarray(scale, np.float32)
  if x.ndim < 1 or len(x) == 0:
    raise ValueError(f"jittered_batches: x is empty (shape {x.shape}).")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(scale))):
    raise ValueError("jittered_batches: x and scale must be finite.")
  if np.any(scale < 0):
    raise ValueError(f"jittered_batches: scale must be >= 0, got {scale}.")
  if batch_size < 1 or num_jittered < 0:
    raise ValueError(f"jittered_batches: need batch_size >= 1 and num_jittered >= 0, got "
                     f"{batch_size} and {num_jittered}.")
  far_low, far_high = (float(v) for v in far_scale)
  if (num_box < 0 or not box_expand >= 0 or num_marginal < 0 or num_far < 0
      or not 0 <= far_low <= far_high):
    raise ValueError(f"jittered_batches: need num_box, num_marginal, num_far >= 0, "
                     f"box_expand >= 0 and far_scale (low, high) with 0 <= low <= high, "
                     f"got {num_box}, {num_marginal}, {num_far}, {box_expand} and "
                     f"{far_scale}.")
  n, num_box, num_marginal, num_far = len(x), int(num_box), int(num_marginal), int(num_far)
  rows_total = n + int(num_jittered)          # the rows and their jittered copies
  total = rows_total + num_box + num_marginal + num_far
  row_sd = tf.constant(_row_scale(x).astype(np.float32))
  features = int(np.prod(x.shape[1:]))
  x_t, scale_t = tf.constant(x), tf.constant(scale)
  low, high = x.min(axis=0), x.max(axis=0)
  box_low = tf.constant(low - box_expand * (high - low))
  box_width = tf.constant((1 + 2 * box_expand) * (high - low))
  jitter = tf.concat([tf.zeros([n]), tf.ones([rows_total - n]),
                      tf.zeros([num_box + num_marginal + num_far])], axis=0)
  full, rest = divmod(total, batch_size)
  num_batches = full + (1 if rest and not drop_remainder else 0)

  def epoch(s):   # one epoch's inputs, drawn at once, sliced into batches
    pair = tf.stack([s, tf.constant(seed, tf.int64)])
    row_seed, order_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(pair, 3))
    extra = tf.random.stateless_uniform([rows_total - n], row_seed, minval=0, maxval=n,
                                        dtype=tf.int64)
    rows = tf.concat([tf.range(n, dtype=tf.int64), extra], axis=0)
    order = tf.random.experimental.stateless_shuffle(tf.range(total, dtype=tf.int64),
                                                     seed=order_seed)
    if num_box or num_marginal or num_far:   # (seeds of their own: without them the
      parts = [tf.gather(x_t, rows)]             # draws are as before)
      if num_box:
        box_seed = tf.random.experimental.stateless_fold_in(noise_seed, 1)
        u = tf.random.stateless_uniform([num_box] + list(x.shape[1:]), box_seed)
        parts.append(box_low + u * box_width)
      if num_marginal:              # feature f of marginal input j from row picks[j, f]
        pick_seed = tf.random.experimental.stateless_fold_in(noise_seed, 2)
        picks = tf.random.stateless_uniform([num_marginal, features], pick_seed, minval=0,
                                            maxval=n, dtype=tf.int64)
        columns = tf.transpose(tf.reshape(x_t, [n, features]))          # [features, n]
        values_fm = tf.gather(columns, tf.transpose(picks), batch_dims=1)
        parts.append(tf.reshape(tf.transpose(values_fm), [num_marginal] + list(x.shape[1:])))
      if num_far:
        far_row_seed, far_s_seed, far_eps_seed = tf.unstack(
            tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(noise_seed, 3), 3))
        centres = tf.random.stateless_uniform([num_far], far_row_seed, minval=0, maxval=n,
                                              dtype=tf.int64)
        s = tf.random.stateless_uniform([num_far] + [1] * (x.ndim - 1), far_s_seed,
                                        minval=far_low, maxval=far_high)
        eps = tf.random.stateless_normal([num_far] + list(x.shape[1:]), far_eps_seed)
        parts.append(tf.gather(x_t, centres) + s * row_sd * eps)
      values = tf.gather(tf.concat(parts, axis=0), order)           # [total, features...]
    else:
      values = tf.gather(x_t, tf.gather(rows, order))               # [total, features...]
    mask = tf.reshape(tf.gather(jitter, order), [total] + [1] * (x.ndim - 1))
    values += mask * scale_t * tf.random.stateless_normal(tf.shape(values), noise_seed)
    batches = tf.data.Dataset.from_tensor_slices(
        tf.reshape(values[:full * batch_size], [full, batch_size] + list(x.shape[1:])))
    if rest and not drop_remainder:
      batches = batches.concatenate(tf.data.Dataset.from_tensors(values[full * batch_size:]))
    return batches

  return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
          .flat_map(epoch)
          .apply(tf.data.experimental.assert_cardinality(num_batches))
          .prefetch(tf.data.AUTOTUNE))


def _to_dataset(data, what):
  """Array, (x, y) tuple or Dataset -> (Dataset of x or (x, y), has_labels)."""
  if isinstance(data, tf.data.Dataset):
    if int(data.cardinality()) == 0:
      raise ValueError(f"teacher_targets: {what} is an empty dataset.")
    spec = data.element_spec
    if isinstance(spec, dict):
      raise ValueError(f"teacher_targets: {what} must yield x or (x, y), not a dict.")
    has_labels = isinstance(spec, tuple)
    if has_labels and len(spec) != 2:
      raise ValueError(f"teacher_targets: {what} must yield x or (x, y); got tuples of "
                       f"{len(spec)}.")
    return data, has_labels
  if isinstance(data, (tuple, list)):
    if len(data) != 2:
      raise ValueError(f"teacher_targets: {what} must be x or (x, y).")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    if len(x) != len(y):
      raise ValueError(f"teacher_targets: {what} has {len(x)} inputs but {len(y)} labels.")
    if len(x) == 0:
      raise ValueError(f"teacher_targets: {what} is empty (0 rows).")
    return tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32))), True
  x = np.asarray(data, np.float32)
  if x.ndim == 0 or len(x) == 0:
    raise ValueError(f"teacher_targets: {what} is empty (shape {x.shape}); expected "
                     "[n, features...] with n >= 1.")
  return tf.data.Dataset.from_tensor_slices(x), False


def _check_finite(element, has_labels):
  x = element[0] if has_labels else element
  x = tf.debugging.assert_all_finite(x, "teacher_targets: an input x contains NaN or Inf")
  if has_labels:
    y = tf.debugging.assert_all_finite(element[1],
                                       "teacher_targets: a label y contains NaN or Inf")
    return x, y
  return x


def _label_targets(x, z, y):
  return x, {"ensemble": z, "label": y}


_CHUNK = 1024   # rows per element of a cache (format 2)


def _cache_files(cache_dir):
  """{relative path: sha256 hex} of every file of a cache but its manifest and marker."""
  out = {}
  for root, dirs, names in os.walk(cache_dir):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      relative = os.path.relpath(path, cache_dir)
      if relative in (_CACHE_MANIFEST, job_folder.MARKER_NAME, job_folder.LOCK_NAME):
        continue
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      out[relative] = digest.hexdigest()
  return out


def _read_manifest(cache_dir):
  manifest = os.path.join(cache_dir, _CACHE_MANIFEST)
  try:
    with open(manifest, encoding="utf-8") as f:
      meta = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as error:
    raise ValueError(f"The target cache manifest {manifest} is unreadable ({error}): "
                     "delete the folder to rebuild.") from error
  if not isinstance(meta, dict):
    raise ValueError(f"The target cache manifest {manifest} is not a JSON object: delete "
                     "the folder to rebuild.")
  return meta


def _verify_cache(cache_dir, meta):
  """Raises ValueError naming the first file whose checksum differs from the manifest's."""
  expected = meta.get("sha256")
  if expected is None:           # caches written before checksums: nothing to compare
    return
  found = _cache_files(cache_dir)
  for relative, digest in sorted(expected.items()):
    if relative not in found:
      raise ValueError(f"The target cache in {cache_dir!r} is missing {relative}: delete "
                       "the folder to rebuild.")
    if found[relative] != digest:
      raise ValueError(f"The target cache file {os.path.join(cache_dir, relative)} is "
                       "corrupted (its SHA-256 differs from the manifest's): delete the "
                       "folder to rebuild.")


def _inputs_fingerprint(inputs, extra_inputs):
  """What the cache's inputs are: SHA-256 of arrays; spec and size of a Dataset.

  The contents of a `tf.data.Dataset` are not read here (it may draw new values each
  time it is iterated): for those only the element spec and size are compared.
  """
  def one(data):
    if data is None:
      return None
    if isinstance(data, tf.data.Dataset):
      return {"dataset": str(data.element_spec), "cardinality": int(data.cardinality())}
    parts = data if isinstance(data, (tuple, list)) else (data,)
    digest = hashlib.sha256()
    for part in parts:
      array = np.ascontiguousarray(np.asarray(part, np.float32))
      digest.update(str(array.shape).encode())
      digest.update(array.tobytes())
    return {"sha256": digest.hexdigest(), "rows": int(len(parts[0]))}
  return {"inputs": one(inputs), "extra_inputs": one(extra_inputs)}


def _teacher_digest(teacher):
  """SHA-256 of a teacher's weights (an `Ensemble` or a model), or None for a callable."""
  members = getattr(teacher, "members", None)
  models = list(members) if members is not None else [teacher]
  digest = hashlib.sha256()
  for model in models:
    if hasattr(model, "get_weights"):
      arrays = model.get_weights()
    elif hasattr(model, "variables") and not callable(model.variables):
      arrays = [v.numpy() for v in model.variables]
    else:
      return None
    for array in arrays:
      array = np.ascontiguousarray(array)
      digest.update(f"{array.dtype}{array.shape}".encode())
      digest.update(array.tobytes())
  return digest.hexdigest()


#: The teacher probe's tolerance, relative to 1 + max|z|: a teacher recomputed on other
#: batches agrees to rounding (float32 ~1e-6, bfloat16 members ~1e-2 at worst); a
#: different teacher's outputs differ by O(1).
_PROBE_RTOL = 2.0 ** -5


def _probe_teacher(cache_dir, loaded, chunked, teacher):
  """Reruns the teacher on up to 64 cached inputs; ValueError if it gives other outputs."""
  element = next(iter(loaded if chunked else loaded.batch(64)))
  x, z = element[0][:64], element[1][:64]
  fresh = tf.convert_to_tensor(teacher(x))
  if tuple(fresh.shape) != tuple(z.shape):
    raise ValueError(f"cache_dir {cache_dir!r} holds teacher outputs of shape "
                     f"{list(z.shape[1:])} per input; this teacher gives "
                     f"{list(fresh.shape[1:])}: another teacher made it. Use a new "
                     "cache_dir (or delete this one to rebuild).")
  z = z.numpy().astype(np.float64)
  gap = float(np.max(np.abs(fresh.numpy().astype(np.float64) - z)))
  if not gap <= _PROBE_RTOL * (1.0 + float(np.max(np.abs(z)))):
    raise ValueError(f"cache_dir {cache_dir!r} was made by another teacher: on its first "
                     f"{len(z)} cached inputs this teacher's outputs differ by up to "
                     f"{gap:.3g}. Use a new cache_dir (or delete this one to rebuild).")


def _check_cache_identity(cache_dir, meta, inputs, teacher, loaded, chunked):
  """Refuses a complete cache made from other inputs or by another teacher."""
  saved = meta.get("inputs")
  if saved is not None and saved != inputs:
    which = [k for k in ("inputs", "extra_inputs") if saved.get(k) != inputs.get(k)]
    raise ValueError(f"cache_dir {cache_dir!r} was made from other {' and '.join(which)} "
                     "(their fingerprint differs): use a new cache_dir for these inputs "
                     "(or delete this one to rebuild).")
  digest = _teacher_digest(teacher)
  if meta.get("teacher_sha256") is not None and digest is not None:
    if meta["teacher_sha256"] != digest:
      raise ValueError(f"cache_dir {cache_dir!r} was made by another teacher (its "
                       "weights' SHA-256 differs): use a new cache_dir (or delete this "
                       "one to rebuild).")
    return
  _probe_teacher(cache_dir, loaded, chunked, teacher)


def _cached(ds, has_labels, teacher, cache_dir, inputs, num_shards=8):
  """Computes (x, z[, y]) once into a sharded tf.data snapshot on disk; reloads it.

  ```none
  cache_dir/.tfp_distill.json   marker: written first, the folder is ours
  cache_dir/data/               the tf.data snapshot: chunks of up to 1024 rows
  cache_dir/targets.json        manifest, written last: format, the SHA-256 of every
                                file, the inputs' fingerprint, the teacher's weights' SHA-256
  ```
  Returns (dataset, chunked): chunked datasets yield row chunks, format-1 caches single
  rows.

  A folder with a manifest is a complete cache: its files are checked against their
  checksums, and it is used only for the same inputs and the same teacher (else a
  ValueError says which differs). A folder with our marker but no manifest is a cache
  whose writer was stopped: its data is removed and rebuilt, with a warning. A non-empty
  folder without either was not written here: it is refused and nothing in it is touched.
  """
  manifest = os.path.join(cache_dir, _CACHE_MANIFEST)
  members = getattr(teacher, "num_members", None)
  if os.path.lexists(cache_dir) and not os.path.isdir(cache_dir):
    raise ValueError(f"cache_dir {cache_dir!r} is a file, not a folder.")
  if os.path.exists(manifest):
    meta = _read_manifest(cache_dir)
    if members is not None and meta.get("members") not in (None, members):
      raise ValueError(
          f"The target cache in {cache_dir!r} was made by an ensemble of "
          f"{meta['members']} members, this one has {members}: delete the folder to rebuild.")
    _verify_cache(cache_dir, meta)
    loaded = _load_cache(os.path.join(cache_dir, meta.get("data", "")))
    chunked = meta.get("format_version", 1) >= 2
    _check_cache_identity(cache_dir, meta, inputs, teacher, loaded, chunked)
    return loaded, chunked
  folder = job_folder.JobFolder(cache_dir, "cache_dir", "td.teacher_targets",
                                kind="target cache")
  with folder:     # claimed (a folder holding anything not written here is refused), locked
    if folder.owns("data"):
      warnings.warn(f"The target cache in {cache_dir!r} has no manifest: its writer was "
                    "stopped before finishing. Rebuilding it.", RuntimeWarning,
                    stacklevel=3)
      folder.remove("data")
    data_dir = folder.reserve("data")

    def with_z(*e):
      x = e[0]
      z = teacher(x)
      z = tf.debugging.assert_all_finite(z, "teacher_targets: the teacher produced NaN/Inf")
      return (x, z, e[1]) if has_labels else (x, z)

    computed = ds.batch(_CHUNK).map(with_z).enumerate()
    computed.save(data_dir, shard_func=lambda i, e: i % num_shards)
    meta = {"members": members, "format_version": 3, "rows_per_element": _CHUNK,
            "data": "data", "inputs": inputs, "teacher_sha256": _teacher_digest(teacher),
            "sha256": _cache_files(cache_dir)}
    tmp = manifest + ".tmp"
    with open(tmp, "w") as f:
      json.dump(meta, f)
    os.replace(tmp, manifest)       # atomic: a manifest is whole or absent
  return _load_cache(data_dir), True


def _load_cache(cache_dir):
  return tf.data.Dataset.load(cache_dir).map(lambda i, e: e)


def _shuffle_rows(seed_pair, chunk):
  """The rows of a cached chunk in a random order (one permutation, one gather each)."""
  order = tf.random.experimental.stateless_shuffle(
      tf.range(tf.shape(chunk[0])[0], dtype=tf.int64), seed=seed_pair)
  return tuple(tf.gather(part, order) for part in chunk)


def teacher_targets(inputs, ensemble, batch_size=128, perturbation=None, extra_inputs=None,
                    cache_dir=None, seed=0, shuffle=True, shuffle_buffer=None,
                    drop_remainder=False):
  """A tf.data stream of (x, z) batches for `student.fit`, the teacher run on the fly.

  ```none
  yields  (x [batch, ...], z [batch, members, params])                  inputs without labels
          (x, {"ensemble": z [batch, members, params], "label": y [batch, ...]})   with labels
  ```
  z is always the teacher's output *on the x it is paired with*: a perturbation is applied
  to x before the teacher runs, never after.

  Args:
    inputs: x as an array [n, ...], or (x, y) arrays, or a `tf.data.Dataset` of unbatched x
      or (x, y) (e.g. `uniform_inputs(...)`, fresh each epoch).
    ensemble: callable x [batch, ...] -> z [batch, members, params] (an `Ensemble`).
    batch_size: int.
    perturbation: None, or a callable `(x, teacher, seed) -> x'` applied per batch before
      the teacher (seed: int64 Tensor [2], different every batch and epoch). Labels, if
      any, are then paired with x' (a student fitted on this stream sees x' only); for a
      label term on the clean x, as in Nam et al.'s students, use `td.Distiller`.
    extra_inputs: None, or unlabeled inputs in any form accepted for `inputs` (arrays or a
      Dataset), mixed into the stream (e.g. points on a wider box).
    cache_dir: None, or a new or empty folder (or one an earlier call filled): (x, z)
      are computed once, saved as a sharded tf.data snapshot of 1024-row chunks and
      reloaded on later calls with the same inputs and teacher (delete the folder to
      rebuild). A reuse is checked: array inputs by their SHA-256 (a Dataset by its
      element spec and size only: its contents are not read twice), the teacher by its
      weights' SHA-256 (or, for a plain callable, by rerunning it on 64 cached inputs);
      a mismatch raises. A non-empty folder this function did not write is refused and
      left untouched. Each epoch reads the chunks in a random order, shuffles the rows
      within each chunk and cuts batches (`shuffle_buffer` counts chunks there). Freezes
      the inputs, so it cannot be combined with a perturbation.
    seed: int, for shuffling and perturbation seeds.
    shuffle: bool.
    shuffle_buffer: int or None (the whole data set when its size is known, else 10000).
    drop_remainder: bool, drop a last partial batch.

  Returns:
    tf.data.Dataset as above, prefetched. The labelled form trains with `td.Distiller`
    (which takes precomputed targets as they are); Keras' own `student.fit` cannot route
    a dict target to a model with one distribution output.

  Raises:
    ValueError: for empty inputs, labels mixed with unlabeled extra inputs, a cache with a
      perturbation, or (when iterated) NaN/Inf in inputs, labels or teacher outputs.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  ds, has_labels = _to_dataset(inputs, "inputs")
  if extra_inputs is not None:
    extra, extra_labels = _to_dataset(extra_inputs, "extra_inputs")
    if extra_labels != has_labels:
      raise ValueError(
          "teacher_targets: inputs and extra_inputs must both carry labels or both not: "
          "the labelled loss term needs a label for every example.")
    ds = ds.concatenate(extra)
  ds = ds.map(lambda *e: _check_finite(e if has_labels else e[0], has_labels),
              num_parallel_calls=tf.data.AUTOTUNE)
  if cache_dir is not None:
    if perturbation is not None:
      raise ValueError("teacher_targets: a disk cache freezes (x, z); it cannot be "
                       "combined with a perturbation, which needs the teacher per batch.")
    ds, chunked = _cached(ds, has_labels, ensemble, cache_dir,
                          _inputs_fingerprint(inputs, extra_inputs))
    if chunked:   # shuffle the chunks and the rows within each, then cut batches
      if shuffle:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((seeds, ds.shuffle(
            shuffle_buffer or 10_000, seed=seed, reshuffle_each_iteration=True))).map(
                _shuffle_rows)
      ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
      if has_labels:
        ds = ds.map(_label_targets)
      return ds.prefetch(tf.data.AUTOTUNE)
  size = int(ds.cardinality())
  if shuffle:
    ds = ds.shuffle(shuffle_buffer or (size if size > 0 else 10000), seed=seed,
                    reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)

  if cache_dir is not None:
    if has_labels:
      ds = ds.map(_label_targets)
    return ds.prefetch(tf.data.AUTOTUNE)

  def with_targets(seed_pair, element):
    x = element[0] if has_labels else element
    if perturbation is not None:
      x = perturbation(x, ensemble, seed_pair)
    z = ensemble(x)
    z = tf.debugging.assert_all_finite(z, "teacher_targets: the teacher produced NaN/Inf")
    return _label_targets(x, z, element[1]) if has_labels else (x, z)

  seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
  ds = tf.data.Dataset.zip((seeds, ds)).map(with_targets)
  return ds.prefetch(tf.data.AUTOTUNE)


def service_targets(ensemble, x, service, batch_size=1024, job_name=None, retries=3,
                    verbose=0):
  """The teacher's outputs at x, computed by tf.data service workers.

  ```none
  batch index b ──► (b, ensemble(x[b B:(b + 1) B]))   on the service's workers
                         (the dataset graph carries the teacher and x)
  here: reassemble by b ──► z [n, members, params], the rows of x in order
        batches lost to a worker failure ──► asked for again, in a new job
  ```
  The batches are split among the workers ("distributed_epoch": each batch is computed
  once, by whichever worker is free) and put back in order here, so the result equals
  `ensemble.predict_targets(x)`. Start the servers with `tfp-distill data-service
  dispatcher --port P [--work-dir DIR]` and `tfp-distill data-service worker --port Q
  --dispatcher HOST:P` (or TensorFlow's `DispatchServer` / `WorkerServer`). The graph
  sent to the workers holds x and the teacher's weights as constants: for inputs or
  teachers of gigabytes, let workers read the data themselves (not built here).

  Faults: "distributed_epoch" visits each batch at most once, so the batches a worker
  held when it died are lost from the job; they are asked for again in a new job (up to
  `retries` times). TensorFlow's client waits for a dead worker to come back at the same
  address (as an orchestrator restarts it), and the dispatcher survives its own restart
  with `--work-dir` (fault-tolerant mode); a worker that never comes back stalls the job.

  Args:
    ensemble: `td.Ensemble` (or a callable x -> z [batch, members, params]).
    x: float array [n, ...].
    service: str, the dispatcher's address ("grpc://host:port" or "host:port").
    batch_size: int, rows per task sent to a worker.
    job_name: None or str; workers share the work of one job name (retries use
      job_name + "/retry-k").
    retries: int >= 0, further jobs for batches missing from the answer.
    verbose: int, 1 shows a progress bar over the batches.

  Returns:
    float32 NumPy array [n, members, params].

  Raises:
    ValueError: an empty x, batch_size < 1, retries < 0, or batches still missing after
      the retries.
  """
  x = np.asarray(x, np.float32)
  if len(x) == 0:
    raise ValueError("service_targets got an empty input.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if retries < 0:
    raise ValueError(f"retries must be >= 0, got {retries}.")
  n = len(x)
  num_batches = -(-n // batch_size)
  x_t = tf.constant(x)
  parts = {}
  bar = tqdm(total=num_batches, desc="teacher on the tf.data service",
             disable=not verbose, leave=False)
  for attempt in range(retries + 1):
    todo = [b for b in range(num_batches) if b not in parts]
    if not todo:
      break
    if attempt:
      warnings.warn(f"The tf.data service at {service} lost {len(todo)} of {num_batches} "
                    f"batches (a worker failed?); asking for them again (retry {attempt} "
                    f"of {retries}).", RuntimeWarning, stacklevel=2)
    name = job_name if job_name is None or attempt == 0 else f"{job_name}/retry-{attempt}"
    data = tf.data.Dataset.from_tensor_slices(np.asarray(todo, np.int64)).map(
        lambda b: (b, ensemble(x_t[b * batch_size:(b + 1) * batch_size])))
    data = data.apply(tf.data.experimental.service.distribute(
        processing_mode="distributed_epoch", service=service, job_name=name))
    for b, z in data:
      if int(b) not in parts:
        parts[int(b)] = z.numpy()
        bar.update()
  bar.close()
  missing = [b for b in range(num_batches) if b not in parts]
  if missing:
    raise ValueError(f"The tf.data service at {service} returned no outputs for "
                     f"{len(missing)} of {num_batches} batches (first: {missing[0]}), "
                     f"after {retries} retries.")
  return np.concatenate([parts[b] for b in range(num_batches)], axis=0).astype(np.float32)
