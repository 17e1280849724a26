"""Keras 3 students: the tfp_distill names for `import keras` (TensorFlow backend).

```none
td.keras3.heads       NormalHead, MultivariateNormalTriLHead, NormalPredictiveHead,
                      DirichletHead, CategoricalHead: layers that output parameters
td.keras3.losses      EnsembleNLL, DirichletNLL, MixtureKL, KnowledgeDistillation
td.keras3.metrics     ExpectedCalibrationError
td.keras3.callbacks   ProgressBar, TemperatureAnnealing, StopOnNonFiniteLoss
td.keras3.models      mlp, small_cnn, resnet18_cifar
td.keras3.vectorized  StackedMembers (Keras 3 members as one vectorized model)
td.keras3.Distiller   the train step that runs the teacher
```

Each mirrors the tf_keras name of `td` (same constructor, same pure functions underneath:
`td.parameterization` for the heads, `td.losses`' functions for the losses), so a method
picks its Keras by picking the module. The top-level functions (`td.decompose`,
`td.predict_uncertainty`, `td.export_saved_model`, `td.Ensemble`, `td.train_ensemble`,
`td.teacher_targets`) take students and members of either Keras.

Keras 3 must run on its TensorFlow backend: importing `td.keras3` in a process whose
`KERAS_BACKEND` is jax, torch or another raises an ImportError in one line naming it;
`import tfp_distill` works there (and without Keras 3), with the tf_keras students.

#### Examples

```python
import numpy as np
import tfp_distill as td          # and Keras 3 as `keras` (`import keras`)

family = td.families.CategoricalLogits(3)
x = np.random.default_rng(0).normal(size=(256, 2)).astype("float32")
members = [td.keras3.models.mlp((2,), [16], 3, seed=s) for s in range(3)]
ensemble = td.Ensemble(members, family=family)

Head = td.keras3.heads.DirichletHead
student = td.keras3.models.mlp((2,), [16], Head.params_size(3), head=Head(3), seed=9)
loss = td.keras3.losses.DirichletNLL(temperature=2.5, family=family)
student.compile(keras.optimizers.Adam(1e-2), loss=loss)
student.fit(x, ensemble.predict_targets(x), epochs=2, verbose=0)
u = td.predict_uncertainty(student, family, x)     # prediction, total, aleatoric, ...
```
"""

from tfp_distill import _keras3

_keras3.tensorflow_module("td.keras3")   # refuses another backend, in one line

# pylint: disable=wrong-import-position
from tfp_distill.keras3 import callbacks  # noqa: E402
from tfp_distill.keras3 import heads  # noqa: E402
from tfp_distill.keras3 import losses  # noqa: E402
from tfp_distill.keras3 import metrics  # noqa: E402
from tfp_distill.keras3 import models  # noqa: E402
from tfp_distill.keras3 import vectorized  # noqa: E402
from tfp_distill.keras3.distiller import Distiller  # noqa: E402

__all__ = ["Distiller", "callbacks", "heads", "losses", "metrics", "models", "vectorized"]
