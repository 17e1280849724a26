"""`tfp-distill images`: the Fashion-MNIST study (`tfp_distill.experiments.images`)."""

import dataclasses
import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
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
  images.add_argument("--members", type=_common.positive_int, default=None,
                      help="ensemble size M (default 5)")
  images.add_argument("--member-epochs", type=_common.positive_int, default=None,
                      help="epochs per member (default 10)")
  images.add_argument("--student-epochs", type=_common.positive_int, default=None,
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
  images.set_defaults(run=run)
  return images


def run(args):
  """Runs `tfp-distill images` with the parsed `args`; returns the exit status."""
  from tfp_distill.experiments import images
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
  _common.print_report(args.out, report, images.format_markdown(report))
  return 0
