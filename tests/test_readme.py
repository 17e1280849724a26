"""The README's commands and its quickstart code are what we ship: check them."""

import os
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
CI = pathlib.Path(__file__).resolve().parents[1] / ".ci" / "run"


def _blocks(lang):
  return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command():
  bash = _blocks("bash")
  assert "tfp-distill toy" in bash[0]
  test_command = bash[1].strip()
  assert "pytest" in test_command
  assert test_command in CI.read_text().splitlines()


def test_quickstart_runs(tmp_path, monkeypatch):
  code = _blocks("python")[0].replace("/tmp/tfp_distill_student", str(tmp_path / "s"))
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README quickstart", "exec"), namespace)  # noqa: S102
  u = namespace["u"]
  assert set(u) == {"prediction", "total", "aleatoric", "epistemic"}
  assert (tmp_path / "s" / "saved_model.pb").exists()


def test_classification_quickstart_runs(tmp_path, monkeypatch):
  code = _blocks("python")[1]
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README classification quickstart", "exec"), namespace)  # noqa: S102
  u, v = namespace["u"], namespace["v"]
  assert set(u) == set(v) == {"prediction", "total", "aleatoric", "epistemic", "epkl"}
  assert u["prediction"].shape == (900, 3)


def test_ods_quickstart_runs(tmp_path, monkeypatch):
  code = _blocks("python")[2]
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README ODS quickstart", "exec"), namespace)  # noqa: S102
  u = namespace["u"]
  assert u["prediction"].shape == (8, 10)
  assert set(u) == {"prediction", "total", "aleatoric", "epistemic", "epkl"}


def test_every_file_the_readme_points_to_exists():
  """Links, images and `docs/...` paths in the README and the docs index resolve."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for doc in ("README.md", os.path.join("docs", "ods", "README.md")):
    with open(os.path.join(root, doc)) as f:
      text = f.read()
    base = os.path.dirname(os.path.join(root, doc))
    links = [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in m]
    paths = [os.path.join(base, m.split("#")[0]) for m in links]
    paths += [os.path.join(root, m) for m in re.findall(r"`(docs/[^`\s]+)`", text)]
    if doc != "README.md":
      paths += [os.path.join(base, m) for m in re.findall(r"^\| `([^`]+/)` \|", text, re.M)]
    assert paths, doc
    missing = [p for p in paths if not os.path.exists(p)]
    assert not missing, (doc, missing)


def test_readme_distill_command_parses():
  import shlex  # pylint: disable=import-outside-toplevel
  from tfp_distill import cli  # pylint: disable=import-outside-toplevel
  block = next(b for b in _blocks("bash") if "tfp-distill distill" in b)
  command = block.split("\n#")[0].replace("\\\n", " ")
  args = cli._parser().parse_args(shlex.split(command)[1:])  # pylint: disable=protected-access
  assert args.command == "distill" and len(args.teacher) == 3 and args.ood == "other.npz"
