"""The `tfp-distill` console script (tfp_distill_launcher): TensorFlow's start-up lines
stay quiet unless --verbose; anything else written while TensorFlow loads still shows."""

import os
import shutil
import subprocess
import sys

import pytest

import tfp_distill_launcher as launcher

_STARTUP_SAMPLE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796514578.188547   24425 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796514578.188983   24425 cudart_stub.cc:31] Could not find cuda drivers on \
your machine, GPU will not be used.
I0000 00:00:1796509402.822730    7884 cpu_feature_guard.cc:227] This TensorFlow binary \
is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild \
TensorFlow with the appropriate compiler flags.
E0000 00:00:1796512219.799611   13747 cuda_platform.cc:52] failed call to cuInit: \
INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
something else went wrong
"""


def test_only_the_known_start_up_lines_are_dropped():
  assert launcher._filter(_STARTUP_SAMPLE) == ["something else went wrong"]


def _console_script():
  script = shutil.which("tfp-distill", path=os.path.dirname(sys.executable))
  if script is None:
    pytest.skip("the tfp-distill console script is not installed beside this Python")
  return script


def test_the_console_script_prints_no_start_up_lines():
  """Before: every run began with TensorFlow's C++ lines, including "failed call to
  cuInit: CUDA error" on a CPU machine."""
  proc = subprocess.run([_console_script(), "distill", "--train", "nowhere.npz",
                         "--teacher", "none.keras", "--out", os.devnull + "_x"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  for marker in ("I0000", "E0000", "oneDNN", "cuInit", "absl::InitializeLog"):
    assert marker not in proc.stderr, proc.stderr
  # The whole of stderr: the one line of the failure.
  assert proc.stderr.strip().splitlines() == [
      "tfp-distill distill: nowhere.npz: no such file."]
