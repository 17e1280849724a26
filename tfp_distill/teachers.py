"""Teachers from wherever the user's members live.

```none
tf_keras model ─────────┐
Keras 3 model (TF) ─────┤
SavedModel folder ──────┼──► member function x -> z [batch, params] ──► td.Ensemble
callable x -> z ────────┤
.keras file (either) ───┘
members' outputs (.npz) ──► z [n, members, params]: targets without any teacher model
```

A member is run as `member(x, training=False)` when it is a Keras model (tf_keras or
Keras 3 on the TensorFlow backend) and as `member(x)` otherwise; a member that returns a
dict with one entry (a SavedModel signature) gives that entry. Only the student side must
be tf_keras; the teacher only has to map TF tensors to TF tensors.
"""

import json
import os
import zipfile

import numpy as np
import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill._keras import keras

__all__ = ["SavedModelMember", "describe", "load_member", "load_member_outputs",
           "member_function", "TeacherError"]


class TeacherError(ValueError):
  """A teacher file or object that cannot be used; the message names it."""


def describe(member):
  """A short name for error messages: the model's name and its kind."""
  if isinstance(member, keras.Model):
    return f"tf_keras model {member.name!r}"
  if _keras3.is_keras3_object(member):
    return f"Keras 3 model {getattr(member, 'name', '?')!r}"
  if isinstance(member, SavedModelMember):
    return f"SavedModel {member.path}"
  return f"callable {getattr(member, '__name__', type(member).__name__)!r}"


def _single_output(out, what):
  if isinstance(out, dict):
    if len(out) != 1:
      raise TeacherError(f"{what} returns {len(out)} outputs ({', '.join(sorted(out))}); a "
                         "member must return one tensor z [batch, params].")
    out = next(iter(out.values()))
  if isinstance(out, (list, tuple)):
    if len(out) != 1:
      raise TeacherError(f"{what} returns {len(out)} outputs; a member must return one "
                         "tensor z [batch, params].")
    out = out[0]
  return out


def member_function(member, index=None):
  """The function x -> z [batch, params] that runs one member (see the module docstring).

  Args:
    member: a tf_keras model, a Keras 3 model (TensorFlow backend), a `SavedModelMember`
      or any callable x -> z.
    index: int or None, the member's position (for error messages).

  Returns:
    a Python function of a float Tensor x.

  Raises:
    TeacherError: the member is not callable, or a Keras 3 model on another backend.
  """
  what = f"member {index} ({describe(member)})" if index is not None else describe(member)
  if isinstance(member, keras.Model):
    return lambda x: member(x, training=False)
  if _keras3.is_keras3_object(member):
    _keras3.check_backend(f"Keras 3 {what}")
    return lambda x: _single_output(member(x, training=False), what)
  if not callable(member):
    raise TeacherError(f"Ensemble member {index} is of type {type(member).__name__}, not "
                       "a Keras model or a callable x -> z.")
  return lambda x: _single_output(member(x), what)


class SavedModelMember:
  """A SavedModel folder as a member: its serving signature, or its restored `__call__`.

  Args:
    path: str, the folder (holding saved_model.pb).
    signature: None (the default: "serving_default" if the folder has one, else the
      restored object's `__call__`) or a signature name.

  Raises:
    TeacherError: no usable signature or callable, or a signature with more than one
      input.
  """

  def __init__(self, path, signature=None):
    self.path = str(path)
    try:
      self._loaded = tf.saved_model.load(self.path)
    except (OSError, ValueError, tf.errors.OpError) as error:
      raise TeacherError(f"{self.path}: cannot load the SavedModel "
                         f"({str(error).splitlines()[0]}).") from error
    signatures = dict(getattr(self._loaded, "signatures", {}) or {})
    name = signature or ("serving_default" if "serving_default" in signatures else None)
    self._input = None
    if name is not None:
      if name not in signatures:
        raise TeacherError(f"{self.path} has no signature {name!r} (it has: "
                           f"{', '.join(sorted(signatures)) or 'none'}).")
      self._fn = signatures[name]
      inputs = self._fn.structured_input_signature[1]
      if len(inputs) != 1:
        raise TeacherError(f"{self.path}: signature {name!r} takes {len(inputs)} inputs "
                           f"({', '.join(sorted(inputs))}); a member takes one, x.")
      self._input, spec = next(iter(inputs.items()))
      self._dtype = spec.dtype
    elif callable(self._loaded):
      self._fn, self._dtype = self._loaded, None
    else:
      raise TeacherError(f"{self.path} has neither a serving signature nor a callable "
                         "(export it with a serving_default signature x -> z).")
    self.signature = name

  def __call__(self, x):
    if self._input is None:
      return self._fn(x)
    return self._fn(**{self._input: tf.cast(x, self._dtype)})


def _is_saved_model(path):
  return os.path.isdir(path) and (os.path.exists(os.path.join(path, "saved_model.pb")) or
                                  os.path.exists(os.path.join(path, "saved_model.pbtxt")))


#: Modules a `.keras` file's config may name (beyond those of `custom_objects`).
_SAFE_MODULE_ROOTS = ("keras", "tf_keras", "tfp_distill")


#: The largest config.json (uncompressed) a `.keras` file may hold. A ResNet-152's config
#: is about 0.3 MiB; a crafted file can inflate a few KiB to hundreds of MiB.
MAX_CONFIG_BYTES = 32 * 2 ** 20


def _refuse_unsafe_config(path, version, custom_objects):
  """Raises TeacherError if a `.keras` file's config.json could run code on loading.

  Keras' safe mode refuses Lambda bytecode, but tf_keras resolves the `module` a config
  names with importlib, whatever it is: a config naming TensorFlow's legacy Keras Lambda
  (`tensorflow.python.keras.layers.core`) loads bytecode with no safe-mode check, and
  the file's own metadata picks the loader. So every module named must lie under keras,
  tf_keras or tfp_distill (or be the module of one of `custom_objects`), and no function
  may be stored as a Python lambda.
  """
  try:
    with zipfile.ZipFile(path) as archive:
      size = archive.getinfo("config.json").file_size
      if size > MAX_CONFIG_BYTES:
        raise TeacherError(
            f"{path}: its config.json inflates to {size / 2 ** 20:.0f} MiB (a model's "
            f"architecture takes well under {MAX_CONFIG_BYTES // 2 ** 20} MiB): refused "
            "unread, as a decompression bomb would be.")
      config = json.loads(archive.read("config.json"))
  except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
    raise TeacherError(f"{path} has no readable config.json ({error}).") from error
  allowed = {getattr(o, "__module__", None) or type(o).__module__
             for o in (custom_objects or {}).values()}
  roots = _SAFE_MODULE_ROOTS + (("builtins",) if version.startswith("3") else ())

  def walk(node):
    if isinstance(node, dict):
      if node.get("class_name") == "__lambda__":
        raise TeacherError(f"{path} stores a Python lambda (refused: it would run code "
                           "from the file).")
      for key, value in node.items():
        if isinstance(value, str):
          if key.endswith("_type") and value == "lambda":
            raise TeacherError(f"{path} stores a Python lambda in {key!r} (refused: it "
                               "would run code from the file).")
          if (key == "module" or key.endswith("_module")) and value not in allowed and (
              value.split(".")[0] not in roots):
            raise TeacherError(f"{path} names the module {value!r}, outside keras, "
                               "tf_keras and tfp_distill (refused: loading it could run "
                               "code; pass the class in custom_objects if you trust it).")
        else:
          walk(value)
    elif isinstance(node, list):
      for value in node:
        walk(value)

  walk(config)


def load_member(path, custom_objects=None):
  """Loads one member from a file: a `.keras` file of either Keras, or a SavedModel folder.

  Which Keras wrote a `.keras` file is read from its metadata (tf_keras writes 2.x, Keras 3
  writes 3.x); both load with safe mode on, after a check of the file's config that
  closes a hole in tf_keras' safe mode (see `_refuse_unsafe_config`): no code from the
  file runs. A SavedModel is a program (TensorFlow's security model): load only
  SavedModels you trust.

  Args:
    path: str.
    custom_objects: dict, passed to the Keras loader.

  Returns:
    a tf_keras model, a Keras 3 model or a `SavedModelMember`.

  Raises:
    TeacherError: the path does not exist or is not a model; the message names it.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise TeacherError(f"Teacher file {path} does not exist.")
  if os.path.isdir(path):
    if _is_saved_model(path):
      return SavedModelMember(path)
    raise TeacherError(f"{path} is a folder but not a SavedModel (no saved_model.pb).")
  if path.endswith(".npz"):
    raise TeacherError(f"{path} holds arrays, not a model: precomputed members' outputs "
                       "are read with td.teachers.load_member_outputs (in the CLI: "
                       "`--teacher FILE.npz` alone).")
  if not path.endswith(".keras"):
    raise TeacherError(f"{path} is not a teacher model: expected a .keras file or a "
                       "SavedModel folder.")
  try:
    version = _keras3.keras_file_version(path)
  except ValueError as error:
    raise TeacherError(str(error)) from error
  _refuse_unsafe_config(path, version, custom_objects)
  try:
    if version.startswith("3"):
      return _keras3.load_model(path, custom_objects=custom_objects)
    return keras.models.load_model(path, compile=False, custom_objects=custom_objects,
                                   safe_mode=True)
  except _keras3.Keras3Error:
    raise
  except Exception as error:  # pylint: disable=broad-except
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise TeacherError(f"{path} (written by Keras {version}) could not be loaded: "
                       f"{first}") from error


def load_member_outputs(path, num_examples=None, key="z"):
  """The members' precomputed outputs from an `.npz`: z [n, members, params], float32.

  For teachers that live outside TensorFlow (e.g. logits written from PyTorch): row i
  must be the members' outputs at training input i.

  Args:
    path: str, an `.npz` with array `key` (loaded with allow_pickle=False).
    num_examples: None, or the number of inputs the rows must align with.
    key: str, the array's name.

  Returns:
    float32 NumPy array [n, members, params].

  Raises:
    TeacherError: a missing file or array, a wrong rank or length, NaN/Inf (the message
      says at which row and member), or a pickled array.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise TeacherError(f"Teacher file {path} does not exist.")
  try:
    with np.load(path, allow_pickle=False) as data:
      if key not in data.files:
        raise TeacherError(f"{path} has no array {key!r} (arrays: "
                           f"{', '.join(data.files) or 'none'}).")
      z = data[key]
  except ValueError as error:
    if isinstance(error, TeacherError):
      raise
    raise TeacherError(f"{path}: cannot read array {key!r} without unpickling "
                       f"(object arrays are refused): {error}") from error
  except (OSError, EOFError) as error:
    raise TeacherError(f"{path} is not an .npz file: {error}") from error
  if not np.issubdtype(z.dtype, np.number):
    raise TeacherError(f"{path}: {key} has dtype {z.dtype}, not numbers.")
  if z.ndim != 3:
    raise TeacherError(f"{path}: {key} must be [n, members, params], got shape "
                       f"{list(z.shape)}.")
  if num_examples is not None and len(z) != num_examples:
    raise TeacherError(f"{path}: {key} has {len(z)} rows but the training data has "
                       f"{num_examples}; row i must be the members' outputs at input i.")
  bad = ~np.isfinite(z)
  if bad.any():
    row, member, _ = np.argwhere(bad)[0]
    raise TeacherError(f"{path}: {key} has {int(bad.sum())} NaN/Inf values (first at row "
                       f"{row}, member {member}).")
  return z.astype(np.float32)
