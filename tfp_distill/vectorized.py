"""Members of one architecture as one model with stacked weights (a vectorized ensemble).

```none
M functional tf_keras members of one architecture
  Dense   kernel [in, out]       ─► StackedDense   kernel [M, in, out]: one batched matmul
  Conv2D  kernel [h, w, c, f]    ─► StackedConv2D  kernel [h, w, c, M f]: one grouped conv
                                     (on CPU: M convs on channel slices, see StackedConv2D)
  BatchNormalization over c      ─► BatchNormalization over M c channels
  pooling, padding, activations, dropout, flatten, add, concatenate: the same op, once
x [batch, ...]            (every member sees the same x: inference, distillation)
x [members, batch, ...]   (a batch per member: training with independent data orders)
   ─► z [batch, members, params]   (the layout of td.Ensemble's targets)
```

Each member keeps its own weights (its slice of every stacked variable), so the stacked
model computes exactly what the M members compute, in one graph with one op per layer
instead of M. Trained with the sum of the members' losses, each slice receives only its
own member's gradient and Adam's update is elementwise: M independent trainings (the
weights are initialised from the M members, e.g. `build_member(seed + m)`).

Activations travel in one of three layouts, chosen so that no op mixes members:

```none
shared    [batch, ...]            the same for all members (the input, weightless ops on it)
member    [M, batch, ..., c]      member-major: Dense is a batched matmul
grouped   [batch, ..., M c]       channels of member m at m c .. (m + 1) c - 1: a
                                  convolution with M groups, per-channel ops unchanged
```

Layers without a stacked form (recurrent, attention, custom layers, Lambda, layers called
more than once, ...) raise `NotVectorizableError` naming the layer; `td.Ensemble` and
`td.train_ensemble` then fall back to one graph of M separate members.
"""

import numpy as np
import tensorflow as tf

from tfp_distill._keras import keras

__all__ = ["NotVectorizableError", "StackedConv2D", "StackedDense", "StackedMembers",
           "member_list", "vectorization_blocker"]

SHARED, MEMBER, GROUPED = "shared", "member", "grouped"

_ELEMENTWISE_ACTIVATIONS = frozenset((
    "linear", "relu", "relu6", "elu", "selu", "tanh", "sigmoid", "hard_sigmoid",
    "softplus", "softsign", "swish", "silu", "gelu", "exponential", "mish"))
# Weightless layers that act on every channel alike (channels last).
_CHANNELWISE = ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
                "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D", "ZeroPadding2D",
                "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
                "UpSampling2D", "UpSampling3D", "SpatialDropout1D", "SpatialDropout2D",
                "SpatialDropout3D")
_GLOBAL_POOLING = ("GlobalAveragePooling1D", "GlobalAveragePooling2D",
                   "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                   "GlobalMaxPooling3D")
_ELEMENTWISE_LAYERS = ("ReLU", "LeakyReLU", "ELU", "ThresholdedReLU")
_NOISE = ("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")
_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_BUILTIN_REGULARIZERS = ("L1", "L2", "L1L2")
# Config keys that may differ between members of one architecture.
_VOLATILE = ("name", "seed")


class NotVectorizableError(ValueError):
  """The members cannot be stacked into one model; `layer` names the layer in the way.

  Attributes:
    layer: str or None, the name of the member layer that prevents stacking.
    reason: str, why.
  """

  def __init__(self, reason, layer=None):
    self.layer = layer
    self.reason = reason
    where = f"layer {layer!r}: " if layer else ""
    super().__init__(f"Cannot vectorize the members: {where}{reason}")


def _dims(t):
  """t's shape as a list: static sizes as ints, unknown ones as scalar Tensors."""
  static = t.shape.as_list()
  if None not in static:
    return static
  dynamic = tf.shape(t)
  return [dynamic[i] if d is None else d for i, d in enumerate(static)]


def _reshape(t, dims):
  """tf.reshape with None (the batch) taken from the tensor: one None at most."""
  return tf.reshape(t, [-1 if d is None else d for d in dims])


def _grouped_convolutions():
  """Whether a grouped convolution and its gradient run as one op: on GPU or TPU (on CPU
  only through oneDNN, which is not on everywhere; see `StackedConv2D`)."""
  return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


class _Value:
  """A tensor and its layout; `channels` is the per-member size of the last axis."""

  __slots__ = ("t", "layout", "m")

  def __init__(self, t, layout, m):
    self.t, self.layout, self.m = t, layout, m

  @property
  def member_rank(self):
    """Rank of one member's tensor, batch included."""
    return self.t.shape.rank - (1 if self.layout == MEMBER else 0)

  def member_shape(self):
    """One member's static shape [batch, ..., channels] (batch None)."""
    shape = self.t.shape.as_list()
    if self.layout == MEMBER:
      return [None] + shape[2:]
    if self.layout == GROUPED:
      return [None] + shape[1:-1] + [shape[-1] // self.m]
    return [None] + shape[1:]

  def to_member(self):
    if self.layout == MEMBER:
      return self
    if self.layout == SHARED:
      t = tf.tile(self.t[tf.newaxis], [self.m] + [1] * self.t.shape.rank)
      return _Value(t, MEMBER, self.m)
    shape = self.member_shape()
    r = len(shape)
    t = _reshape(self.t, shape[:-1] + [self.m, shape[-1]])   # [batch, ..., M, c]
    t = tf.transpose(t, [r - 1] + list(range(r - 1)) + [r])   # [M, batch, ..., c]
    return _Value(t, MEMBER, self.m)

  def to_grouped(self):
    if self.layout == GROUPED:
      return self
    if self.layout == SHARED:
      return _Value(tf.tile(self.t, [1] * (self.t.shape.rank - 1) + [self.m]), GROUPED,
                    self.m)
    shape = self.member_shape()
    r = len(shape)
    t = tf.transpose(self.t, list(range(1, r)) + [0, r])      # [batch, ..., M, c]
    return _Value(_reshape(t, shape[:-1] + [self.m * shape[-1]]), GROUPED, self.m)

  def per_member_last_axis(self, fn):
    """Applies fn, an op on the last axis, to each member's channels."""
    if self.layout != GROUPED:
      return _Value(fn(self.t), self.layout, self.m)
    shape = self.member_shape()
    t = fn(_reshape(self.t, shape[:-1] + [self.m, shape[-1]]))
    return _Value(_reshape(t, shape[:-1] + [self.m * shape[-1]]), GROUPED, self.m)


def _activation_name(fn):
  try:
    return keras.activations.serialize(fn)
  except (ValueError, TypeError):
    return None


def _apply_activation(value, fn):
  name = _activation_name(fn)
  if name == "linear":
    return value
  if name in _ELEMENTWISE_ACTIVATIONS:
    return _Value(fn(value.t), value.layout, value.m)
  return value.per_member_last_axis(fn)


def _check_regularizer(layer, attr):
  reg = getattr(layer, attr, None)
  if reg is not None and type(reg).__name__ not in _BUILTIN_REGULARIZERS:
    raise NotVectorizableError(
        f"{attr} {type(reg).__name__} is not one of Keras' L1/L2/L1L2 (a sum over "
        "weights, which the stacked weights preserve)", layer.name)
  return reg


def _check_plain(layer):
  for attr in ("kernel_constraint", "bias_constraint"):
    if getattr(layer, attr, None) is not None:
      raise NotVectorizableError(f"{attr} is set (constraints act on one member's "
                                 "whole kernel)", layer.name)
  if getattr(layer, "activity_regularizer", None) is not None:
    raise NotVectorizableError("activity_regularizer is set", layer.name)


def _stack_regularizer(reg):
  """A Keras L1/L2 regularizer of one member applied to M stacked kernels: the sum."""
  return None if reg is None else type(reg).from_config(reg.get_config())


class _StackedLayer(keras.layers.Layer):
  """Shared parts of the stacked weighted layers: activation, bias, regularizers."""

  def __init__(self, num_members, activation=None, use_bias=True, kernel_regularizer=None,
               bias_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self.num_members = int(num_members)
    self.activation = keras.activations.get(activation)
    self.use_bias = bool(use_bias)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.bias_regularizer = keras.regularizers.get(bias_regularizer)

  def _make_weights(self, kernel_shape, bias_shape):
    self.kernel = self.add_weight("kernel", kernel_shape, initializer="zeros",
                                  regularizer=self.kernel_regularizer)
    self.bias = (self.add_weight("bias", bias_shape, initializer="zeros",
                                 regularizer=self.bias_regularizer)
                 if self.use_bias else None)
    self.built = True

  def get_config(self):
    config = super().get_config()
    config.update(num_members=self.num_members,
                  activation=keras.activations.serialize(self.activation),
                  use_bias=self.use_bias,
                  kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
                  bias_regularizer=keras.regularizers.serialize(self.bias_regularizer))
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class StackedDense(_StackedLayer):
  """M Dense layers in one: kernel [members, in, units], bias [members, units].

  ```none
  shared x [batch, ..., in]:        y[m] = x W_m + b_m          -> [members, batch, ..., units]
  member x [members, batch, ..., in]: y[m] = x[m] W_m + b_m     -> [members, batch, ..., units]
  ```

  Both are plain `tf.matmul`s on inputs reshaped to rank 2 (shared: [N, in] times the
  kernel as [in, members * units]) or rank 3 (member: [members, N, in]), never an
  ellipsis `tf.einsum`: on Intel CPUs with AMX and AVX512-BF16, oneDNN's einsum
  `"...i,mio->m...o"` in bfloat16 returned wrong values for every batch row but the
  first (TF 2.21; right with XLA or TF_ENABLE_ONEDNN_OPTS=0), while matmul was right.

  Args:
    units: int, output size of each member.
    num_members: int M >= 1.
    activation: Keras activation (applied after the bias, per member).
    use_bias: bool.
    kernel_regularizer, bias_regularizer: None or a Keras L1/L2 regularizer (summed over
      the members, as M separate layers would be).
    **kwargs: Keras layer arguments.
  """

  def __init__(self, units, num_members, activation=None, use_bias=True,
               kernel_regularizer=None, bias_regularizer=None, **kwargs):
    super().__init__(num_members, activation, use_bias, kernel_regularizer,
                     bias_regularizer, **kwargs)
    self.units = int(units)
    self.in_features = None

  def build_for(self, in_features):
    """Creates the weights for inputs of `in_features` features per member."""
    self.in_features = int(in_features)
    self._make_weights([self.num_members, self.in_features, self.units],
                       [self.num_members, self.units])

  def apply_value(self, value):
    """_Value (any layout) -> _Value in the member layout [members, batch, ..., units]."""
    if value.layout == GROUPED:
      value = value.to_member()
    x = tf.cast(value.t, self.compute_dtype)
    kernel = tf.cast(self.kernel, self.compute_dtype)
    m, units = self.num_members, self.units
    if value.layout == SHARED:
      # One rank-2 matmul [N, in] x [in, members * units], N = batch * ...: no einsum
      # (see the class docstring), and one GEMM instead of M.
      dims = _dims(x)                                          # [batch, ..., in]
      x2 = tf.reshape(x, [-1, dims[-1]])
      k2 = tf.reshape(tf.transpose(kernel, [1, 0, 2]), [-1, m * units])
      y = tf.reshape(tf.matmul(x2, k2), dims[:-1] + [m, units])   # [batch, ..., M, units]
      r = x.shape.rank
      y = tf.transpose(y, [r - 1] + list(range(r - 1)) + [r])    # [M, batch, ..., units]
    elif x.shape.rank == 3:
      y = tf.matmul(x, kernel)                                 # [M, batch, units]
    else:
      dims = _dims(x)                                          # [M, batch, ..., in]
      y = tf.matmul(tf.reshape(x, [m, -1, dims[-1]]), kernel)  # [M, N, units]
      y = tf.reshape(y, dims[:-1] + [units])
    if self.use_bias:
      bias = tf.cast(self.bias, self.compute_dtype)
      y = y + tf.reshape(bias, [self.num_members] + [1] * (y.shape.rank - 2) + [self.units])
    return _apply_activation(_Value(y, MEMBER, self.num_members), self.activation)

  def get_config(self):
    """The layer's constructor arguments (the shared ones and `units`), for Keras serialization."""
    config = super().get_config()
    config.update(units=self.units)
    return config


@keras.utils.register_keras_serializable(package="tfp_distill")
class StackedConv2D(_StackedLayer):
  """M Conv2D layers in one: kernel [h, w, c, members * filters], bias [members * filters].

  ```none
  shared x [batch, H, W, c]:          one convolution with M f filters
  grouped x [batch, H, W, M c]:       one convolution with M groups (member m reads
                                      channels m c .. (m + 1) c - 1)
  -> grouped y [batch, H', W', M f]
  ```
  Member m's kernel is `kernel[..., m f:(m + 1) f]`.

  The grouped convolution is one op where an accelerator is present. TF's CPU kernels
  run grouped convolutions only through oneDNN (on by default on some x86 CPUs only;
  `TF_ENABLE_ONEDNN_OPTS=0` turns it off): without it the gradient raises "Gradients for
  grouped convolutions are not supported on CPU" and grappler's fused conv + bias +
  activation refuses groups. On CPU a grouped input therefore takes M convolutions, one
  per member's channel slice, concatenated: the same values, on every CPU.

  Args:
    filters: int, filters of each member.
    kernel_size, strides, padding, dilation_rate: as Keras' Conv2D (channels last).
    num_members: int M >= 1.
    activation, use_bias, kernel_regularizer, bias_regularizer: as `StackedDense`.
    **kwargs: Keras layer arguments.
  """

  def __init__(self, filters, kernel_size, num_members, strides=(1, 1), padding="valid",
               dilation_rate=(1, 1), activation=None, use_bias=True,
               kernel_regularizer=None, bias_regularizer=None, **kwargs):
    super().__init__(num_members, activation, use_bias, kernel_regularizer,
                     bias_regularizer, **kwargs)
    pair = lambda v: (int(v),) * 2 if np.isscalar(v) else tuple(int(i) for i in v)
    self.filters = int(filters)
    self.kernel_size = pair(kernel_size)
    self.strides = pair(strides)
    self.padding = str(padding).lower()
    self.dilation_rate = pair(dilation_rate)
    self.in_channels = None

  def build_for(self, in_channels):
    """Creates the weights for `in_channels` input channels per member."""
    self.in_channels = int(in_channels)
    self._make_weights(list(self.kernel_size) + [self.in_channels,
                                                 self.num_members * self.filters],
                       [self.num_members * self.filters])

  def apply_value(self, value):
    """_Value (shared, or any per-member layout) -> _Value in the grouped layout."""
    if value.layout == MEMBER:
      value = value.to_grouped()
    x = tf.cast(value.t, self.compute_dtype)
    kernel = tf.cast(self.kernel, self.compute_dtype)
    conv = lambda t, k: tf.nn.convolution(t, k, strides=self.strides,
                                          padding=self.padding.upper(),
                                          dilations=self.dilation_rate)
    if value.layout == GROUPED and self.num_members > 1 and not _grouped_convolutions():
      # One convolution per member on its channel slice; concatenated, the grouped layout.
      pairs = zip(tf.split(x, self.num_members, axis=-1),
                  tf.split(kernel, self.num_members, axis=-1))
      y = tf.concat([conv(t, k) for t, k in pairs], axis=-1)
    else:
      y = conv(x, kernel)
    if self.use_bias:
      y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype))
    return _apply_activation(_Value(y, GROUPED, self.num_members), self.activation)

  def get_config(self):
    """The layer's constructor arguments (the shared ones and the convolution's), for Keras
    serialization."""
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                  strides=list(self.strides), padding=self.padding,
                  dilation_rate=list(self.dilation_rate))
    return config


# ----------------------------------------------------------------------------------------
# Reading a member's layer graph.
# ----------------------------------------------------------------------------------------


def _graph(model, index):
  """[(layer, [input layer positions])] in topological order, for a functional model."""
  if not isinstance(model, keras.Model):
    raise NotVectorizableError(f"member {index} is a {type(model).__name__}, not a "
                               "tf_keras model")
  if isinstance(model, keras.Sequential):
    layers = list(model.layers)
    if not getattr(model, "_is_graph_network", False) or not layers:
      raise NotVectorizableError(f"member {index} is a Sequential model without an "
                                 "input shape (build it with keras.Input)")
    return [(layer, [i - 1] if i else [-1]) for i, layer in enumerate(layers)]
  if not getattr(model, "_is_graph_network", False):
    raise NotVectorizableError(f"member {index} is a subclassed Keras model (no layer "
                               "graph to stack); build it with the functional API")
  config = model.get_config()
  if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
    raise NotVectorizableError(f"member {index} has {len(config['input_layers'])} "
                               f"inputs and {len(config['output_layers'])} outputs; "
                               "stacking needs one of each")
  position = {entry["name"]: i for i, entry in enumerate(config["layers"])}
  graph = []
  for i, entry in enumerate(config["layers"]):
    layer = model.layers[i]
    if layer.name != entry["name"]:
      raise NotVectorizableError(f"member {index}'s layers are not in config order")
    nodes = entry.get("inbound_nodes") or []
    if entry["class_name"] == "InputLayer":
      graph.append((layer, []))
      continue
    if len(nodes) != 1:
      raise NotVectorizableError(f"called {len(nodes)} times in the model (shared "
                                 "layers are not stacked)", layer.name)
    node = nodes[0]
    if isinstance(node, dict):   # newer config format
      raise NotVectorizableError("unsupported model config format", layer.name)
    inputs = []
    for inbound in node:
      name, node_index, tensor_index = inbound[0], inbound[1], inbound[2]
      if (len(inbound) > 3 and inbound[3]) or node_index or tensor_index:
        raise NotVectorizableError("called with extra arguments or on a multi-output "
                                   "layer", layer.name)
      inputs.append(position[name])
    graph.append((layer, inputs))
  if config["output_layers"][0][0] != config["layers"][-1]["name"]:
    raise NotVectorizableError(f"member {index}'s output is not its last layer")
  return graph


def _signature(layer):
  """A layer's config without what may differ between members (names, seeds)."""
  def clean(value):
    if isinstance(value, dict):
      return {k: clean(v) for k, v in value.items() if k not in _VOLATILE
              and not k.endswith("_initializer")}
    if isinstance(value, (list, tuple)):
      return [clean(v) for v in value]
    return value
  return type(layer).__name__, clean(layer.get_config())


def vectorization_blocker(members):
  """Why `members` cannot be stacked into one model, or None if they can.

  Args:
    members: list of tf_keras models.

  Returns:
    None, or a `NotVectorizableError` (its `layer` names the layer in the way).
  """
  try:
    _plan(list(members))
  except NotVectorizableError as error:
    return error
  return None


def _check_supported(layer):
  kind = type(layer).__name__
  supported = (kind in ("InputLayer", "Dense", "Conv2D", "BatchNormalization", "Activation",
                        "Softmax", "Flatten", "Concatenate")
               or kind in _CHANNELWISE + _GLOBAL_POOLING + _ELEMENTWISE_LAYERS + _NOISE
               + _MERGE)
  if not supported:
    raise NotVectorizableError(f"{kind} has no stacked form", layer.name)
  if getattr(layer, "data_format", "channels_last") != "channels_last":
    raise NotVectorizableError("data_format must be channels_last", layer.name)
  if kind in ("Dense", "Conv2D"):
    _check_plain(layer)
    _check_regularizer(layer, "kernel_regularizer")
    _check_regularizer(layer, "bias_regularizer")
    if _activation_name(layer.activation) is None:
      raise NotVectorizableError("its activation is not a Keras activation", layer.name)
  if kind == "Conv2D" and layer.groups != 1:
    raise NotVectorizableError("a grouped Conv2D (groups > 1)", layer.name)
  if kind == "BatchNormalization":
    in_rank = len(layer.input_shape)
    if list(layer.axis) != [in_rank - 1] or layer.renorm or layer.virtual_batch_size:
      raise NotVectorizableError("BatchNormalization must normalise the last axis only "
                                 "(no renorm, no virtual batches)", layer.name)
  if kind in _NOISE and getattr(layer, "noise_shape", None) is not None:
    raise NotVectorizableError("Dropout with a noise_shape", layer.name)
  if kind in ("Softmax", "Concatenate"):
    shape = layer.input_shape[0] if kind == "Concatenate" else layer.input_shape
    if layer.axis not in (-1, len(shape) - 1):
      raise NotVectorizableError(f"{kind} over an axis other than the last", layer.name)


def _plan(members):
  """Checks that the members share one supported architecture; returns member 0's graph."""
  if not members:
    raise NotVectorizableError("no members")
  graphs = [_graph(m, i) for i, m in enumerate(members)]
  first = graphs[0]
  for layer, _ in first:
    _check_supported(layer)
  for i, graph in enumerate(graphs[1:], start=1):
    if len(graph) != len(first):
      raise NotVectorizableError(f"member {i} has {len(graph)} layers, member 0 has "
                                 f"{len(first)}")
    for (layer0, inputs0), (layer, inputs) in zip(first, graph):
      if inputs != inputs0 or _signature(layer) != _signature(layer0):
        raise NotVectorizableError(f"member {i}'s layer {layer.name!r} differs from "
                                   "member 0's (architectures must be identical)",
                                   layer0.name)
      if [tuple(w.shape) for w in layer.weights] != [tuple(w.shape) for w in layer0.weights]:
        raise NotVectorizableError(f"member {i}'s weights have other shapes", layer0.name)
  return first


def member_list(members, num_members, what):
  """`members` as a list, checked to hold `num_members` models (shared by the stacked
  models of both Keras); ValueError naming `what` otherwise."""
  members = list(members)
  if len(members) != num_members:
    raise ValueError(f"{what}: expected {num_members} members, got {len(members)}.")
  return members


def _clone(layer, name_suffix="stacked"):
  config = layer.get_config()
  config["name"] = f"{layer.name}_{name_suffix}"
  return type(layer).from_config(config)


class StackedMembers(keras.Model):
  """M functional members of one architecture as one model with stacked weights.

  Calling it runs every member in one graph with one op per layer. Its weights are
  copied from the members when it is built (`load_from(members)` copies them again,
  `assign_to(members)` writes them back).

  Args:
    members: list of M >= 1 built functional (or Sequential) tf_keras models of one
      architecture, each x [batch, ...] -> z [batch, params].

  Raises:
    NotVectorizableError (a ValueError): naming the layer that prevents stacking.

  Call:
    x: float Tensor [batch, ...] (the same x for every member), or with
      `per_member=True` [members, batch, ...] (member m reads x[m]).
    training: bool, Keras' training flag (dropout, batch statistics).

    Returns z: Tensor [batch, members, params] in the members' output dtype.

  #### Examples

  ```python
  members = [td.models.small_cnn(seed=s) for s in range(10)]
  stacked = td.vectorized.StackedMembers(members)
  z = stacked(x)               # [batch, 10, 10], = tf.stack([m(x) for m in members], 1)
  ```
  """

  def __init__(self, members, **kwargs):
    super().__init__(**kwargs)
    members = list(members)
    graph = _plan(members)
    self.num_members = len(members)
    self._input_dtype = tf.as_dtype(members[0].inputs[0].dtype)
    self._input_shape = tf.TensorShape(members[0].inputs[0].shape[1:])
    self._graph = [(type(layer).__name__, inputs) for layer, inputs in graph]
    object.__setattr__(self, "_templates", tuple(members))   # not tracked: no weights
    self.stacked_layers = []
    m = self.num_members
    for layer, _ in graph:
      kind = type(layer).__name__
      policy = layer.dtype_policy
      if kind == "Dense":
        new = StackedDense(layer.units, m, activation=layer.activation,
                           use_bias=layer.use_bias,
                           kernel_regularizer=_stack_regularizer(layer.kernel_regularizer),
                           bias_regularizer=_stack_regularizer(layer.bias_regularizer),
                           dtype=policy, trainable=layer.trainable,
                           name=f"{layer.name}_stacked")
        new.build_for(layer.kernel.shape[0])
      elif kind == "Conv2D":
        new = StackedConv2D(layer.filters, layer.kernel_size, m, strides=layer.strides,
                            padding=layer.padding, dilation_rate=layer.dilation_rate,
                            activation=layer.activation, use_bias=layer.use_bias,
                            kernel_regularizer=_stack_regularizer(
                                layer.kernel_regularizer),
                            bias_regularizer=_stack_regularizer(layer.bias_regularizer),
                            dtype=policy, trainable=layer.trainable,
                            name=f"{layer.name}_stacked")
        new.build_for(layer.kernel.shape[-2])
      elif kind == "BatchNormalization":
        new = _clone(layer)
        shape = list(layer.input_shape)
        new.build(shape[:-1] + [m * shape[-1]])
      elif kind == "InputLayer":
        new = None
      else:
        new = _clone(layer)
      self.stacked_layers.append(new)
    self.load_from(members)

  # -- weights -----------------------------------------------------------------------------

  def _weighted(self, members):
    """(stacked layer, [member layers]) for every layer with weights."""
    for i, stacked in enumerate(self.stacked_layers):
      if stacked is not None and stacked.weights:
        yield stacked, [member.layers[i] for member in members]

  def load_from(self, members):
    """Copies the members' weights into the stacked weights.

    Args:
      members: list of M models of the architecture this was built from.
    """
    members = member_list(members, self.num_members, "load_from")
    for stacked, layers in self._weighted(members):
      per_member = [layer.get_weights() for layer in layers]
      kind = type(stacked).__name__
      values = []
      for j in range(len(per_member[0])):
        ws = [w[j] for w in per_member]
        if kind == "StackedDense":
          values.append(np.stack(ws))
        else:   # StackedConv2D and BatchNormalization: members along the last axis
          values.append(np.concatenate(ws, axis=-1))
      stacked.set_weights(values)

  def _member_part(self, stacked_layer, value, m):
    if isinstance(stacked_layer, StackedDense):
      return value[m]
    c = value.shape[-1] // self.num_members   # members along the last axis
    return value[..., m * c:(m + 1) * c]

  def member_value(self, variable, value, m):
    """Member m's part of `value`, shaped like the stacked `variable` (e.g. its gradient).

    Args:
      variable: one of this model's variables.
      value: array or Tensor with the variable's shape.
      m: int, the member.

    Returns:
      The slice of `value` that belongs to member m, shaped like that member's weight.
    """
    for stacked in self.stacked_layers:
      if stacked is not None and any(w is variable for w in stacked.weights):
        return self._member_part(stacked, value, m)
    raise ValueError(f"member_value: {variable.name} is not a variable of this model.")

  def member_weights(self, m):
    """Member m's weights, per layer, in the order of `layer.get_weights()`.

    Returns:
      list (one entry per weighted layer) of lists of NumPy arrays.
    """
    return [[self._member_part(stacked, w, m) for w in stacked.get_weights()]
            for stacked, _ in self._weighted(self._templates)]

  def assign_to(self, members):
    """Writes the stacked weights back into M models of the architecture."""
    members = member_list(members, self.num_members, "assign_to")
    for m, member in enumerate(members):
      for (_, layers), ws in zip(self._weighted(members), self.member_weights(m)):
        layers[m].set_weights(ws)

  def to_members(self):
    """M new tf_keras models (clones of the architecture) holding the stacked weights."""
    members = [keras.models.clone_model(self._templates[0]) for _ in range(self.num_members)]
    self.assign_to(members)
    return members

  # -- forward ------------------------------------------------------------------------------

  def call(self, inputs, training=None, per_member=False):  # pylint: disable=arguments-differ
    """Runs every member: x [batch, ...] (with `per_member=True` [members, batch, ...]) -> z
    [batch, members, params] in the members' output dtype."""
    m = self.num_members
    x = tf.convert_to_tensor(inputs)
    if x.dtype != self._input_dtype and x.dtype.is_floating:
      x = tf.cast(x, self._input_dtype)
    one = x.shape[2:] if per_member else x.shape[1:]
    if not one.is_compatible_with(self._input_shape) or (
        per_member and x.shape[0] is not None and x.shape[0] != m):
      expected = ([m, None] if per_member else [None]) + self._input_shape.as_list()
      raise ValueError(f"StackedMembers takes x of shape {expected}"
                       f"{' (per_member=True)' if per_member else ''}, got shape "
                       f"{list(x.shape)}.")
    if per_member:
      x_value = _Value(x, MEMBER, m)
    else:
      x_value = _Value(x, SHARED, m)
    values = {}
    for i, (kind, inputs_at) in enumerate(self._graph):
      if kind == "InputLayer":
        values[i] = x_value
        continue
      args = [x_value if j < 0 else values[j] for j in inputs_at]
      values[i] = self._apply(kind, self.stacked_layers[i], args, training)
    z = values[len(self._graph) - 1]
    if z.layout == SHARED:
      z = z.to_member()
    if z.layout == GROUPED and z.t.shape.rank == 2:
      shape = z.member_shape()
      out = _reshape(z.t, [None, m, shape[-1]])
    else:
      z = z.to_member()
      if z.t.shape.rank != 3:
        raise ValueError(f"StackedMembers: each member must return [batch, params], got "
                         f"per-member shape {z.member_shape()}.")
      out = tf.transpose(z.t, [1, 0, 2])
    return out

  @staticmethod
  def _apply(kind, layer, args, training):
    value = args[0]
    m = value.m
    if kind in ("Dense", "Conv2D"):
      return layer.apply_value(value)
    if kind == "BatchNormalization":
      return _Value(layer(value.to_grouped().t, training=training), GROUPED, m)
    if kind in _CHANNELWISE:
      if value.layout == MEMBER or (training and kind.startswith("SpatialDropout")):
        value = value.to_grouped()   # (spatial dropout: an independent mask per member)
      return _Value(layer(value.t, training=training), value.layout, m)
    if kind in _GLOBAL_POOLING:
      if value.layout == MEMBER:
        value = value.to_grouped()
      return _Value(layer(value.t), value.layout, m)
    if kind == "Flatten":
      if value.layout == SHARED:
        return _Value(layer(value.t), SHARED, m)
      value = value.to_member()
      shape = value.member_shape()
      return _Value(_reshape(value.t, [m, None, int(np.prod(shape[1:]))]), MEMBER, m)
    if kind in _ELEMENTWISE_LAYERS:
      return _Value(layer(value.t), value.layout, m)
    if kind == "Activation":
      return _apply_activation(value, layer.activation)
    if kind == "Softmax":
      return value.per_member_last_axis(lambda t: layer(t))
    if kind in _NOISE:
      if training and value.layout == SHARED:   # independent noise for every member
        value = value.to_grouped() if value.t.shape.rank > 2 else value.to_member()
      return _Value(layer(value.t, training=training), value.layout, m)
    # Merge layers: one layout for all inputs.
    layouts = {a.layout for a in args}
    if layouts == {SHARED}:
      common = args
    elif MEMBER in layouts:
      common = [a.to_member() for a in args]
    else:
      common = [a.to_grouped() for a in args]
    layout = common[0].layout
    if kind == "Concatenate" and layout == GROUPED:
      shapes = [a.member_shape() for a in common]
      parts = [_reshape(a.t, s[:-1] + [m, s[-1]]) for a, s in zip(common, shapes)]
      t = tf.concat(parts, axis=-1)
      total = sum(s[-1] for s in shapes)
      return _Value(_reshape(t, shapes[0][:-1] + [m * total]), GROUPED, m)
    if kind == "Concatenate":
      return _Value(tf.concat([a.t for a in common], axis=-1), layout, m)
    return _Value(layer([a.t for a in common]), layout, m)

  def get_config(self):
    """Raises NotImplementedError: StackedMembers is rebuilt from its members, not a config."""
    raise NotImplementedError("StackedMembers is rebuilt from its members: save the "
                              "td.Ensemble that holds it (Ensemble.save).")
