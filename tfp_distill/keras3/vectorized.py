"""Keras 3 members of one architecture as one vectorized computation.

```none
M Keras 3 members, one architecture: variables v_m (trainable), s_m (non-trainable)
  stacked:   V = [v_1 .. v_M], S = [s_1 .. s_M]       tf.Variables [M, ...] each
  z = vectorized_map(lambda v, s(, x_m): member_0.stateless_call(v, s, x))   one graph
      x [batch, ...] (every member sees the same x)  or x [members, batch, ...]
   ─► z [batch, members, params]   (the layout of td.Ensemble's targets)
```

Keras 3 runs any model statelessly on given variable values (`stateless_call`), so one
member's graph, vectorized over the members' stacked variables by TensorFlow's
`tf.vectorized_map`, computes what the M members compute: matmuls and convolutions become
batched ones. No layer-by-layer translation as for tf_keras (`td.vectorized`): any
functional, sequential or subclassed architecture whose members have variables of the
same shapes stacks; an op without a vectorized form runs once per member inside the same
graph (`fallback_to_while_loop`; e.g. a dropout mask drawn from a member's seed), which is
still right, only slower. Trained with the sum of the members' losses, each slice of
the stacked variables receives only its own member's gradient: M independent trainings.

`MemberLoop` is the same interface over members that do not stack (other architectures,
or `vectorize=False`): one graph of M separate calls. `td.train_ensemble` trains Keras 3
members through either, with the same data orders, so the two give the same members up
to rounding.
"""

import numpy as np
import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill import vectorized as vectorized_lib

keras = _keras3.tensorflow_module("td.keras3")

__all__ = ["MemberLoop", "StackedMembers", "vectorization_blocker"]

NotVectorizableError = vectorized_lib.NotVectorizableError


def _variable_signature(model):
  return ([(tuple(v.shape), str(v.dtype)) for v in model.trainable_variables],
          [(tuple(v.shape), str(v.dtype)) for v in model.non_trainable_variables])


def _check_members(members):
  if not members:
    raise NotVectorizableError("no members")
  for i, member in enumerate(members):
    if not isinstance(member, keras.Model):
      raise NotVectorizableError(f"member {i} is a {type(member).__name__}, not a Keras 3 "
                                 "model")
    if not member.built:
      raise NotVectorizableError(f"member {i} is not built (call it once, or build it "
                                 "with keras.Input)")
  first = members[0]
  for i, member in enumerate(members[1:], start=1):
    if type(member) is not type(first):
      raise NotVectorizableError(f"member {i} is a {type(member).__name__}, member 0 a "
                                 f"{type(first).__name__}")
    if _variable_signature(member) != _variable_signature(first):
      raise NotVectorizableError(f"member {i}'s variables differ in number, shape or dtype "
                                 "from member 0's (architectures must be identical)")
    layers = [type(layer).__name__ for layer in getattr(member, "layers", [])]
    if layers != [type(layer).__name__ for layer in getattr(first, "layers", [])]:
      raise NotVectorizableError(f"member {i}'s layers differ from member 0's")


def vectorization_blocker(members):
  """Why Keras 3 `members` cannot be stacked, or None if they can.

  Args:
    members: list of Keras 3 models.

  Returns:
    None, or a `td.vectorized.NotVectorizableError`.
  """
  try:
    _check_members(list(members))
  except NotVectorizableError as error:
    return error
  return None


def _members_output(outputs):
  """z [members, batch, params] -> [batch, members, params], checking the rank."""
  if outputs.shape.rank != 3:
    raise ValueError(f"Every member must map x to z of shape [batch, params]; the members "
                     f"give {list(outputs.shape[1:])}.")
  return tf.transpose(outputs, [1, 0, 2])


class StackedMembers(tf.Module):
  """M Keras 3 models of one architecture as one vectorized computation.

  Holds the members' variables stacked along a leading members axis (copied when built:
  `load_from(members)` copies them again, `assign_to(members)` writes them back) and
  runs member 0's graph on them with `tf.vectorized_map`. Before use, the stacked outputs
  are checked against the members' on a probe batch: a member whose layers keep state
  outside their Keras variables would not stack, and is refused.

  Args:
    members: list of M >= 1 built Keras 3 models of one architecture (TensorFlow
      backend), each x [batch, ...] -> z [batch, params].
    name: the module's name.

  Raises:
    td.vectorized.NotVectorizableError: the members differ in architecture, or do not
      compute what their stacked form computes.

  Call:
    x: float Tensor [batch, ...] (the same x for every member), or with
      `per_member=True` [members, batch, ...] (member m reads x[m]).
    training: bool (dropout, batch statistics; the non-trainable variables, e.g. moving
      averages, are updated).

    Returns z: Tensor [batch, members, params].

  #### Examples

  ```python
  members = [td.keras3.models.mlp((4,), [32], 2, seed=s) for s in range(5)]
  stacked = td.keras3.vectorized.StackedMembers(members)
  z = stacked(x)              # [batch, 5, 2], = tf.stack([m(x) for m in members], 1)
  ```
  """

  def __init__(self, members, name="stacked_members"):
    super().__init__(name=name)
    members = list(members)
    _check_members(members)
    self.num_members = len(members)
    object.__setattr__(self, "_template", members[0])   # not tracked: its own variables
    self.stacked_trainable = [
        tf.Variable(np.stack([np.asarray(m.trainable_variables[i]) for m in members]),
                    name=f"stacked_trainable_{i}")
        for i in range(len(members[0].trainable_variables))]
    self.stacked_non_trainable = [
        tf.Variable(np.stack([np.asarray(m.non_trainable_variables[i]) for m in members]),
                    trainable=False, name=f"stacked_non_trainable_{i}")
        for i in range(len(members[0].non_trainable_variables))]
    self.losses = []
    self._check_against(members)

  @property
  def trainable_variables(self):
    """The stacked trainable variables, [members, ...] each."""
    return list(self.stacked_trainable)

  def _check_against(self, members):
    inputs = getattr(members[0], "inputs", None)
    if not inputs or len(inputs) != 1:
      return   # no static input shape to probe with (a subclassed model): trusted
    shape = [2] + [d or 1 for d in inputs[0].shape[1:]]
    x = tf.random.stateless_normal(shape, seed=[1, 2], dtype=inputs[0].dtype)
    got = self(x).numpy().astype(np.float64)
    want = np.stack([np.asarray(m(x, training=False)) for m in members], axis=1)
    scale = 1.0 + np.abs(want).max()
    if got.shape != want.shape or not np.all(np.abs(got - want) <= 1e-3 * scale):
      raise NotVectorizableError(
          "the stacked members do not compute what the members compute (a layer keeps "
          "state outside its Keras variables?)")

  def load_from(self, members):
    """Copies the members' variables into the stacked variables.

    Args:
      members: list of M models of the architecture this was built from.
    """
    members = vectorized_lib.member_list(members, self.num_members, "load_from")
    for i, stacked in enumerate(self.stacked_trainable):
      stacked.assign(np.stack([np.asarray(m.trainable_variables[i]) for m in members]))
    for i, stacked in enumerate(self.stacked_non_trainable):
      stacked.assign(np.stack([np.asarray(m.non_trainable_variables[i]) for m in members]))

  def assign_to(self, members):
    """Writes the stacked variables back into M Keras 3 models of the architecture."""
    members = vectorized_lib.member_list(members, self.num_members, "assign_to")
    for m, member in enumerate(members):
      for variable, stacked in zip(member.trainable_variables, self.stacked_trainable):
        variable.assign(stacked[m])
      for variable, stacked in zip(member.non_trainable_variables,
                                   self.stacked_non_trainable):
        variable.assign(stacked[m])

  def to_members(self):
    """M new Keras 3 models (clones of the architecture) holding the stacked variables."""
    members = [keras.models.clone_model(self._template) for _ in range(self.num_members)]
    self.assign_to(members)
    return members

  def __call__(self, x, training=False, per_member=False):
    template = self._template
    x = tf.convert_to_tensor(x)

    def one(args):
      trainable, non_trainable = args[0], args[1]
      inputs = args[2] if per_member else x
      out, new_state, losses = template.stateless_call(
          list(trainable), list(non_trainable), inputs, training=training,
          return_losses=True)
      loss = tf.add_n([tf.constant(0.0)] + [tf.cast(l, tf.float32) for l in losses])
      return tf.convert_to_tensor(out), list(new_state), loss

    elems = (self.stacked_trainable, self.stacked_non_trainable) + ((x,) if per_member else ())
    outputs, new_state, losses = tf.vectorized_map(one, elems, fallback_to_while_loop=True)
    if training:
      for variable, value in zip(self.stacked_non_trainable, new_state):
        variable.assign(value)
    self.losses = [tf.reduce_sum(losses)]
    return _members_output(outputs)


class MemberLoop:
  """M Keras 3 members run side by side in one graph, with `StackedMembers`' interface.

  For members that do not stack (other architectures; `vectorize=False`): the same call
  signature and the members' own variables (`assign_to` and `load_from` do nothing).

  Args:
    members: list of M Keras 3 models, each x -> z [batch, params].
  """

  def __init__(self, members):
    self.members = list(members)
    self.num_members = len(self.members)
    self.losses = []

  @property
  def trainable_variables(self):
    """The members' trainable variables."""
    return [v for m in self.members for v in m.trainable_variables]

  def load_from(self, members):  # pylint: disable=unused-argument
    """Nothing to copy: the members' variables are used directly."""

  def assign_to(self, members):  # pylint: disable=unused-argument
    """Nothing to write: the members' variables are used directly."""

  def __call__(self, x, training=False, per_member=False):
    x = tf.convert_to_tensor(x)
    outputs = [tf.convert_to_tensor(m(x[i] if per_member else x, training=training))
               for i, m in enumerate(self.members)]
    self.losses = [tf.add_n([tf.constant(0.0)] + [tf.cast(l, tf.float32)
                                                   for m in self.members for l in m.losses])]
    return _members_output(tf.stack(outputs))
