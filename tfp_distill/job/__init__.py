"""`td.distill`: a user's own ensemble in one call (`tfp-distill distill` is a thin
wrapper over it).

```none
teacher: models, paths, an Ensemble, or the members' outputs     train/test/ood/aux: arrays,
   │                                                              (x, y), tf.data, or specs
   ▼                                                                         │
stage 1  load        data (images raw 0-255, as Keras reads them) and teachers ◄┘
stage 2  read        image scale, task, output convention (td.conventions): from evidence,
                     reported; a sanity check of the ensemble's skill on labelled rows
stage 3  targets     the converted teacher's outputs z at the training rows, the extra
                     inputs (mixup / jitter / aux) and the held-out rows
stage 4  train       the method's student (td.methods), early stopping on the held-out
                     distillation loss, one atomic backup per epoch (resumable)
stage 5  evaluate    ensemble vs student: metrics, fidelity, OOD, speed, verdict
         (td.report)
stage 6  save        student.keras, saved_model/, figures, report.md, report.json (last)
```
Modules: `config` (settings, checks), `reading` (stages 1-2), `training` (3-4),
`runner` (the stages in order, 5-6, `distill`, `run`, `DistillResult`).

Nothing here guesses silently: each convention the job assumes about the user's models
or data is an argument whose "auto" reads the evidence and records what it decided, and
why, in the report (`report["conventions"]`); what the evidence cannot decide stops with
a one-line `DistillError` naming the argument.
"""

from tfp_distill.job.config import (DEFAULT_MIN_STEPS, EXTRA_INPUTS, FIELD_TYPES,
                                    NOT_FINGERPRINTED, OFF_DATA_MIN_STEPS, STRATEGIES,
                                    STUDENTS, DistillConfig, DistillError, check_config)
from tfp_distill.job.runner import DistillResult, distill, run
from tfp_distill.job.training import epoch_batches

__all__ = ["DEFAULT_MIN_STEPS", "DistillConfig", "DistillError", "DistillResult",
           "EXTRA_INPUTS", "FIELD_TYPES", "NOT_FINGERPRINTED", "OFF_DATA_MIN_STEPS",
           "STRATEGIES", "STUDENTS", "check_config", "distill", "epoch_batches", "run"]
