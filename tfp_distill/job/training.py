"""Stages 3 and 4 of a job: the distillation inputs, the schedule, the student, and its
training (resumable by epoch, `td.callbacks.EpochBackup`)."""

import os

import numpy as np
import tensorflow as tf

from tfp_distill import callbacks as callbacks_lib
from tfp_distill import distiller as distiller_lib
from tfp_distill import ensemble as ensemble_lib
from tfp_distill import models as models_lib
from tfp_distill import parameterization as parameterization_lib
from tfp_distill import targets as targets_lib
from tfp_distill import teachers as teachers_lib
from tfp_distill import _keras3
from tfp_distill._keras import keras as tf_keras
from tfp_distill.job.config import DEFAULT_MIN_STEPS
from tfp_distill.job.config import OFF_DATA_KINDS
from tfp_distill.job.config import OFF_DATA_MIN_STEPS
from tfp_distill.job.config import DistillError
from tfp_distill.job.config import parse_extra_inputs
from tfp_distill.job.config import student_keras

__all__ = ["NORMALIZED_IMAGE_METHODS", "Training", "build_student",
           "check_output_normalization", "epoch_batches", "extra_inputs_for", "keras_of",
           "make_strategy", "off_data", "output_normalization_for", "schedule"]


#: The default share of the training rows of each kind of extra input.
_DEFAULT_SHARE = {"mixup": 1.0, "far": 1.0, "box": 1.0, "marginal": 1.0}


def extra_inputs_for(config, method, x, teacher_models, aux, rng):
  """(what, extra inputs [k, ...]) beyond the training rows (see `extra_inputs`)."""
  parts_spec = parse_extra_inputs(config.extra_inputs)
  if parts_spec == "auto":
    parts_spec = parse_extra_inputs(method.extra_inputs) if teacher_models else []
  if parts_spec and not teacher_models:
    raise DistillError(f"extra_inputs={config.extra_inputs!r} needs the teacher's models "
                       "to label the extra inputs; precomputed outputs cover the training "
                       "rows only.")
  if aux is not None and not teacher_models:
    raise DistillError("--aux inputs are labelled by the teacher: they need teacher "
                       "models, not precomputed outputs.")
  parts, names = [], []
  for kind, share in parts_spec:
    if kind == "jitter":
      copies = config.jitter_copies if share is None else share
      count = int(round(copies * len(x)))
      rows = x[rng.integers(0, len(x), count)] if share is not None else np.repeat(
          x, config.jitter_copies, axis=0)
      scale = config.jitter_scale * x.std(axis=0, keepdims=True)
      parts.append((rows + scale * rng.normal(size=rows.shape)).astype(np.float32))
    else:
      count = int(round((_DEFAULT_SHARE[kind] if share is None else share) * len(x)))
      make = {"mixup": targets_lib.mixup_inputs, "far": targets_lib.far_inputs,
              "box": targets_lib.box_inputs, "marginal": targets_lib.marginal_inputs}[kind]
      parts.append(make(x, count, rng).astype(np.float32))
    names.append(kind)
  if aux is not None:
    if aux.x.shape[1:] != x.shape[1:]:
      raise DistillError(f"--aux {aux.name}: inputs of shape {list(aux.x.shape[1:])}, the "
                         f"training inputs have {list(x.shape[1:])}.")
    parts.append(aux.x.astype(np.float32))
    names.append("aux")
  return "+".join(names) or "none", (np.concatenate(parts) if parts else x[:0])


#: Classification methods whose students of image inputs start at the members'
#: centred logits by default (`output_normalization_for`): on four ensembles of
#: Fashion-MNIST members, more accurate (+0.003 to +0.006), lower NLL, mutual information
#: on the test images nearer the ensemble's, OOD AUROC as good (docs/studies/
#: ood-inputs.md, the fourth test). Tabular rows: off (far-point AUROC fell on wine and
#: breast cancer).
NORMALIZED_IMAGE_METHODS = ("gaussian-logits",)


def output_normalization_for(config, method, family, head, z_rows, image_inputs):
  """(normalization or None, how): where the student's raw params start.

  `td.parameterization.output_normalization` of the teacher's targets on the training
  rows: the location and spread of the members' outputs (regression, in the user's
  units) or of their K - 1 centred logits (`family` with a reference class:
  gaussian-logits). Not on the extra inputs: on far ones the members' extrapolations
  spread widely, and would set the spread's scale far above the data's (an untrained
  student would start with that epistemic variance on the data).

  `config.output_normalization`: "auto" is on for regression students and for the
  `NORMALIZED_IMAGE_METHODS` with image inputs, off otherwise; "on" for any student
  with a Normal head over the members' outputs; "off".

  Args:
    z_rows: float array [rows, members, ...], the teacher's targets on the training rows.

  Returns:
    (mean, variance) arrays [params_size] or None, and how it was decided (a string).

  Raises:
    DistillError: "on" for a method whose head has no such normalization (a Dirichlet).
  """
  setting = config.output_normalization
  if setting == "auto":
    on = method.task == "regression" or (image_inputs
                                         and method.name in NORMALIZED_IMAGE_METHODS)
    how = ("auto: " + ("regression targets" if method.task == "regression" else
                       f"{method.name} with image inputs" if on else
                       f"off for {method.name}" + (" with image inputs" if image_inputs
                                                   else " with tabular inputs")))
  else:
    on, how = setting == "on", setting
  if not on:
    return None, how
  check_output_normalization(method, head)
  z = np.asarray(z_rows)
  if method.task == "classification":         # K logits -> the K - 1 centred ones
    z = np.asarray(method.decomposition_family(family).params(z))
  return parameterization_lib.output_normalization(head, z), how


def check_output_normalization(method, head):
  """Refuses, in one line, `output_normalization="on"` for a student whose `head` is not
  a Normal over the members' outputs (a Dirichlet, a Categorical): nothing to start at
  their location."""
  normal = (parameterization_lib.NormalParameterization,
            parameterization_lib.MultivariateNormalTriLParameterization)
  if not isinstance(head, normal):
    raise DistillError(f"output_normalization='on': {method.name}'s student has no Normal "
                       f"head over the members' outputs to start at their location (its "
                       f"head is a {type(head).__name__}); use \"auto\" or \"off\".")


def off_data(extra_kind):
  """Whether the extra inputs `extra_inputs_for` names ("mixup+far+aux") include inputs
  off the data: far, box, marginal or the user's aux rows."""
  return any(kind in OFF_DATA_KINDS for kind in extra_kind.split("+"))


def schedule(config, n_fit, off_data_inputs=False):
  """(epochs, passes per epoch, patience, how): the training length, from the data
  unless given.

  Args:
    config: `DistillConfig` (epochs, min_steps, min_steps_per_epoch, batch_size,
      patience).
    n_fit: int, the rows trained on (extra inputs included).
    off_data_inputs: bool, whether inputs off the data (far, box, marginal, aux) are among them
      (`off_data`): with `min_steps` None the plan is then `OFF_DATA_MIN_STEPS` steps,
      not `DEFAULT_MIN_STEPS`.
  """
  steps = -(-n_fit // config.batch_size)
  passes = max(1, -(-config.min_steps_per_epoch // steps))
  per_epoch = steps * passes
  if config.epochs is not None:
    epochs, how = config.epochs, "given"
  else:
    min_steps = config.min_steps
    why = ""
    if min_steps is None:
      min_steps = OFF_DATA_MIN_STEPS if off_data_inputs else DEFAULT_MIN_STEPS
      why = " (inputs off the data need more)" if off_data_inputs else ""
    epochs = int(min(1000, max(30, -(-min_steps // per_epoch))))
    how = f"at least {min_steps} steps{why} and 30 epochs"
  how += (f"; an epoch is {passes} passes over the {n_fit} rows ({per_epoch} steps)"
          if passes > 1 else f"; {per_epoch} steps per epoch")
  patience = config.patience if config.patience is not None else 5
  return epochs, passes, patience, how


def make_strategy(name):
  """The `tf.distribute` strategy of `DistillConfig.strategy` (`STRATEGIES`)."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi-worker":
    if not os.environ.get("TF_CONFIG"):
      raise DistillError("--strategy multi-worker needs TF_CONFIG in the environment "
                         "(see docs/guide/distributed.md).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def _image_filters(shape):
  """The conv blocks of builtin:small_cnn that fit an image (each needs 4x4 or more)."""
  filters, size = [], min(shape[0], shape[1])
  for f in (16, 32):
    if size < 4:
      break
    filters.append(f)
    size = (size - 2) // 2
  return tuple(filters)


class _Keras:
  """What a student of one Keras is built and trained with."""

  def __init__(self, version):
    self.version = version
    if version == 3:
      try:
        self.keras = _keras3.tensorflow_module("the Keras 3 student")
        from tfp_distill import keras3
      except ImportError as error:
        raise DistillError(f"{error} (--keras 2 builds a tf_keras student).") from None
      self.callbacks, self.distiller = keras3.callbacks, keras3.Distiller
    else:
      self.keras, self.callbacks = tf_keras, callbacks_lib
      self.distiller = distiller_lib.Distiller

  def is_model(self, obj):
    if self.version == 3:
      return _keras3.is_keras3_object(obj) and isinstance(obj, self.keras.Model)
    return isinstance(obj, tf_keras.Model)


def keras_of(config):
  """The student's Keras (`student_keras(config)`): its module, callbacks, Distiller.

  Raises:
    DistillError: Keras 3 asked for but missing or on another backend (naming --keras).
  """
  return _Keras(student_keras(config))


def build_student(config, input_shape, head, params_size, pixel_scale, x_fit,
                  output_normalization=None):
  """(name, student model) of `config.student`, in the student's Keras (`keras_of`)."""
  keras_ = keras_of(config)
  keras = keras_.keras
  name = config.student
  if name == "auto":
    name = "builtin:small_cnn" if len(input_shape) == 3 else "builtin:mlp"
  seed = config.seed + 10 ** 6
  scale = 1.0 / 255.0 if pixel_scale == 255 else None
  if name == "builtin:mlp":
    if len(input_shape) != 1:
      raise DistillError(f"builtin:mlp takes feature vectors; these inputs have shape "
                         f"{list(input_shape)} (try builtin:small_cnn).")
    # Over every input the student is trained on: standardised on the training rows
    # alone, far inputs reach magnitudes that cost the student (yacht, far inputs, one
    # seed: far-point AUROC 0.66 against 0.86).
    normalization = (x_fit.mean(0), x_fit.var(0))
    return name, models_lib.mlp(input_shape, (150,), params_size, head=head, seed=seed,
                                name="student", input_normalization=normalization,
                                output_normalization=output_normalization,
                                keras_version=keras_.version)
  if name in ("builtin:small_cnn", "builtin:resnet18"):
    if len(input_shape) != 3:
      raise DistillError(f"{name} takes images [height, width, channels]; these inputs "
                         f"have shape {list(input_shape)} (try builtin:mlp).")
    if name == "builtin:small_cnn":
      filters = _image_filters(input_shape)
      if not filters:
        raise DistillError(f"builtin:small_cnn needs images of at least 4x4 pixels, got "
                           f"{list(input_shape)}.")
      return name, models_lib.small_cnn(input_shape, params_size, head=head,
                                        filters=filters, dense_units=64, seed=seed,
                                        name="student", input_scale=scale,
                                        keras_version=keras_.version,
                                        output_normalization=output_normalization)
    return name, models_lib.resnet18_cifar(input_shape, params_size, head=head, seed=seed,
                                           name="student", input_scale=scale,
                                           keras_version=keras_.version,
                                           output_normalization=output_normalization)
  if not os.path.exists(name):
    raise DistillError(f"Student backbone {name} does not exist.")
  backbone = teachers_lib.load_member(name)
  if not keras_.is_model(backbone):
    other = 2 if keras_.version == 3 else 3
    raise DistillError(
        f"Student backbone {name} is a {teachers_lib.describe(backbone)}; the student is "
        f"built with {'Keras 3' if keras_.version == 3 else 'tf_keras'} (--keras "
        f"{keras_.version}): save the backbone with it, or pass --keras {other} for a "
        f"{'Keras 3' if other == 3 else 'tf_keras'} backbone.")
  inputs = keras.Input(input_shape)
  features = backbone(inputs)
  if len(features.shape) != 2:
    features = keras.layers.Flatten()(features)
  params = keras.layers.Dense(params_size, name="head_params")(features)
  params = models_lib.output_layer(keras, params, output_normalization)
  return name, keras.Model(inputs, head(params), name="student")


def epoch_batches(x, z, batch_size, seed, start_epoch, epochs, passes=1):
  """Batches (x, z) for epochs start_epoch .. epochs - 1, each in its own fixed order.

  An epoch is `passes` passes over the rows (small data sets: enough steps per epoch
  that Keras' per-epoch work, validation included, does not dominate); pass p of epoch
  e reads the rows in the order `td.ensemble.member_permutation(n, seed, e * passes +
  p)`. The order is a function of the epoch, not of how many epochs this process has
  run, so a run resumed at epoch e sees exactly the batches an uninterrupted run sees.

  Returns:
    (tf.data.Dataset of all the remaining epochs' batches, batches per epoch).
  """
  n = len(x)
  steps = -(-n // batch_size)
  x_t, z_t = tf.constant(x), tf.constant(z)

  def one_pass(index):
    order = ensemble_lib.member_permutation(n, seed, index)
    return tf.data.Dataset.range(steps).map(
        lambda b: (tf.gather(x_t, order[b * batch_size:(b + 1) * batch_size]),
                   tf.gather(z_t, order[b * batch_size:(b + 1) * batch_size])))

  data = (tf.data.Dataset.range(start_epoch * passes, epochs * passes,
                                output_type=tf.int64)
          .flat_map(one_pass).prefetch(tf.data.AUTOTUNE))
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return data.with_options(options), steps * passes


def _adam(keras, learning_rate, epochs, examples, batch_size):
  steps = epochs * -(-examples // batch_size)
  return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
      learning_rate, decay_steps=steps))


class Training:
  """The student's training: built under the strategy, resumable by epoch."""

  def __init__(self, config, strategy, method, family, pixel_scale, x_fit, z_fit, x_val,
               z_val, epochs, passes, patience, folder, fingerprint, n_rows=None,
               tag=""):
    """`x_fit`/`z_fit` hold the training rows first (`n_rows` of them; all if None), then
    the extra inputs the teacher labelled. `tag` tells apart the backups and logs of the
    candidates of one job (`backup{tag}`, `logs{tag}` in the folder)."""
    self.tag = tag
    self.config, self.strategy, self.method = config, strategy, method
    self.x_fit, self.z_fit, self.x_val, self.z_val = x_fit, z_fit, x_val, z_val
    self.epochs, self.passes, self.patience = epochs, passes, patience
    self.keras = keras_of(config)
    callbacks = self.keras.callbacks
    head, params_size = method.head(family, keras_version=self.keras.version)
    self.loss = method.loss(family, temperature=config.temperature,
                            keras_version=self.keras.version)
    self.decomposition_family = method.decomposition_family(family)
    annealing = method.annealing(epochs, config.temperature)
    #: None, or {"initial", "final", "start_epoch", "end_epoch"} of the loss's temperature.
    self.annealing = (None if annealing is None else
                      dict(zip(("initial", "final", "start_epoch", "end_epoch"), annealing)))
    self.callbacks = []
    anneal_end = 0
    if annealing is not None:
      self.callbacks.append(callbacks.TemperatureAnnealing(self.loss, *annealing))
      anneal_end = annealing[3]
    # The held-out loss is comparable across epochs only once the temperature is final.
    self.stopping = callbacks.ResumableEarlyStopping("val_loss", patience, anneal_end)
    self.folder = folder
    self.backup = None
    if folder is not None:
      self.backup = callbacks.EpochBackup(folder.reserve(f"backup{tag}"),
                                          stateful=[self.stopping], fingerprint=fingerprint)
    # From the training rows only (output_normalization_for).
    normalization, how = output_normalization_for(
        config, method, family, head, z_fit[:n_rows], image_inputs=x_fit.ndim == 4)
    #: {"on": bool, "how": str}: whether the student's raw params start at the targets'.
    self.output_normalization = {"on": normalization is not None, "how": how}
    with strategy.scope():
      self.student_name, self.student = build_student(
          config, x_fit.shape[1:], head, params_size, pixel_scale, x_fit, normalization)
      # Targets are precomputed: the Distiller never runs a teacher, but its train step
      # stops a divergent run at the step, with the batch's statistics.
      self.trainer = self.keras.distiller(self.student, None, self.loss)
      self.trainer(x_fit[:1])
      self.trainer.compile(optimizer=_adam(self.keras.keras, config.learning_rate,
                                           epochs * passes, len(x_fit), config.batch_size))
      self.start_epoch = (self.backup.restore(self.trainer)
                          if config.resume and self.backup is not None else 0)

  def run(self):
    """Trains; returns the history (every epoch's, those before a resume included)."""
    config = self.config
    callbacks_of_keras = self.keras.callbacks
    finite = callbacks_of_keras.StopOnNonFiniteLoss()
    history = {}
    if self.backup is not None and self.backup.finished:
      self.stopping.restore_best(self.trainer)     # killed after training had ended
      return self.backup.history
    if self.start_epoch < self.epochs:
      train_data, steps = epoch_batches(self.x_fit, self.z_fit, config.batch_size,
                                        config.seed + 7, self.start_epoch, self.epochs,
                                        self.passes)
      val_data = tf.data.Dataset.from_tensor_slices((self.x_val, self.z_val)).batch(1024)
      callbacks = self.callbacks + [finite, self.stopping]
      if self.backup is not None:
        callbacks.append(self.backup)
        callbacks.append(callbacks_of_keras.EpochSummaries(self.folder.reserve(f"logs{self.tag}")))
      callbacks.append(callbacks_of_keras.ProgressBar("student",
                                                      disable=not config.verbose))
      result = self.trainer.fit(train_data, validation_data=val_data, epochs=self.epochs,
                                initial_epoch=self.start_epoch, steps_per_epoch=steps,
                                verbose=0, callbacks=callbacks, shuffle=False)
      history = {k: [float(v) for v in values] for k, values in result.history.items()}
    if finite.where is not None:
      raise DistillError(f"{finite.message()} Nothing was saved (--learning-rate sets "
                         "the rate).")
    if self.backup is not None:
      return self.backup.history
    return history
