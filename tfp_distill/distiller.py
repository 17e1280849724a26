"""`Distiller`: a Keras model whose train step runs the teacher on the training device.

```none
x ─► [perturb] ─► x' ─► teacher ─► z (no gradient)
                   └──► student ─► v(z | x') ─► loss(z, v) ─► gradient step on the student
with labels y and a perturbation (labels_on="clean", the default):
x ────────────────────► student ─► label term of the loss, e.g. (1 - a) CE(y, student(x))
```

The same losses as `student.fit(td.teacher_targets(...))`, but the teacher (and any
perturbation, which may need the teacher's gradients) runs inside the compiled training
step, on the accelerator when there is one, and under `tf.distribute` strategies.
"""

import inspect

import tensorflow as tf

from tfp_distill._keras import keras

__all__ = ["Distiller", "DistillerMixin"]


class DistillerMixin:
  """`Distiller` without its Keras base, mixed into a `Model` of either Keras.

  Everything but the few calls that differ between tf_keras and Keras 3, which each
  Keras' class implements: `keras_module` (that Keras), `train_step_counter()`,
  `minimize(tape, loss)`, `gradients(tape, loss, variables)` and
  `stop_on_nonfinite_class()`. `td.Distiller` (tf_keras) and `td.keras3.Distiller`
  (Keras 3) are this class and their Keras' `Model`.
  """

  keras_module = None

  def __init__(self, student, teacher, loss, perturbation=None, seed=0, labels_on="clean",
               on_nonfinite="raise", **kwargs):
    super().__init__(**kwargs)
    if not callable(loss):
      raise TypeError(f"loss must be a callable loss, got {loss!r}.")
    if labels_on not in ("clean", "perturbed"):
      raise ValueError(f'labels_on must be "clean" or "perturbed", got {labels_on!r}.')
    if on_nonfinite not in ("raise", "ignore"):
      raise ValueError(f'on_nonfinite must be "raise" or "ignore", got {on_nonfinite!r}.')
    self.labels_on = labels_on
    self.on_nonfinite = on_nonfinite
    self.student = student
    self.teacher = teacher
    self.distill_loss = loss
    self.perturbation = perturbation
    self.seed = int(seed)
    self.loss_tracker = self.keras_module.metrics.Mean(name="loss")
    # Per replica (no collective to assign them inside a branch); read from the first.
    on_read = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self._nonfinite_step = tf.Variable(tf.constant(-1, tf.int64), name="nonfinite_step",
                                       **on_read)
    self._nonfinite_stats = tf.Variable(tf.zeros([len(_STATS)], tf.float32),
                                        name="nonfinite_stats", **on_read)
    self._zeroed_updates = False    # set when traced under a multi-replica strategy

  @property
  def metrics(self):
    """The mean-loss tracker alone: the one metric `fit` and `evaluate` report and reset."""
    return [self.loss_tracker]

  def call(self, x, training=False):
    """The student's output (its distribution) for x [batch, ...]; the teacher does not run."""
    return self.student(x, training=training)

  def _label_weight(self):
    """The loss's label-term weight; raises if labels_on="clean" cannot be honoured."""
    weight = getattr(self.distill_loss, "label_term_weight", None)
    if weight is None or (weight > 0 and
                          not callable(getattr(self.distill_loss, "label_term", None))):
      raise ValueError(
          'Distiller(labels_on="clean") with a perturbation and labelled batches needs '
          "a loss with `label_term(labels, y_pred)` and `label_term_weight` (as "
          f"td.losses.KnowledgeDistillation has); {self.distill_loss!r} has not. Pass "
          'labels_on="perturbed" to put the labels on the perturbed input.')
    return float(weight)

  def _targets(self, data):
    """-> (x, x_clean or None, targets) with targets z or {"ensemble": z, "label": y}.

    x_clean is the unperturbed batch when the loss's label term is to see it.
    """
    x, y, _ = self.keras_module.utils.unpack_x_y_sample_weight(data)
    if isinstance(y, dict) or (y is not None and y.shape.rank == 3):
      return x, None, y   # precomputed targets
    x_clean = None
    if self.perturbation is not None:
      if (y is not None and self.labels_on == "clean" and self._label_weight() > 0):
        x_clean = x
      step = tf.cast(self.train_step_counter(), tf.int64)
      x = self.perturbation(x, self.teacher, tf.stack([tf.constant(self.seed, tf.int64),
                                                       step]))
    z = tf.stop_gradient(self.teacher(x))
    z = tf.debugging.assert_all_finite(z, "Distiller: the teacher produced NaN/Inf")
    if x_clean is not None:   # the label term is added on the clean pass (`_loss`)
      return x, x_clean, {"ensemble": z, "clean_label": y}
    return x, None, (z if y is None else {"ensemble": z, "label": y})

  def _loss(self, targets, dist, training, clean_dist=None):
    call = getattr(self.distill_loss, "call", self.distill_loss)
    if clean_dist is None:
      per_example = call(targets, dist)
    else:
      per_example = (call(targets["ensemble"], dist)
                     + self.distill_loss.label_term(targets["clean_label"], clean_dist))
    loss = tf.nn.compute_average_loss(per_example)
    reg = self.student.losses if training else []
    if reg:
      loss += tf.nn.scale_regularization_loss(tf.add_n(reg))
    return loss, per_example

  def train_step(self, data):
    """Targets from the teacher (on the perturbed x, if any), then one step on the student,
    guarded unless on_nonfinite="ignore"; returns {"loss": the running mean}."""
    x, x_clean, targets = self._targets(data)
    with tf.GradientTape() as tape:
      dist = self.student(x, training=True)
      clean_dist = None if x_clean is None else self.student(x_clean, training=True)
      loss, per_example = self._loss(targets, dist, training=True, clean_dist=clean_dist)
    if self.on_nonfinite == "ignore":
      self.minimize(tape, loss)
    else:
      self._guarded_step(tape, loss, per_example, x, targets)
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}

  def _guarded_step(self, tape, loss, per_example, x, targets):
    """Applies the update unless this or an earlier step was non-finite (on_nonfinite)."""
    variables = self.student.trainable_variables
    grads, scaled = self.gradients(tape, loss, variables)
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    grads = [g for g, _ in pairs]
    bad_grads = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(_dense_values(g)),
                                                tf.float32))
                          for g in grads]) if grads else tf.constant(0.0)
    # A LossScaleOptimizer skips steps with non-finite gradients itself (float16 overflow
    # is expected there); only a non-finite loss is divergence then.
    bad = tf.cast(~tf.math.is_finite(loss), tf.float32) + (0.0 if scaled else bad_grads)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      bad = context.all_reduce(tf.distribute.ReduceOp.SUM, bad)   # one decision for all
    healthy = tf.logical_and(bad == 0.0, self._nonfinite_step < 0)
    first = tf.logical_and(bad > 0.0, self._nonfinite_step < 0)

    def record():
      self._nonfinite_stats.assign(_batch_statistics(x, targets, per_example, loss, grads,
                                                     bad_grads))
      self._nonfinite_step.assign(tf.cast(self.train_step_counter(), tf.int64))
      return tf.constant(True)

    def apply():
      self.optimizer.apply_gradients(pairs)
      return tf.constant(True)

    tf.cond(first, record, lambda: tf.constant(False))
    if tf.distribute.has_strategy():
      # Under any tf.distribute strategy (one replica included: MirroredStrategy on one
      # device, MultiWorkerMirroredStrategy with one worker) apply_gradients merges
      # across replicas, which cannot sit inside a branch: every replica applies zero
      # gradients instead (finite weights; Adam's momentum still moves them).
      self._zeroed_updates = True
      self.optimizer.apply_gradients([(_zero_unless(healthy, g), v) for g, v in pairs])
    else:
      tf.cond(healthy, apply, lambda: tf.constant(False))

  def nonfinite_report(self):
    """None, or {"step": the 0-based train step whose loss/gradient was non-finite, and
    that batch's statistics (see `_STATS`)}. Read by `td.callbacks.StopOnNonFiniteLoss`."""
    step = int(self._nonfinite_step.numpy())
    if step < 0:
      return None
    report = dict(zip(_STATS, (float(v) for v in self._nonfinite_stats.numpy())))
    for key in ("batch_size", "nonfinite_examples", "first_nonfinite_example",
                "input_nonfinite", "target_nonfinite", "gradient_nonfinite"):
      report[key] = int(report[key])
    report["step"] = step
    report["update"] = "zeroed" if self._zeroed_updates else "skipped"
    return report

  def reset_nonfinite(self):
    """Forgets a recorded non-finite step, so that `fit` applies updates again."""
    self._nonfinite_step.assign(-1)

  def fit(self, *args, **kwargs):
    """`keras.Model.fit`; with on_nonfinite="raise" a `StopOnNonFiniteLoss(raise_error=
    True)` (of the model's Keras) is added unless the callbacks already hold one."""
    if self.on_nonfinite == "raise":
      keras_module, stop = self.keras_module, self.stop_on_nonfinite_class()
      bound = inspect.signature(keras_module.Model.fit).bind(self, *args, **kwargs)
      given = bound.arguments.get("callbacks") or []
      if isinstance(given, keras_module.callbacks.CallbackList):   # the caller's container
        given.append(stop(raise_error=True))
      elif not any(isinstance(c, stop) for c in given):
        bound.arguments["callbacks"] = list(given) + [stop(raise_error=True)]
      args, kwargs = bound.args[1:], bound.kwargs
    return super().fit(*args, **kwargs)

  def test_step(self, data):
    """The student's loss on the teacher's targets as in `train_step`, without an update;
    returns {"loss": the running mean}."""
    x, x_clean, targets = self._targets(data)
    dist = self.student(x, training=False)
    clean_dist = None if x_clean is None else self.student(x_clean, training=False)
    _, per_example = self._loss(targets, dist, training=False, clean_dist=clean_dist)
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}


class Distiller(DistillerMixin, keras.Model):
  """Trains `student` on the outputs of `teacher`, computed inside the train step.

  Args:
    student: Keras model x -> distribution (its last layer a tfp_distill head).
    teacher: callable x [batch, ...] -> z [batch, members, params] (an `Ensemble`).
    loss: a loss taking (targets, distribution) and returning [batch] per-example values
      (`td.losses.EnsembleNLL()`, `td.losses.MixtureKL(family)`, ...).
    perturbation: None, or callable `(x, teacher, seed) -> x'` applied before the teacher.
    seed: int, base of the per-step perturbation seeds.
    on_nonfinite: "raise" (the default) or "ignore". With "raise", a step whose loss (or,
      outside mixed precision, whose gradient) is NaN or Inf is not applied, nor is any
      step after it, so the student keeps the weights it had before that step (under a
      multi-replica strategy those steps are applied with zero gradients instead); the
      step's batch statistics are recorded (`nonfinite_report`), and `fit` raises
      `td.callbacks.NonFiniteLossError` at the end of that step (of its
      `steps_per_execution` group), saying which step and what the batch held.
      "ignore" applies every update as plain Keras does.
    labels_on: "clean" or "perturbed": which input the loss's labelled term sees when a
      perturbation is set and batches carry labels. "clean" (the default, as in Nam et
      al.'s code [1]) runs the student on x and on x' and adds `loss.label_term(y,
      student(x))` to the distillation term on x'; the loss must then have `label_term`
      (`KnowledgeDistillation`, `EnsembleNLL`, `DirichletNLL` do). "perturbed" feeds
      `{"ensemble": z, "label": y}` and student(x') to the loss as one, one student pass.

  `fit` accepts batches of x, (x, y) with labels y (for losses with a labelled term), or
  precomputed targets (x, z) / (x, {"ensemble": z, "label": y}) as `teacher_targets`
  yields them, in which case the teacher is not run. The student's regularization losses
  are added to the training objective; the reported "loss" is the mean per-example
  distillation loss alone.

  #### Examples

  ```python
  distiller = td.Distiller(student, ensemble, loss=td.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-3))
  distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(128), epochs=30)
  student.save("student.keras")
  ```

  #### References

  [1]: Nam, Yoon, Lee, Lee. Diversity Matters When Learning From Ensembles. NeurIPS 2021:
       their students take the cross-entropy on the clean batch and the KL on the ODS batch.
  """

  keras_module = keras

  def train_step_counter(self):
    """The number of train steps run so far (int64 Tensor): tf_keras' own counter."""
    return self._train_counter

  def minimize(self, tape, loss):
    """One optimizer step on the student (minimize() scales the loss when the optimizer
    is a LossScaleOptimizer, float16)."""
    self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)

  def gradients(self, tape, loss, variables):
    """(the student's gradients, whether the loss was scaled) for the guarded step."""
    if isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer):
      with tape:
        scaled_loss = self.optimizer.get_scaled_loss(loss)
      return self.optimizer.get_unscaled_gradients(tape.gradient(scaled_loss, variables)), True
    return tape.gradient(loss, variables), False

  @staticmethod
  def stop_on_nonfinite_class():
    """`td.callbacks.StopOnNonFiniteLoss`, which `fit` adds (on_nonfinite="raise")."""
    from tfp_distill import callbacks as callbacks_lib
    return callbacks_lib.StopOnNonFiniteLoss


# What `nonfinite_report` gives about the first non-finite step's batch (per replica).
_STATS = ("loss", "batch_size", "nonfinite_examples", "first_nonfinite_example",
          "input_min", "input_max", "input_mean_abs", "input_nonfinite",
          "target_min", "target_max", "target_mean_abs", "target_nonfinite",
          "gradient_norm", "gradient_nonfinite")


def _dense_values(grad):
  """The gradient's entries: the values of an IndexedSlices (embeddings), else itself."""
  return grad.values if isinstance(grad, tf.IndexedSlices) else grad


def _zero_unless(keep, grad):
  """grad where keep, else zeros (of the same kind, IndexedSlices included)."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(tf.where(keep, grad.values, tf.zeros_like(grad.values)),
                            grad.indices, grad.dense_shape)
  return tf.where(keep, grad, tf.zeros_like(grad))


def _summary(tensors):
  """[min, max, mean |.|, non-finite count] over the finite entries of float tensors."""
  flat = [tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tf.nest.flatten(tensors)
          if t is not None and (t.dtype.is_floating or t.dtype.is_integer)]
  if not flat:
    return [tf.constant(float("nan"))] * 3 + [tf.constant(0.0)]
  values = tf.concat(flat, 0)
  finite = tf.math.is_finite(values)
  count = tf.reduce_sum(tf.cast(finite, tf.float32))
  return [tf.reduce_min(tf.where(finite, values, float("inf"))),
          tf.reduce_max(tf.where(finite, values, -float("inf"))),
          tf.reduce_sum(tf.where(finite, tf.abs(values), 0.0)) / tf.maximum(count, 1.0),
          tf.cast(tf.size(values), tf.float32) - count]


def _batch_statistics(x, targets, per_example, loss, grads, bad_grads):
  """The `_STATS` of one step as a float32 vector (XLA-friendly: no boolean masks)."""
  bad_rows = ~tf.math.is_finite(per_example)
  values = [_dense_values(g) for g in grads]
  grad_norm = (tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.where(tf.math.is_finite(g), g,
                                                                    tf.zeros_like(g))))
                                 for g in values])) if values else tf.constant(0.0))
  first_bad = tf.cond(tf.reduce_any(bad_rows),
                      lambda: tf.cast(tf.argmax(tf.cast(bad_rows, tf.int32)), tf.float32),
                      lambda: tf.constant(-1.0))
  return tf.stack([tf.cast(loss, tf.float32),
                   tf.cast(tf.size(per_example), tf.float32),
                   tf.reduce_sum(tf.cast(bad_rows, tf.float32)), first_bad,
                   *_summary(x), *_summary(targets), tf.cast(grad_norm, tf.float32),
                   bad_grads])
