"""`td.keras3.Distiller`: a Keras 3 model whose train step runs the teacher.

```none
x ─► [perturb] ─► x' ─► teacher ─► z (no gradient)      (a td.Ensemble of either Keras)
                   └──► Keras 3 student ─► parameters ─► v(z | x') ─► loss ─► Keras 3 optimizer
```

`td.Distiller`'s train step, labels, perturbations and non-finite guard (one
implementation, `DistillerMixin` of `tfp_distill.distiller`) on a Keras 3 `Model`: the
student and the optimizer are Keras 3, the teacher any callable x -> z [batch, members,
params] (a `td.Ensemble` of tf_keras or Keras 3 members). `fit` takes plain inputs,
(x, y) with labels, or the (x, z) / (x, {"ensemble": z, "label": y}) batches of
`td.teacher_targets`.
"""

import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill import distiller as distiller_lib
from tfp_distill.keras3 import callbacks as callbacks3

keras = _keras3.tensorflow_module("td.keras3")

__all__ = ["Distiller"]


class Distiller(distiller_lib.DistillerMixin, keras.Model):
  """Trains a Keras 3 `student` on the outputs of `teacher`, computed inside the train step.

  The Keras 3 form of `td.Distiller` (see there for the arguments, the batches `fit`
  takes and the non-finite guard). Differences: the optimizer is a Keras 3 one (a Keras 3
  `LossScaleOptimizer` under mixed float16); `compile` defaults to `jit_compile=False`
  (the teacher and the perturbations may hold ops XLA does not compile; pass True to
  try); the step counter that seeds the perturbations is the distiller's own variable.

  Args:
    student: Keras 3 model x -> parameters, its last layer a `td.keras3.heads` head.
    teacher: callable x [batch, ...] -> z [batch, members, params] (a `td.Ensemble`).
    loss: a `td.keras3.losses` loss (or any callable (targets, y_pred) -> [batch]).
    perturbation, seed, labels_on, on_nonfinite, **kwargs: as `td.Distiller`.

  #### Examples

  ```python
  distiller = td.keras3.Distiller(student, ensemble, loss=td.keras3.losses.EnsembleNLL())
  distiller.compile(keras.optimizers.Adam(1e-3))
  distiller.fit(x, epochs=30, batch_size=128)
  student.save("student.keras")
  ```
  """

  keras_module = keras

  def __init__(self, student, teacher, loss, perturbation=None, seed=0, labels_on="clean",
               on_nonfinite="raise", **kwargs):
    super().__init__(student, teacher, loss, perturbation=perturbation, seed=seed,
                     labels_on=labels_on, on_nonfinite=on_nonfinite, **kwargs)
    # Per replica, read from the first (as the non-finite records); the name is the one
    # `StopOnNonFiniteLoss` reads tf_keras' step counter by.
    self._train_counter = tf.Variable(
        tf.constant(0, tf.int64), name="train_counter", trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def compile(self, *args, **kwargs):  # pylint: disable=arguments-differ
    """`keras.Model.compile`, with `jit_compile=False` unless given."""
    kwargs.setdefault("jit_compile", False)
    super().compile(*args, **kwargs)

  def train_step(self, data):
    """`DistillerMixin.train_step`, then counts the step (the count seeds the perturbations)."""
    logs = super().train_step(data)
    self._train_counter.assign_add(1)
    return logs

  def train_step_counter(self):
    """The number of train steps run so far (int64 Tensor)."""
    return self._train_counter

  def _scaled(self, tape, loss):
    """(loss scaled by a Keras 3 LossScaleOptimizer, whether it was)."""
    if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
      with tape:
        return self.optimizer.scale_loss(loss), True
    return loss, False

  def minimize(self, tape, loss):
    """One optimizer step on the student (on_nonfinite="ignore")."""
    variables = self.student.trainable_variables
    grads, _ = self.gradients(tape, loss, variables)
    self.optimizer.apply_gradients(zip(grads, variables))

  def gradients(self, tape, loss, variables):
    """(the student's gradients, whether the loss was scaled): a Keras 3
    LossScaleOptimizer's gradients stay scaled, its `apply_gradients` unscales them and
    skips non-finite ones."""
    loss, scaled = self._scaled(tape, loss)
    return tape.gradient(loss, variables), scaled

  @staticmethod
  def stop_on_nonfinite_class():
    """`td.keras3.callbacks.StopOnNonFiniteLoss`, which `fit` adds."""
    return callbacks3.StopOnNonFiniteLoss
