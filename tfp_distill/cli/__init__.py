"""The `tfp-distill` command line: each subcommand writes one report folder.

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

One module per subcommand (`cli/toy.py`, ..., `cli/distill.py`), each with
`add_parser(commands)`, which holds its flags, and `run(args)`, which calls the library:
the studies (`tfp_distill.experiments`) and `td.distill` (`tfp_distill.job`) are imported
only when their subcommand runs, so that `--help` is quick and the docs build reads the
parsers without TensorFlow.
"""

import argparse
import logging
import sys
import warnings

from tfp_distill.cli import _common
from tfp_distill.cli import bench
from tfp_distill.cli import data_service
from tfp_distill.cli import distill
from tfp_distill.cli import images
from tfp_distill.cli import many_classes
from tfp_distill.cli import ods
from tfp_distill.cli import toy
from tfp_distill.cli import uci
from tfp_distill.cli.distill import failure_line

__all__ = ["SUBCOMMANDS", "failure_line", "main"]

#: The subcommands' modules, in the order `tfp-distill --help` lists them.
SUBCOMMANDS = (toy, uci, distill, data_service, images, ods, bench, many_classes)


def _parser():
  """The `tfp-distill` parser: every subcommand's `add_parser`, in `SUBCOMMANDS` order."""
  parser = argparse.ArgumentParser(
      prog="tfp-distill",
      description="Ensemble distribution distillation experiments (tfp_distill).")
  commands = _common.Commands(parser.add_subparsers(dest="command", metavar="COMMAND",
                                                    required=True))
  for module in SUBCOMMANDS:
    module.add_parser(commands)
  return parser


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
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    previous = warnings.formatwarning
    warnings.formatwarning = _common.one_line_warning
    try:
      return args.run(args)
    finally:
      warnings.formatwarning = previous
  return args.run(args)
