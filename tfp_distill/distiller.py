"""`Distiller`: a Keras model whose train step runs the teacher on the training device.

```none
x ─► [perturb] ─► teacher ─► z (no gradient)
 └──────────────► student ─► v(z | x) ─► loss(z, v) ─► gradient step on the student
```

The same losses as `student.fit(td.teacher_targets(...))`, but the teacher (and any
perturbation, which may need the teacher's gradients) runs inside the compiled training
step, on the accelerator when there is one, and under `tf.distribute` strategies.
"""

import tensorflow as tf

from tfp_distill._keras import keras

__all__ = ["Distiller"]


class Distiller(keras.Model):
  """Trains `student` on the outputs of `teacher`, computed inside the train step.

  Args:
    student: Keras model x -> distribution (its last layer a tfp_distill head).
    teacher: callable x [batch, ...] -> z [batch, members, params] (an `Ensemble`).
    loss: a loss taking (targets, distribution) and returning [batch] per-example values
      (`td.losses.EnsembleNLL()`, `td.losses.MixtureKL(family)`, ...).
    perturbation: None, or callable `(x, teacher, seed) -> x'` applied before the teacher.
    seed: int, base of the per-step perturbation seeds.

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
  """

  def __init__(self, student, teacher, loss, perturbation=None, seed=0, **kwargs):
    super().__init__(**kwargs)
    if not callable(loss):
      raise TypeError(f"loss must be a callable loss, got {loss!r}.")
    self.student = student
    self.teacher = teacher
    self.distill_loss = loss
    self.perturbation = perturbation
    self.seed = int(seed)
    self.loss_tracker = keras.metrics.Mean(name="loss")

  @property
  def metrics(self):
    return [self.loss_tracker]

  def call(self, x, training=False):
    return self.student(x, training=training)

  def _targets(self, data):
    """-> (x, targets) with targets z or {"ensemble": z, "label": y}."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if isinstance(y, dict) or (y is not None and y.shape.rank == 3):
      return x, y   # precomputed targets
    if self.perturbation is not None:
      step = tf.cast(self._train_counter, tf.int64)
      x = self.perturbation(x, self.teacher, tf.stack([tf.constant(self.seed, tf.int64),
                                                       step]))
    z = tf.stop_gradient(self.teacher(x))
    z = tf.debugging.assert_all_finite(z, "Distiller: the teacher produced NaN/Inf")
    return x, (z if y is None else {"ensemble": z, "label": y})

  def _loss(self, targets, dist, training):
    call = getattr(self.distill_loss, "call", self.distill_loss)
    per_example = call(targets, dist)
    loss = tf.nn.compute_average_loss(per_example)
    reg = self.student.losses if training else []
    if reg:
      loss += tf.nn.scale_regularization_loss(tf.add_n(reg))
    return loss, per_example

  def train_step(self, data):
    x, targets = self._targets(data)
    with tf.GradientTape() as tape:
      dist = self.student(x, training=True)
      loss, per_example = self._loss(targets, dist, training=True)
    variables = self.student.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}

  def test_step(self, data):
    x, targets = self._targets(data)
    dist = self.student(x, training=False)
    _, per_example = self._loss(targets, dist, training=False)
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}
