"""Training the teacher: M members with independent seeds and data orders, in one graph.

```none
build_member(seed + m) ─► member m ─┐  (x, y) read in member m's own order
                                    ├─► sum_m mean NLL_m ─► Adam ─► td.Ensemble
  members of one architecture: one stacked model (vectorized.StackedMembers), one
  compiled call per epoch; others: side by side in one graph, one call per step
```

`train_ensemble` trains the members with independent initialisations and independent data
orders, as deep ensembles do [1]. The loss is the *sum* of the members' mean NLLs: each
member's parameters receive only its own gradient and Adam's update is per parameter, so
this is exactly M independent trainings, run in one graph per epoch (vectorized members)
or per step (members of other architectures) instead of M Python loops.

Every name here is importable from `tfp_distill.ensemble` too, where it lived before.

#### References

[1]: Lakshminarayanan, Pritzel, Blundell. Simple and scalable predictive uncertainty
     estimation using deep ensembles. NeurIPS 2017. arXiv:1612.01474.
"""

import inspect
import warnings

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfp_distill import _keras3
from tfp_distill import callbacks as callbacks_lib
from tfp_distill import ensemble as ensemble_lib
from tfp_distill import families as families_lib
from tfp_distill import vectorized as vectorized_lib
from tfp_distill._keras import keras

__all__ = ["VectorizationWarning", "array_member_streams", "member_permutation",
           "member_streams", "train_ensemble"]


class VectorizationWarning(UserWarning):
  """`train_ensemble(vectorize="auto")` fell back to separate members; says why."""


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
  _keras3.set_random_seed(seed)   # Keras 3's global seed too, when it is imported
  return build_member()


def _minimizer(stacked, learning_rate, keras3):
  """minimize(loss, tape): one Adam step on the stacked variables, by the members' Keras."""
  variables = stacked.trainable_variables
  if keras3:
    optimizer = _keras3.tensorflow_module("train_ensemble").optimizers.Adam(learning_rate)
    optimizer.build(variables)   # before the epoch loop: no variables made inside it

    def minimize(loss, tape):
      optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return minimize
  optimizer = keras.optimizers.Adam(learning_rate)
  optimizer.build(variables)
  if any(layer is not None and layer.compute_dtype == "float16"
         for layer in stacked.stacked_layers):
    optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
  return lambda loss, tape: optimizer.minimize(loss, variables, tape=tape)


def _fit_stacked(stacked, family, data, arrays, epochs, batch_size, learning_rate, seed,
                 shuffle, shuffle_buffer, size, verbose, keras3=False):
  """Trains the stacked members (or a `td.keras3.vectorized.MemberLoop`); one compiled
  call per epoch. Returns a Keras History."""
  num_members = stacked.num_members
  minimize = _minimizer(stacked, learning_rate, keras3)

  def step(x, y):   # x [members, batch, ...], y [members, batch, ...]
    with tf.GradientTape() as tape:
      z = stacked(x, training=True, per_member=True)            # [batch, members, params]
      nll = family.nll(tf.transpose(y, [1, 0] + list(range(2, y.shape.rank))), z)
      loss = tf.reduce_sum(tf.reduce_mean(nll, axis=0))        # sum of members' means
      if stacked.losses:
        loss += tf.add_n(stacked.losses)
    minimize(loss, tape)
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
  ensemble_lib.check_vectorize(vectorize)
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
  keras3 = all(_keras3.is_keras3_object(m) for m in members)
  stacked = None
  if vectorize is not False:
    try:
      stacked = ensemble_lib.stack_members(members)
    except vectorized_lib.NotVectorizableError as error:
      if vectorize is True:
        raise
      warnings.warn(f"train_ensemble: training the members side by side, not vectorized: "
                    f"{error}", VectorizationWarning, stacklevel=2)
  if stacked is not None or keras3:
    loop = stacked
    if stacked is None:   # Keras 3 members side by side, in the stacked model's loop
      from tfp_distill.keras3 import vectorized as k3
      loop = k3.MemberLoop(members)
    history = _fit_stacked(loop, family, data, arrays, epochs, batch_size, learning_rate,
                           seed, shuffle_buffer != 1, shuffle_buffer, size, verbose, keras3)
    if stacked is None:
      ensemble = ensemble_lib.Ensemble(members, family=family, vectorize=vectorize)
    else:
      stacked.assign_to(members)
      ensemble = ensemble_lib.Ensemble.from_stacked(members, stacked, family, vectorize)
    ensemble.history = history
    ensemble.training_vectorized = stacked is not None
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
  ensemble = ensemble_lib.Ensemble(members, family=family, vectorize=vectorize)
  ensemble.history = history
  ensemble.training_vectorized = False
  return ensemble
