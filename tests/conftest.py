"""Shared test configuration: quiet TensorFlow's C++ logs; one TensorFlow compute thread
per pytest-xdist worker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Two xdist workers on 2 cores each ran TensorFlow with a thread per core, four threads
# competing for two cores: the suite took 15 min 39 s and 16 min 20 s; with one
# intra-op thread per worker (and in the processes the tests start) 14 min 3 s
# (2026-12-06). Read by TensorFlow when it starts, so set before anything imports it.
if os.environ.get("PYTEST_XDIST_WORKER"):
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest

#: Set to 1 (as .ci/run does) to turn a missing data source into a failure.
REQUIRE_DATA_ENV = "TFP_DISTILL_REQUIRE_DATA"


def load_or_skip(loader, *args, **kwargs):
  """Calls `loader`; a missing source skips the test, or fails it under REQUIRE_DATA=1.

  The loaders' FileNotFoundError says how to install the source; it becomes the reason.
  """
  try:
    return loader(*args, **kwargs)
  except FileNotFoundError as e:
    missing = str(e)
  if os.environ.get(REQUIRE_DATA_ENV) == "1":
    pytest.fail(f"{REQUIRE_DATA_ENV}=1 but a data source is missing: {missing}",
                pytrace=False)
  pytest.skip(f"data source missing: {missing}")


@pytest.fixture(name="load_or_skip", scope="session")
def load_or_skip_fixture():
  """`load_or_skip` as a fixture (session scope: module-scoped data fixtures use it)."""
  return load_or_skip


def _file_tree(path):
  """{relative path: bytes} of every file under `path`: compare before and after a run to
  show that it changed nothing there."""
  out = {}
  for base, _, names in os.walk(path):
    for name in names:
      full = os.path.join(base, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = f.read()
  return out


@pytest.fixture(name="file_tree", scope="session")
def file_tree_fixture():
  """`_file_tree` as a fixture."""
  return _file_tree


# Hypothesis profiles (tests/test_properties.py): "ci", the default, runs a bounded,
# derandomized set of examples so CI is reproducible; `pytest --hypothesis-profile
# thorough` explores 300 random examples a test. Neither keeps an example database (no
# .hypothesis/ in the working tree; a failure prints its example). The guard keeps the
# other test files running where hypothesis (the `test` extra) is not installed.
try:
  from hypothesis import HealthCheck
  from hypothesis import settings as hypothesis_settings
except ImportError:
  pass
else:
  hypothesis_settings.register_profile(
      "ci", max_examples=25, deadline=None, derandomize=True, database=None,
      suppress_health_check=[HealthCheck.too_slow])
  hypothesis_settings.register_profile(
      "thorough", max_examples=300, deadline=None, database=None,
      suppress_health_check=[HealthCheck.too_slow])
  hypothesis_settings.load_profile("ci")
