"""The linter: ruff with the project's rules (pyproject.toml), over every Python file."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
  ruff = shutil.which("ruff") or str(pathlib.Path(sys.executable).parent / "ruff")
  if not pathlib.Path(ruff).exists():
    pytest.fail("ruff is not installed: it is in the test extra (pip install -e '.[test]')")
  out = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
