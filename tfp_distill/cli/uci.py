"""`tfp-distill uci`: the UCI regression benchmark (`tfp_distill.experiments.uci`)."""

import argparse
import dataclasses
import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def _far_scale(text):
  """argparse type: "LOW,HIGH", two numbers with 0 <= LOW <= HIGH."""
  values = _common.comma_list(text, float)
  if len(values) != 2 or not 0 <= values[0] <= values[1]:
    raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 <= LOW <= HIGH, got {text}")
  return values


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
  uci = commands.add_parser(
      "uci", help="UCI regression benchmark (Lindqvist et al. 2020, Table 1)",
      description="Trains heteroscedastic ensembles on the standard UCI splits, distils "
                  "full-covariance, diagonal and mixture students, and writes "
                  "report.json, report.md and sparsification plots to --out. Finished "
                  "splits are saved and skipped on a rerun with the same settings.")
  uci.add_argument("--dataset", default="all",
                   help="short name (boston, concrete, energy, kin8nm, naval, power, "
                        "protein, wine, yacht), a comma-separated list, or 'all'")
  uci.add_argument("--splits", type=_common.positive_int, default=None,
                   help="run the first N standard splits (default: all)")
  uci.add_argument("--members", type=_common.positive_int, default=None,
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
  uci.add_argument("--box-share", type=_common.nonnegative_float, default=None,
                   help="students also distil on inputs uniform on the data's box widened "
                        "by half its range, this share of the training and jittered "
                        "inputs per epoch (0.2: one in six; default 0, none)")
  uci.add_argument("--box-expand", type=_common.nonnegative_float, default=None,
                   help="the box's widening on each side as a share of each feature's "
                        "range (default 0.5; 0: the data's own box)")
  uci.add_argument("--marginal-share", type=_common.nonnegative_float, default=None,
                   help="students also distil on marginal inputs (each feature from a "
                        "random training row: new combinations of seen values), this "
                        "share of the training and jittered inputs per epoch (default 0)")
  uci.add_argument("--far-share", type=_common.nonnegative_float, default=None,
                   help="students also distil on far inputs (a training row plus noise of "
                        "s feature sd, s uniform on --far-scale), this share of the "
                        "training and jittered inputs per epoch (default 0)")
  uci.add_argument("--far-scale", type=_far_scale, default=None,
                   metavar="LOW,HIGH",
                   help="the far inputs' noise range in feature sd (default 1,4)")
  uci.add_argument("--student-min-steps", type=_common.positive_int, default=None,
                   help="students train at least this many optimizer steps (more "
                        "epochs on small sets; inputs off the data need more)")
  uci.add_argument("--no-reference-ensemble", action="store_true",
                   help="skip the second ensemble whose agreement with the first is the "
                        "noise ceiling of the fidelity columns (faster)")
  uci.set_defaults(run=run)
  return uci


def run(args):
  """Runs `tfp-distill uci` with the parsed `args`; returns the exit status."""
  from tfp_distill.datasets import uci as uci_data
  from tfp_distill.experiments import uci
  config = uci.UCIConfig.fast() if args.fast else uci.UCIConfig()
  overrides = {"num_members": args.members, "seed": args.seed,
               "perturbation_step": args.perturbation_step, "box_share": args.box_share,
               "box_expand": args.box_expand, "marginal_share": args.marginal_share,
               "far_share": args.far_share, "far_scale": args.far_scale,
               "student_min_steps": args.student_min_steps}
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
  _common.print_report(args.out, report,
                       (uci.format_ood_markdown if args.ood else uci.format_markdown)(report))
  return 0
