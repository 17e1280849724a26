"""`tfp-distill distill`: the names the command used to live under, now in `td.job`.

The job is `td.distill` (`tfp_distill.job`); this module keeps the old import paths of
the front end working: `run_distill(config)` runs a `DistillConfig` and returns its
report, `format_markdown` renders one.
"""

from tfp_distill import callbacks as _callbacks
from tfp_distill import job as _job
from tfp_distill import methods as _methods
from tfp_distill import report as _report

__all__ = ["DistillConfig", "DistillError", "METHODS", "ResumableEarlyStopping",
           "epoch_batches", "format_markdown", "run_distill"]

DistillConfig = _job.DistillConfig
DistillError = _job.DistillError
epoch_batches = _job.epoch_batches
format_markdown = _report.format_markdown
ResumableEarlyStopping = _callbacks.ResumableEarlyStopping
#: Methods per task, the default first (from the one registry, `td.methods`).
METHODS = {task: _methods.names(task) for task in _methods.TASKS}


def run_distill(config):
  """Runs `tfp-distill distill` and writes its report folder; returns the report dict."""
  return _job.run(config).report
