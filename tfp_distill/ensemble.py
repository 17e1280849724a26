"""The teacher: an ensemble of M Keras members evaluated in one compiled graph.

```none
x [batch, ...] ──► member_1 .. member_M ──► z [batch, members, params]
```

Members of one functional architecture can run as one vectorized model with stacked
weights (`vectorized.StackedMembers`: one batched matmul or grouped convolution per layer
instead of M): always in training, in inference by default where a GPU is present (on a
CPU the separate members' graph measured as fast or faster). Other members run side by
side in one graph.

`train_ensemble` (in `tfp_distill.ensemble_training`, importable from here too) trains the
members with independent initialisations and independent data orders, as deep ensembles
do [1].

#### References

[1]: Lakshminarayanan, Pritzel, Blundell. Simple and scalable predictive uncertainty
     estimation using deep ensembles. NeurIPS 2017. arXiv:1612.01474.
"""

import json
import os

import numpy as np
import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill import families as families_lib
from tfp_distill import predict as predict_lib
from tfp_distill import teachers as teachers_lib
from tfp_distill import vectorized as vectorized_lib
from tfp_distill._keras import keras

__all__ = ["Ensemble", "accelerator_present", "check_vectorize", "stack_members"]

# Moved to `tfp_distill.ensemble_training` (which imports this module); still importable
# from here (`td.ensemble.member_permutation`, `td.ensemble.train_ensemble`, ...).
_TRAINING_NAMES = ("VectorizationWarning", "array_member_streams", "member_permutation",
                   "member_streams", "train_ensemble")


def __getattr__(name):
  if name in _TRAINING_NAMES:
    from tfp_distill import ensemble_training
    return getattr(ensemble_training, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def accelerator_present():
  """Whether TensorFlow sees a GPU or a TPU (where stacking the members pays)."""
  return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def check_vectorize(vectorize):
  """Raises ValueError unless `vectorize` is True, False or "auto"."""
  if not (isinstance(vectorize, bool) or vectorize == "auto"):
    raise ValueError(f'vectorize must be True, False or "auto", got {vectorize!r}.')

_MANIFEST = "ensemble.json"


def _is_stacked(members):
  """Whether `members` is a stacked model (`td.vectorized` or `td.keras3.vectorized`)."""
  return isinstance(members, vectorized_lib.StackedMembers) or (
      callable(getattr(members, "to_members", None)) and hasattr(members, "num_members"))


def _not_stackable(members):
  """The first member that keeps the members from one stacked model (a callable, a
  SavedModel, or a model of the other Keras than member 0's), or None."""
  same_keras = (_keras3.is_keras3_object if _keras3.is_keras3_object(members[0])
                else lambda member: isinstance(member, keras.Model))
  return next((i for i, member in enumerate(members) if not same_keras(member)), None)


def stack_members(members):
  """Members of one architecture as one stacked model, of their Keras.

  Args:
    members: list of tf_keras models (-> `vectorized.StackedMembers`) or of Keras 3
      models (-> `td.keras3.vectorized.StackedMembers`).

  Returns:
    the stacked model: x -> z [batch, members, params].

  Raises:
    vectorized.NotVectorizableError: naming what prevents stacking.
  """
  members = list(members)
  if members and _keras3.is_keras3_object(members[0]):
    from tfp_distill.keras3 import vectorized as k3
    return k3.StackedMembers(members)
  return vectorized_lib.StackedMembers(members, name="stacked_members")


class Ensemble(keras.Model):
  """M members x -> z [batch, params], stacked to z [batch, members, params].

  Members may be tf_keras models, Keras 3 models (TensorFlow backend), SavedModels
  (`teachers.SavedModelMember`) or any callable x -> z, mixed freely
  (`teachers.member_function`); `Ensemble.from_files` loads them from `.keras` files of
  either Keras and SavedModel folders. Members of one architecture, all tf_keras or all
  Keras 3, can be vectorized (`stack_members`).

  The members run side by side in one graph, or as one vectorized model
  (`vectorized.StackedMembers`: weights stacked along a members axis, one batched op per
  layer) when their architecture allows it and stacking pays: by default on an
  accelerator, not on a CPU, where the separate members' graph measured as fast or
  faster (`tfp-distill bench --suite inference`; the stacked model wins in *training*,
  see `train_ensemble`). Calling the ensemble eagerly runs one `tf.function` graph;
  inside a `tf.function` or `tf.data` map it is part of the caller's graph. The members
  are not trainable through the ensemble (it is a teacher).

  A vectorized model holds a *copy* of the members' weights, made when the ensemble is
  built: after changing a member's weights call `refresh()` (or build a new Ensemble).

  Args:
    members: non-empty list of members (tf_keras or Keras 3 models, or callables), each
      mapping x to z [batch, params] with the same params; or a
      `vectorized.StackedMembers` (its members are materialised).
    family: optional `families.Family` of the members; when given, each member's output
      size is checked against `family.params_size`.
    vectorize: "auto" (default: stack the members on a GPU when their architecture
      allows), True (stack them or raise `vectorized.NotVectorizableError` naming the
      layer that prevents it), or False (a graph of M separate members).
    jit_compile: bool, compile the ensemble's graph with XLA.

  Attributes:
    vectorized: bool, whether calls run the stacked model.
    vectorize_reason: None, or why the members were not stacked (vectorize="auto").

  Raises:
    ValueError: for an empty list, a member that is neither a model nor a callable, a
      Keras 3 model on another backend (`teachers.TeacherError`), or (on the first call)
      members whose output sizes differ or do not fit the family, or that cannot take x.

  #### Examples

  ```python
  ens = td.Ensemble([member_0, member_1, member_2])
  z = ens(x)                          # [batch, 3, params]
  ens.save("teacher"); ens = td.Ensemble.load("teacher")
  ```
  """

  def __init__(self, members, family=None, vectorize="auto", jit_compile=False, **kwargs):
    super().__init__(**kwargs)
    check_vectorize(vectorize)
    stacked = None
    if _is_stacked(members):
      stacked, members = members, members.to_members()
    members = list(members)
    if not members:
      raise ValueError("An Ensemble needs at least one member, got an empty list.")
    self._member_fns = [teachers_lib.member_function(m, i) for i, m in enumerate(members)]
    foreign = _not_stackable(members)
    self.members = members
    self.family = None if family is None else families_lib.get(family)
    self.trainable = False
    self.jit_compile = bool(jit_compile)
    self.vectorize_reason = None
    if stacked is None and foreign is not None and vectorize is not False:
      reason = (f"member {foreign} is a {teachers_lib.describe(members[foreign])}; only "
                "members that are all tf_keras or all Keras 3 models can be stacked")
      if vectorize is True:
        raise vectorized_lib.NotVectorizableError(reason)
      self.vectorize_reason = reason
    elif stacked is None and vectorize == "auto" and not accelerator_present():
      self.vectorize_reason = ("on a CPU the separate members' graph is as fast or faster "
                               "(pass vectorize=True to stack anyway)")
    elif stacked is None and vectorize is not False:
      try:
        stacked = stack_members(members)
      except vectorized_lib.NotVectorizableError as error:
        if vectorize is True:
          raise
        self.vectorize_reason = error.reason if error.layer is None else (
            f"layer {error.layer!r}: {error.reason}")
    self.stacked = stacked
    # autograph=False: nothing in _forward needs it, and errors raised while tracing a
    # member (`teachers.TeacherError`, shape errors) reach the caller as they are.
    self._graph_call = tf.function(self._forward, reduce_retracing=True, autograph=False,
                                   jit_compile=self.jit_compile)

  @classmethod
  def from_stacked(cls, members, stacked, family=None, vectorize="auto"):
    """An ensemble of `members` whose weights `stacked` already holds (no second copy).

    Args:
      members: list of M models, e.g. the members `train_ensemble` just trained.
      stacked: the `vectorized.StackedMembers` holding their weights.
      family, vectorize: as `Ensemble`; the stacked model is used where `vectorize`
        would stack the members.

    Returns:
      `Ensemble`.
    """
    use_stacked = vectorize is True or (vectorize == "auto" and accelerator_present())
    ensemble = cls(members, family=family, vectorize=vectorize if not use_stacked else False)
    if use_stacked:
      ensemble.stacked = stacked
    return ensemble

  @property
  def num_members(self):
    """M, the number of members."""
    return len(self.members)

  @property
  def member_functions(self):
    """The functions x -> z [batch, params] that run each member (`teachers.member_function`)."""
    return list(self._member_fns)

  @property
  def vectorized(self):
    """Whether the members run as one stacked model (`stack_members`)."""
    return self.stacked is not None

  def refresh(self):
    """Copies the members' current weights into the vectorized model (if any)."""
    if self.stacked is not None:
      self.stacked.load_from(self.members)

  def _stack(self, x):
    outputs = []
    for i, fn in enumerate(self._member_fns):
      try:
        out = tf.convert_to_tensor(fn(x))
      except teachers_lib.TeacherError:
        raise
      except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"Member {i} ({teachers_lib.describe(self.members[i])}) cannot take inputs "
            f"of shape {list(x.shape)} and dtype {x.dtype.name}: {first}") from error
      outputs.append(out)
    for i, o in enumerate(outputs):
      if o.shape.rank != 2:
        raise ValueError(f"Every member must map x to z of shape [batch, params]; member "
                         f"{i} ({teachers_lib.describe(self.members[i])}) gives shape "
                         f"{list(o.shape)}.")
    sizes = [tf.compat.dimension_value(o.shape[-1]) for o in outputs]
    if len(set(sizes)) > 1:
      common = max(set(sizes), key=sizes.count)
      odd = next(i for i, size in enumerate(sizes) if size != common)
      raise ValueError(
          f"The members' outputs differ in size: member {odd} "
          f"({teachers_lib.describe(self.members[odd])}) gives shape "
          f"{list(outputs[odd].shape)}, member {sizes.index(common)} gives "
          f"{list(outputs[sizes.index(common)].shape)}.")
    dtypes = {o.dtype for o in outputs}
    if len(dtypes) > 1:
      outputs = [tf.cast(o, tf.float32) for o in outputs]
    return tf.stack(outputs, axis=1)

  def _forward(self, x):
    z = self.stacked(x, training=False) if self.stacked is not None else self._stack(x)
    if self.family is not None:
      self.family.check_params(z, what="The members' output")
    if z.dtype in (tf.float16, tf.bfloat16):   # mixed-precision members: float32 targets
      z = tf.cast(z, tf.float32)
    # Rows of x holding NaN or Inf give NaN (a fused MatMul+BiasAdd+Relu can turn NaN
    # inputs into finite, plausible outputs).
    ok = tf.reshape(predict_lib.finite_rows(x), [-1, 1, 1])
    return tf.where(ok, z, tf.constant(np.nan, z.dtype))

  def call(self, x, training=False):
    """z: float Tensor [batch, members, params].

    Called eagerly, inputs holding NaN or Inf raise a ValueError naming the first such
    row; inside a graph (a tf.function, a tf.data map, a train step) those rows' outputs
    are NaN.
    """
    del training  # A teacher always runs in inference mode.
    if tf.executing_eagerly():
      ok = predict_lib.finite_rows(x).numpy()
      if not ok.all():
        bad = np.flatnonzero(~ok)
        raise ValueError(f"td.Ensemble: {len(bad)} input row(s) hold NaN or Inf, the "
                         f"first is row {int(bad[0])}.")
      return self._graph_call(x)
    return self._forward(x)

  def predict_targets(self, x, batch_size=1024):
    """Runs the ensemble over a large array in batches; returns NumPy [n, members, params]."""
    x = np.asarray(x)
    if len(x) == 0:
      raise ValueError("predict_targets got an empty input.")
    return np.concatenate([self(x[i:i + batch_size]).numpy()
                           for i in range(0, len(x), batch_size)], axis=0)

  def save(self, path, overwrite=True):  # pylint: disable=arguments-differ
    """Writes `path/ensemble.json` and one `member_<i>.keras` file per member.

    Members that are tf_keras or Keras 3 models are saved by their own Keras; a callable
    or a SavedModel member has no `.keras` form and raises a ValueError.
    """
    for i, m in enumerate(self.members):
      if not (isinstance(m, keras.Model) or _keras3.is_keras3_object(m)):
        raise ValueError(f"Ensemble.save writes .keras files; member {i} is a "
                         f"{teachers_lib.describe(m)}. Keep its files and load the "
                         "ensemble with Ensemble.from_files.")
    os.makedirs(path, exist_ok=True)
    manifest = os.path.join(path, _MANIFEST)
    if os.path.exists(manifest) and not overwrite:
      raise FileExistsError(f"{manifest} exists and overwrite=False.")
    files = []
    for i, m in enumerate(self.members):
      name = f"member_{i}.keras"
      m.save(os.path.join(path, name), overwrite=True)
      files.append(name)
    meta = {
        "format_version": 1,
        "members": files,
        "family": None if self.family is None else families_lib.serialize(self.family),
    }
    with open(manifest, "w") as f:
      json.dump(meta, f, indent=2)

  @classmethod
  def load(cls, path, custom_objects=None, vectorize="auto"):
    """Loads what `save` wrote.

    Args:
      path: str, the folder `save` wrote.
      custom_objects: dict, passed to Keras' load_model.
      vectorize: as `Ensemble` ("auto", True or False).

    Returns:
      `Ensemble`.
    """
    manifest = os.path.join(path, _MANIFEST)
    if not os.path.exists(manifest):
      raise FileNotFoundError(f"No saved ensemble at {path!r} ({_MANIFEST} is missing).")
    with open(manifest) as f:
      meta = json.load(f)
    members = [teachers_lib.load_member(os.path.join(path, name), custom_objects)
               for name in meta["members"]]
    family = meta.get("family")
    return cls(members, family=None if family is None else families_lib.get(family),
               vectorize=vectorize)

  @classmethod
  def from_files(cls, paths, family=None, custom_objects=None, vectorize="auto",
                 jit_compile=False):
    """An ensemble of members loaded from files, one member per path.

    Args:
      paths: list of str: `.keras` files written by tf_keras or Keras 3 (which one is
        read from the file), SavedModel folders (their serving signature, else their
        restored `__call__`), or one folder written by `Ensemble.save`.
      family, vectorize, jit_compile: as `Ensemble`.
      custom_objects: dict, passed to the Keras loaders.

    Returns:
      `Ensemble`.

    Raises:
      teachers.TeacherError (a ValueError): a path that does not exist or is not a
        model; the message names it.
    """
    if isinstance(paths, (str, os.PathLike)):
      paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
      raise ValueError("Ensemble.from_files needs at least one path.")
    if len(paths) == 1 and os.path.exists(os.path.join(paths[0], _MANIFEST)):
      ensemble = cls.load(paths[0], custom_objects, vectorize=vectorize)
      if family is not None:
        ensemble.family = families_lib.get(family)
      return ensemble
    members = [teachers_lib.load_member(p, custom_objects) for p in paths]
    return cls(members, family=family, vectorize=vectorize, jit_compile=jit_compile)

  def get_config(self):
    """Raises NotImplementedError: an Ensemble is saved with `save(path)`, not as a config."""
    raise NotImplementedError("Save an Ensemble with Ensemble.save(path); load it with "
                              "Ensemble.load(path).")
