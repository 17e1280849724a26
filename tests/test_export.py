"""Tests for tfp_distill.export: the served signature equals the in-memory model."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td

import tolerance

FAMILY = td.families.HeteroscedasticNormal()
# The served graph runs the student's ops and the decomposition's again (other kernels,
# other fusion): the forward pass's rounding (tolerance.model_roundings) and the
# decomposition's, in float32 eps of each output's magnitude + 1 (outputs and params of
# order 1, passed on with a gain of order 1): Gauss-Hermite over 40 nodes (softplus 5,
# the 40-term sum: 53); a Dirichlet's closed form (K + 19, K = 4); a softmax and its
# entropy (K + 3 and (K + 9) (2 + log K)^2); Monte Carlo entropies over 50 draws
# (loc + L eps, P + 2, and (K + 50 + 8) (2 + log K)^2, test_properties' entropy bound).
QUADRATURE = 53


def _entropies(k, m):
  return int((k + m + 8) * (2 + np.log(k)) ** 2)


def _assert_served(served, expected, ulps):
  for key, value in expected.items():
    tolerance.assert_close(served[key].numpy(), value.numpy(), dtype=np.float32, ulps=ulps,
                           scale=tolerance.magnitude(value.numpy()) + 1, err_msg=key)


@pytest.mark.parametrize("head_cls,event", [
    (td.heads.MultivariateNormalTriLHead, 2),
    (td.heads.NormalHead, 2),
    (td.heads.NormalPredictiveHead, 1),
])
def test_export_round_trip(head_cls, event, tmp_path):
  student = td.models.mlp((1,), [8], head_cls.params_size(event), head=head_cls(event),
                          seed=3)
  path = td.export_saved_model(student, FAMILY, str(tmp_path / "served"))
  x = np.linspace(-4, 4, 11, dtype=np.float32)[:, None]
  served = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(x))
  dist = student(x)
  expected = dict(td.decompose(dist, FAMILY))
  expected.update(td.heads.distribution_parameters(dist))
  assert set(served) == set(expected)
  _assert_served(served, expected, tolerance.model_roundings(student) + QUADRATURE)


def test_served_model_loads_without_tfp_distill(tmp_path):
  student = td.models.mlp((1,), [8], 5, head=td.heads.MultivariateNormalTriLHead(2), seed=4)
  path = td.export_saved_model(student, FAMILY, str(tmp_path / "served"))
  x = np.array([[0.5], [-2.0]], np.float32)
  expected = td.decompose(student(x), FAMILY)["epistemic"].numpy()
  code = textwrap.dedent(f"""
      import sys, numpy as np, tensorflow as tf
      f = tf.saved_model.load({path!r}).signatures["serving_default"]
      out = f(x=tf.constant([[0.5], [-2.0]], tf.float32))
      assert "tfp_distill" not in sys.modules and "tensorflow_probability" not in sys.modules
      print(" ".join(repr(float(v)) for v in out["epistemic"].numpy()))
  """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
  got = np.array([float(v) for v in result.stdout.split()])
  tolerance.assert_close(got, expected, dtype=np.float32,
                         ulps=tolerance.model_roundings(student) + QUADRATURE,
                         scale=tolerance.magnitude(expected) + 1)


@pytest.mark.parametrize("head_cls,family", [
    (td.heads.DirichletHead, td.families.CategoricalLogits(4)),
    (td.heads.CategoricalHead, td.families.CategoricalLogits(4)),
    (td.heads.NormalHead, td.families.CategoricalLogits(4, reference_class=True)),
])
def test_export_classification_students(head_cls, family, tmp_path):
  event = 3 if head_cls is td.heads.NormalHead else 4
  student = td.models.mlp((2,), [8], head_cls.params_size(event), head=head_cls(event),
                          seed=5)
  path = td.export_saved_model(student, family, str(tmp_path / "served"), num_samples=50)
  x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
  served = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(x))
  dist = student(x)
  expected = dict(td.decompose(dist, family, num_samples=50, seed=0))
  expected.update(td.heads.distribution_parameters(dist))
  assert set(served) == set(expected)
  assert served["prediction"].shape == (7, 4)
  decomposition = {td.heads.DirichletHead: 4 + 19,
                   td.heads.CategoricalHead: 4 + 3 + _entropies(4, 1),
                   td.heads.NormalHead: 3 + 2 + _entropies(4, 50)}[head_cls]
  _assert_served(served, expected, tolerance.model_roundings(student) + decomposition)


@pytest.fixture(name="served_mlp", scope="module")
def served_mlp_fixture(tmp_path_factory):
  """An exported x [batch, 1] -> MultivariateNormalTriL student, its signature reloaded."""
  student = td.models.mlp((1,), [8], 5, head=td.heads.MultivariateNormalTriLHead(2), seed=6)
  path = td.export_saved_model(student, FAMILY, str(tmp_path_factory.mktemp("bad") / "s"))
  return path, tf.saved_model.load(path).signatures["serving_default"]


@pytest.mark.parametrize("shape,dtype,says", [
    ((0, 1), np.float32,
     r"serving_default: empty batch \(0 examples\); send at least one"),
    ((2, 1), np.int32, r"expected to be a float tensor but is a int32 tensor"),
    ((2, 1), np.float64, r"expected to be a float tensor but is a double tensor"),
    ((2, 3), np.float32,
     r"Shape of tensor x \[2,3\] is not compatible with expected shape \[\?,1\]"),
    ((2,), np.float32,
     r"Shape of tensor x \[2\] is not compatible with expected shape \[\?,1\]"),
    ((2, 1, 1), np.float32,
     r"Shape of tensor x \[2,1,1\] is not compatible with expected shape \[\?,1\]"),
], ids=["empty", "int32", "float64", "features", "rank1", "rank3"])
def test_bad_requests_say_what_is_wrong(served_mlp, shape, dtype, says):
  _, served = served_mlp
  with pytest.raises(tf.errors.InvalidArgumentError, match=says):
    served(x=tf.constant(np.zeros(shape, dtype)))  # tf.constant keeps the dtype


def test_a_batch_of_one_is_served(served_mlp):
  _, served = served_mlp
  out = served(x=tf.constant([[0.5]]))
  assert out["prediction"].shape == (1,) and out["scale_tril"].shape == (1, 2, 2)


def test_bad_requests_are_refused_without_tfp_distill(served_mlp):
  """The checks are ops in the served graph: a process without tfp_distill or TFP gets
  the same errors."""
  path, _ = served_mlp
  code = textwrap.dedent(f"""
      import sys, tensorflow as tf
      f = tf.saved_model.load({path!r}).signatures["serving_default"]
      for x in (tf.zeros((0, 1)), tf.zeros((2, 1), tf.int32), tf.zeros((2, 3))):
        try:
          f(x=x)
          print("SERVED")
        except tf.errors.InvalidArgumentError as error:
          print(str(error).replace("\\n", " "))
      assert "tfp_distill" not in sys.modules and "tensorflow_probability" not in sys.modules
  """)
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
  empty, dtype, shape = result.stdout.strip().splitlines()
  assert "serving_default: empty batch (0 examples); send at least one" in empty
  assert "expected to be a float tensor but is a int32 tensor" in dtype
  assert "Shape of tensor x [2,3] is not compatible with expected shape [?,1]" in shape
