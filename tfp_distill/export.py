"""SavedModel export whose signature returns tensors: prediction, uncertainties, parameters.

A Keras SavedModel of a tfp.layers model returns a *sample* of its distribution from the
default signature. `export_saved_model` instead writes a `serving_default` signature that
returns a dict of tensors, which plain TensorFlow serves without importing tfp_distill:

```python
served = tf.saved_model.load(path).signatures["serving_default"]
out = served(x=tf.constant(x))   # {"prediction", "total", "aleatoric", "epistemic",
                                 #  "loc", "scale" or "scale_tril"}
```
A request of the wrong dtype or shape, or an empty batch, raises InvalidArgumentError
with a message that says which.
"""

import tensorflow as tf

from tfp_distill import parameterization as parameterization_lib
from tfp_distill import predict as predict_lib
from tfp_distill import uncertainty

__all__ = ["export_saved_model"]

#: What `serving_default` says (InvalidArgumentError) when it is sent an empty batch.
_EMPTY_BATCH_MESSAGE = "serving_default: empty batch (0 examples); send at least one"


def export_saved_model(student, family, path, num_samples=100, method=None, seed=0,
                       input_signature=None, common_noise=True):
  """Writes a SavedModel of `student` serving its decomposition and head parameters.

  Args:
    student: a tf_keras or Keras 3 model ending in a `td.heads` or `td.keras3.heads`
      head (the served signature is the same for both).
    family: the members' family, as for `td.decompose`.
    path: str, output folder.
    num_samples: int, Monte Carlo samples when `method="monte_carlo"`.
    method: None (exact where possible), "quadrature", "closed_form" or "monte_carlo"
      (see `td.decompose`).
    seed: int, Monte Carlo seed (fixed: the served graph is deterministic).
    common_noise: bool, Monte Carlo draws shared by all examples (the default: an
      example's served uncertainty does not depend on the request it is batched in);
      see `td.decompose`.
    input_signature: None (taken from a functional student's input), or a `tf.TensorSpec`
      for x with a None batch dimension.

  Returns:
    path.

  Signature `serving_default(x)` returns float Tensors: "prediction" [batch] or
  [batch, E] ([batch, classes] for classification); "total", and for distributions over
  z "aleatoric", "epistemic" [batch] ("epkl" too for classification); the head's
  parameters: "loc" [batch, P] and "scale" [batch, P] or "scale_tril" [batch, P, P],
  "concentration" [batch, K] (Dirichlet) or "logits" [batch, K] (Categorical).

  A row of x holding NaN or Inf is served NaN in every output (the other rows of the
  request as usual); never the finite numbers a network's kernels can make of it.

  The served signature refuses a bad request with an error that says what is wrong
  (`tf.errors.InvalidArgumentError`): a wrong dtype ("expected to be a float tensor but
  is a int32 tensor"), a wrong shape ("Shape of tensor x [2,3] is not compatible with
  expected shape [?,1]") and an empty batch ("serving_default: empty batch (0 examples);
  send at least one").

  Raises:
    ValueError: if no input signature can be found (pass `input_signature`).
  """
  if input_signature is None:
    inputs = getattr(student, "inputs", None)
    if not inputs or len(inputs) != 1:
      raise ValueError("export_saved_model: the student has no single functional input; "
                       "pass input_signature=tf.TensorSpec([None, ...], tf.float32).")
    spec = tf.TensorSpec([None] + list(inputs[0].shape[1:]), inputs[0].dtype, name="x")
  else:
    spec = tf.TensorSpec(input_signature.shape, input_signature.dtype, name="x")

  def serve(x):
    # A served signature checks the dtype of what it is sent, not its shape: a request of
    # the wrong shape failed deep inside the student ("In[0] is not a matrix").
    # EnsureShape names both shapes. An empty batch, which served empty tensors, is
    # refused too. Both checks are ops in the graph: serving needs no tfp_distill.
    x = tf.ensure_shape(x, spec.shape)
    check = tf.debugging.assert_positive(tf.shape(x)[0], message=_EMPTY_BATCH_MESSAGE)
    with tf.control_dependencies([check]):
      x = tf.identity(x)
    # A row holding NaN or Inf gets NaN in every output (a fused MatMul+BiasAdd+Relu can
    # map NaN to finite values); the other rows of the request are served as usual.
    ok = predict_lib.finite_rows(x)
    dist = predict_lib.model_output(student, x)
    out = dict(uncertainty.decompose(dist, family, num_samples=num_samples, seed=seed,
                                     method=method, common_noise=common_noise))
    out.update(parameterization_lib.distribution_parameters(dist))
    return predict_lib.nan_rows(out, ok)

  module = tf.Module()
  module.variables_of_student = list(student.variables)
  module.serve = tf.function(serve, input_signature=[spec])
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  return path
