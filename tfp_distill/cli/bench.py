"""`tfp-distill bench`: the speed benchmark (`tfp_distill.experiments.bench`)."""

import os

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
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
  bench.add_argument("--repeats", type=_common.positive_int, default=None,
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
  bench.set_defaults(run=run)
  return bench


def run(args):
  """Runs `tfp-distill bench` with the parsed `args`; returns the exit status."""
  from tfp_distill.experiments import bench
  overrides = {"suites": args.suite and _common.comma_list(args.suite),
               "repeats": args.repeats,
               "members": args.members and _common.comma_list(args.members, int),
               "backbones": args.backbones and _common.comma_list(args.backbones),
               "memory": False if args.no_memory else None}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  config = bench.BenchConfig.fast(**overrides) if args.fast else bench.BenchConfig(
      **overrides)
  try:
    report = bench.run_bench(args.out, config, log=lambda line: print(line, flush=True))
  except ValueError as error:
    raise SystemExit(f"tfp-distill bench: {error}") from error
  _common.print_report(args.out, report, bench.format_markdown(report))
  return 0
