"""`tfp-distill distill`: the user's own ensemble distilled into one student (`td.distill`).

Every flag is a field of `td.job.DistillConfig`; a `--config FILE.toml` sets any of them
(flags on the command line win). Every failure ends in one line (`failure_line`); the
traceback is one `--verbose` away.
"""

import argparse
import dataclasses
import errno
import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "failure_line", "run"]


def _distill_keys():
  """`tfp-distill distill` flags (argparse dest) that a --config TOML file may set: the
  fields of `td.job.DistillConfig` but verbose."""
  from tfp_distill import job
  return tuple(f.name for f in dataclasses.fields(job.DistillConfig) if f.name != "verbose")


def _noise_variance(text):
  if text == "auto":
    return text
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected 'auto' or a number > 0, got {text}") \
        from None
  return value


def add_parser(commands):
  """Adds `tfp-distill distill` and its flags to `commands` (`_common.Commands`)."""
  distill = commands.add_parser(
      "distill", help="distil your own ensemble into one student",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Distils an ensemble you trained (Keras 3 or tf_keras .keras files, "
                  "SavedModel folders, or its members' outputs in an .npz) into one "
                  "student that predicts the ensemble's prediction and its split of "
                  "uncertainty. Writes student.keras, saved_model/, report.json, "
                  "report.md and figures to --out. Every convention it assumes about your "
                  "members and data (output kind, variance parameterization, pixel scale, "
                  "task) is read from evidence and reported, or set by its flag; what the "
                  "evidence cannot decide stops with one line naming the flag. The same "
                  "job in Python: td.distill(...).",
      epilog="DATA is a .npz with array x (and y), tfds:NAME[:SPLIT], a folder of images "
             "with one subfolder per class (read as raw 0-255 pixels, as Keras reads "
             "them, unless the members score better on [0, 1] or --image-scale says), or "
             "a .csv (a header row optional; the target is the last column: numbers, or "
             "class names numbered in --classes order).\nThe task comes from the labels "
             "and the members' outputs: integer labels or class names mean "
             "classification, fractional targets regression.\n"
             "Every flag can also be set in --config FILE.toml (key = flag name without "
             "the dashes, e.g. batch_size = 256); flags on the command line win.")
  for add in (_data_flags, _convention_flags, _training_flags, _run_flags):
    add(distill)
  distill.set_defaults(run=run)
  return distill


def _data_flags(distill):
  """Where the teacher and the data come from: --teacher, --train, --test, --ood, --aux,
  --task."""
  distill.add_argument("--teacher", nargs="+", default=None, metavar="PATH",
                       help="the members: .keras files (Keras 3 or tf_keras; which is read "
                            "from the file), SavedModel folders, or ONE .npz holding the "
                            "members' outputs z [n, members, outputs] aligned with --train "
                            "(optional z_test / z_ood aligned with --test / --ood)")
  distill.add_argument("--train", default=None, metavar="DATA",
                       help="training inputs (and labels): the student learns the "
                            "members' outputs at these inputs")
  distill.add_argument("--test", default=None, metavar="DATA",
                       help="test data for the report (default: 10%% of --train held out, "
                            "seeded; the report says which)")
  distill.add_argument("--ood", default=None, metavar="DATA",
                       help="out-of-distribution inputs: the report gives the AUROC of "
                            "the epistemic uncertainty (mutual information / variance) "
                            "for these vs the test inputs")
  distill.add_argument("--aux", default=None, metavar="DATA",
                       help="unlabelled inputs the teacher labels as extra distillation "
                            "inputs (labels in the file are not used)")
  distill.add_argument("--task", choices=("classification", "regression"), default=None,
                       help="override the task read from the labels and outputs")


def _convention_flags(distill):
  """The method and what the members' outputs and inputs mean (td.conventions)."""
  distill.add_argument("--method", default=None,
                       help="the student (td.methods): classification: end2 (Dirichlet, "
                            "EnD^2, default), gaussian-logits (full-covariance Normal over "
                            "the logits), gaussian-logits-diagonal, proxy-dirichlet, kd or "
                            "mixture (one Categorical: no epistemic part); regression: mvn "
                            "(full-covariance Normal over z, default), diagonal, mixture")
  distill.add_argument("--teacher-output",
                       choices=("auto", "logits", "probs", "log-probs"), default=None,
                       help="what classification members output (default auto: read from "
                            "their last layer and from the outputs: rows >= 0 summing to 1 "
                            "are probabilities, rows with logsumexp 0 log-probabilities)")
  distill.add_argument("--variance",
                       choices=("auto", "softplus", "log-variance", "log-std", "variance",
                                "std", "point"), default=None,
                       help="how regression members' second output gives the variance "
                            "(default auto: the likelihood of labelled training rows under "
                            "each reading); point: one output per target (point "
                            "predictions)")
  distill.add_argument("--noise-variance", type=_noise_variance, default=None,
                       metavar="auto|V",
                       help="point-prediction members' noise variance (default auto: from "
                            "the ensemble mean's residuals on labelled training rows)")
  distill.add_argument("--image-scale", choices=("auto", "raw", "unit"), default=None,
                       help="pixels as the members take them: raw 0-255 or unit [0, 1] "
                            "(default auto: the scale the members score better on; raw "
                            "when they score alike)")
  distill.add_argument("--classes", type=lambda text: tuple(text.split(",")), default=None,
                       metavar="A,B,C",
                       help="class names in the members' order (class-name labels in a "
                            ".csv, subfolders of an image folder); default: sorted names")
  distill.add_argument("--target-column", default=None, metavar="NAME",
                       help=".csv column to predict (default: the last)")


def _training_flags(distill):
  """The student and its schedule."""
  distill.add_argument("--student", default=None,
                       help="builtin:mlp (feature vectors; 150 hidden units, standardises "
                            "its inputs), builtin:small_cnn (images, default for images), "
                            "builtin:resnet18, or a .keras backbone x -> features (of "
                            "the student's Keras) to which the head is appended")
  distill.add_argument("--keras", type=int, choices=(2, 3), default=None,
                       help="the student's Keras: 3 (default: Keras 3, `import keras`, "
                            "TensorFlow backend) or 2 (tf_keras, tfp.layers heads)")
  distill.add_argument("--epochs", type=_common.positive_int, default=None,
                       help="maximum student epochs (default: from the data, at least "
                            "--min-steps optimizer steps and 30 epochs; early stopping on "
                            "the held-out distillation loss may end sooner)")
  distill.add_argument("--min-steps", type=_common.positive_int, default=None,
                       help="fewest optimizer steps the automatic schedule plans (default "
                            "3000, and 12000 with far, box, marginal or --aux inputs)")
  distill.add_argument("--min-steps-per-epoch", type=_common.positive_int, default=None,
                       help="an epoch is as many passes over the rows as give at least "
                            "this many steps (default 50: small data sets get several "
                            "passes per epoch; 1: one pass)")
  distill.add_argument("--batch-size", type=_common.positive_int, default=None,
                       help="student batch size (default 128)")
  distill.add_argument("--learning-rate", type=float, default=None,
                       help="Adam's initial learning rate, cosine-decayed (default 1e-3)")
  distill.add_argument("--patience", type=_common.positive_int, default=None,
                       help="epochs without a lower held-out loss before stopping "
                            "(default: from the schedule, at least 5)")
  distill.add_argument("--extra-inputs", default=None, metavar="SPEC",
                       help="distillation inputs beyond the training rows, labelled by "
                            "the teacher: auto (default: mixup for classification, "
                            "jittered copies for regression, none for precomputed "
                            "outputs), none, or kinds joined by '+' with an optional share "
                            "of the training rows: mixup, jitter, far (scaled noise, 1-4 "
                            "feature sd), box (the data's box widened by half), marginal "
                            "(each feature from a random row), e.g. "
                            "mixup+far:0.5")
  distill.add_argument("--output-normalization", choices=("auto", "on", "off"),
                       default=None,
                       help="start the student's params at the teacher's targets' "
                            "location and spread on the training rows: auto (default: "
                            "regression students, and gaussian-logits students of "
                            "images), on (students with a Normal head), off")
  distill.add_argument("--temperature", type=_temperature, default=None, metavar="T",
                       help="end2 only: the loss's starting temperature (>= 1; default "
                            "2.5, 1 for images), held for the first quarter of the epochs "
                            "and annealed to 1 by three quarters; or 'choose' (images): a "
                            "student at 1 and at 2.5, the one kept chosen on corruptions "
                            "of held-out training images (twice the training)")


def _temperature(text):
  """--temperature: "choose" or a number (its range is checked with the other settings)."""
  if text == "choose":
    return text
  try:
    return float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'choose', got {text!r}") \
        from None


def _run_flags(distill):
  """Where and how the job runs, and where it writes."""
  distill.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"),
                       default=None,
                       help="default (one device), mirrored (all local devices) or "
                            "multi-worker (MultiWorkerMirroredStrategy; TF_CONFIG per "
                            "host, see docs/guide/distributed.md)")
  distill.add_argument("--resume", action="store_true", default=None,
                       help="continue a killed run of the same job from its last finished "
                            "epoch (--out/backup); a backup of other settings, data or "
                            "teachers is refused")
  distill.add_argument("--data-service", default=None, metavar="ADDRESS",
                       help="compute the teacher's outputs on tf.data service workers "
                            "(the dispatcher's HOST:PORT; start them with tfp-distill "
                            "data-service)")
  distill.add_argument("--force", action="store_true", default=None,
                       help="train even when the ensemble scores at chance level on "
                            "labelled training rows")
  distill.add_argument("--seed", type=int, default=None, help="seed (default 0)")
  distill.add_argument("--limit", type=_common.positive_int, default=None,
                       help="read at most this many examples from each data source")
  distill.add_argument("--config", default=None, metavar="FILE.toml",
                       help="a TOML file of flag values (keys: flag names with "
                            "underscores, e.g. batch_size)")
  distill.add_argument("--out", default=None, metavar="DIR",
                       help="report folder (default: reports/distill): new, empty, or one "
                            "an earlier run wrote; a folder tfp-distill did not make is "
                            "refused, nothing in it touched")
  distill.add_argument("--quiet", action="store_true",
                       help="no progress bars and no log of decisions")


def _read_toml(path):
  try:
    import tomllib
  except ImportError:          # Python 3.10: the same parser, from PyPI (setup.cfg)
    import tomli as tomllib
  try:
    with open(path, "rb") as f:
      values = tomllib.load(f)
  except FileNotFoundError as error:
    raise ValueError(f"--config {path} does not exist.") from error
  except tomllib.TOMLDecodeError as error:
    raise ValueError(f"--config {path} is not valid TOML: {error}") from error
  keys = _distill_keys()
  out = {}
  for key, value in values.items():
    name = key.replace("-", "_")
    if name not in keys:
      raise ValueError(f"--config {path}: {key!r} is not a flag of tfp-distill distill "
                       f"(keys: {', '.join(keys)}).")
    out[name] = value
  for name in ("teacher", "classes"):
    if isinstance(out.get(name), str):
      out[name] = [out[name]] if name == "teacher" else out[name].split(",")
  return out


def failure_line(command, error, out=None, backups=("backup",)):
  """The one line a failed command prints, for any exception it stopped on.

  Args:
    command: str, the subcommand ("distill").
    error: the exception (or KeyboardInterrupt).
    out: None or the output folder (for the --resume hint).
    backups: the names of the job's backups in it (one per candidate of
      temperature="choose").
  """
  prefix = f"tfp-distill {command}: "
  if isinstance(error, KeyboardInterrupt):
    where = ", ".join(os.path.join(out, name) for name in backups) if out else ""
    hint = (f"; run the same command with --resume to continue from the last finished "
            f"epoch (the backup{'s' if len(backups) > 1 else ''} in {where})" if out
            else "")
    return prefix + "interrupted" + hint + "."
  if isinstance(error, OSError) and error.errno is not None and not isinstance(
      error, FileNotFoundError):
    where = f" ({error.filename})" if error.filename else ""
    reason = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
              errno.EROFS: "the file system is read-only",
              errno.EDQUOT: "the disk quota is exceeded"}.get(error.errno,
                                                              error.strerror or str(error))
    return (prefix + f"cannot write{where}: {reason}. Outputs are written under temporary "
            "names and moved into place, so no file in the folder is half-written; free "
            "the space or fix the permissions and rerun (with --resume to continue "
            "training).")
  message = " ".join(str(error).split())
  if isinstance(error, (ValueError, FileNotFoundError, ImportError)):
    return prefix + (message or type(error).__name__)
  return (prefix + f"unexpected error ({type(error).__name__}: {message[:300]}); rerun "
          "with --verbose for the traceback, and please report it.")


def run(args):
  """Runs `tfp-distill distill` with the parsed `args`; returns the exit status."""
  from tfp_distill import job
  from tfp_distill import report as report_lib
  out, backups = None, ("backup",)
  try:
    values = _read_toml(args.config) if args.config else {}
    values.update({k: getattr(args, k) for k in _distill_keys()
                   if getattr(args, k, None) is not None})
    for name in ("teacher", "classes"):
      if isinstance(values.get(name), (list, tuple)):   # other types: refused below
        values[name] = tuple(os.fspath(t) if isinstance(t, os.PathLike) else t
                             for t in values[name])
    values.setdefault("out", os.path.join("reports", "distill"))
    out = values["out"] if isinstance(values["out"], str) else None
    config = job.DistillConfig(verbose=0 if args.quiet else 1, **values)
    backups = job.runner.backup_names(config)
    report = job.run(config).report
  except (Exception, KeyboardInterrupt) as error:  # pylint: disable=broad-except
    if args.verbose:
      raise
    # Every failure ends in one line (the tests hold each kind to it); the traceback is
    # one --verbose away.
    raise SystemExit(failure_line("distill", error, out, backups)) from error
  print(f"Report written to {os.path.join(config.out, report['files']['report_md'])} "
        f"(total {report['wall_time_s']:.1f} s)")
  print()
  print(report_lib.format_markdown(report))
  return 0
