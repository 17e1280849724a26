"""What the subcommands share: the `add_parser` wrapper, argument types, the report line.

Nothing here imports TensorFlow or the package's `__init__`: the docs build reads the
parsers without them (mkdocs_hooks.py).
"""

import argparse
import os

__all__ = ["Commands", "comma_list", "nonnegative_float", "one_line_warning", "positive_int",
           "print_report"]


def positive_int(text):
  """argparse type: an int >= 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
  return value


def nonnegative_float(text):
  """argparse type: a finite float >= 0."""
  value = float(text)
  if not 0 <= value < float("inf"):
    raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
  return value


def comma_list(text, convert=str):
  """'a, b,c' -> ('a', 'b', 'c'), each converted; empty items dropped."""
  return tuple(convert(v.strip()) for v in text.split(",") if v.strip())


class Commands:
  """`add_parser` of the subcommands, each with the flags every subcommand has."""

  def __init__(self, commands):
    self._commands = commands
    self._common = argparse.ArgumentParser(add_help=False)
    self._common.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's start-up and warning lines, and on an error the "
             "traceback (default: quiet, errors in one line)")

  def add_parser(self, name, **kwargs):
    """A subcommand's parser (`add_parser` of the subparsers) with the common flags."""
    return self._commands.add_parser(name, parents=[self._common], **kwargs)


def print_report(out_dir, report, markdown):
  """Prints where the report went, its wall time (`wall_time_s`, as every report has it,
  `td.report.header`) and its Markdown."""
  path = os.path.join(out_dir, report.get("files", {}).get("report_md", "report.md"))
  print(f"Report written to {path} (total {report['wall_time_s']:.1f} s)")
  print()
  print(markdown)


def one_line_warning(message, category, filename, lineno, line=None):
  """warnings.formatwarning for the command line: 'tfp-distill: warning: ...'."""
  del filename, lineno, line
  return f"tfp-distill: warning: {' '.join(str(message).split())} ({category.__name__})\n"
