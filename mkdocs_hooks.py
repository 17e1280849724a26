"""MkDocs hooks of the docs site, registered in `mkdocs.yml` (`hooks:`).

1. Lists may start right under a line of text, as on GitHub. The docstrings (TFP's
   style) and the study pages start bullet lists on the line after a sentence;
   Python-Markdown needs a blank line there and would run the items into the paragraph.
   A preprocessor inserts that blank line, outside fenced code only (so the formulas in
   ```none blocks are left as they are). The extension is added before mkdocstrings reads
   the Markdown configuration, so the API pages get it too.
2. The CLI reference (`cli.md`) is written at build time from the parsers of the
   `tfp_distill/cli/` package (`cli._parser()`: one module per subcommand), so it never
   goes stale. The parsers are read without importing the package's `__init__`
   (TensorFlow): the docs build needs only the docs extra.
3. Tables fit a phone. Cells that hold a number ("0.9944", "-0.044 +- 0.006", "9.5x",
   "35 s") get the class `num`, which `docs/stylesheets/extra.css` keeps on one line;
   names in code may break after a dot; a table of mostly words is marked `data-stack`,
   and on a narrow screen its rows become blocks, each cell under its column's name.
4. Cross-links: an inline `td.NAME` (also `td.NAME(...)`) links to its API reference
   (an optional autorefs reference to `tfp_distill.NAME`: a name the reference does not
   render stays plain code), and every "arXiv:ID" links to arxiv.org; neither inside
   links, headings or code blocks.
"""

import argparse
import copy
import html
import importlib
import logging
import os
import re
import sys
import types

import griffe
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.abspath(__file__))
_LOG = logging.getLogger("mkdocs.hooks.tfp_distill")

_ITEM = re.compile(r"^ *(\d+\.|[*+-]) +\S")
_FENCE = re.compile(r"^ *(```|~~~)")


class _ListsAfterText(Preprocessor):

  def run(self, lines):
    out, fence, previous = [], None, ""
    for line in lines:
      m = _FENCE.match(line)
      if m and fence is None:
        fence = m.group(1)
      elif m and line.strip().startswith(fence):
        fence = None
      elif (fence is None and _ITEM.match(line) and previous.strip()
            and not _ITEM.match(previous) and not previous.startswith((" ", "|"))):
        out.append("")
      out.append(line)
      previous = line
    return out


class ListsAfterText(Extension):

  def extendMarkdown(self, md):  # noqa: N802 (Markdown's API)
    md.preprocessors.register(_ListsAfterText(md), "lists_after_text", 27)


@event_priority(100)   # before mkdocstrings copies the Markdown extensions
def on_config(config):
  config.markdown_extensions.append(ListsAfterText())
  return config


# ----------------------------------------------------------------------------------------
# 2. The CLI reference, from the parsers


def _cli_module():
  """`tfp_distill.cli` (a package: its subcommand modules import neither TensorFlow nor
  the library), imported without running `tfp_distill/__init__.py` (which imports
  TensorFlow) unless the package is imported already; `sys.modules` is left as it was."""
  if "tfp_distill" in sys.modules:
    return importlib.import_module("tfp_distill.cli")
  before = set(sys.modules)
  package = types.ModuleType("tfp_distill")
  package.__path__ = [os.path.join(ROOT, "tfp_distill")]
  sys.modules["tfp_distill"] = package
  try:
    return importlib.import_module("tfp_distill.cli")
  finally:
    for name in set(sys.modules) - before:
      if name == "tfp_distill" or name.startswith("tfp_distill."):
        del sys.modules[name]


def _subcommands(parser):
  """[(name, parser, one-line help)] of a parser's subcommands, in the order added."""
  out = []
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      helps = {a.dest: a.help for a in action._choices_actions}  # pylint: disable=protected-access
      out += [(name, sub, helps.get(name) or "") for name, sub in action.choices.items()]
  return out


def _text(text):
  """Help text as Markdown: HTML and table characters escaped, code-like words kept."""
  text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
  text = re.sub(r"([|*\\])", r"\\\1", text)
  return re.sub(r"\bdocs/([\w/-]+\.md)\b", r"[\1](\1)", text)   # pages the help names


def _invocation(action, formatter):
  """`--flag METAVAR` (choices go to the description, not into the name)."""
  if not action.option_strings:
    shown = copy.copy(action)
    shown.metavar = action.metavar or action.dest
    return formatter._format_args(shown, action.dest)  # pylint: disable=protected-access
  name = ", ".join(action.option_strings)
  if action.nargs == 0:
    return name
  shown = copy.copy(action)
  shown.metavar = action.metavar or action.dest.upper()
  return f"{name} {formatter._format_args(shown, shown.metavar)}"  # pylint: disable=protected-access


def _command_section(path, parser):
  formatter = parser._get_formatter()  # pylint: disable=protected-access
  usage = parser.format_usage().strip()
  lines = [f"## {path} {{#{path.replace(' ', '-')}}}", ""]
  if parser.description:
    lines += [_text(parser.description), ""]
  lines += ["```text", usage, "```", ""]
  rows = []
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, (argparse._HelpAction,  # pylint: disable=protected-access
                           argparse._SubParsersAction)):  # pylint: disable=protected-access
      continue
    meaning = _text(formatter._expand_help(action)) if action.help else ""  # pylint: disable=protected-access
    if action.choices is not None:
      meaning = ("one of " + ", ".join(f"`{c}`" for c in action.choices)
                 + (f": {meaning}" if meaning else ""))
    if action.required and action.option_strings:
      meaning = "required; " + meaning
    rows.append(f"| `{_invocation(action, formatter)}` | {meaning} |")
  if rows:
    lines += ["| argument | meaning |", "| --- | --- |", *rows, ""]
  if parser.epilog:
    lines += [_text(paragraph) + "\n" for paragraph in parser.epilog.split("\n")]
  for name, sub, _ in _subcommands(parser):
    lines += _command_section(f"{path} {name}", sub)
  return lines


def cli_reference():
  """The Markdown of the CLI reference page."""
  old_columns = os.environ.get("COLUMNS")
  os.environ["COLUMNS"] = "88"   # usage lines wrapped as in a terminal of 88 columns
  try:
    parser = _cli_module()._parser()  # pylint: disable=protected-access
    prog = parser.prog
    commands = _subcommands(parser)
    lines = [
        "# CLI reference", "",
        f"`{prog}` runs the studies and distils your own ensemble. This page is written "
        "from the command's parsers each time the docs are built; "
        f"`{prog} COMMAND --help` prints the same.", "",
        "| command | what it does |", "| --- | --- |",
        *[f"| [`{prog} {name}`](#{prog}-{name}) | {_text(summary)} |"
          for name, _, summary in commands], ""]
    for name, sub, _ in commands:
      lines += _command_section(f"{prog} {name}", sub)
  finally:
    if old_columns is None:
      del os.environ["COLUMNS"]
    else:
      os.environ["COLUMNS"] = old_columns
  return "\n".join(lines) + "\n"


def on_files(files, config):
  files.append(File.generated(config, "cli.md", content=cli_reference()))
  return files


# ----------------------------------------------------------------------------------------
# 3. Tables that fit a phone

_TABLE = re.compile(r"<table>(.*?)</table>", re.S)
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_HEADER = re.compile(r"<th[^>]*>(.*?)</th>", re.S)
_CELL = re.compile(r"<td([^>]*)>(.*?)</td>", re.S)
_TAG = re.compile(r"<[^>]+>")
_CODE = re.compile(r"(<code[^>]*>)(.*?)(</code>)", re.S)
_NAME_BREAK = re.compile(r"(?<=[.(])(?=\w)")
_NUMBER_WORDS = re.compile(r"\b(vs|s|ms|min|h|nats|total|of)\b")
_NUMBER_TEXT = re.compile(r"[-+\d\s.,:;%()/=<>~*^xe\u00b1\u2212\u2013]*")


def _plain(fragment):
  return html.unescape(_TAG.sub("", fragment)).strip()


def is_number_cell(text):
  """Whether a cell's text is a number, a few numbers, or a number with its unit."""
  text = _plain(text)
  return (len(text) <= 40 and any(c.isdigit() for c in text)
          and _NUMBER_TEXT.fullmatch(_NUMBER_WORDS.sub("", text)) is not None)


def _table(m):
  """One table: number cells get `class="num"`, names in code a break opportunity after
  each dot and parenthesis, every cell its column's header in `data-label`; a table of
  mostly words gets `data-stack` (on a phone its rows are stacked, extra.css)."""
  body = m.group(1)
  labels = [_plain(h) for h in _HEADER.findall(body)]
  counts = {"cells": 0, "numbers": 0}

  def cell(column, c):
    attributes, text = c.group(1), c.group(2)
    counts["cells"] += 1
    if column < len(labels) and labels[column]:
      attributes += f' data-label="{html.escape(labels[column])}"'
    if is_number_cell(text):
      counts["numbers"] += 1
      return f'<td{attributes} class="num">{text}</td>'
    text = _CODE.sub(
        lambda k: k.group(1) + _NAME_BREAK.sub("<wbr>", k.group(2)) + k.group(3), text)
    return f"<td{attributes}>{text}</td>"

  def row(r):
    cells = iter(range(10**6))
    return "<tr>" + _CELL.sub(lambda c: cell(next(cells), c), r.group(1)) + "</tr>"

  body = _ROW.sub(row, body)
  stack = " data-stack" if counts["numbers"] * 2 < counts["cells"] else ""
  return f"<table{stack}>{body}</table>"


# ----------------------------------------------------------------------------------------
# 4. Cross-links

_TOKEN = re.compile(r"(<[^>]+>)")
_TAG_NAME = re.compile(r"<(/?)([a-zA-Z][\w-]*)")
_NO_LINKS_INSIDE = {"a", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "autoref", "script",
                    "style"}
_PUBLIC_NAME = re.compile(r"td((?:\.[A-Za-z]\w*)+)(?=\(|$)")
_ARXIV = re.compile(r"\barXiv[: ](\d{4}\.\d{4,5})\b")


_PACKAGE = []   # the package as griffe reads it (no import), loaded once per build


def _canonical(name, page):
  """`tfp_distill.ensemble.Ensemble.from_files` for "Ensemble.from_files"; a name the
  package does not have is a warning (a failure under --strict): a page names it."""
  if not _PACKAGE:
    _PACKAGE.append(griffe.load("tfp_distill", search_paths=[ROOT], resolve_aliases=False))
  try:
    obj = _PACKAGE[0][name]
  except (KeyError, griffe.AliasResolutionError):
    _LOG.warning("%s names td.%s, which tfp_distill does not have", page, name)
    return None
  return obj.target_path if obj.is_alias else obj.canonical_path


def _cross_links(content, page):
  """Links `<code>td.NAME...</code>` to the API reference and arXiv ids to arxiv.org,
  outside links, headings and code blocks."""
  tokens = _TOKEN.split(content)
  depth = 0   # how many elements we are inside that must not hold a link
  for i, token in enumerate(tokens):
    if token.startswith("<"):
      m = _TAG_NAME.match(token)
      if m and m.group(2).lower() in _NO_LINKS_INSIDE and not token.endswith("/>"):
        depth += -1 if m.group(1) else 1
      elif (depth == 0 and token == "<code>" and i + 2 < len(tokens)
            and tokens[i + 2] == "</code>"):
        name = _PUBLIC_NAME.match(html.unescape(tokens[i + 1]))
        target = name and _canonical(name.group(1)[1:], page)
        if target:   # either the canonical path or the one the reference page renders
          tokens[i] = (f'<autoref identifier="{target}" slug="tfp_distill{name.group(1)}"'
                       " optional><code>")
          tokens[i + 2] = "</code></autoref>"
    elif depth == 0:
      tokens[i] = _ARXIV.sub(r'<a href="https://arxiv.org/abs/\1">arXiv:\1</a>', token)
  return "".join(tokens)


def on_page_content(content, page, config, files):  # pylint: disable=unused-argument
  return _TABLE.sub(_table, _cross_links(content, page.file.src_uri))
