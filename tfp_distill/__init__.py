"""tfp_distill: ensemble distribution distillation on TensorFlow Probability and Keras.

Students of either Keras: `td.heads`, `td.losses`, `td.Distiller`, ... for tf_keras (Keras
2, `tfp.layers`), and the same names under `td.keras3` for Keras 3 (`import keras`).

```python
import tfp_distill as td
family = td.families.HeteroscedasticNormal()
ensemble = td.train_ensemble(build_member, (x, y), family, num_members=10, epochs=150)
student.compile("adam", loss=td.losses.EnsembleNLL())
student.fit(td.teacher_targets(td.targets.uniform_inputs(-5., 5., 10000), ensemble))
u = td.predict_uncertainty(student, family, x)   # prediction, total, aleatoric, epistemic
```
"""

from tfp_distill import callbacks
from tfp_distill import conventions
from tfp_distill import datasets
from tfp_distill import families
from tfp_distill import heads
from tfp_distill import job
from tfp_distill import job_folder
from tfp_distill import losses
from tfp_distill import methods
from tfp_distill import metrics
from tfp_distill import models
from tfp_distill import parameterization
from tfp_distill import perturb
from tfp_distill import report
from tfp_distill import targets
from tfp_distill import teachers
from tfp_distill import vectorized
from tfp_distill.distiller import Distiller
from tfp_distill.ensemble import Ensemble
from tfp_distill.ensemble_training import train_ensemble
from tfp_distill.export import export_saved_model
from tfp_distill.job import distill
from tfp_distill.predict import predict_uncertainty
from tfp_distill.targets import teacher_targets
from tfp_distill.uncertainty import decompose
from tfp_distill.uncertainty import decompose_ensemble

__version__ = "0.1.0"


def __getattr__(name):
  # td.keras3 is imported on first use: it needs Keras 3 on the TensorFlow backend, and
  # `import tfp_distill` must work without it (there td.keras3 refuses, in one line).
  if name == "keras3":
    import importlib
    return importlib.import_module("tfp_distill.keras3")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Distiller",
    "Ensemble",
    "callbacks",
    "conventions",
    "datasets",
    "decompose",
    "decompose_ensemble",
    "distill",
    "export_saved_model",
    "families",
    "heads",
    "job",
    "job_folder",
    "losses",
    "methods",
    "metrics",
    "models",
    "parameterization",
    "perturb",
    "predict_uncertainty",
    "report",
    "targets",
    "teacher_targets",
    "teachers",
    "train_ensemble",
    "vectorized",
]
