"""The one place that imports Keras 3 (`import keras`), lazily: users' teachers, td.keras3.

Keras 3 is what `import keras` gives with TensorFlow >= 2.16. With the TensorFlow backend
a Keras 3 model called on TF tensors returns TF tensors, inside a `tf.function` or a
`tf.data` map too, so the teacher side runs Keras 3 members, and `td.keras3` builds Keras 3
students on the same pure functions as the tf_keras ones (`_keras.py`; `tfp.layers` works
only with the Keras 2 API). Nothing here imports Keras 3 unless a Keras 3 object or file is
met or `td.keras3` is imported: a process that never sees one never imports it, and
`import tfp_distill` works without Keras 3 or with Keras 3 on another backend.
"""

import json
import os
import sys
import zipfile

__all__ = ["Keras3Error", "is_keras3_object", "check_backend", "keras_file_version",
           "load_model", "module", "set_random_seed", "tensorflow_module"]


class Keras3Error(ValueError):
  """A Keras 3 teacher that cannot run here (another backend, or no Keras 3 installed)."""


def _keras3():
  try:
    import keras
  except ImportError as error:
    backend = os.environ.get("KERAS_BACKEND")
    if backend and backend != "tensorflow":
      raise Keras3Error(f"`import keras` failed with KERAS_BACKEND={backend} ({error}); "
                        "tfp_distill runs Keras 3 on the TensorFlow backend: set "
                        "KERAS_BACKEND=tensorflow.") from error
    raise Keras3Error("This needs Keras 3 (`pip install keras`), which is not "
                      "installed.") from error
  if not hasattr(keras, "Layer") or not str(keras.__version__).startswith("3"):
    raise Keras3Error(f"`import keras` gives Keras {keras.__version__}, not Keras 3.")
  return keras


def module():
  """The Keras 3 package (`import keras`), imported now; `Keras3Error` if it is missing.

  For code outside the library that builds Keras 3 models (a teacher written the way a
  user would), so that Keras 3 is imported in this one place.
  """
  return _keras3()


def tensorflow_module(what="td.keras3"):
  """Keras 3 on the TensorFlow backend, imported now (what `td.keras3` builds on).

  Raises:
    ImportError: in one line, naming KERAS_BACKEND: Keras 3 runs on another backend (jax,
      torch, numpy, openvino), or is not installed.
  """
  try:
    keras = _keras3()
  except Keras3Error as error:
    raise ImportError(f"{what}: {error}") from None
  backend = keras.backend.backend()
  if backend != "tensorflow":
    raise ImportError(
        f"{what} needs Keras 3's TensorFlow backend, but this process runs KERAS_BACKEND="
        f"{backend}: set KERAS_BACKEND=tensorflow before importing keras (or use the "
        "tf_keras students: td.heads, td.losses).") from None
  return keras


def set_random_seed(seed):
  """Seeds Keras 3's global random state, if Keras 3 is imported (else does nothing)."""
  keras = sys.modules.get("keras")
  utils = getattr(keras, "utils", None) if keras is not None else None
  if hasattr(keras, "Layer") and hasattr(utils, "set_random_seed"):
    utils.set_random_seed(seed)


def is_keras3_object(obj):
  """Whether obj is a Keras 3 layer or model (False when Keras 3 was never imported)."""
  keras = sys.modules.get("keras")
  layer = getattr(keras, "Layer", None) if keras is not None else None
  return isinstance(layer, type) and isinstance(obj, layer)


def check_backend(what="A Keras 3 teacher"):
  """Raises `Keras3Error` unless Keras 3 runs on the TensorFlow backend in this process."""
  backend = _keras3().backend.backend()
  if backend != "tensorflow":
    raise Keras3Error(
        f"{what} must run on Keras 3's TensorFlow backend, but this process uses "
        f"{backend!r}: set KERAS_BACKEND=tensorflow before importing keras, or write the "
        "members' outputs to an .npz (z [n, members, params]) and distil from that.")


def keras_file_version(path):
  """The Keras version that wrote a `.keras` file ("3.x.y" or "2.x.y"), from its metadata.

  Raises:
    ValueError: the file is not a `.keras` zip archive with a metadata.json.
  """
  try:
    with zipfile.ZipFile(path) as archive:
      meta = json.loads(archive.read("metadata.json"))
  except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
    raise ValueError(f"{path} is not a Keras model file (.keras zip archive with "
                     f"metadata.json): {error}") from error
  version = str(meta.get("keras_version", ""))
  if not version:
    raise ValueError(f"{path}: metadata.json has no keras_version.")
  return version


def load_model(path, custom_objects=None):
  """Loads a Keras 3 `.keras` file with `safe_mode=True` (no code from the file runs)."""
  keras = _keras3()
  check_backend(f"The Keras 3 model {path}")
  return keras.saving.load_model(path, custom_objects=custom_objects, compile=False,
                                 safe_mode=True)
