"""What a user installs: license, citation, one version, the extras and what each gives.

The library runs without the studies' packages (matplotlib, TensorBoard,
tensorflow-datasets): a subprocess that cannot import them still imports tfp_distill,
computes a decomposition and gets a one-line error naming the extra where one is needed.
"""

import configparser
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUDIES = ("matplotlib", "tensorboard", "tensorflow_datasets")


def _setup_cfg():
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  return config


def _requirements(text):
  return [line.strip() for line in text.strip().splitlines() if line.strip()]


def test_license_is_the_apache_license_setup_cfg_names():
  assert _setup_cfg()["metadata"]["license"] == "Apache-2.0"
  text = (ROOT / "LICENSE").read_text()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_citation_file():
  yaml = pytest.importorskip("yaml")
  citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
  assert citation["cff-version"] == "1.2.0"
  assert citation["license"] == "Apache-2.0"
  assert citation["title"].startswith("tfp_distill") and citation["authors"]
  assert "version" not in citation   # the version lives in one place (below)


def test_the_version_lives_in_one_place():
  import tfp_distill as td
  assert re.fullmatch(r"\d+\.\d+\.\d+", td.__version__)
  assert _setup_cfg()["metadata"]["version"] == "attr: tfp_distill.__version__"
  assert "version" not in (ROOT / "pyproject.toml").read_text()
  try:
    from importlib import metadata
    installed = metadata.version("tfp_distill")
  except metadata.PackageNotFoundError:
    pytest.skip("tfp_distill is not installed (pip install -e .)")
  assert installed == td.__version__


def test_the_studies_packages_are_an_extra_that_the_commands_install():
  options = _setup_cfg()["options"]
  extras = _setup_cfg()["options.extras_require"]
  required = " ".join(_requirements(options["install_requires"]))
  studies = _requirements(extras["studies"])
  assert sorted(studies) == sorted(m.replace("_", "-") for m in STUDIES)
  for package in studies:
    assert package not in required
  # The tests run the study commands and build the docs: the test extra has both.
  assert "tfp_distill[studies,docs]" in _requirements(extras["test"])
  # The README's first command installs what `tfp-distill toy` needs.
  readme = (ROOT / "README.md").read_text()
  first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
  assert 'pip install -e ".[studies]"' in first and "tfp-distill toy" in first


def test_optional_packages_are_imported_only_where_used():
  """No module of the package imports the studies' packages at import time (the data
  loaders go through `_optional.require`, which names the extra; see below)."""
  pattern = re.compile(rf"^(import|from) ({'|'.join(STUDIES)})\b", re.M)
  offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "tfp_distill").rglob("*.py")
               if pattern.search(p.read_text())]
  assert not offenders, offenders


BLOCKED = """
import sys

class _Blocked:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in {blocked!r}:
      raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    return None

sys.meta_path.insert(0, _Blocked())
"""

WITHOUT_STUDIES = BLOCKED.format(blocked=set(STUDIES)) + """
import numpy as np
import tfp_distill as td

family = td.families.CategoricalLogits(3)
u = td.decompose_ensemble(np.zeros((2, 4, 3), np.float32), family)
print("decomposed", sorted(u))
try:
  td.datasets.sources.load_data("tfds:mnist:test")
except td.datasets.sources.DataError as e:
  print("sources:", e)
try:
  td.datasets.images.load_tfds("cifar10", "test")
except ImportError as e:
  print("images:", e)
print("loaded:", sorted(m for m in {studies!r} if m in sys.modules))
""".format(studies=STUDIES)


def test_library_runs_without_the_studies_packages():
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(WITHOUT_STUDIES)],
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  assert "decomposed ['aleatoric', 'epistemic', 'epkl', 'prediction', 'total']" in lines
  fix = 'pip install "tfp_distill[studies]"'
  sources = next(line for line in lines if line.startswith("sources:"))
  assert "tfds:mnist:test needs tensorflow-datasets" in sources and fix in sources
  images = next(line for line in lines if line.startswith("images:"))
  assert "needs tensorflow-datasets" in images and fix in images
  assert "loaded: []" in lines


def test_sources_is_importable_after_import_tfp_distill():
  code = ("import tfp_distill as td; "
          "print(td.datasets.sources.load_data.__name__, 'sources' in td.datasets.__all__)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split()[-2:] == ["load_data", "True"]
