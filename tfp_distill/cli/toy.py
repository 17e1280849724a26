"""`tfp-distill toy`: the regression toy study (`tfp_distill.experiments.toy`)."""

import dataclasses
import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
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
  toy.add_argument("--members", type=_common.positive_int, default=None,
                   help="ensemble size M (default 10)")
  toy.add_argument("--member-epochs", type=_common.positive_int, default=None,
                   help="epochs per member (default 150)")
  toy.add_argument("--student-epochs", type=_common.positive_int, default=None,
                   help="epochs per student (default 30)")
  toy.add_argument("--distill-samples", type=_common.positive_int, default=None,
                   help="distillation inputs drawn per student epoch (default 10000)")
  toy.add_argument("--teacher-in", choices=("train_step", "tf_data"), default=None,
                   help="where the teacher runs while a student trains: inside the train "
                        "step (td.Distiller, default) or in the tf.data pipeline "
                        "(student.fit(td.teacher_targets(...)))")
  toy.add_argument("--no-fast-paths", action="store_true",
                   help="the protocol of the 2026-11-25 figures: members side by side (not "
                        "vectorized), no XLA (slower; other random draws)")
  toy.set_defaults(run=run)
  return toy


def run(args):
  """Runs `tfp-distill toy` with the parsed `args`; returns the exit status."""
  from tfp_distill.experiments import toy
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
  _common.print_report(args.out, report, toy.format_markdown(report))
  return 0
