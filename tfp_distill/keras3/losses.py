"""Keras 3 distillation losses: the `td.losses` classes on a Keras 3 `Loss`.

Each class is the Keras-independent part of its `td.losses` namesake (the same
arguments, per-example values, labelled term and config: one implementation) mixed into
`keras.losses.Loss` of Keras 3, registered as "tfp_distill>NAME" in Keras 3's registry
(so a Keras 3 student compiled with one saves to `.keras` and reloads once
`tfp_distill.keras3` is imported). `y_pred` is the output of a `td.keras3.heads` head (its
parameters) or a `tfd.Distribution`; the pure functions underneath are `td.losses`'.

```python
loss = td.keras3.losses.DirichletNLL(temperature=2.5, family=family)
student.compile("adam", loss=loss)
student.fit(x, ensemble.predict_targets(x), epochs=10,
            callbacks=[td.keras3.callbacks.TemperatureAnnealing(loss, 2.5, 1.0, 2, 8)])
```

Targets with labels (`{"ensemble": z, "label": y}`) need `td.keras3.Distiller`: Keras 3's
`fit` requires y to have the structure of the student's one output.
"""

from tfp_distill import _keras3
from tfp_distill.losses import dirichlet
from tfp_distill.losses import distillation
from tfp_distill.losses import regression

keras = _keras3.tensorflow_module("td.keras3")

__all__ = ["DirichletNLL", "EnsembleNLL", "KnowledgeDistillation", "MixtureKL"]


@keras.saving.register_keras_serializable(package="tfp_distill")
class EnsembleNLL(regression.EnsembleNLLMixin, keras.losses.Loss):
  """The general framework's loss (eq 7, 19-20): `td.losses.EnsembleNLL` in Keras 3.

  Args: as `td.losses.EnsembleNLL`; `reduction`, `name`, `dtype` as for Keras 3's
  `keras.losses.Loss`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class DirichletNLL(dirichlet.DirichletNLLMixin, keras.losses.Loss):
  """EnD^2 (or the proxy-Dirichlet target): `td.losses.DirichletNLL` in Keras 3.

  Its temperature is a `tf.Variable` that `td.keras3.callbacks.TemperatureAnnealing`
  drives. Args: as `td.losses.DirichletNLL`; `reduction`, `name`, `dtype` as for Keras
  3's `keras.losses.Loss`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class MixtureKL(distillation.MixtureKLMixin, keras.losses.Loss):
  """Mixture distillation: `td.losses.MixtureKL` in Keras 3.

  Args: as `td.losses.MixtureKL`; `reduction`, `name`, `dtype` as for Keras 3's
  `keras.losses.Loss`.
  """


@keras.saving.register_keras_serializable(package="tfp_distill")
class KnowledgeDistillation(distillation.KnowledgeDistillationMixin, keras.losses.Loss):
  """Knowledge distillation from an ensemble: `td.losses.KnowledgeDistillation` in Keras 3.

  Args: as `td.losses.KnowledgeDistillation`; `reduction`, `name`, `dtype` as for Keras
  3's `keras.losses.Loss`.
  """
