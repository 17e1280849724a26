"""Helpers shared by the studies."""

import dataclasses
import hashlib
import json
import os

__all__ = ["adam", "agreement", "classification_metrics", "config_key", "write_report"]


def config_key(config, fields=()):
  """A short hash (10 hex digits) of a config dataclass's named fields (all when none)."""
  values = dataclasses.asdict(config)
  values = {k: values[k] for k in (fields or values)}
  return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()
                      ).hexdigest()[:10]


def adam(learning_rate, schedule="constant", epochs=None, examples=None, batch_size=None,
         what="student_lr_schedule"):
  """Adam at a constant learning rate, or decayed to 0 over the run by a half cosine.

  Args:
    learning_rate: float, the initial learning rate.
    schedule: "constant" or "cosine".
    epochs, examples, batch_size: ints, the run's length (needed for "cosine").
    what: str, the setting's name in error messages.
  """
  from tfp_distill._keras import keras  # pylint: disable=import-outside-toplevel
  if schedule == "constant":
    return keras.optimizers.Adam(learning_rate)
  if schedule != "cosine":
    raise ValueError(f"{what} must be 'constant' or 'cosine', got {schedule!r}.")
  steps = epochs * -(-examples // batch_size)
  return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
      learning_rate, decay_steps=steps))


def classification_metrics(labels, probs, quantile_ece=False):
  """Accuracy, NLL, Brier and ECE (15 equal-width bins; and 15 quantile bins) as floats."""
  import tfp_distill as td  # pylint: disable=import-outside-toplevel
  m = td.metrics
  out = {"accuracy": float(m.accuracy(labels, probs)),
         "nll": float(m.categorical_nll(labels, probs)),
         "brier": float(m.brier_score(labels, probs)),
         "ece": float(m.expected_calibration_error(labels, probs, num_bins=15))}
  if quantile_ece:
    out["ece_quantile"] = float(m.expected_calibration_error(labels, probs, num_bins=15,
                                                             binning="quantile"))
  return out


def agreement(estimate, reference):
  """How well per-point uncertainties [n] match a reference's: Pearson, Spearman, MRE."""
  import tfp_distill as td  # pylint: disable=import-outside-toplevel
  m = td.metrics
  return {"pearson": float(m.pearson_correlation(estimate, reference)),
          "spearman": float(m.spearman_correlation(estimate, reference)),
          "mean_relative_error": float(m.mean_relative_error(estimate, reference))}


def write_report(out_dir, files, report, markdown):
  """Writes report.json and the Markdown (`files["report_json"]`, `files["report_md"]`)."""
  with open(os.path.join(out_dir, files["report_json"]), "w") as f:
    json.dump(report, f, indent=2, default=float)
  with open(os.path.join(out_dir, files["report_md"]), "w") as f:
    f.write(markdown)
