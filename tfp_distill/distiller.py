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

  def __init__(self, student, teacher, loss, perturbation=None, seed=0, labels_on="clean",
               **kwargs):
    super().__init__(**kwargs)
    if not callable(loss):
      raise TypeError(f"loss must be a callable loss, got {loss!r}.")
    if labels_on not in ("clean", "perturbed"):
      raise ValueError(f'labels_on must be "clean" or "perturbed", got {labels_on!r}.')
    self.labels_on = labels_on
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
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if isinstance(y, dict) or (y is not None and y.shape.rank == 3):
      return x, None, y   # precomputed targets
    x_clean = None
    if self.perturbation is not None:
      if (y is not None and self.labels_on == "clean" and self._label_weight() > 0):
        x_clean = x
      step = tf.cast(self._train_counter, tf.int64)
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
    x, x_clean, targets = self._targets(data)
    with tf.GradientTape() as tape:
      dist = self.student(x, training=True)
      clean_dist = None if x_clean is None else self.student(x_clean, training=True)
      loss, per_example = self._loss(targets, dist, training=True, clean_dist=clean_dist)
    # minimize() scales the loss when the optimizer is a LossScaleOptimizer (float16).
    self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}

  def test_step(self, data):
    x, x_clean, targets = self._targets(data)
    dist = self.student(x, training=False)
    clean_dist = None if x_clean is None else self.student(x_clean, training=False)
    _, per_example = self._loss(targets, dist, training=False, clean_dist=clean_dist)
    self.loss_tracker.update_state(per_example)
    return {"loss": self.loss_tracker.result()}
