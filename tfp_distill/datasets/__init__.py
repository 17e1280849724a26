"""Data sets: NumPy loaders that know no model; `sources` reads a user's own files."""

from tfp_distill.datasets import corruptions
from tfp_distill.datasets import far
from tfp_distill.datasets import images
from tfp_distill.datasets import mixture
from tfp_distill.datasets import sources
from tfp_distill.datasets import uci
from tfp_distill.datasets.toy import grid
from tfp_distill.datasets.toy import sinusoid
from tfp_distill.datasets.toy import sinusoid_mean
from tfp_distill.datasets.toy import sinusoid_noise_variance

__all__ = [
    "corruptions",
    "far",
    "grid",
    "images",
    "mixture",
    "sources",
    "uci",
    "sinusoid",
    "sinusoid_mean",
    "sinusoid_noise_variance",
]
