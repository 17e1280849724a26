"""The docs site is checked, not hoped: it builds strictly, its examples run, it loads.

- `mkdocs build --strict` (broken links, missing pages and references fail it);
- every ```python block of the pages runs, in order, one namespace per page, unless the
  line before its fence is `<!-- docs-test: skip (reason) -->` (getting-started.md
  repeats the README's quickstarts, which tests/test_readme.py runs);
- the CLI reference is generated from the parsers (a section per subcommand, every flag),
  and the site builds with the docs extra alone (TensorFlow and the package unimportable);
- the built pages load in headless Chromium (Debian's `chromium`): `td.Distiller` and
  `td.predict_uncertainty` have pages in the nav, the API pages show the source, no
  signature runs off the page, and no table of the home or guide pages is wider than
  its column at 1,400 or 390 px.
  Without Chromium (or without mkdocs) the tests skip and say why, except where
  TFP_DISTILL_REQUIRE_DATA=1 (as in .ci/run): there they fail.
"""

import argparse
import configparser
import html
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
REQUIRE_ENV = "TFP_DISTILL_REQUIRE_DATA"
SKIP_MARK = "<!-- docs-test: skip"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _skip_or_fail(reason):
  if os.environ.get(REQUIRE_ENV) == "1":
    pytest.fail(f"{reason} (and {REQUIRE_ENV}=1)")
  pytest.skip(reason)


def _python_blocks(text):
  """(code, skipped) for each ```python block of a Markdown page."""
  blocks = []
  for m in _FENCE.finditer(text):
    before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
    blocks.append((m.group(1), before.startswith(SKIP_MARK)))
  return blocks


def _pages():
  """The hand-written pages (the study commands' reports are not examples)."""
  return sorted([*DOCS.glob("*.md"), *DOCS.glob("guide/*.md"), *DOCS.glob("api/*.md"),
                 *DOCS.glob("studies/*.md")])


def _runnable_pages():
  return [p for p in _pages()
          if any(not skipped for _, skipped in _python_blocks(p.read_text()))]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
             if importlib.util.find_spec(m) is None]
  if missing:
    _skip_or_fail(f"not installed: {', '.join(missing)}; pip install -e '.[docs]'")
  out = tmp_path_factory.mktemp("site")
  result = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)
  return out, result


def test_site_builds_strictly(site):
  out, result = site
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
  assert (out / "index.html").exists() and (out / "api" / "index.html").exists()
  for page in ("getting-started", "guide/teacher", "studies/ods", "studies/reliability"):
    assert (out / f"{page}.html").exists(), page


@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__docs__"}
  for i, (code, skipped) in enumerate(_python_blocks(page.read_text())):
    if not skipped:
      exec(compile(code, f"{page.relative_to(ROOT)} block {i}", "exec"), namespace)  # noqa: S102


def test_every_guide_page_has_a_runnable_example():
  pages = {p.name for p in _runnable_pages()}
  guide = {p.name for p in DOCS.glob("guide/*.md")}
  # Pages of prose, measurements and commands only:
  assert guide - pages == {"design-notes.md", "distributed.md"}


def test_skipped_blocks_say_why_and_repeat_the_readme():
  readme_blocks = [code for code, _ in _python_blocks(README.read_text())]
  for page in _pages():
    text = page.read_text()
    for line in text.splitlines():
      if line.startswith(SKIP_MARK):
        assert re.match(r"<!-- docs-test: skip \(.+\) -->$", line), (page, line)
  started = [code for code, skipped in _python_blocks((DOCS / "getting-started.md").read_text())
             if skipped]
  # The getting-started page shows the README's four blocks, unchanged.
  assert started == readme_blocks and len(started) == 4


# How the project's history reads on a page; CHANGELOG.md holds the history instead.
_HISTORY = re.compile(r"open issues?|this round|the issue|issue's|issue targets|"
                      r"this session|lent to this task|\((?:\d+ )?before\)|\bwas \d+\)",
                      re.I)


def test_user_pages_have_no_project_history():
  found = [(str(p.relative_to(DOCS)), m.group(0)) for p in _pages()
           for m in _HISTORY.finditer(p.read_text())]
  assert not found, found
  assert (ROOT / "CHANGELOG.md").exists()


@pytest.mark.parametrize("page", sorted(DOCS.glob("studies/*.md")), ids=lambda p: p.name)
def test_each_study_opens_with_a_three_line_result(page):
  """Right under its title, a study page says what it found in a box of three lines."""
  lines = page.read_text().splitlines()
  assert lines[0].startswith("# ") and lines[1] == "", lines[:2]
  assert lines[2] == '!!! abstract "Result"', lines[2]
  items = [line for line in lines[3:6] if line.startswith("    - ")]
  assert len(items) == 3 and not lines[6].strip(), lines[2:7]


def test_repository_paths_named_in_the_pages_exist():
  """`docs/...` paths quoted in the pages (the studies name their reports) exist."""
  missing = []
  for page in _pages():
    for path in re.findall(r"`(docs/[^`\s]+)`", page.read_text()):
      if not (ROOT / path).exists():
        missing.append((str(page.relative_to(ROOT)), path))
  assert not missing, missing


def _commands(parser, path):
  """(path, parser) of every subcommand of a parser, depth first."""
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      for name, sub in action.choices.items():
        yield f"{path} {name}", sub
        yield from _commands(sub, f"{path} {name}")


def test_cli_reference_is_generated_from_the_parsers(site):
  """cli.html is written from `cli._parser()` at build time (mkdocs_hooks.py): a section
  per subcommand with every flag; no hand-written copy can go stale."""
  from tfp_distill import cli
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  assert not (DOCS / "cli.md").exists()
  page = (out / "cli.html").read_text()
  commands = list(_commands(cli._parser(), "tfp-distill"))  # pylint: disable=protected-access
  assert len(commands) >= 8
  for path, parser in commands:
    anchor = path.replace(" ", "-")
    assert f'id="{anchor}"' in page, path
    for action in parser._actions:  # pylint: disable=protected-access
      if isinstance(action, argparse._HelpAction):  # pylint: disable=protected-access
        continue
      for option in action.option_strings:
        assert f">{option}" in page or f" {option}" in page, (path, option)


def test_site_builds_with_the_docs_extra_alone(tmp_path):
  """The build reads the sources without importing them: with TensorFlow, TFP, Keras and
  the studies' packages unimportable it still passes --strict (getting-started.md tells
  how to install only the docs extra)."""
  if importlib.util.find_spec("mkdocs") is None:
    _skip_or_fail("not installed: mkdocs; pip install -e '.[docs]'")
  blocked = {"tensorflow", "tf_keras", "tensorflow_probability", "keras", "matplotlib",
             "tensorboard", "tensorflow_datasets"}
  code = textwrap.dedent(f"""
      import sys
      class _Blocked:
        def find_spec(self, name, path=None, target=None):
          if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
      sys.meta_path.insert(0, _Blocked())
      from mkdocs.__main__ import cli
      cli()
      """)
  result = subprocess.run(
      [sys.executable, "-c", code, "build", "--strict", "--site-dir", str(tmp_path / "s")],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
  assert (tmp_path / "s" / "cli.html").exists()


def _built(out, page):
  """A built page without its code blocks."""
  return re.sub(r"<pre.*?</pre>", "", (out / page).read_text(), flags=re.S)


def test_public_names_link_to_the_api_reference(site):
  """Every inline `td.NAME` of the hand-written pages links to its API reference
  (mkdocs_hooks.py; a name the package lacks fails the --strict build)."""
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  unlinked = []
  for page in _pages():
    name = str(page.relative_to(DOCS).with_suffix(".html"))
    text = _built(out, name)
    for m in re.finditer(r"<code>(td\.[A-Za-z][^<]*)", text):
      if not re.search(r'<a class="autorefs[^>]*>$', text[:m.start()]):
        unlinked.append((name, m.group(1)))
  assert not unlinked, unlinked
  guide = (out / "guide" / "teacher.html").read_text()
  assert 'href="../api/distiller.html#tfp_distill.Distiller"><code>td.Distiller' in guide


def test_arxiv_ids_are_links_and_on_the_references_page(site):
  """Every "arXiv:ID" of the site (pages and docstrings) links to arxiv.org, and every id
  the package or the pages cite has its entry (and BibTeX) on the references page."""
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  bare = []
  for path in out.rglob("*.html"):
    text = re.sub(r"<a [^>]*>.*?</a>", "", _built(out, path.relative_to(out)), flags=re.S)
    bare += [(str(path.relative_to(out)), m) for m in re.findall(r"arXiv[: ]\d{4}\.\d+", text)]
  assert not bare, bare
  cited = set()
  for path in [*(ROOT / "tfp_distill").rglob("*.py"), *_pages()]:
    cited |= set(re.findall(r"arXiv[: ](\d{4}\.\d{4,5})", path.read_text()))
  references = (DOCS / "references.md").read_text()
  missing = [i for i in sorted(cited) if f"arXiv:{i}" not in references
             or f"eprint = {{{i}}}" not in references]
  assert len(cited) >= 15 and not missing, missing


def test_docs_only_install_is_the_docs_extra():
  """getting-started.md's docs-only install names exactly the docs extra's packages."""
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  extra = sorted(config["options.extras_require"]["docs"].split())
  text = (DOCS / "getting-started.md").read_text()
  command = next(line for line in text.splitlines() if "-m venv .venv-docs" in line)
  installed = re.search(r"pip install (.*?) &&", command).group(1)
  assert sorted(p.strip('"') for p in installed.split()) == extra, command


def _dump_dom(browser, page, tmp_path, width=1400):
  result = subprocess.run(
      [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
       f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},900",
       "--allow-file-access-from-files",   # the layout probe reads its frames' pages
       "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


# A page of the built site that loads each (page, width, selector) in an iframe of that
# width (headless Chromium's window is at least 500 px wide; a frame can be narrower)
# and writes, for every element the selector matches, how many px it is wider than the
# text column or scrolls inside itself.
_PROBE = """<!doctype html><html><body><pre id="layout"></pre><script>
const jobs = %s, rows = [];
let left = jobs.length;
for (const [page, width, selector] of jobs) {
  const frame = document.createElement("iframe");
  frame.style.cssText = `width: ${width}px; height: 900px; border: 0`;
  frame.addEventListener("load", () => {
    const doc = frame.contentDocument, column = doc.querySelector("article");
    const right = column.getBoundingClientRect().right;
    doc.querySelectorAll(selector).forEach((e, i) => {
      const over = Math.max(e.scrollWidth - e.clientWidth,
                            e.getBoundingClientRect().right - right);
      rows.push({page, width, selector, index: i, overflow: Math.round(over),
                 px: e.scrollWidth, column_px: column.clientWidth,
                 text: e.innerText.replace(/\\s+/g, " ").slice(0, 60)});
    });
    if (--left === 0) {
      document.getElementById("layout").textContent = JSON.stringify(rows);
    }
  });
  frame.src = page;
  document.body.appendChild(frame);
}
</script></body></html>
"""


def _measure(out, jobs, tmp_path):
  """Rows of `_PROBE` for jobs [(page, width, selector)] of the built site `out`."""
  probe = out / "layout-probe.html"
  probe.write_text(_PROBE % json.dumps(jobs))
  try:
    dom = _dump_dom(_browser(), probe, tmp_path)
  finally:
    probe.unlink()
  m = re.search(r'<pre id="layout">(.+?)</pre>', dom, re.S)
  assert m, "the layout probe did not finish: " + dom[-2000:]
  return json.loads(html.unescape(m.group(1)))


def _layout_pages():
  """The home page, the pages beside it, the guide and the CLI reference: tables of prose
  that must fit a phone (the studies' tables of numbers scroll instead)."""
  names = [p.stem for p in sorted(DOCS.glob("*.md"))]
  names += sorted(f"guide/{p.stem}" for p in DOCS.glob("guide/*.md"))
  return [f"{n}.html" for n in [*names, "cli"]]


def test_no_table_is_wider_than_its_column(site, tmp_path):
  """At a desktop (1,400 px) and a phone (390 px) width, no table of the home, guide and
  CLI pages is wider than the text column or scrolls inside it: numbers stay on one line,
  words wrap (docs/stylesheets/extra.css, mkdocs_hooks.py)."""
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  rows = _measure(out, [(page, width, "article table") for page in _layout_pages()
                        for width in (1400, 390)], tmp_path)
  assert {(r["page"], r["width"]) for r in rows} >= {
      ("index.html", 1400), ("index.html", 390)}, rows   # the probe saw the tables
  too_wide = [r for r in rows if r["overflow"] > 1]
  assert not too_wide, too_wide


def test_api_signatures_fit_the_page(site, tmp_path):
  """Signatures are formatted (ruff, in the docs extra) to fit the API pages at 1,400 px."""
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  pages = sorted(str(p.relative_to(out)) for p in (out / "api").glob("*.html"))
  rows = _measure(out, [(page, 1400, ".doc-signature pre") for page in pages], tmp_path)
  assert len(rows) > 100, len(rows)
  too_wide = [r for r in rows if r["overflow"] > 1]
  assert not too_wide, too_wide


def _browser():
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  if browser is None:
    _skip_or_fail("headless Chromium is not installed (Debian: apt-get install chromium)")
  return browser


def test_site_loads_in_headless_chromium(site, tmp_path):
  out, result = site
  assert result.returncode == 0, "the site did not build: see test_site_builds_strictly"
  browser = _browser()
  index = _dump_dom(browser, out / "index.html", tmp_path)
  assert "<title>tfp_distill</title>" in index
  assert 'href="api/index.html"' in index and "Getting started" in index
  # td.Distiller and td.predict_uncertainty have their own pages, in the nav.
  for name, page in (("Distiller", "distiller"), ("predict_uncertainty", "predict")):
    assert f'href="api/{page}.html"' in index, name
    api = _dump_dom(browser, out / "api" / f"{page}.html", tmp_path)
    assert re.search(rf'<h2 id="tfp_distill\.{name}"[^>]*>.*?{name}', api, re.S), name
    assert "Source code in" in api, name   # the API pages show the source
