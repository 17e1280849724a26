"""The public API contract of DESIGN.md imports, and works with either Keras import order."""

import subprocess
import sys
import textwrap

import pytest

import tfp_distill as td

CONTRACT = [
    "families.HeteroscedasticNormal", "Ensemble", "train_ensemble", "Ensemble.load",
    "heads.NormalHead", "heads.MultivariateNormalTriLHead", "teacher_targets", "Distiller",
    "losses.EnsembleNLL", "losses.MixtureKL", "decompose", "decompose_ensemble",
    "export_saved_model", "metrics.rmse", "metrics.ause", "callbacks.ProgressBar",
    "families.CategoricalLogits", "heads.DirichletHead", "heads.CategoricalHead",
    "losses.DirichletNLL", "losses.KnowledgeDistillation",
    "callbacks.TemperatureAnnealing", "metrics.expected_calibration_error",
    "metrics.ExpectedCalibrationError", "metrics.auroc", "models.small_cnn",
    "models.resnet18_cifar", "datasets.images.load_fashion_mnist",
    "datasets.corruptions.corrupt", "perturb.ODS", "perturb.ConfODS", "perturb.Gaussian",
    "predict_uncertainty", "vectorized.StackedMembers", "Ensemble.refresh",
]


def test_contract_signatures_of_the_design():
  # The calls written in DESIGN.md's contract, with those argument names.
  td.families.CategoricalLogits(10, reference_class=False)
  td.losses.DirichletNLL(temperature=1.0)
  loss = td.losses.DirichletNLL()
  td.callbacks.TemperatureAnnealing(loss, initial=10.0, final=1.0, start_epoch=0,
                                    end_epoch=30)
  assert td.heads.DirichletHead.params_size(10) == 10


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_names_exist(name):
  obj = td
  for part in name.split("."):
    obj = getattr(obj, part)
  assert callable(obj)


def test_all_is_complete():
  for name in td.__all__:
    assert hasattr(td, name), name


def test_no_tf_keras_or_keras3_import_in_the_package():
  """tf_keras only in _keras.py, Keras 3 only in _keras3.py (also indented, lazy imports),
  in the package and in the scripts."""
  import pathlib
  import re
  root = pathlib.Path(td.__file__).parent
  keras3 = re.compile(r"^\s*(import keras\b|from keras\b)", re.M)
  tf_keras = re.compile(r"^\s*(import tf_keras\b|from tf_keras\b)", re.M)
  paths = list(root.rglob("*.py")) + list((root.parent / "scripts").glob("*.py"))
  assert len(paths) > 20
  for path in paths:
    text = path.read_text()
    assert "tf.keras" not in text.replace("`tf.keras`", "").replace(
        "``tf.keras``", "").replace("tf.keras.version", ""), path
    if path.name != "_keras.py":
      assert not tf_keras.search(text), path
    if path.name != "_keras3.py":
      assert not keras3.search(text), path


SNIPPET = """
import numpy as np
{first}
import tfp_distill as td
family = td.families.HeteroscedasticNormal()
head = td.heads.MultivariateNormalTriLHead
student = td.models.mlp((1,), [4], head.params_size(2), head=head(2), seed=0)
u = td.decompose(student(np.zeros((3, 1), np.float32)), family)
print(u["total"].shape)
"""


@pytest.mark.parametrize("first,env", [
    ("import tensorflow as tf", {}),
    ("import tensorflow_probability as tfp", {}),
    ("import tf_keras", {}),
    ("import tensorflow as tf", {"TF_USE_LEGACY_KERAS": "1"}),
])
def test_import_orders(first, env):
  import os
  environ = dict(os.environ, **env)
  environ.pop("TF_USE_LEGACY_KERAS", None) if not env else None
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(SNIPPET.format(first=first))],
                       capture_output=True, text=True, env=environ)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "(3,)" in out.stdout
