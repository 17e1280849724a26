"""`tfp-distill many-classes`: EnD^2 and proxy-Dirichlet students as the number of
classes grows (`tfp_distill.experiments.many_classes`)."""

import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
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
  many.add_argument("--student-epochs", type=_common.positive_int, default=None,
                    help="epochs of both students (default 8); the temperature is held "
                         "for the first quarter of them and reaches 1 at three quarters, "
                         "as in the default schedule (epochs 2 and 6 of 8)")
  many.add_argument("--out", default=os.path.join("reports", "many_classes"),
                    help="report folder (default: %(default)s)")
  many.add_argument("--fast", action="store_true",
                    help="tiny smoke-test configuration (K = 3, 5; seconds; not for "
                         "results)")
  many.set_defaults(run=run)
  return many


def run(args):
  """Runs `tfp-distill many-classes` with the parsed `args`; returns the exit status."""
  from tfp_distill.experiments import many_classes
  overrides = {"classes": args.classes and _common.comma_list(args.classes, int),
               "seeds": args.seeds and _common.comma_list(args.seeds, int)}
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
  _common.print_report(args.out, report, many_classes.format_markdown(report))
  return 0
