"""The teacher: an ensemble of M Keras members evaluated in one compiled graph.

```none
x [batch, ...] ──► member_1 .. member_M ──► z [batch, members, params]
```

Members of one functional architecture can run as one vectorized model with stacked
weights (`vectorized.StackedMembers`: one batched matmul or grouped convolution per layer
instead of M): always in training, in inference by default where a GPU is present (on a
CPU the separate members' graph measured as fast or faster). Other members run side by
side in one graph.

`train_ensemble` trains the members with independent initialisations and independent data
orders, as deep ensembles do [1]. The loss is the *sum* of the members' mean NLLs: each
member's parameters receive only its own gradient and Adam's update is per parameter, so
this is exactly M independent trainings, run in one graph per epoch (vectorized members)
or per step (members of other architectures) instead of M Python loops.

#### References

[1]: Lakshminarayanan, Pritzel, Blundell. Simple and scalable predictive uncertainty
     estimation using deep ensembles. NeurIPS 2017. arXiv:1612.01474.
"""

import inspect
import json
import os
import warnings

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfp_distill import _keras3
from tfp_distill import callbacks as callbacks_lib
from tfp_distill import families as families_lib
from tfp_distill import predict as predict_lib
from tfp_distill import teachers as teachers_lib
from tfp_distill import vectorized as vectorized_lib
from tfp_distill._keras import keras

__all__ = ["Ensemble", "VectorizationWarning", "array_member_streams", "member_permutation",
           "member_streams", "train_ensemble"]


class VectorizationWarning(UserWarning):
  """`train_ensemble(vectorize="auto")` fell back to separate members; says why."""


def _accelerator_present():
  return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def _check_vectorize(vectorize):
  if not (isinstance(vectorize, bool) or vectorize == "auto"):
    raise ValueError(f'vectorize must be True, False or "auto", got {vectorize!r}.')

_MANIFEST = "ensemble.json"


class Ensemble(keras.Model):
  """M members x -> z [batch, params], stacked to z [batch, members, params].

  Members may be tf_keras models, Keras 3 models (TensorFlow backend), SavedModels
  (`teachers.SavedModelMember`) or any callable x -> z, mixed freely
  (`teachers.member_function`); `Ensemble.from_files` loads them from `.keras` files of
  either Keras and SavedModel folders. Only tf_keras members of one architecture can be
  vectorized.

  The members run side by side in one graph, or as one vectorized model
  (`vectorized.StackedMembers`: weights stacked along a members axis, one batched op per
  layer) when their architecture allows it and stacking pays: by default on an
  accelerator, not on a CPU, where the separate members' graph measured as fast or
  faster (`tfp-distill bench --suite inference`; the stacked model wins in *training*,
  see `train_ensemble`). Calling the ensemble eagerly runs one `tf.function` graph;
  inside a `tf.function` or `tf.data` map it is part of the caller's graph. The members
  are not trainable through the ensemble (it is a teacher).

  A vectorized model holds a *copy* of the members' weights, made when the ensemble is
  built: after changing a member's weights call `refresh()` (or build a new Ensemble).

  Args:
    members: non-empty list of members (tf_keras or Keras 3 models, or callables), each
      mapping x to z [batch, params] with the same params; or a
      `vectorized.StackedMembers` (its members are materialised).
    family: optional `families.Family` of the members; when given, each member's output
      size is checked against `family.params_size`.
    vectorize: "auto" (default: stack the members on a GPU when their architecture
      allows), True (stack them or raise `vectorized.NotVectorizableError` naming the
      layer that prevents it), or False (a graph of M separate members).
    jit_compile: bool, compile the ensemble's graph with XLA.

  Attributes:
    vectorized: bool, whether calls run the stacked model.
    vectorize_reason: None, or why the members were not stacked (vectorize="auto").

  Raises:
    ValueError: for an empty list, a member that is neither a model nor a callable, a
      Keras 3 model on another backend (`teachers.TeacherError`), or (on the first call)
      members whose output sizes differ or do not fit the family, or that cannot take x.

  #### Examples

  ```python
  ens = td.Ensemble([member_0, member_1, member_2])
  z = ens(x)                          # [batch, 3, params]
  ens.save("teacher"); ens = td.Ensemble.load("teacher")
  ```
  """

  def __init__(self, members, family=None, vectorize="auto", jit_compile=False, **kwargs):
    super().__init__(**kwargs)
    _check_vectorize(vectorize)
    stacked = None
    if isinstance(members, vectorized_lib.StackedMembers):
      stacked, members = members, members.to_members()
    members = list(members)
    if not members:
      raise ValueError("An Ensemble needs at least one member, got an empty list.")
    self._member_fns = [teachers_lib.member_function(m, i) for i, m in enumerate(members)]
    foreign = [i for i, m in enumerate(members) if not isinstance(m, keras.Model)]
    self.members = members
    self.family = None if family is None else families_lib.get(family)
    self.trainable = False
    self.jit_compile = bool(jit_compile)
    self.vectorize_reason = None
    if stacked is None and foreign and vectorize is not False:
      reason = (f"member {foreign[0]} is a {teachers_lib.describe(members[foreign[0]])}; "
                "only tf_keras members can be stacked")
      if vectorize is True:
        raise vectorized_lib.NotVectorizableError(reason)
      self.vectorize_reason = reason
    elif stacked is None and vectorize == "auto" and not _accelerator_present():
      self.vectorize_reason = ("on a CPU the separate members' graph is as fast or faster "
                               "(pass vectorize=True to stack anyway)")
    elif stacked is None and vectorize is not False:
      try:
        stacked = vectorized_lib.StackedMembers(members, name="stacked_members")
      except vectorized_lib.NotVectorizableError as error:
        if vectorize is True:
          raise
        self.vectorize_reason = error.reason if error.layer is None else (
            f"layer {error.layer!r}: {error.reason}")
    self.stacked = stacked
    # autograph=False: nothing in _forward needs it, and errors raised while tracing a
    # member (`teachers.TeacherError`, shape errors) reach the caller as they are.
    self._graph_call = tf.function(self._forward, reduce_retracing=True, autograph=False,
                                   jit_compile=self.jit_compile)

  @classmethod
  def _from_trained(cls, members, stacked, family, vectorize):
    """An ensemble of `members`; `stacked` already holds their weights (no second copy)."""
    use_stacked = vectorize is True or (vectorize == "auto" and _accelerator_present())
    ensemble = cls(members, family=family, vectorize=vectorize if not use_stacked else False)
    if use_stacked:
      ensemble.stacked = stacked
    return ensemble

  @property
  def num_members(self):
    return len(self.members)

  @property
  def member_functions(self):
    """The functions x -> z [batch, params] that run each member (`teachers.member_function`)."""
    return list(self._member_fns)

  @property
  def vectorized(self):
    return self.stacked is not None

  def refresh(self):
    """Copies the members' current weights into the vectorized model (if any)."""
    if self.stacked is not None:
      self.stacked.load_from(self.members)

  def _stack(self, x):
    outputs = []
    for i, fn in enumerate(self._member_fns):
      try:
        out = tf.convert_to_tensor(fn(x))
      except teachers_lib.TeacherError:
        raise
      except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"Member {i} ({teachers_lib.describe(self.members[i])}) cannot take inputs "
            f"of shape {list(x.shape)} and dtype {x.dtype.name}: {first}") from error
      outputs.append(out)
    for i, o in enumerate(outputs):
      if o.shape.rank != 2:
        raise ValueError(f"Every member must map x to z of shape [batch, params]; member "
                         f"{i} ({teachers_lib.describe(self.members[i])}) gives shape "
                         f"{list(o.shape)}.")
    sizes = [tf.compat.dimension_value(o.shape[-1]) for o in outputs]
    if len(set(sizes)) > 1:
      common = max(set(sizes), key=sizes.count)
      odd = next(i for i, size in enumerate(sizes) if size != common)
      raise ValueError(
          f"The members' outputs differ in size: member {odd} "
          f"({teachers_lib.describe(self.members[odd])}) gives shape "
          f"{list(outputs[odd].shape)}, member {sizes.index(common)} gives "
          f"{list(outputs[sizes.index(common)].shape)}.")
    dtypes = {o.dtype for o in outputs}
    if len(dtypes) > 1:
      outputs = [tf.cast(o, tf.float32) for o in outputs]
    return tf.stack(outputs, axis=1)

  def _forward(self, x):
    z = self.stacked(x, training=False) if self.stacked is not None else self._stack(x)
    if self.family is not None:
      self.family.check_params(z, what="The members' output")
    if z.dtype in (tf.float16, tf.bfloat16):   # mixed-precision members: float32 targets
      z = tf.cast(z, tf.float32)
    # Rows of x holding NaN or Inf give NaN (a fused MatMul+BiasAdd+Relu can turn NaN
    # inputs into finite, plausible outputs).
    ok = tf.reshape(predict_lib.finite_rows(x), [-1, 1, 1])
    return tf.where(ok, z, tf.constant(np.nan, z.dtype))

  def call(self, x, training=False):
    """z: float Tensor [batch, members, params].

    Called eagerly, inputs holding NaN or Inf raise a ValueError naming the first such
    row; inside a graph (a tf.function, a tf.data map, a train step) those rows' outputs
    are NaN.
    """
    del training  # A teacher always runs in inference mode.
    if tf.executing_eagerly():
      ok = predict_lib.finite_rows(x).numpy()
      if not ok.all():
        bad = np.flatnonzero(~ok)
        raise ValueError(f"td.Ensemble: {len(bad)} input row(s) hold NaN or Inf, the "
                         f"first is row {int(bad[0])}.")
      return self._graph_call(x)
    return self._forward(x)

  def predict_targets(self, x, batch_size=1024):
    """Runs the ensemble over a large array in batches; returns NumPy [n, members, params]."""
    x = np.asarray(x)
    if len(x) == 0:
      raise ValueError("predict_targets got an empty input.")
    return np.concatenate([self(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)], axis=0)

  def save(self, path, overwrite=True):  # pylint: disable=arguments-differ
    """Writes `path/ensemble.json` and one `member_<i>.keras` file per member.

    Members that are tf_keras or Keras 3 models are saved by their own Keras; a callable
    or a SavedModel member has no `.keras` form and raises a ValueError.
    """
    for i, m in enumerate(self.members):
      if not (isinstance(m, keras.Model) or _keras3.is_keras3_object(m)):
        raise ValueError(f"Ensemble.save writes .keras files; member {i} is a "
                         f"{teachers_lib.describe(m)}. Keep its files and load the "
                         "ensemble with Ensemble.from_files.")
    os.makedirs(path, exist_ok=True)
    manifest = os.path.join(path, _MANIFEST)
    if os.path.exists(manifest) and not overwrite:
      raise FileExistsError(f"{manifest} exists and overwrite=False.")
    files = []
    for i, m in enumerate(self.members):
      name = f"member_{i}.keras"
      m.save(os.path.join(path, name), overwrite=True)
      files.append(name)
    meta = {
        "format_version": 1,
        "members": files,
        "family": None if self.family is None else families_lib.serialize(self.family),
    }
    with open(manifest, "w") as f:
      json.dump(meta, f, indent=2)

  @classmethod
  def load(cls, path, custom_objects=None, vectorize="auto"):
    """Loads what `save` wrote.

    Args:
      path: str, the folder `save` wrote.
      custom_objects: dict, passed to Keras' load_model.
      vectorize: as `Ensemble` ("auto", True or False).

    Returns:
      `Ensemble`.
    """
    manifest = os.path.join(path, _MANIFEST)
    if not os.path.exists(manifest):
      raise FileNotFoundError(f"No saved ensemble at {path!r} ({_MANIFEST} is missing).")
    with open(manifest) as f:
      meta = json.load(f)
    members = [teachers_lib.load_member(os.path.join(path, name), custom_objects)
               for name in meta["members"]]
    family = meta.get("family")
    return cls(members, family=None if family is None else families_lib.get(family),
               vectorize=vectorize)

  @classmethod
  def from_files(cls, paths, family=None, custom_objects=None, vectorize="auto",
                 jit_compile=False):
    """An ensemble of members loaded from files, one member per path.

    Args:
      paths: list of str: `.keras` files written by tf_keras or Keras 3 (which one is
        read from the file), SavedModel folders (their serving signature, else their
        restored `__call__`), or one folder written by `Ensemble.save`.
      family, vectorize, jit_compile: as `Ensemble`.
      custom_objects: dict, passed to the Keras loaders.

    Returns:
      `Ensemble`.

    Raises:
      teachers.TeacherError (a ValueError): a path that does not exist or is not a
        model; the message names it.
    """
    if isinstance(paths, (str, os.PathLike)):
      paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
      raise ValueError("Ensemble.from_files needs at least one path.")
    if len(paths) == 1 and os.path.exists(os.path.join(paths[0], _MANIFEST)):
      ensemble = cls.load(paths[0], custom_objects, vectorize=vectorize)
      if family is not None:
        ensemble.family = families_lib.get(family)
      return ensemble
    members = [teachers_lib.load_member(p, custom_objects) for p in paths]
    return cls(members, family=family, vectorize=vectorize, jit_compile=jit_compile)

  def get_config(self):
    raise NotImplementedError("Save an Ensemble with Ensemble.save(path); load it with "
                              "Ensemble.load(path).")


class _JointTrainer(keras.Model):
  """Trains M members at once on M independent streams: loss = sum_m mean NLL_m."""

  def __init__(self, members, family):
    super().__init__()
    self.members = members
    self.family = family
    self.nll_tracker = keras.metrics.Mean(name="nll")

  @property
  def metrics(self):
    return [self.nll_tracker]

  def train_step(self, data):
    with tf.GradientTape() as tape:
      nlls = []
      for member, (x, y) in zip(self.members, data):
        z = member(x, training=True)
        nlls.append(tf.reduce_mean(self.family.nll(y, z)))
      loss = tf.add_n(nlls) + tf.add_n([tf.constant(0.)] + [
          tf.add_n(m.losses) for m in self.members if m.losses])
    self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
    self.nll_tracker.update_state(tf.add_n(nlls) / len(nlls))
    return {"nll": self.nll_tracker.result()}


def _as_dataset(data):
  """(x, y) arrays or a Dataset of unbatched (x, y) -> (Dataset, size, arrays or None)."""
  if isinstance(data, tf.data.Dataset):
    n = int(data.cardinality())
    if n == 0:
      raise ValueError("train_ensemble got an empty dataset.")
    return data, (n if n > 0 else None), None
  if not (isinstance(data, (tuple, list)) and len(data) == 2):
    raise ValueError("train_ensemble expects (x, y) arrays or a tf.data.Dataset of "
                     f"unbatched (x, y) pairs, got {type(data).__name__}.")
  x, y = (np.asarray(a, dtype=np.float32) for a in data)
  if len(x) == 0:
    raise ValueError("train_ensemble got an empty dataset (x has 0 rows).")
  if len(x) != len(y):
    raise ValueError(f"x and y have different numbers of rows: {len(x)} vs {len(y)}.")
  for name, a in (("x", x), ("y", y)):
    if not np.all(np.isfinite(a)):
      raise ValueError(f"train_ensemble: {name} contains NaN or Inf "
                       f"({int(np.sum(~np.isfinite(a)))} values).")
  return tf.data.Dataset.from_tensor_slices((x, y)), len(x), (x, y)


def array_member_streams(x, y, num_members, batch_size, seed, shuffle=True):
  """`member_streams` for in-memory arrays, vectorised: one permutation op per epoch.

  Member m reads the rows in the order of `stateless_shuffle(range(n), [s, seed + m])`,
  where s is drawn afresh every epoch; shuffle=False keeps the data order.

  Args:
    x: float32 array [n, ...]; y: float32 array [n, ...].
    num_members: int, M.
    batch_size: int.
    seed: int.
    shuffle: bool.

  Returns:
    tf.data.Dataset of M-tuples ((x_0, y_0), ..., (x_{M-1}, y_{M-1})), each [batch, ...].
  """
  n = len(x)
  x_t, y_t = tf.constant(x), tf.constant(y)
  rows = tf.range(n, dtype=tf.int64)

  def permutations(s):
    if not shuffle:
      return tf.tile(rows[:, tf.newaxis], [1, num_members])
    return tf.stack([tf.random.experimental.stateless_shuffle(
        rows, seed=tf.stack([s, tf.constant(seed + m, tf.int64)]))
                     for m in range(num_members)], axis=1)       # [n, members]

  def gather(index):
    return tuple((tf.gather(x_t, index[:, m]), tf.gather(y_t, index[:, m]))
                 for m in range(num_members))

  num_batches = -(-n // batch_size)

  def batches(index):   # [n, members] -> a dataset of [batch, members] slices
    return tf.data.Dataset.range(num_batches).map(
        lambda b: index[b * batch_size:(b + 1) * batch_size])

  return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
          .map(permutations).flat_map(batches).map(gather)
          # flat_map hides the size; Keras needs it to start each epoch afresh.
          .apply(tf.data.experimental.assert_cardinality(num_batches))
          .prefetch(tf.data.AUTOTUNE))


def member_permutation(n, member_seed, epoch):
  """The order in which a vectorized member reads n in-memory rows in one epoch.

  Args:
    n: int, number of rows.
    member_seed: int, the member's seed (`seed + m` for member m of `train_ensemble`).
    epoch: int or int Tensor, 0-based epoch.

  Returns:
    int64 Tensor [n], a permutation of range(n) (stateless: a function of the arguments).
  """
  return tf.random.experimental.stateless_shuffle(
      tf.range(n, dtype=tf.int64),
      seed=tf.stack([tf.cast(member_seed, tf.int64), tf.cast(epoch, tf.int64)]))


def member_streams(data, num_members, batch_size, seed, shuffle_buffer):
  """M independently shuffled copies of `data`, zipped and batched.

  Args:
    data: tf.data.Dataset of unbatched (x, y).
    num_members: int, M.
    batch_size: int.
    seed: int; member m shuffles with seed + m, afresh every epoch.
    shuffle_buffer: int; 1 keeps the data order.

  Returns:
    tf.data.Dataset of M-tuples ((x_0, y_0), ..., (x_{M-1}, y_{M-1})), each [batch, ...].
  """
  streams = tuple(
      data.shuffle(shuffle_buffer, seed=seed + m, reshuffle_each_iteration=True)
      for m in range(num_members))
  return tf.data.Dataset.zip(streams).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _build(build_member, seed):
  params = inspect.signature(build_member).parameters
  if "seed" in params or len(params) >= 1:
    return build_member(seed=seed) if "seed" in params else build_member(seed)
  keras.utils.set_random_seed(seed)
  return build_member()


def _fit_stacked(stacked, family, data, arrays, epochs, batch_size, learning_rate, seed,
                 shuffle, shuffle_buffer, size, verbose):
  """Trains the stacked members; one compiled call per epoch. Returns a Keras History."""
  num_members = stacked.num_members
  optimizer = keras.optimizers.Adam(learning_rate)
  variables = stacked.trainable_variables
  optimizer.build(variables)   # before the epoch loop: no variables made inside it
  if any(layer is not None and layer.compute_dtype == "float16"
         for layer in stacked.stacked_layers):
    optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)

  def step(x, y):   # x [members, batch, ...], y [members, batch, ...]
    with tf.GradientTape() as tape:
      z = stacked(x, training=True, per_member=True)            # [batch, members, params]
      nll = family.nll(tf.transpose(y, [1, 0] + list(range(2, y.shape.rank))), z)
      loss = tf.reduce_sum(tf.reduce_mean(nll, axis=0))        # sum of members' means
      if stacked.losses:
        loss += tf.add_n(stacked.losses)
    optimizer.minimize(loss, variables, tape=tape)
    return tf.reduce_mean(nll)

  if arrays is not None:
    x_all, y_all = (tf.convert_to_tensor(a) for a in arrays)
    n = len(arrays[0])
    num_batches = -(-n // batch_size)

    @tf.function
    def run_epoch(x, y, epoch):
      if shuffle:
        order = tf.stack([member_permutation(n, seed + m, epoch)
                          for m in range(num_members)])           # [members, n]
      else:
        order = tf.tile(tf.range(n, dtype=tf.int64)[tf.newaxis], [num_members, 1])
      total = tf.constant(0., tf.float32)
      for b in tf.range(num_batches):
        index = order[:, b * batch_size:(b + 1) * batch_size]    # [members, batch]
        total += tf.cast(step(tf.gather(x, index), tf.gather(y, index)), tf.float32)
      return total / num_batches

    epoch_fn = lambda e: run_epoch(x_all, y_all, tf.constant(e, tf.int64))
  else:
    stream = member_streams(data, num_members, batch_size, seed,
                            shuffle_buffer or size or 10000).map(
                                lambda *ms: (tf.stack([m[0] for m in ms]),
                                             tf.stack([m[1] for m in ms])))

    @tf.function
    def run_epoch():
      total, count = tf.constant(0., tf.float32), tf.constant(0., tf.float32)
      for x, y in stream:
        total += tf.cast(step(x, y), tf.float32)
        count += 1.
      return total / count

    epoch_fn = lambda e: run_epoch()

  history = keras.callbacks.History()
  history.history, history.epoch = {"nll": []}, []
  bar = tqdm(total=epochs, desc=f"ensemble of {num_members} (vectorized)", unit="epoch",
             disable=not verbose, dynamic_ncols=True)
  try:
    for epoch in range(epochs):
      nll = float(epoch_fn(epoch))
      if not np.isfinite(nll):
        raise FloatingPointError(
            f"train_ensemble: the members' mean NLL is {nll} in epoch {epoch}: training "
            "diverged (lower learning_rate, or check the data's scale).")
      history.history["nll"].append(nll)
      history.epoch.append(epoch)
      bar.set_postfix(nll=f"{nll:.4g}", refresh=False)
      bar.update(1)
  finally:
    bar.close()
  return history


def train_ensemble(build_member, dataset, family, num_members=10, epochs=40,
                   batch_size=32, learning_rate=1e-3, seed=0, shuffle_buffer=None,
                   verbose=1, steps_per_execution=1, vectorize="auto"):
  """Trains M members by maximum likelihood of `family`, each with its own seed.

  Member m is built by `build_member(seed=seed + m)` (or `build_member(seed + m)`; a
  function with no argument is called after `keras.utils.set_random_seed(seed + m)`), and
  reads the data in its own order (shuffled with seed `seed + m`). All members train in one
  graph (see the module docstring): this is M independent trainings, not a joint model.

  Members of one functional architecture (dense and conv stacks, the built-in backbones)
  train as one vectorized model (`vectorized.StackedMembers`), one compiled call per
  epoch; member m then reads in-memory rows in the order `member_permutation(n, seed + m,
  epoch)`. Other members train side by side in one graph, one call per step.

  Args:
    build_member: callable returning an uncompiled Keras model x -> z [batch, params].
    dataset: (x, y) arrays with x [n, ...] and y [n] or [n, E], or a `tf.data.Dataset` of
      unbatched (x, y) pairs.
    family: `families.Family` of the members (its `nll` is the training loss).
    num_members: int >= 1, M.
    epochs: int, passes over the data per member.
    batch_size: int.
    learning_rate: float, Adam's learning rate.
    seed: int, base seed.
    shuffle_buffer: int or None. Arrays are fully reshuffled every epoch (1: keep the
      order); a Dataset is shuffled with this buffer (default: its size when known,
      else 10000).
    steps_per_execution: int, training steps per compiled call when the members are not
      vectorized (fewer Python round trips for small members).
    verbose: 0 silent, 1 a progress bar.
    vectorize: "auto" (stack the members when their architecture allows, else train
      them side by side and warn with a `VectorizationWarning` saying why), True (stack
      or raise `vectorized.NotVectorizableError` naming the layer that prevents it), or
      False (side by side).

  Returns:
    `Ensemble` of the trained members, with `.history` (the Keras History) and
    `.training_vectorized` (whether the members trained as one stacked model).

  Raises:
    ValueError: for an empty data set, NaN/Inf in arrays, or members whose outputs do not
      fit `family.params_size`.
    FloatingPointError: if the vectorized members' NLL becomes NaN or Inf.
  """
  family = families_lib.get(family)
  _check_vectorize(vectorize)
  if num_members < 1:
    raise ValueError(f"num_members must be >= 1, got {num_members}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  data, size, arrays = _as_dataset(dataset)
  members = [_build(build_member, seed + m) for m in range(num_members)]
  x_spec = data.element_spec[0]
  probe = tf.zeros([1] + [d or 1 for d in x_spec.shape.as_list()], x_spec.dtype)
  for m, member in enumerate(members):
    family.check_params(member(probe), what=f"Member {m}'s output")
  stacked = None
  if vectorize is not False:
    try:
      stacked = vectorized_lib.StackedMembers(members, name="stacked_members")
    except vectorized_lib.NotVectorizableError as error:
      if vectorize is True:
        raise
      warnings.warn(f"train_ensemble: training the members side by side, not vectorized: "
                    f"{error}", VectorizationWarning, stacklevel=2)
  if stacked is not None:
    history = _fit_stacked(stacked, family, data, arrays, epochs, batch_size,
                           learning_rate, seed, shuffle_buffer != 1, shuffle_buffer, size,
                           verbose)
    stacked.assign_to(members)
    ensemble = Ensemble._from_trained(members, stacked, family, vectorize)  # pylint: disable=protected-access
    ensemble.history = history
    ensemble.training_vectorized = True
    return ensemble
  if arrays is not None:
    stream = array_member_streams(*arrays, num_members, batch_size, seed,
                                  shuffle=shuffle_buffer != 1)
  else:
    stream = member_streams(data, num_members, batch_size, seed,
                            shuffle_buffer or size or 10000)
  trainer = _JointTrainer(members, family)
  trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  steps_per_execution=steps_per_execution)
  bar = callbacks_lib.ProgressBar(f"ensemble of {num_members}", disable=not verbose)
  # A member whose loss turns NaN/Inf stops training at once, saying where.
  history = trainer.fit(stream, epochs=epochs, verbose=0, callbacks=[
      bar, callbacks_lib.StopOnNonFiniteLoss(raise_error=True)])
  ensemble = Ensemble(members, family=family, vectorize=vectorize)
  ensemble.history = history
  ensemble.training_vectorized = False
  return ensemble
