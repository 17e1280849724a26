"""`tfp-distill ods`: the output-diversified sampling study
(`tfp_distill.experiments.ods`)."""

import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
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
  ods.add_argument("--student-epochs", type=_common.positive_int, default=None,
                   help="epochs per student (default 8)")
  ods.add_argument("--member-epochs", type=_common.positive_int, default=None,
                   help="epochs per deep-ensemble member, i.e. per teacher (default 10)")
  ods.add_argument("--num-train", type=_common.positive_int, default=None,
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
  ods.set_defaults(run=run)
  return ods


def run(args):
  """Runs `tfp-distill ods` with the parsed `args`; returns the exit status."""
  from tfp_distill.experiments import ods
  overrides = {"data_dir": args.data_dir, "student_epochs": args.student_epochs,
               "member_epochs": args.member_epochs, "num_train": args.num_train,
               "step_size": args.step_size, "gaussian_scale": args.gaussian_scale,
               "kd_temperature": args.kd_temperature, "labels_on": args.labels_on,
               "methods": args.methods and _common.comma_list(args.methods),
               "seeds": args.seeds and _common.comma_list(args.seeds, int)}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  try:
    config = ods.OdsConfig.fast(**overrides) if args.fast else ods.OdsConfig(**overrides)
    report = ods.run_ods(args.out, config)
  except ValueError as error:
    raise SystemExit(f"tfp-distill ods: {error}") from error
  except FileNotFoundError as error:
    raise SystemExit(f"tfp-distill ods: {error}") from error
  _common.print_report(args.out, report, ods.format_markdown(report))
  return 0
