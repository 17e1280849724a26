"""The `tfp-distill` console script: TensorFlow's start-up lines stay quiet unless
`--verbose` is given.

TensorFlow's C++ libraries print lines such as "oneDNN custom operations are on",
"Could not find cuda drivers" or "failed call to cuInit: CUDA error" to the process's
stderr while `tensorflow` is imported and its devices are listed, before TensorFlow's own
log level applies (TF_CPP_MIN_LOG_LEVEL does not reach them). This launcher, outside
the `tfp_distill` package so that it runs before TensorFlow is imported, sends file
descriptor 2 to a temporary file for the import, then drops the known start-up lines and
prints whatever else was written there. The library itself never touches the process's
stderr or logging.
"""

import os
import re
import sys
import tempfile

# Start-up lines of TensorFlow's C++ libraries: absl's "before InitializeLog" notice and
# log lines ("I0000 00:00:... file.cc:line] ...") from the files that report the CPU's
# features and the (absent) CUDA runtime, with their continuation lines.
_STARTUP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called|"
    r"[IWE]\d{4} [\d:.]+\s+\d+ (port|cudart_stub|cuda_platform|cpu_feature_guard|"
    r"cuda_executor|cuda_dnn|cuda_fft|cuda_blas|gpu_device|computation_placer)\.cc:\d+\])")
_CONTINUATION = ("To enable the following instructions",)


def _filter(text):
  """The lines of text that are not TensorFlow's known start-up lines."""
  keep, dropping = [], False
  for line in text.splitlines():
    if _STARTUP.match(line):
      dropping = True
      continue
    if dropping and line.startswith(_CONTINUATION):
      continue
    dropping = False
    keep.append(line)
  return keep


def _import_quietly():
  """Imports tensorflow and tfp_distill.cli with file descriptor 2 captured; returns the
  cli module. Lines that are not start-up lines are written to stderr afterwards."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf
      tf.config.list_physical_devices()         # device discovery logs here (cuInit)
      from tfp_distill import cli
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
    captured.seek(0)
    kept = _filter(captured.read().decode("utf-8", errors="replace"))
  if kept:
    sys.stderr.write("\n".join(kept) + "\n")
  return cli


def main(argv=None):
  """Runs `tfp-distill`; returns its exit status."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if "--verbose" in argv:
    from tfp_distill import cli
  else:
    # TensorFlow's own log level for what comes after the import (INFO and WARNING off).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    cli = _import_quietly()
  return cli.main(argv)


if __name__ == "__main__":
  sys.exit(main())
