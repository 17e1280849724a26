"""Backbones for members and students (Keras functional models).

- `mlp`: a multilayer perceptron for vector inputs (toy and UCI regression).
- `small_cnn`: a small convolutional network for 28x28 images (Fashion-MNIST), cheap
  enough to train ensembles of on a few CPU cores.
- `resnet18_cifar`: the CIFAR variant of ResNet-18 [1] for 32x32 images.
- `batch_ensemble_cnn`: `small_cnn` as a BatchEnsemble [2] of E members, x -> member
  logits [batch, E, K] (the student of Nam et al.'s ODS distillation).

Every backbone maps x to a flat params tensor [batch, output_size] and optionally applies
a distribution head (`tfp_distill.heads`) to it. Every initializer is seeded from `seed`
(the i-th seeded layer, in construction order, uses seed + i), so two calls with the same
seed build models with identical weights.

`mlp`, `small_cnn` and `resnet18_cifar` are built with either Keras (`keras_version`):
tf_keras (2, with `td.heads`) or Keras 3 (3, TensorFlow backend, with `td.keras3.heads`;
`td.keras3.models` has them with that default). By default a Keras 3 head makes a Keras 3
model. The two Keras draw seeded initial weights differently: the same seed gives the
same architecture, not the same weights.

#### References

[1]: He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016.
     arXiv:1512.03385.

[2]: Wen, Tran, Ba. BatchEnsemble: an alternative approach to efficient ensemble and
     lifelong learning. ICLR 2020. arXiv:2002.06715.
"""

import numpy as np
import tensorflow as tf

from tfp_distill import _keras3
from tfp_distill._keras import keras

__all__ = ["mlp", "small_cnn", "resnet18_cifar", "batch_ensemble_cnn", "RandomSign",
           "DenseBatchEnsemble", "Conv2DBatchEnsemble", "TileMembers", "MembersToAxis",
           "keras_module", "output_layer"]

# PyTorch's BatchNorm defaults, which the published CIFAR ResNet numbers use (Keras'
# `momentum` is 1 - PyTorch's `momentum`).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def keras_module(keras_version=None, head=None):
  """The Keras a backbone is built with: tf_keras or Keras 3 (TensorFlow backend).

  Args:
    keras_version: None, 2 or 3. None: 3 when `head` is a Keras 3 layer, else 2.
    head: None or the head the backbone ends in.

  Returns:
    the `tf_keras` module (2) or the Keras 3 `keras` module (3).

  Raises:
    ValueError: keras_version is not None, 2 or 3.
    ImportError: 3 on another Keras 3 backend, or without Keras 3 (see `td.keras3`).
  """
  if keras_version is None:
    keras_version = 3 if _keras3.is_keras3_object(head) else 2
  if keras_version not in (2, 3):
    raise ValueError(f"keras_version must be 2 (tf_keras) or 3 (Keras 3), got "
                     f"{keras_version!r}.")
  return keras if keras_version == 2 else _keras3.tensorflow_module("td.models(keras_version=3)")


def _seeded(initializer, seed, i):
  return initializer(seed=None if seed is None else seed + i)


def _check_image_size(input_shape, filters):
  """Each conv-pool block needs a feature map of at least 4x4 (3x3 'valid' conv, 2x2 pool)."""
  height, width = int(input_shape[0]), int(input_shape[1])
  for i, _ in enumerate(filters):
    if height < 4 or width < 4:
      raise ValueError(
          f"input_shape {tuple(input_shape)} is too small for filters {tuple(filters)}: "
          f"block {i} gets a {height}x{width} feature map, needs at least 4x4.")
    height, width = (height - 2) // 2, (width - 2) // 2


def _input_layers(keras_lib, inputs, input_scale=None, input_normalization=None):
  """The model's first layers: a Rescaling by `input_scale` (e.g. 1/255 for raw pixels)
  and/or a Normalization to (x - mean) / sqrt(variance) (`input_normalization`: (mean,
  variance) arrays of one row's shape). Both are saved with the model, so it takes the
  inputs its members take."""
  h = inputs
  if input_scale is not None and float(input_scale) != 1.0:
    h = keras_lib.layers.Rescaling(float(input_scale), name="input_scale")(h)
  if input_normalization is not None:
    mean, variance = (np.asarray(a, np.float32) for a in input_normalization)
    h = keras_lib.layers.Normalization(mean=mean, variance=np.maximum(variance, 1e-12),
                                       name="input_normalization")(h)
  return h


def output_layer(keras_lib, params, output_normalization=None):
  """params -> mean + sqrt(variance) * params (an inverted Normalization layer, saved with
  the model), or params unchanged for None. `output_normalization`: (mean, variance)
  arrays [params_size] (`td.parameterization.output_normalization`)."""
  if output_normalization is None:
    return params
  mean, variance = (np.asarray(a, np.float32) for a in output_normalization)
  return keras_lib.layers.Normalization(mean=mean, variance=variance, invert=True,
                                        name="output_normalization")(params)


def mlp(input_shape, hidden_units, output_size, head=None, activation="relu", seed=None,
        name=None, input_scale=None, input_normalization=None, keras_version=None,
        output_normalization=None):
  """A multilayer perceptron x -> params [batch, output_size] (-> head(params)).

  Args:
    input_shape: tuple, shape of one x (e.g. (1,) or (features,)).
    hidden_units: sequence of ints, widths of the hidden layers.
    output_size: int, size of the last Dense layer (a family's or head's params_size).
    head: None, or a Keras layer applied to the params (a distribution head).
    activation: str, hidden activation.
    seed: int or None, seeds the Glorot initializers (layer i uses seed + i).
    name: model name.
    input_scale: None or float, multiply the inputs by it first (a Rescaling layer).
    input_normalization: None or (mean, variance), arrays of one input's shape: the
      model standardises its inputs itself (a Normalization layer, saved with it).
    keras_version: None, 2 (tf_keras) or 3 (Keras 3); None: 3 for a Keras 3 head, else
      2 (`keras_module`).
    output_normalization: None or (mean, variance) arrays [output_size]: the last
      Dense layer's output h becomes mean + sqrt(variance) * h (`output_layer`; for
      regression targets in a user's units, `td.parameterization.output_normalization`).

  Returns:
    keras.Model (of that Keras).
  """
  keras = keras_module(keras_version, head)  # pylint: disable=redefined-outer-name

  def init(i):
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)

  inputs = keras.Input(shape=tuple(input_shape))
  h = _input_layers(keras, inputs, input_scale, input_normalization)
  for i, units in enumerate(hidden_units):
    h = keras.layers.Dense(units, activation=activation, kernel_initializer=init(i))(h)
  out = keras.layers.Dense(output_size, kernel_initializer=init(len(hidden_units)))(h)
  out = output_layer(keras, out, output_normalization)
  if head is not None:
    out = head(out)
  return keras.Model(inputs, out, name=name)


def small_cnn(input_shape=(28, 28, 1), output_size=10, head=None, filters=(32, 64),
              dense_units=128, dropout=0.0, seed=None, name=None, input_scale=None,
              keras_version=None, output_normalization=None):
  """A small CNN for 28x28 images x [batch, 28, 28, 1] -> params [batch, output_size].

  ```none
  for f in filters:  conv 3x3 (f, 'valid', bias) -> relu -> max-pool 2x2
  flatten -> dense (dense_units) -> relu -> dropout -> dense (output_size) [-> head]
  ```

  With the defaults the feature maps are 28x28x1 -> 26x26x32 -> 13x13x32 -> 11x11x64 ->
  5x5x64 -> 1600 -> 128 -> 10, and the model has

  ```none
  layer      parameters               multiply-adds per image
  conv 1     3*3*1*32 + 32  =    320  26*26 * 3*3*1*32  =   194,688
  conv 2     3*3*32*64 + 64 = 18,496  11*11 * 3*3*32*64 = 2,230,272
  dense 1    1600*128 + 128 = 204,928   1600*128        =   204,800
  dense 2    128*10 + 10    =  1,290    128*10          =     1,280
  total                      225,034                      2,631,040
  ```

  i.e. 225,034 parameters and about 2.6 million multiply-adds per image (biases,
  activations and pooling not counted): the Keras MNIST convnet example with a hidden
  dense layer, cheap enough to train ensemble members on a CPU.

  Args:
    input_shape: tuple (height, width, channels), shape of one image; inputs should be
      scaled to [0, 1].
    output_size: int, size of the last Dense layer (number of classes, or a head's
      params_size).
    head: None, or a Keras layer applied to the params [batch, output_size] (a
      distribution head).
    filters: sequence of ints, the number of filters of each conv-relu-pool block.
    dense_units: int, width of the hidden dense layer.
    dropout: float in [0, 1), dropout rate before the last Dense layer (0: none).
    seed: int or None, seeds the Glorot initializers (the i-th conv or dense layer uses
      seed + i) and the dropout (seed + number of layers).
    name: model name.
    input_scale: None or float, multiply the inputs by it first (e.g. 1/255 for raw
      0-255 pixels; a Rescaling layer saved with the model).
    keras_version: None, 2 (tf_keras) or 3 (Keras 3); see `mlp`.
    output_normalization: None or (mean, variance) arrays [output_size]; see `mlp`.

  Returns:
    keras.Model: x [batch, height, width, channels] -> params [batch, output_size], or
    the head's output (e.g. a distribution with batch shape [batch]).

  Raises:
    ValueError: if `dropout` is not in [0, 1), or the image is too small for `filters`
      (each block needs a feature map of at least 4x4: a 3x3 'valid' conv, then a 2x2
      pool).

  #### Examples

  ```python
  member = td.models.small_cnn(seed=0)                       # logits [batch, 10]
  Head = td.heads.NormalHead
  student = td.models.small_cnn(output_size=Head.params_size(10), head=Head(10), seed=1)
  ```
  """
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
  _check_image_size(input_shape, filters)
  keras = keras_module(keras_version, head)  # pylint: disable=redefined-outer-name
  inputs = keras.Input(shape=tuple(input_shape))
  h = _input_layers(keras, inputs, input_scale)
  for i, f in enumerate(filters):
    h = keras.layers.Conv2D(
        int(f), 3, padding="valid", activation="relu",
        kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, i),
        name=f"conv{i + 1}")(h)
    h = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(h)
  n = len(filters)
  h = keras.layers.Flatten(name="flatten")(h)
  h = keras.layers.Dense(
      int(dense_units), activation="relu",
      kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, n),
      name="dense1")(h)
  if dropout > 0:
    h = keras.layers.Dropout(float(dropout), seed=None if seed is None else seed + n + 2,
                             name="dropout")(h)
  out = keras.layers.Dense(
      int(output_size),
      kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, n + 1),
      name="params")(h)
  out = output_layer(keras, out, output_normalization)
  if head is not None:
    out = head(out)
  return keras.Model(inputs, out, name=name)


def resnet18_cifar(input_shape=(32, 32, 3), output_size=10, head=None, width=64, l2=0.0,
                   seed=None, name=None, input_scale=None, keras_version=None,
                   output_normalization=None):
  """ResNet-18 for CIFAR [1]: x [batch, 32, 32, 3] -> params [batch, output_size].

  The CIFAR variant of ResNet-18 (as in the widely used CIFAR ResNet code): the ImageNet
  stem (7x7 conv stride 2 and max-pool) is replaced by one 3x3 conv of stride 1, so the
  feature maps are 32x32 -> 32, 16, 8, 4 in the four stages.

  ```none
  stem:    conv 3x3 (w) -> BN -> relu
  stage s (s = 1..4, filters f = w * 2^(s-1), first stride 1, 2, 2, 2): 2 BasicBlocks
    BasicBlock(f, stride):  y = relu(BN(conv3x3(f, stride)(x)))
                            y = BN(conv3x3(f, 1)(y))
                            out = relu(y + shortcut(x))
    shortcut(x) = x, or BN(conv1x1(f, stride)(x)) where the shape changes (computed as
                  BN(conv1x1(f, 1)(x[:, ::stride, ::stride])), which is the same)
  head:    global average pooling -> dense (output_size) [-> head]
  ```

  where w = `width` (64 in [1]). Convolutions have no bias (BN follows each); BN uses
  momentum 0.9 and epsilon 1e-5 (PyTorch's defaults). With width 64 and 10 classes the
  model has 11,173,962 trainable parameters (plus 9,600 BN moving statistics) and
  555,422,720 (0.56 billion) multiply-adds per 32x32 image (convs and dense; BN,
  activations and pooling not counted).

  Args:
    input_shape: tuple (height, width, channels), shape of one image.
    output_size: int, size of the last Dense layer (number of classes, or a head's
      params_size).
    head: None, or a Keras layer applied to the params [batch, output_size] (a
      distribution head).
    width: int >= 1, filters of the first stage (stages have width, 2 width, 4 width,
      8 width filters); 64 is ResNet-18, smaller values give cheap test models.
    l2: float >= 0, L2 penalty `l2 * sum(w^2)` on every conv and dense kernel, added to
      `model.losses` (0: none). PyTorch's `weight_decay=wd` corresponds to `l2 = wd / 2`.
    seed: int or None, seeds the initializers (He normal for convs, Glorot uniform for
      the dense layer); the i-th conv or dense layer in construction order uses seed + i.
    name: model name.
    input_scale: None or float, multiply the inputs by it first (e.g. 1/255 for raw
      0-255 pixels; a Rescaling layer saved with the model).
    keras_version: None, 2 (tf_keras) or 3 (Keras 3); see `mlp`.
    output_normalization: None or (mean, variance) arrays [output_size]; see `mlp`.

  Returns:
    keras.Model: x [batch, height, width, channels] -> params [batch, output_size], or
    the head's output (e.g. a distribution with batch shape [batch]).

  Raises:
    ValueError: if `width` < 1 or `l2` < 0.

  #### Examples

  ```python
  member = td.models.resnet18_cifar(l2=2.5e-4, seed=0)          # logits [batch, 10]
  Head = td.heads.NormalHead
  student = td.models.resnet18_cifar(output_size=Head.params_size(10), head=Head(10))
  ```

  #### References

  [1]: He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016.
       arXiv:1512.03385.
  """
  width = int(width)
  if width < 1:
    raise ValueError(f"width must be an int >= 1, got {width}.")
  if not l2 >= 0:
    raise ValueError(f"l2 must be >= 0, got {l2}.")
  keras = keras_module(keras_version, head)  # pylint: disable=redefined-outer-name
  regularizer = keras.regularizers.L2(float(l2)) if l2 > 0 else None
  counter = [0]

  def next_seed():
    counter[0] += 1
    return None if seed is None else seed + counter[0] - 1

  def conv(x, filters, kernel_size, strides, layer_name):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.HeNormal(seed=next_seed()),
        kernel_regularizer=regularizer, name=layer_name)(x)

  def bn(x, layer_name):
    return keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=layer_name)(x)

  def basic_block(x, filters, strides, prefix):
    y = conv(x, filters, 3, strides, f"{prefix}_conv1")
    y = keras.layers.Activation("relu", name=f"{prefix}_relu1")(bn(y, f"{prefix}_bn1"))
    y = conv(y, filters, 3, 1, f"{prefix}_conv2")
    y = bn(y, f"{prefix}_bn2")
    if strides != 1 or x.shape[-1] != filters:
      if strides != 1:
        # A 1x1 conv of stride s reads x[:, ::s, ::s]: take that subsample first and
        # convolve with stride 1 (same outputs, weights and gradients). oneDNN's strided
        # 1x1 conv backward-filter kernel crashes or returns wrong gradients on CPU when
        # the input has fewer channels than its block (16 on AVX-512), e.g. width 8
        # (oneDNN issue #6035).
        x = keras.layers.MaxPooling2D(1, strides=strides, padding="same",
                                      name=f"{prefix}_proj_subsample")(x)
      x = conv(x, filters, 1, 1, f"{prefix}_proj")
      x = bn(x, f"{prefix}_proj_bn")
    y = keras.layers.Add(name=f"{prefix}_add")([y, x])
    return keras.layers.Activation("relu", name=f"{prefix}_out")(y)

  inputs = keras.Input(shape=tuple(input_shape))
  h = conv(_input_layers(keras, inputs, input_scale), width, 3, 1, "stem_conv")
  h = keras.layers.Activation("relu", name="stem_relu")(bn(h, "stem_bn"))
  for stage, (multiplier, strides) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2))):
    for block in range(2):
      h = basic_block(h, width * multiplier, strides if block == 0 else 1,
                      f"stage{stage + 1}_block{block + 1}")
  h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
  out = keras.layers.Dense(
      int(output_size), kernel_initializer=keras.initializers.GlorotUniform(
          seed=next_seed()),
      kernel_regularizer=regularizer, name="params")(h)
  out = output_layer(keras, out, output_normalization)
  if head is not None:
    out = head(out)
  return keras.Model(inputs, out, name=name)


# ----------------------------------------------------------------------------------------
# BatchEnsemble layers (Wen, Tran, Ba. BatchEnsemble. ICLR 2020. arXiv:2002.06715).
# ----------------------------------------------------------------------------------------


@keras.utils.register_keras_serializable(package="tfp_distill")
class RandomSign(keras.initializers.Initializer):
  """Entries +1 or -1 with equal probability (BatchEnsemble's fast-weight initializer).

  Args:
    seed: int or None.
  """

  def __init__(self, seed=None):
    self.seed = seed

  def __call__(self, shape, dtype=None, **kwargs):
    dtype = tf.as_dtype(dtype or keras.backend.floatx())
    if self.seed is None:
      bits = tf.random.uniform(shape, 0, 2, dtype=tf.int32)
    else:
      bits = tf.random.stateless_uniform(shape, [self.seed, 0], 0, 2, dtype=tf.int32)
    return tf.cast(2 * bits - 1, dtype)

  def get_config(self):
    """The initializer's constructor arguments ({"seed"}), for Keras serialization."""
    return {"seed": self.seed}


class _BatchEnsembleMixin:
  """Shared pieces: the member-major layout of the batch and the fast weights."""

  def _init_batch_ensemble(self, ensemble_size, fast_weight_initializer):
    ensemble_size = int(ensemble_size)
    if ensemble_size < 1:
      raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}.")
    self.ensemble_size = ensemble_size
    self.fast_weight_initializer = keras.initializers.get(fast_weight_initializer)

  def _fast_weights(self, in_size, out_size, use_bias):
    e = self.ensemble_size
    self.alpha = self.add_weight("alpha", [e, in_size],
                                 initializer=self.fast_weight_initializer)
    self.gamma = self.add_weight("gamma", [e, out_size],
                                 initializer=self.fast_weight_initializer)
    self.ensemble_bias = (self.add_weight("ensemble_bias", [e, out_size],
                                          initializer="zeros") if use_bias else None)

  def _split_members(self, x):
    """[E * batch, ...] -> [E, batch, ...]; asserts the batch divides by E."""
    e = self.ensemble_size
    n = tf.shape(x)[0]
    check = tf.debugging.assert_equal(
        n % e, 0, message=f"{type(self).__name__}: the batch must be ensemble_size ({e}) "
                          "times the per-member batch (member-major layout)")
    with tf.control_dependencies([check]):
      return tf.reshape(x, tf.concat([[e, n // e], tf.shape(x)[1:]], axis=0))

  @staticmethod
  def _merge_members(y):
    shape = tf.shape(y)
    return tf.reshape(y, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))

  def _per_member(self, v, rank):
    """[E, C] -> [E, 1, ..., 1, C] to broadcast over [E, batch, ..., C]."""
    return tf.reshape(v, [self.ensemble_size] + [1] * (rank - 2) + [-1])

  def _batch_ensemble_config(self):
    return {"ensemble_size": self.ensemble_size,
            "fast_weight_initializer": keras.initializers.serialize(
                self.fast_weight_initializer)}


@keras.utils.register_keras_serializable(package="tfp_distill")
class DenseBatchEnsemble(_BatchEnsembleMixin, keras.layers.Layer):
  """Dense layer of an ensemble of E members sharing W through rank-1 fast weights.

  ```none
  member e:  W_e = W * (alpha_e gamma_e^T)
             y = ((x * alpha_e) W) * gamma_e + b_e         (= x W_e + b_e)
  ```
  The batch is member-major: [E * batch, in], rows e * batch .. (e + 1) * batch - 1 go
  through member e (tile the inputs E times to run every member on the same x).

  Args:
    units: int, output size.
    ensemble_size: int E.
    activation: Keras activation.
    use_bias: bool, per-member biases b_e.
    kernel_initializer: initializer of the shared W [in, units].
    fast_weight_initializer: initializer of alpha [E, in] and gamma [E, units]
      (default `RandomSign`).
    **kwargs: Keras layer arguments.
  """

  def __init__(self, units, ensemble_size, activation=None, use_bias=True,
               kernel_initializer="glorot_uniform", fast_weight_initializer=None,
               **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.activation = keras.activations.get(activation)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self._init_batch_ensemble(ensemble_size, fast_weight_initializer or RandomSign())

  def build(self, input_shape):
    """Creates the shared kernel [in, units] and the fast weights (alpha, gamma, the
    biases if use_bias)."""
    in_size = int(input_shape[-1])
    self.kernel = self.add_weight("kernel", [in_size, self.units],
                                  initializer=self.kernel_initializer)
    self._fast_weights(in_size, self.units, self.use_bias)
    super().build(input_shape)

  def call(self, inputs):
    """inputs [E * batch, in] (member-major) -> [E * batch, units]."""
    x = self._split_members(inputs)                               # [E, batch, in]
    y = tf.matmul(x * self._per_member(self.alpha, 3), self.kernel)
    y = y * self._per_member(self.gamma, 3)
    if self.use_bias:
      y = y + self._per_member(self.ensemble_bias, 3)
    return self.activation(self._merge_members(y))

  def get_config(self):
    """The layer's constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(units=self.units, activation=keras.activations.serialize(self.activation),
                  use_bias=self.use_bias,
                  kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                  **self._batch_ensemble_config())
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class Conv2DBatchEnsemble(_BatchEnsembleMixin, keras.layers.Layer):
  """2-D convolution of an ensemble of E members sharing the kernel via rank-1 fast weights.

  ```none
  member e:  K_e[h, w, c, f] = K[h, w, c, f] alpha_e[c] gamma_e[f]
             y = conv(x * alpha_e, K) * gamma_e + b_e        (= conv(x, K_e) + b_e)
  ```
  Member-major batch layout as `DenseBatchEnsemble`; channels last.

  Args:
    filters: int.
    kernel_size: int or (int, int).
    ensemble_size: int E.
    strides: int or (int, int).
    padding: "valid" or "same".
    activation, use_bias, kernel_initializer, fast_weight_initializer: as
      `DenseBatchEnsemble`.
    **kwargs: Keras layer arguments.
  """

  def __init__(self, filters, kernel_size, ensemble_size, strides=1, padding="valid",
               activation=None, use_bias=True, kernel_initializer="glorot_uniform",
               fast_weight_initializer=None, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = ((int(kernel_size),) * 2 if np.isscalar(kernel_size)
                        else tuple(int(k) for k in kernel_size))
    self.strides = ((int(strides),) * 2 if np.isscalar(strides)
                    else tuple(int(s) for s in strides))
    if padding not in ("valid", "same"):
      raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    self.padding = padding
    self.activation = keras.activations.get(activation)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self._init_batch_ensemble(ensemble_size, fast_weight_initializer or RandomSign())

  def build(self, input_shape):
    """Creates the shared kernel [h, w, c, filters] and the fast weights (alpha, gamma, the
    biases if use_bias)."""
    channels = int(input_shape[-1])
    self.kernel = self.add_weight("kernel", list(self.kernel_size) + [channels, self.filters],
                                  initializer=self.kernel_initializer)
    self._fast_weights(channels, self.filters, self.use_bias)
    super().build(input_shape)

  def call(self, inputs):
    """inputs [E * batch, H, W, c] (member-major) -> [E * batch, H', W', filters]."""
    x = self._split_members(inputs) * self._per_member(self.alpha, 5)   # [E, b, h, w, c]
    y = tf.nn.conv2d(self._merge_members(x), self.kernel, strides=self.strides,
                     padding=self.padding.upper())
    y = self._split_members(y) * self._per_member(self.gamma, 5)
    if self.use_bias:
      y = y + self._per_member(self.ensemble_bias, 5)
    return self.activation(self._merge_members(y))

  def get_config(self):
    """The layer's constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                  strides=list(self.strides), padding=self.padding,
                  activation=keras.activations.serialize(self.activation),
                  use_bias=self.use_bias,
                  kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                  **self._batch_ensemble_config())
    return config


class _MemberLayoutLayer(keras.layers.Layer):
  """A layer configured by the ensemble size E alone."""

  def __init__(self, ensemble_size, **kwargs):
    super().__init__(**kwargs)
    self.ensemble_size = int(ensemble_size)
    if self.ensemble_size < 1:
      raise ValueError(f"ensemble_size must be >= 1, got {ensemble_size}.")

  def get_config(self):
    config = super().get_config()
    config.update(ensemble_size=self.ensemble_size)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class TileMembers(_MemberLayoutLayer):
  """x [batch, ...] -> [E * batch, ...]: every member of a BatchEnsemble sees the same x.

  Member-major: rows e * batch .. (e + 1) * batch - 1 are member e's copy.

  Args:
    ensemble_size: int E >= 1.
  """

  def call(self, inputs):
    """x [batch, ...] -> [E * batch, ...]: E copies of the batch, member-major."""
    multiples = tf.concat([[self.ensemble_size],
                           tf.ones([tf.rank(inputs) - 1], tf.int32)], axis=0)
    return tf.tile(inputs, multiples)


@keras.utils.register_keras_serializable(package="tfp_distill")
class MembersToAxis(_MemberLayoutLayer):
  """[E * batch, K] (member-major) -> [batch, E, K]: the members' outputs side by side.

  The layout of `td.Ensemble`'s targets z, so `td.decompose_ensemble` and the per-member
  KD loss take a BatchEnsemble's output as they take an ensemble's.

  Args:
    ensemble_size: int E >= 1.
  """

  def call(self, inputs):
    """[E * batch, K] (member-major) -> [batch, E, K]."""
    e = self.ensemble_size
    k = tf.shape(inputs)[-1]
    y = tf.reshape(inputs, tf.stack([e, -1, k]))
    return tf.transpose(y, [1, 0, 2])

  def compute_output_shape(self, input_shape):
    """[E * batch, K] -> [None, E, K]."""
    return tf.TensorShape([None, self.ensemble_size, input_shape[-1]])



def batch_ensemble_cnn(input_shape=(28, 28, 1), num_classes=10, ensemble_size=4,
                       filters=(32, 64), dense_units=128, seed=None, name=None):
  """`small_cnn` as a BatchEnsemble: x [batch, H, W, C] -> member logits [batch, E, K].

  ```none
  x ─► tile E times (member-major) ─► for f in filters: conv-BE 3x3 -> relu -> pool 2x2
    ─► flatten ─► dense-BE (dense_units) -> relu ─► dense-BE (K) ─► [batch, E, K]
  ```
  Every layer shares one slow weight between the members and adds rank-1 fast weights
  (`Conv2DBatchEnsemble`, `DenseBatchEnsemble`): E members for about the parameters of
  one (plus (in + 2 out) E per layer) and E times the compute. The output has the layout
  of an ensemble's targets, so `td.decompose_ensemble(student(x), family)` gives its
  prediction (the mean of the members' softmax) and uncertainties, and
  `td.losses.KnowledgeDistillation` teaches member i from teacher i.

  Args:
    input_shape: (height, width, channels), inputs scaled to [0, 1].
    num_classes: int K.
    ensemble_size: int E.
    filters, dense_units: as `small_cnn`.
    seed: int or None, seeds the slow weights (seed + i) and the random-sign fast
      weights (seed + 100 + i) of the i-th layer.
    name: model name.

  Returns:
    keras.Model: x [batch, H, W, C] -> logits [batch, E, K].
  """
  _check_image_size(input_shape, filters)
  e = int(ensemble_size)

  def signs(i):
    return RandomSign(None if seed is None else seed + 100 + i)

  inputs = keras.Input(shape=tuple(input_shape))
  h = TileMembers(e, name="tile")(inputs)
  for i, f in enumerate(filters):
    h = Conv2DBatchEnsemble(
        int(f), 3, e, activation="relu",
        kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, i),
        fast_weight_initializer=signs(i), name=f"conv{i + 1}")(h)
    h = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(h)
  n = len(filters)
  h = keras.layers.Flatten(name="flatten")(h)
  h = DenseBatchEnsemble(
      int(dense_units), e, activation="relu",
      kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, n),
      fast_weight_initializer=signs(n), name="dense1")(h)
  h = DenseBatchEnsemble(
      int(num_classes), e,
      kernel_initializer=_seeded(keras.initializers.GlorotUniform, seed, n + 1),
      fast_weight_initializer=signs(n + 1), name="logits")(h)
  return keras.Model(inputs, MembersToAxis(e, name="members")(h), name=name)
