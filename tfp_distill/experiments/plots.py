"""The figures moved to `tfp_distill.plots` (the library's reports draw them too); the
studies' old import path keeps working."""

from tfp_distill.plots import *  # noqa: F401,F403 pylint: disable=wildcard-import,unused-wildcard-import
from tfp_distill.plots import __all__  # noqa: F401
