"""The README's commands and its quickstart code are what we ship: check them."""

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


def test_every_python_block_of_the_readme_is_run_below():
  assert len(_blocks("python")) == 2   # regression and classification quickstarts


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


def test_readme_is_short():
  """The README is the front page; the studies and the guide live in docs/."""
  assert len(README.read_text().splitlines()) <= 200


def test_every_file_the_readme_points_to_exists():
  """Relative links, images and `docs/...` paths in the README resolve."""
  root = README.parent
  text = README.read_text()
  links = [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in m]
  paths = [root / m.split("#")[0] for m in links if m.split("#")[0]]
  paths += [root / m for m in re.findall(r"`(docs/[^`\s]+)`", text)]
  assert len(links) >= 10, links   # the results table and the docs list link pages
  missing = [str(p) for p in paths if not p.exists()]
  assert not missing, missing


def test_readme_distill_command_parses():
  import shlex  # pylint: disable=import-outside-toplevel
  from tfp_distill import cli  # pylint: disable=import-outside-toplevel
  block = next(b for b in _blocks("bash") if "tfp-distill distill" in b)
  command = block.split("\n#")[0].replace("\\\n", " ")
  args = cli._parser().parse_args(shlex.split(command)[1:])  # pylint: disable=protected-access
  assert args.command == "distill" and len(args.teacher) == 3 and args.ood == "other.npz"
