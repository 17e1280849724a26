"""The `tfp-distill` command line: each subcommand writes one experiment's report folder.

```none
tfp-distill toy [--out reports/toy] [--fast] [--seed S] [--members M]
                [--member-epochs E] [--student-epochs E] [--distill-samples N]
tfp-distill uci [--dataset NAME|all] [--splits N] [--members M] [--ood] [--out reports/uci]
tfp-distill images [--dataset fashion_mnist] [--members M] [--out reports/images]
tfp-distill ods [--methods kd,kd-ods,...] [--seeds 0,1] [--out reports/ods]
tfp-distill bench [--suite inference,decompose,distill,train] [--repeats N] [--out DIR]
tfp-distill many-classes [--classes 10,100,1000] [--seeds 0,1,2] [--student-epochs E]
                         [--out reports/many_classes]
tfp-distill distill --teacher PATH [PATH ...] --train DATA [--test DATA] [--ood DATA]
                    [--aux DATA] [--method M] [--teacher-output K] [--variance V]
                    [--image-scale S] [--classes A,B,C] [--student S] [--epochs N]
                    [--batch-size B] [--config FILE.toml] [--resume] [--strategy S]
                    [--data-service ADDRESS] [--force] --out DIR
tfp-distill data-service dispatcher --port P [--work-dir DIR]
tfp-distill data-service worker --port Q --dispatcher HOST:P
```
The flags live here; the experiments are library functions (`tfp_distill.experiments`),
imported only when their subcommand runs so that `--help` is quick.
"""

import argparse
import dataclasses
import errno
import os
import sys
import warnings

__all__ = ["main"]


def _positive_int(text):
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
  return value


class _Commands:
  """`add_parser` of the subcommands, each with the flags every subcommand has."""

  def __init__(self, commands):
    self._commands = commands
    self._common = argparse.ArgumentParser(add_help=False)
    self._common.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's start-up and warning lines, and on an error the "
             "traceback (default: quiet, errors in one line)")

  def add_parser(self, name, **kwargs):
    return self._commands.add_parser(name, parents=[self._common], **kwargs)


def _parser():
  parser = argparse.ArgumentParser(
      prog="tfp-distill",
      description="Ensemble distribution distillation experiments (tfp_distill).")
  commands = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND",
                                             required=True))
  toy = commands.add_parser(
      "toy", help="regression toy study of Lindqvist et al. 2020 (section 4.1)",
      description="Trains an ensemble on a heteroscedastic sinusoid, distils it into a "
                  "distribution-distilled and a mixture-distilled student, and writes "
                  "report.json, report.md and figures to --out. Without options it runs "
                  "the paper's configuration.")
  toy.add_argument("--out", default=os.path.join("reports", "toy"),
                   help="report folder (default: %(default)s)")
  toy.add_argument("--fast", action="store_true",
                   help="tiny smoke-test configuration (seconds; not for results)")
  toy.add_argument("--seed", type=int, default=None, help="base seed (default 0)")
  toy.add_argument("--members", type=_positive_int, default=None,
                   help="ensemble size M (default 10)")
  toy.add_argument("--member-epochs", type=_positive_int, default=None,
                   help="epochs per member (default 150)")
  toy.add_argument("--student-epochs", type=_positive_int, default=None,
                   help="epochs per student (default 30)")
  toy.add_argument("--distill-samples", type=_positive_int, default=None,
                   help="distillation inputs drawn per student epoch (default 10000)")
  toy.add_argument("--teacher-in", choices=("train_step", "tf_data"), default=None,
                   help="where the teacher runs while a student trains: inside the train "
                        "step (td.Distiller, default) or in the tf.data pipeline "
                        "(student.fit(td.teacher_targets(...)))")
  toy.add_argument("--no-fast-paths", action="store_true",
                   help="the protocol of the 2026-11-25 figures: members side by side (not "
                        "vectorized), no XLA (slower; other random draws)")
  toy.set_defaults(run=_run_toy)

  uci = commands.add_parser(
      "uci", help="UCI regression benchmark (Lindqvist et al. 2020, Table 1)",
      description="Trains heteroscedastic ensembles on the standard UCI splits, distils "
                  "full-covariance, diagonal and mixture students, and writes "
                  "report.json, report.md and sparsification plots to --out. Finished "
                  "splits are saved and skipped on a rerun with the same settings.")
  uci.add_argument("--dataset", default="all",
                   help="short name (boston, concrete, energy, kin8nm, naval, power, "
                        "protein, wine, yacht), a comma-separated list, or 'all'")
  uci.add_argument("--splits", type=_positive_int, default=None,
                   help="run the first N standard splits (default: all)")
  uci.add_argument("--members", type=_positive_int, default=None,
                   help="ensemble size M (default 10)")
  uci.add_argument("--data-dir", default=None,
                   help="UCI data folder (default: $TFP_DISTILL_UCI_DIR, then "
                        "shared/data/uci beside the checkout)")
  uci.add_argument("--out", default=os.path.join("reports", "uci"),
                   help="report folder (default: %(default)s)")
  uci.add_argument("--fast", action="store_true",
                   help="tiny smoke-test configuration (not for results)")
  uci.add_argument("--seed", type=int, default=None, help="base seed (default 0)")
  uci.add_argument("--perturbation-step", type=float, default=None,
                   help="move every distillation batch up the members' disagreement "
                        "(td.perturb.MeanDisagreement, the regression analogue of ODS) by "
                        "a random fraction of this step (default: no perturbation)")
  uci.add_argument("--no-fast-paths", action="store_true",
                   help="the protocol of the 2026-11-25 table: members side by side (not "
                        "vectorized), each student alone on an element-wise tf.data "
                        "pipeline, no XLA (slower; other random draws, same distributions)")
  uci.add_argument("--ood", action="store_true",
                   help="out-of-distribution protocol: hold out the 10%% of rows farthest "
                        "along the first principal component, train on random 90/10 "
                        "splits of the rest (--splits, default 5), and report the AUROC "
                        "of each model's epistemic variance for held-out vs test points")
  uci.add_argument("--student-lr-schedule", choices=("cosine", "constant"), default=None,
                   help="students' Adam learning rate: decayed to 0 by a half cosine "
                        "(default) or constant")
  uci.add_argument("--protocol", choices=("2026-11-25", "2026-11-30"), default=None,
                   help="the settings of an earlier table (UCIConfig.PROTOCOLS): "
                        "2026-11-25 is --no-fast-paths; 2026-11-30 has the fast paths "
                        "with 75-unit students at a constant learning rate")
  uci.add_argument("--no-reference-ensemble", action="store_true",
                   help="skip the second ensemble whose agreement with the first is the "
                        "noise ceiling of the fidelity columns (faster)")
  uci.set_defaults(run=_run_uci)

  _add_distill(commands)

  images = commands.add_parser(
      "images", help="image classification study: EnD^2, Gaussian-over-logits and "
                     "mixture students on Fashion-MNIST",
      description="Trains (or reloads) an ensemble of small CNNs, distils an EnD^2 "
                  "Dirichlet, a Gaussian-over-logits and a mixture (soft-target) student, "
                  "and reports accuracy, NLL, Brier and ECE on the clean and corrupted "
                  "test sets, OOD detection of MNIST and Animal-MNIST, figures, "
                  "report.json and report.md in --out.")
  images.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist",),
                      help="in-distribution data set (default: %(default)s)")
  images.add_argument("--data-dir", default=None,
                      help="Fashion-MNIST folder (default: $TFP_DISTILL_FASHION_MNIST_DIR, "
                           "then /usr/share/datasets/fashion-mnist)")
  images.add_argument("--out", default=os.path.join("reports", "images"),
                      help="report folder (default: %(default)s)")
  images.add_argument("--fast", action="store_true",
                      help="tiny smoke-test configuration (not for results)")
  images.add_argument("--seed", type=int, default=None, help="base seed (default 0)")
  images.add_argument("--members", type=_positive_int, default=None,
                      help="ensemble size M (default 5)")
  images.add_argument("--member-epochs", type=_positive_int, default=None,
                      help="epochs per member (default 10)")
  images.add_argument("--student-epochs", type=_positive_int, default=None,
                      help="epochs per student (default 10)")
  images.add_argument("--dirichlet-target", choices=("ensemble", "proxy", "proxy_kl"),
                      default=None,
                      help="EnD^2 target: the members' probabilities (default), the "
                           "proxy Dirichlet of Ryabinin et al. 2021 with their published "
                           "cost (proxy), or the reverse KL to that target without the "
                           "division by its precision (proxy_kl, this library's 'proxy' "
                           "before 2026-11-30)")
  images.add_argument("--variant", default=None,
                      choices=("published", "predictive", "cosine", "predictive_cosine",
                               "long"),
                      help="a student method compared on validation images by "
                           "scripts/images_select.py (images.VARIANTS); long: 40 student "
                           "epochs, EnD^2 temperature held to epoch 10, 1 at epoch 30 "
                           "(chosen 2026-11-30)")
  images.add_argument("--predictive-weight", type=float, default=None,
                      help="weight of the ensemble's predictive as a soft target added to "
                           "the EnD^2 and Gaussian students' losses "
                           "(td.losses.predictive_kl; default 0, the papers' losses)")
  images.add_argument("--student-lr-schedule", choices=("constant", "cosine"),
                      default=None,
                      help="students' Adam learning rate: constant (default) or decayed "
                           "to 0 by a half cosine")
  images.set_defaults(run=_run_images)

  ods = commands.add_parser(
      "ods", help="output-diversified sampling study (Nam et al. 2021) on Fashion-MNIST: "
                  "BatchEnsemble KD students with Gaussian / ODS / ConfODS inputs, and "
                  "distribution students with and without ODS",
      description="Trains (or reloads) a deep ensemble of small CNNs, distils its first "
                  "members into BatchEnsemble students (labels only, KD, KD + Gaussian, "
                  "KD + ODS, KD + ConfODS) and into EnD^2 and Gaussian-over-logits "
                  "students with and without ODS, over several seeds, and reports ACC, "
                  "NLL, Brier, ECE, calibrated NLL, DEE, OOD AUROC and the teacher's "
                  "disagreement on perturbed inputs in --out. Finished runs are saved "
                  "and reused by a rerun with the same settings.")
  ods.add_argument("--methods", default=None,
                   help="comma-separated subset of: batchens, kd, kd-gaussian, kd-ods, "
                        "kd-confods, dirichlet, dirichlet-ods, gaussian, gaussian-ods "
                        "(default: all)")
  ods.add_argument("--seeds", default=None,
                   help="comma-separated student seeds (default: 0,1)")
  ods.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST folder (default: $TFP_DISTILL_FASHION_MNIST_DIR, "
                        "then /usr/share/datasets/fashion-mnist)")
  ods.add_argument("--out", default=os.path.join("reports", "ods"),
                   help="report folder (default: %(default)s)")
  ods.add_argument("--fast", action="store_true",
                   help="tiny smoke-test configuration (not for results)")
  ods.add_argument("--student-epochs", type=_positive_int, default=None,
                   help="epochs per student (default 8)")
  ods.add_argument("--member-epochs", type=_positive_int, default=None,
                   help="epochs per deep-ensemble member, i.e. per teacher (default 10)")
  ods.add_argument("--num-train", type=_positive_int, default=None,
                   help="train teachers and students on the first N training images "
                        "(default: all 60,000); a small N lets the teachers fit their "
                        "training set, the regime ODS is designed for")
  ods.add_argument("--step-size", type=float, default=None,
                   help="ODS / ConfODS step: RMS change per pixel (default 1/255)")
  ods.add_argument("--gaussian-scale", type=float, default=None,
                   help="noise std of the Gaussian baseline (default 1/255)")
  ods.add_argument("--kd-temperature", type=float, default=None,
                   help="KD temperature T (default 1)")
  ods.add_argument("--labels-on", choices=("clean", "perturbed"), default=None,
                   help="batch the label CE of perturbed KD students sees (default: "
                        "clean, as in Nam et al.'s code)")
  ods.set_defaults(run=_run_ods)

  bench = commands.add_parser(
      "bench", help="speed benchmark: every ratio (student vs ensemble, stacked vs loop, "
                    "cache vs memory, ...) measured side by side on this machine",
      description="Times prediction with uncertainty (students, td.Ensemble, the stacked "
                  "ensemble, the member loop), the decomposition graphs alone (eager, "
                  "tf.function, XLA, NumPy; peak memory), distillation epochs (teacher in "
                  "the train step or in tf.data, target cache, targets in memory) and "
                  "ensemble training (vectorized, one graph, sequential fit). Each figure "
                  "is the min and median of --repeats timed calls after a warm-up; "
                  "ratios come from the same run. Writes report.json, report.md and "
                  "ratios.png to --out.")
  bench.add_argument("--suite", default=None,
                     help="comma-separated subset of: inference, decompose, distill, train "
                          "(default: all)")
  bench.add_argument("--repeats", type=_positive_int, default=None,
                     help="timed calls per figure (default 5)")
  bench.add_argument("--members", default=None,
                     help="comma-separated ensemble sizes of the inference suite "
                          "(default: 5,10,20)")
  bench.add_argument("--backbones", default=None,
                     help="comma-separated subset of mlp, small_cnn, resnet18 (inference "
                          "suite; default: all)")
  bench.add_argument("--no-memory", action="store_true",
                     help="skip the peak-memory measurements (fresh processes, ~1 minute)")
  bench.add_argument("--out", default=os.path.join("reports", "bench"),
                     help="report folder (default: %(default)s)")
  bench.add_argument("--fast", action="store_true",
                     help="tiny smoke-test configuration (seconds; not for results)")
  bench.set_defaults(run=_run_bench)

  many = commands.add_parser(
      "many-classes", help="EnD^2 vs proxy-Dirichlet students as the number of classes "
                           "grows (Gaussian mixture, K = 10, 100, 1000)",
      description="For each number of classes K and seed: draws a K-class Gaussian "
                  "mixture in 32 dimensions (fixed Bayes accuracy), trains an ensemble "
                  "of MLPs, distils an EnD^2 and a proxy-Dirichlet student (same "
                  "network, weights at start, batches and schedule), and reports "
                  "accuracy, NLL, OOD AUROC by mutual information and the fidelity of "
                  "the students' MI (mean +- standard error over seeds) in "
                  "report.json, report.md and figures in --out.")
  many.add_argument("--classes", default=None,
                    help="comma-separated numbers of classes (default: 10,100,1000)")
  many.add_argument("--seeds", default=None,
                    help="comma-separated seeds (default: 0,1,2)")
  many.add_argument("--student-epochs", type=_positive_int, default=None,
                    help="epochs of both students (default 8); the temperature is held "
                         "for the first quarter of them and reaches 1 at three quarters, "
                         "as in the default schedule (epochs 2 and 6 of 8)")
  many.add_argument("--out", default=os.path.join("reports", "many_classes"),
                    help="report folder (default: %(default)s)")
  many.add_argument("--fast", action="store_true",
                    help="tiny smoke-test configuration (K = 3, 5; seconds; not for "
                         "results)")
  many.set_defaults(run=_run_many_classes)
  return parser


def _comma_list(text, convert=str):
  return tuple(convert(v.strip()) for v in text.split(",") if v.strip())


def _run_many_classes(args):
  from tfp_distill.experiments import many_classes  # pylint: disable=import-outside-toplevel
  overrides = {"classes": args.classes and _comma_list(args.classes, int),
               "seeds": args.seeds and _comma_list(args.seeds, int)}
  if args.student_epochs:
    epochs = args.student_epochs
    overrides.update(student_epochs=epochs, anneal_start=round(epochs / 4),
                     anneal_end=max(round(3 * epochs / 4), round(epochs / 4) + 1))
  overrides = {k: v for k, v in overrides.items() if v is not None}
  try:
    config = (many_classes.ManyClassesConfig.fast(**overrides) if args.fast
              else many_classes.ManyClassesConfig(**overrides))
    report = many_classes.run_many_classes(args.out, config,
                                           log=lambda line: print(line, flush=True))
  except ValueError as error:
    raise SystemExit(f"tfp-distill many-classes: {error}") from error
  print(f"Report written to {os.path.join(args.out, report['files']['report_md'])} "
        f"(total {report['wall_time_s']:.1f} s)")
  print()
  print(many_classes.format_markdown(report))
  return 0


def _run_bench(args):
  from tfp_distill.experiments import bench  # pylint: disable=import-outside-toplevel
  overrides = {"suites": args.suite and _comma_list(args.suite),
               "repeats": args.repeats,
               "members": args.members and _comma_list(args.members, int),
               "backbones": args.backbones and _comma_list(args.backbones),
               "memory": False if args.no_memory else None}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  config = bench.BenchConfig.fast(**overrides) if args.fast else bench.BenchConfig(
      **overrides)
  try:
    report = bench.run_bench(args.out, config, log=lambda line: print(line, flush=True))
  except ValueError as error:
    raise SystemExit(f"tfp-distill bench: {error}") from error
  print(f"Report written to {os.path.join(args.out, report['files']['report_md'])}")
  print()
  print(bench.format_markdown(report))
  return 0


def _run_ods(args):
  from tfp_distill.experiments import ods  # pylint: disable=import-outside-toplevel
  overrides = {"data_dir": args.data_dir, "student_epochs": args.student_epochs,
               "member_epochs": args.member_epochs, "num_train": args.num_train,
               "step_size": args.step_size, "gaussian_scale": args.gaussian_scale,
               "kd_temperature": args.kd_temperature, "labels_on": args.labels_on,
               "methods": args.methods and _comma_list(args.methods),
               "seeds": args.seeds and _comma_list(args.seeds, int)}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  try:
    config = ods.OdsConfig.fast(**overrides) if args.fast else ods.OdsConfig(**overrides)
    report = ods.run_ods(args.out, config)
  except ValueError as error:
    raise SystemExit(f"tfp-distill ods: {error}") from error
  except FileNotFoundError as error:
    raise SystemExit(f"tfp-distill ods: {error}") from error
  print(f"Report written to {os.path.join(args.out, report['files']['report_md'])} "
        f"(total {report['timings_s']['total']:.1f} s)")
  print()
  print(ods.format_markdown(report))
  return 0


def _distill_keys():
  """`tfp-distill distill` flags (argparse dest) that a --config TOML file may set: the
  fields of `td.job.DistillConfig` but verbose."""
  from tfp_distill import job  # pylint: disable=import-outside-toplevel
  import dataclasses  # pylint: disable=import-outside-toplevel
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


def _add_distill(commands):
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
  distill.add_argument("--student", default=None,
                       help="builtin:mlp (feature vectors; 150 hidden units, standardises "
                            "its inputs), builtin:small_cnn (images, default for images), "
                            "builtin:resnet18, or a tf_keras .keras backbone x -> features "
                            "to which the head is appended")
  distill.add_argument("--epochs", type=_positive_int, default=None,
                       help="maximum student epochs (default: from the data, at least "
                            "--min-steps optimizer steps and 30 epochs; early stopping on "
                            "the held-out distillation loss may end sooner)")
  distill.add_argument("--min-steps", type=_positive_int, default=None,
                       help="fewest optimizer steps the automatic schedule plans (default "
                            "3000)")
  distill.add_argument("--batch-size", type=_positive_int, default=None,
                       help="student batch size (default 128)")
  distill.add_argument("--learning-rate", type=float, default=None,
                       help="Adam's initial learning rate, cosine-decayed (default 1e-3)")
  distill.add_argument("--patience", type=_positive_int, default=None,
                       help="epochs without a lower held-out loss before stopping "
                            "(default: from the schedule, at least 5)")
  distill.add_argument("--extra-inputs", choices=("auto", "mixup", "jitter", "none"),
                       default=None,
                       help="distillation inputs beyond the training rows, labelled by "
                            "the teacher: auto (default: mixup for classification, "
                            "jittered copies for regression, none for precomputed outputs)")
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
  distill.add_argument("--limit", type=_positive_int, default=None,
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
  distill.set_defaults(run=_run_distill)

  service = commands.add_parser(
      "data-service", help="run a tf.data service dispatcher or worker (for --data-service)",
      description="Starts one tf.data service server and serves until killed. A "
                  "dispatcher coordinates; workers compute the teacher's outputs for "
                  "`tfp-distill distill --data-service HOST:PORT`. See "
                  "docs/guide/distributed.md.")
  service.add_argument("role", choices=("dispatcher", "worker"))
  service.add_argument("--port", type=_positive_int, required=True,
                       help="port this server listens on")
  service.add_argument("--dispatcher", default=None, metavar="HOST:PORT",
                       help="worker only: the dispatcher's address")
  service.add_argument("--worker-address", default=None, metavar="HOST:PORT",
                       help="worker only: the address the dispatcher reaches this worker "
                            "at (default localhost:PORT; set it on multi-host setups)")
  service.add_argument("--work-dir", default=None,
                       help="dispatcher only: journal folder; with it the dispatcher runs "
                            "in fault-tolerant mode and a restarted dispatcher resumes")
  service.set_defaults(run=_run_data_service)


def _run_data_service(args):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  service = tf.data.experimental.service
  if args.role == "dispatcher":
    if args.dispatcher or args.worker_address:
      raise SystemExit("tfp-distill data-service: --dispatcher and --worker-address are "
                       "for workers.")
    server = service.DispatchServer(service.DispatcherConfig(
        port=args.port, work_dir=args.work_dir,
        fault_tolerant_mode=args.work_dir is not None))
  else:
    if not args.dispatcher:
      raise SystemExit("tfp-distill data-service: a worker needs --dispatcher HOST:PORT.")
    if args.work_dir:
      raise SystemExit("tfp-distill data-service: --work-dir is for the dispatcher.")
    server = service.WorkerServer(service.WorkerConfig(
        dispatcher_address=args.dispatcher.replace("grpc://", ""), port=args.port,
        worker_address=args.worker_address or f"localhost:{args.port}"))
  print(f"tf.data service {args.role} serving on port {args.port}", flush=True)
  server.join()
  return 0


def _read_toml(path):
  try:
    import tomllib  # pylint: disable=import-outside-toplevel
  except ImportError:          # Python 3.10: the same parser, from PyPI (setup.cfg)
    import tomli as tomllib  # pylint: disable=import-outside-toplevel
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


def failure_line(command, error, out=None):
  """The one line a failed command prints, for any exception it stopped on.

  Args:
    command: str, the subcommand ("distill").
    error: the exception (or KeyboardInterrupt).
    out: None or the output folder (for the --resume hint).
  """
  prefix = f"tfp-distill {command}: "
  if isinstance(error, KeyboardInterrupt):
    hint = (f"; run the same command with --resume to continue from the last finished "
            f"epoch (the backup in {os.path.join(out, 'backup')})" if out else "")
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


def _run_distill(args):
  from tfp_distill import job  # pylint: disable=import-outside-toplevel
  from tfp_distill import report as report_lib  # pylint: disable=import-outside-toplevel
  out = None
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
    report = job.run(config).report
  except (Exception, KeyboardInterrupt) as error:  # pylint: disable=broad-except
    if args.verbose:
      raise
    # Every failure ends in one line (the tests hold each kind to it); the traceback is
    # one --verbose away.
    raise SystemExit(failure_line("distill", error, out)) from error
  print(f"Report written to {os.path.join(config.out, report['files']['report_md'])} "
        f"(total {report['wall_time_s']:.1f} s)")
  print()
  print(report_lib.format_markdown(report))
  return 0


def _run_images(args):
  from tfp_distill.experiments import images  # pylint: disable=import-outside-toplevel
  config = images.ImagesConfig.fast() if args.fast else images.ImagesConfig()
  if args.variant:
    config = dataclasses.replace(config, **images.VARIANTS[args.variant])
  overrides = {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed,
               "num_members": args.members, "member_epochs": args.member_epochs,
               "student_epochs": args.student_epochs,
               "dirichlet_target": args.dirichlet_target,
               "predictive_weight": args.predictive_weight,
               "student_lr_schedule": args.student_lr_schedule}
  config = dataclasses.replace(
      config, **{k: v for k, v in overrides.items() if v is not None})
  try:
    report = images.run_images(args.out, config)
  except FileNotFoundError as error:
    raise SystemExit(f"tfp-distill images: {error}") from error
  print(f"Report written to {os.path.join(args.out, report['files']['report_md'])} "
        f"(total {report['timings_s']['total']:.1f} s)")
  print()
  print(images.format_markdown(report))
  return 0


def _run_uci(args):
  from tfp_distill.datasets import uci as uci_data  # pylint: disable=import-outside-toplevel
  from tfp_distill.experiments import uci  # pylint: disable=import-outside-toplevel
  config = uci.UCIConfig.fast() if args.fast else uci.UCIConfig()
  overrides = {"num_members": args.members, "seed": args.seed,
               "perturbation_step": args.perturbation_step}
  if args.no_fast_paths:
    args.protocol = "2026-11-25"
  if args.protocol:
    overrides.update(uci.UCIConfig.PROTOCOLS[args.protocol])
  if args.student_lr_schedule:
    overrides.update(student_lr_schedule=args.student_lr_schedule)
  if args.no_reference_ensemble:
    overrides.update(reference_ensemble=False)
  config = dataclasses.replace(
      config, **{k: v for k, v in overrides.items() if v is not None})
  names = (sorted(uci_data.UCI_DATASETS) if args.dataset == "all"
           else [n.strip() for n in args.dataset.split(",") if n.strip()])
  for name in names:
    if name not in uci_data.UCI_DATASETS:
      raise SystemExit(f"tfp-distill uci: unknown data set {name!r}; known: "
                       f"{', '.join(sorted(uci_data.UCI_DATASETS))}.")
  report = uci.run_uci(args.out, names, num_splits=args.splits, config=config,
                       data_dir=args.data_dir, ood=args.ood)
  print(f"Report written to {os.path.join(args.out, 'report.md')}")
  print()
  print((uci.format_ood_markdown if args.ood else uci.format_markdown)(report))
  return 0


def _run_toy(args):
  from tfp_distill.experiments import toy  # pylint: disable=import-outside-toplevel
  config = toy.ToyConfig.fast() if args.fast else toy.ToyConfig()
  overrides = {
      "seed": args.seed,
      "num_members": args.members,
      "member_epochs": args.member_epochs,
      "student_epochs": args.student_epochs,
      "distill_samples_per_epoch": args.distill_samples,
      "teacher_in": args.teacher_in,
      "fast_paths": False if args.no_fast_paths else None,
  }
  config = dataclasses.replace(
      config, **{k: v for k, v in overrides.items() if v is not None})
  report = toy.run_toy(args.out, config)
  print(f"Report written to {os.path.join(args.out, report['files']['report_md'])} "
        f"(total {report['timings_s']['total']:.1f} s)")
  print()
  print(toy.format_markdown(report))
  return 0


def _one_line_warning(message, category, filename, lineno, line=None):
  """warnings.formatwarning for the command line: 'tfp-distill: warning: ...'."""
  del filename, lineno, line
  return f"tfp-distill: warning: {' '.join(str(message).split())} ({category.__name__})\n"


def main(argv=None):
  """Runs the command line; returns the exit status (0 on success).

  Without --verbose, TensorFlow's Python-side warnings are off and warnings print as one
  line each (the console script, `tfp_distill_launcher`, also quiets TensorFlow's C++
  start-up lines).

  Args:
    argv: list of str, the arguments without the program name (default: sys.argv[1:]).

  Returns:
    int.
  """
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  if not args.verbose:
    import logging  # pylint: disable=import-outside-toplevel
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    previous = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
      return args.run(args)
    finally:
      warnings.formatwarning = previous
  return args.run(args)
