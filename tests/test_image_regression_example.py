"""The image regression example (scripts/image_regression_example.py): its turned images
and its smoke run, a job over Keras 3 regressors of images."""

import importlib.util
import math
import pathlib

import numpy as np
import pytest

from tfp_distill.datasets import images as images_data

SCRIPT = (pathlib.Path(__file__).resolve().parents[1] / "scripts" /
          "image_regression_example.py")


def _script():
  spec = importlib.util.spec_from_file_location("image_regression_example", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_turned_images_keep_their_angles_and_pixels():
  script = _script()
  rng = np.random.default_rng(0)
  x = np.zeros((40, 28, 28, 1), np.float32)
  x[:, 4:24, 13:15] = 1.0                   # a vertical bar through the centre
  turned, angles = script.rotated(x, rng)
  assert turned.shape == x.shape and turned.dtype == np.float32
  assert np.all(np.abs(angles) <= script.MAX_ANGLE) and np.std(angles) > 10
  assert turned.min() >= 0 and turned.max() <= 1
  # The bar's direction, from the second moments of its pixels, is the drawn angle
  # (counterclockwise as shown). 20 x 2 pixels turned by linear interpolation: the
  # largest error measured over these 40 turns is 0.31 degrees; the bound is 1.
  rows, cols = np.mgrid[0:28, 0:28].astype(np.float64)
  for image, angle in zip(turned[..., 0], angles):
    w = image / image.sum()
    r0, c0 = (w * rows).sum(), (w * cols).sum()
    crr = (w * (rows - r0) ** 2).sum()
    ccc = (w * (cols - c0) ** 2).sum()
    crc = (w * (rows - r0) * (cols - c0)).sum()
    # The bar's long axis: the principal direction of [[ccc, crc], [crc, crr]] in (col,
    # row) coordinates; its angle from the vertical, counterclockwise as the image is
    # shown (row 0 at the top: a turn to the left moves the bar's top end to lower cols).
    _, evecs = np.linalg.eigh(np.array([[ccc, crc], [crc, crr]]))
    dc, dr = evecs[:, -1]
    measured = (np.degrees(np.arctan2(-dc, -dr)) + 90) % 180 - 90
    assert abs(measured - angle) < 1, (measured, angle)


@pytest.mark.slow
def test_image_regression_example_smoke(tmp_path, load_or_skip):
  for loader in (images_data.load_fashion_mnist, images_data.load_mnist_ood):
    load_or_skip(loader)
  report = _script().main(["--smoke", "--out", str(tmp_path)])
  assert report["task"] == "regression" and report["num_members"] == 2
  assert report["data"]["image_inputs"] and report["output_normalization"]["on"]
  assert all(math.isfinite(v) for v in report["student"].values())
  assert 0 <= report["ood"]["student"]["auroc"] <= 1
  off = _script().main(["--smoke", "--out", str(tmp_path), "--reuse-members",
                        "--output-normalization", "off", "--student-dir", "student_off"])
  assert not off["output_normalization"]["on"] and off["ensemble"] == report["ensemble"]
