"""Shared test configuration: quiet TensorFlow's C++ logs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
