"""MkDocs hook: Markdown lists may start right under a line of text, as on GitHub.

The docstrings (TFP's style) and the study pages start bullet lists on the line after a
sentence; Python-Markdown needs a blank line there and would run the items into the
paragraph. This preprocessor inserts that blank line, outside fenced code only (so the
formulas in ```none blocks are left as they are). Registered in `mkdocs.yml` (`hooks:`);
the extension is added before mkdocstrings reads the Markdown configuration, so the API
pages get it too.
"""

import re

from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

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
