"""The README's commands and its quickstart code are what we ship: check them."""

import pathlib
import re

import pytest

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
  # The regression and classification quickstarts (Keras 3), the tf_keras student, and
  # td.distill on the user's own member files.
  assert len(_blocks("python")) == 4


def test_quickstarts_are_written_with_keras3_only():
  """`import keras` is what users write: no tf_keras and no private module in the
  quickstarts; the tf_keras section imports the public `tf_keras`."""
  regression, classification, tf_keras_section, own = _blocks("python")
  for code in (regression, classification, own):
    assert "import keras\n" in code and "tf_keras" not in code and "._" not in code
  assert "import tf_keras\n" in tf_keras_section and "._" not in tf_keras_section
  assert "tfp_distill._keras" not in README.read_text()


def test_quickstart_runs(tmp_path, monkeypatch):
  code = _blocks("python")[0].replace("/tmp/tfp_distill_student", str(tmp_path / "s"))
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README quickstart", "exec"), namespace)  # noqa: S102
  u = namespace["u"]
  assert set(u) == {"prediction", "total", "aleatoric", "epistemic"}
  assert (tmp_path / "s" / "saved_model.pb").exists()
  keras = namespace["keras"]   # Keras 3: the student and the members are its models
  assert keras.__version__.startswith("3.")
  assert isinstance(namespace["student"], keras.Model)
  assert all(isinstance(m, keras.Model) for m in namespace["ensemble"].members)


def test_classification_quickstart_runs(tmp_path, monkeypatch):
  code = _blocks("python")[1]
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README classification quickstart", "exec"), namespace)  # noqa: S102
  u, v = namespace["u"], namespace["v"]
  assert set(u) == set(v) == {"prediction", "total", "aleatoric", "epistemic", "epkl"}
  assert u["prediction"].shape == (900, 3)


def test_tf_keras_student_runs(tmp_path, monkeypatch):
  code = _blocks("python")[2]
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README tf_keras student", "exec"), namespace)  # noqa: S102
  assert namespace["u"]["prediction"].shape == (256, 3)
  assert isinstance(namespace["student"], namespace["tf_keras"].Model)


@pytest.mark.slow
def test_own_ensemble_block_runs(tmp_path, monkeypatch):
  """td.distill on three softmax members saved as `.keras` files (wine, scikit-learn's):
  the members' probabilities are read as such, and the report's ensemble accuracy is the
  members' own."""
  import keras
  import numpy as np
  from sklearn import datasets
  x, y = datasets.load_wine(return_X_y=True)
  x = ((x - x.mean(0)) / x.std(0)).astype("float32")
  order = np.random.default_rng(0).permutation(len(x))
  train, test = order[:124], order[124:]
  monkeypatch.chdir(tmp_path)
  members = []
  for i in range(3):
    keras.utils.set_random_seed(i)
    member = keras.Sequential([keras.Input((13,)), keras.layers.Dense(16, activation="relu"),
                               keras.layers.Dense(3, activation="softmax")])
    member.compile("adam", "sparse_categorical_crossentropy")
    member.fit(x[train], y[train], epochs=30, verbose=0)
    member.save(f"member_{i}.keras")
    members.append(member)
  namespace = {"x_train": x[train], "y_train": y[train], "x_test": x[test],
               "y_test": y[test]}
  exec(compile(_blocks("python")[3], "README td.distill", "exec"), namespace)  # noqa: S102
  report = namespace["result"].report
  assert report["conventions"]["outputs"]["kind"] == "probs"
  mean = np.mean([m.predict(x[test], verbose=0) for m in members], axis=0)
  # The same argmaxes: the job averages the members' probabilities (read back from logits
  # floored far below any winning class's probability), so the accuracy is equal, up to
  # the report's float32 (one rounding: eps/2 relative).
  want = np.mean(mean.argmax(1) == y[test])
  assert abs(report["ensemble"]["accuracy"] - want) <= np.finfo(np.float32).eps / 2 * want
  assert namespace["u"]["prediction"].shape == (len(test), 3)
  assert (tmp_path / "run" / "report.json").exists()
  assert (tmp_path / "run" / "student.keras").exists()


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
  import shlex
  from tfp_distill import cli
  block = next(b for b in _blocks("bash") if "tfp-distill distill" in b)
  command = block.split("\n#")[0].replace("\\\n", " ")
  args = cli._parser().parse_args(shlex.split(command)[1:])  # pylint: disable=protected-access
  assert args.command == "distill" and len(args.teacher) == 3 and args.ood == "other.npz"
