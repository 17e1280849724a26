"""Vectorized ensembles: stacked members equal M separate models in outputs, gradients and
training; what cannot be stacked is named."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill import vectorized
from tfp_distill._keras import keras

import tolerance

FAMILY = td.families.HeteroscedasticNormal()


def _branchy(seed):
  """Every supported layer kind in one functional model (two branches, merges)."""
  init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)
  x_in = keras.Input((12, 12, 2))
  a = keras.layers.ZeroPadding2D(1)(x_in)
  a = keras.layers.Conv2D(4, 3, strides=2, padding="same", kernel_initializer=init(0),
                          bias_initializer=keras.initializers.RandomNormal(seed=seed))(a)
  a = keras.layers.BatchNormalization()(a)
  a = keras.layers.LeakyReLU(0.2)(a)
  b = keras.layers.Conv2D(4, 1, strides=2, padding="same", use_bias=False,
                          kernel_regularizer=keras.regularizers.L2(1e-3),
                          kernel_initializer=init(1))(keras.layers.ZeroPadding2D(1)(x_in))
  h = keras.layers.Add()([a, b])
  h = keras.layers.Concatenate()([h, keras.layers.Activation("tanh")(h)])   # 8 channels
  p = keras.layers.GlobalMaxPooling2D()(h)
  q = keras.layers.Flatten()(keras.layers.AveragePooling2D(2)(h))
  d = keras.layers.Dense(6, activation="softmax", kernel_initializer=init(2))(q)
  f = keras.layers.Concatenate()([p, d])
  f = keras.layers.Dense(5, activation="elu", kernel_initializer=init(3))(f)
  f = keras.layers.Dropout(0.5, seed=seed)(f)
  return keras.Model(x_in, keras.layers.Dense(3, kernel_initializer=init(4))(f))


BUILDERS = {
    "mlp": (lambda s: td.models.mlp((5,), [7, 6], 2, seed=s), (5,)),
    "small_cnn": (lambda s: td.models.small_cnn(filters=(4, 8), dense_units=8, seed=s),
                  (28, 28, 1)),
    "resnet18": (lambda s: td.models.resnet18_cifar((16, 16, 3), width=2, l2=1e-3, seed=s),
                 (16, 16, 3)),
    "branchy": (_branchy, (12, 12, 2)),
    "sequential": (lambda s: keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(6, kernel_initializer=keras.initializers.
                                              GlorotUniform(seed=s)),
        keras.layers.ReLU(), keras.layers.Dense(2)]), (4,)),
}


def _members(name, m=3):
  build, shape = BUILDERS[name]
  return [build(10 * s) for s in range(m)], shape


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_outputs_equal_the_member_loop(name):
  members, shape = _members(name)
  stacked = vectorized.StackedMembers(members)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5,) + shape).astype(np.float32)
  reference = np.stack([m(x, training=False).numpy() for m in members], axis=1)
  # Same weights, same float32 ops in another grouping and other kernels: equal up to
  # the rounding of one forward pass, tolerance.model_roundings eps of the outputs'
  # magnitude
  # (measured: 0-6 eps, with and without oneDNN; the counts are 18-1250).
  bound = dict(dtype=np.float32, ulps=tolerance.model_roundings(members[0]))
  tolerance.assert_close(stacked(x).numpy(), reference, **bound)
  # One batch per member (training layout), in inference mode.
  xs = rng.normal(size=(3, 5) + shape).astype(np.float32)
  reference = np.stack([m(xs[i], training=False).numpy() for i, m in enumerate(members)], 1)
  tolerance.assert_close(stacked(xs, per_member=True).numpy(), reference, **bound)
  # Inside a tf.function with a dynamic batch (grappler may fuse other kernels): the same
  # values up to the same bound.
  f = tf.function(lambda t: stacked(t), input_signature=[tf.TensorSpec([None, *shape])])
  tolerance.assert_close(f(x).numpy(), stacked(x).numpy(), **bound)


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "resnet18", "branchy"])
def test_training_outputs_and_gradients_equal_the_member_loop(name):
  """Same initial weights -> same training-mode outputs, losses and gradients."""
  members, shape = _members(name)
  stacked = vectorized.StackedMembers(members)
  xs = np.random.default_rng(1).normal(size=(3, 6) + shape).astype(np.float32)
  no_dropout = name != "branchy"   # dropout masks differ; compare without it there
  training = no_dropout or None

  with tf.GradientTape() as tape:
    z = stacked(xs, training=training, per_member=True)
    loss = tf.reduce_sum(tf.square(z)) + tf.add_n([tf.constant(0.)] + stacked.losses)
  grads = tape.gradient(loss, stacked.trainable_variables)

  for i, member in enumerate(members):
    with tf.GradientTape() as tape:
      zi = member(xs[i], training=training)
      loss_i = tf.reduce_sum(tf.square(zi)) + tf.add_n([tf.constant(0.)] + member.losses)
    member_grads = tape.gradient(loss_i, member.trainable_variables)
    # One forward pass in training mode (batch statistics over 6 examples): the rounding
    # count of tolerance.model_roundings with the batch sums, eps of the outputs' magnitude.
    tolerance.assert_close(z[:, i].numpy(), zi.numpy(), dtype=np.float32,
                           ulps=tolerance.model_roundings(member, batch=6))
    # Each stacked variable's gradient, sliced to member i, is member i's own gradient
    # (the loss is a sum over members). Variables pair up in layer order. Forward and
    # backward passes: twice the count (the loss squares the outputs), eps of each
    # gradient's magnitude (measured: up to 85 eps in resnet18, whose count is 66,000:
    # its 20 batch normalisations sum up to 1,536 terms each, twice).
    stacked_parts = [stacked.member_value(v, g, i)
                     for v, g in zip(stacked.trainable_variables, grads)]
    ordered = [p for layer_parts in _by_layer(stacked, stacked_parts) for p in layer_parts]
    assert len(ordered) == len(member_grads)
    for got, want in zip(ordered, member_grads):
      tolerance.assert_close(np.asarray(got), want.numpy(), dtype=np.float32,
                             ulps=2 * tolerance.model_roundings(member, batch=6))


# (layer, layout, one member's input shape): every input layout of both stacked layers,
# rank-2 and higher-rank Dense inputs.
LAYER_CASES = [
    pytest.param(kind, layout, shape, id=f"{kind}-{layout}-rank{len(shape)}")
    for kind, shapes in (("dense", [(5, 3), (5, 2, 3)]), ("conv", [(5, 7, 7, 2)]))
    for layout in ("shared", "member", "grouped") for shape in shapes]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("kind,layout,shape", LAYER_CASES)
def test_stacked_layers_equal_the_member_loop(kind, layout, shape, policy):
  """StackedDense / StackedConv2D in every input layout equal M Keras layers, in float32
  and in bfloat16 (where TF's ellipsis einsum once gave wrong rows on AMX CPUs)."""
  m, units = 3, 4
  rng = np.random.default_rng(6)
  c = shape[-1]
  if kind == "dense":
    stacked = vectorized.StackedDense(units, m, dtype=policy)
    stacked.build_for(c)
    members = [keras.layers.Dense(units, dtype=policy) for _ in range(m)]
    terms = c                                  # products in each output's dot product
  else:
    stacked = vectorized.StackedConv2D(units, 3, m, strides=2, dtype=policy)
    stacked.build_for(c)
    members = [keras.layers.Conv2D(units, 3, strides=2, dtype=policy) for _ in range(m)]
    terms = 3 * 3 * c
  kernel, bias = (rng.normal(size=w.shape).astype(np.float32) for w in stacked.weights)
  stacked.set_weights([kernel, bias])
  for i, member in enumerate(members):
    member.build((None,) + shape[1:])
    member.set_weights([kernel[i], bias[i]] if kind == "dense" else
                       [kernel[..., i * units:(i + 1) * units],
                        bias[i * units:(i + 1) * units]])
  if layout == "shared":
    x = rng.normal(size=shape).astype(np.float32)
    x_of = lambda i: x
  elif layout == "member":
    x = rng.normal(size=(m,) + shape).astype(np.float32)
    x_of = lambda i: x[i]
  else:
    x = rng.normal(size=shape[:-1] + (m * c,)).astype(np.float32)
    x_of = lambda i: x[..., i * c:(i + 1) * c]
  value = vectorized._Value(tf.constant(x), layout, m)   # pylint: disable=protected-access
  y = stacked.apply_value(value)
  y = y.to_member().t.numpy()                  # [members, batch, ..., units]

  compute = stacked.compute_dtype
  rounded = lambda a: tf.cast(tf.cast(a, compute), tf.float64).numpy()
  for i, member in enumerate(members):
    xi, (ki, bi) = rounded(x_of(i)), [rounded(w) for w in member.get_weights()]
    if kind == "dense":
      exact, scale = xi @ ki + bi, np.abs(xi) @ np.abs(ki) + np.abs(bi)
    else:
      conv = lambda a, k: tf.nn.convolution(a, k, strides=2, padding="VALID").numpy()
      exact, scale = conv(xi, ki) + bi, conv(np.abs(xi), np.abs(ki)) + np.abs(bi)
    # The exact x W + b of the inputs and weights as the layers see them (rounded to the
    # compute dtype): a dot product of `terms` products plus the bias, rounded to the
    # compute dtype, is off by at most (terms + 2) eps sum|terms|, in any summation order
    # and accumulation width. Both the Keras member and the stacked slice must be within
    # that; so they are within twice that of each other.
    bound = dict(dtype=compute, ulps=terms + 2, scale=scale)
    want = member(x_of(i)).numpy()
    tolerance.assert_close(want, exact, **bound, err_msg=f"Keras member {i}")
    tolerance.assert_close(y[i], exact, **bound, err_msg=f"stacked member {i}")
    tolerance.assert_close(y[i], want, dtype=compute, ulps=2 * (terms + 2), scale=scale,
                           err_msg=f"stacked vs Keras member {i}")


def test_grouped_convolution_as_one_op_equals_per_member_convolutions(monkeypatch):
  """The grouped layout's two forms: one grouped convolution (GPU, TPU) and, on CPU, one
  convolution per member (CPU kernels have grouped ones only through oneDNN)."""
  m, c, filters = 3, 2, 4
  layer = vectorized.StackedConv2D(filters, 3, m, strides=2, padding="same")
  layer.build_for(c)
  rng = np.random.default_rng(7)
  layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.weights])
  t = tf.constant(rng.normal(size=(5, 9, 9, m * c)), tf.float32)
  x = vectorized._Value(t, vectorized.GROUPED, m)   # pylint: disable=protected-access
  values = {}
  for one_op in (False, True):
    monkeypatch.setattr(vectorized, "_grouped_convolutions", lambda one_op=one_op: one_op)
    values[one_op] = layer.apply_value(x).t.numpy()   # eager: no grappler fusion
  kernel, bias = layer.get_weights()
  # Each output entry is a dot product of 3 x 3 x c products plus the bias in either form:
  # within 2 (9 c + 2) eps of its sum of |terms|, bounded here by the largest such sum.
  terms = np.abs(x.t.numpy()).max() * np.abs(kernel).sum(axis=(0, 1, 2)).max()
  tolerance.assert_close(values[True], values[False], dtype=np.float32,
                         ulps=2 * (9 * c + 2), scale=terms + np.abs(bias).max())


def _by_layer(stacked, parts):
  """Stacked trainable parts regrouped in the members' layer order."""
  by_var = {id(v): p for v, p in zip(stacked.trainable_variables, parts)}
  return [[by_var[id(w)] for w in layer.trainable_weights]
          for layer in stacked.stacked_layers if layer is not None and layer.weights]


def test_batch_norm_moving_statistics_update_per_member():
  members, shape = _members("resnet18", 2)
  stacked = vectorized.StackedMembers(members)
  xs = np.random.default_rng(2).normal(size=(2, 8) + shape).astype(np.float32)
  stacked(xs, training=True, per_member=True)
  for i, member in enumerate(members):
    member(xs[i], training=True)
  fresh = [keras.models.clone_model(members[0]) for _ in members]
  stacked.assign_to(fresh)
  # Moving means/variances included: each is updated from batch statistics of layer
  # inputs that went through a training forward pass (its rounding count, eps of each
  # weight's magnitude); the other weights are copies.
  for member, copy in zip(members, fresh):
    for a, b in zip(member.get_weights(), copy.get_weights()):
      tolerance.assert_close(b, a, dtype=np.float32,
                             ulps=tolerance.model_roundings(member, batch=8))


def test_weights_round_trip_through_members():
  members, shape = _members("small_cnn")
  stacked = vectorized.StackedMembers(members)
  copies = stacked.to_members()
  for member, copy in zip(members, copies):
    for a, b in zip(member.get_weights(), copy.get_weights()):
      np.testing.assert_array_equal(a, b)
  x = np.random.default_rng(3).uniform(size=(4,) + shape).astype(np.float32)
  ens = td.Ensemble(stacked)              # an Ensemble built from the vectorized model
  assert ens.vectorized and ens.num_members == 3
  # The same stacked graph, traced by the Ensemble: one forward pass's rounding count.
  tolerance.assert_close(ens(x).numpy(), stacked(x).numpy(), dtype=np.float32,
                         ulps=tolerance.model_roundings(members[0]))


@pytest.mark.parametrize("case", ["lambda", "subclassed", "different", "shared_layer",
                                  "constraint"])
def test_what_cannot_be_stacked_is_named(case):
  def with_lambda(seed):
    x = keras.Input((3,))
    h = keras.layers.Dense(4, name="hidden")(x)
    h = keras.layers.Lambda(lambda t: t * 2.0, name="doubling")(h)
    return keras.Model(x, keras.layers.Dense(2)(h))

  class Sub(keras.Model):
    def __init__(self):
      super().__init__()
      self.dense = keras.layers.Dense(2)

    def call(self, x):
      return self.dense(x)

  def shared(seed):
    x = keras.Input((2,))
    layer = keras.layers.Dense(2, name="twice")
    return keras.Model(x, layer(layer(x)))

  if case == "lambda":
    members, layer = [with_lambda(s) for s in range(2)], "doubling"
  elif case == "subclassed":
    members, layer = [Sub(), Sub()], None
    for m in members:
      m(np.zeros([1, 3], np.float32))
  elif case == "different":
    members = [td.models.mlp((3,), [4], 2, seed=0), td.models.mlp((3,), [5], 2, seed=1)]
    layer = members[0].layers[1].name
  elif case == "shared_layer":
    members, layer = [shared(s) for s in range(2)], "twice"
  else:
    x = keras.Input((3,))
    out = keras.layers.Dense(2, kernel_constraint=keras.constraints.MaxNorm(1.),
                             name="constrained")(x)
    members, layer = [keras.Model(x, out)], "constrained"
  with pytest.raises(vectorized.NotVectorizableError) as info:
    vectorized.StackedMembers(members)
  assert info.value.layer == layer
  if layer:
    assert repr(layer) in str(info.value)
  assert vectorized.vectorization_blocker(members) is not None
  with pytest.raises(vectorized.NotVectorizableError):
    td.Ensemble(members, vectorize=True)
  ens = td.Ensemble(members)                # "auto": runs the members side by side
  assert not ens.vectorized and ens.vectorize_reason


def test_ensemble_vectorize_argument():
  members, shape = _members("mlp")
  x = np.random.default_rng(4).normal(size=(6,) + shape).astype(np.float32)
  fast, slow = td.Ensemble(members, vectorize=True), td.Ensemble(members, vectorize=False)
  assert fast.vectorized and not slow.vectorized
  auto = td.Ensemble(members)   # stacked on an accelerator only (measured: not worth it on CPU)
  assert auto.vectorized == bool(tf.config.list_logical_devices("GPU"))
  if not auto.vectorized:
    assert "CPU" in auto.vectorize_reason
  # Stacked and side by side: one forward pass's rounding count, eps of the magnitude.
  bound = dict(dtype=np.float32, ulps=tolerance.model_roundings(members[0]))
  tolerance.assert_close(fast(x).numpy(), slow(x).numpy(), **bound)
  with pytest.raises(ValueError, match="vectorize"):
    td.Ensemble(members, vectorize="yes")
  # The stacked weights are a copy: refresh() picks up a changed member.
  members[1].layers[-1].bias.assign([5., -5.])
  assert not np.allclose(fast(x).numpy()[:, 1], slow(x).numpy()[:, 1])
  fast.refresh()
  tolerance.assert_close(fast(x).numpy(), slow(x).numpy(), **bound)


def _manual_member_training(build, seed, x, y, epochs, batch_size, learning_rate):
  """One member trained alone, reading rows in the vectorized trainer's order."""
  member = build(seed)
  opt = keras.optimizers.Adam(learning_rate)
  for epoch in range(epochs):
    order = td.ensemble.member_permutation(len(x), seed, epoch).numpy()
    for start in range(0, len(x), batch_size):
      rows = order[start:start + batch_size]
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(FAMILY.nll(y[rows], member(x[rows], training=True)))
      grads = tape.gradient(loss, member.trainable_variables)
      opt.apply_gradients(zip(grads, member.trainable_variables))
  return member


def test_vectorized_training_equals_separate_trainings():
  """Same init, same data order, Adam: the stacked members are M independent trainings."""
  rng = np.random.default_rng(5)
  x = rng.uniform(-3, 3, (70, 2)).astype(np.float32)
  y = (np.sin(x[:, 0]) + 0.1 * rng.normal(size=70)).astype(np.float32)
  build = lambda s: td.models.mlp((2,), [8], 2, seed=s)
  ens = td.train_ensemble(build, (x, y), FAMILY, num_members=3, epochs=3, batch_size=16,
                          learning_rate=1e-2, seed=7, verbose=0, vectorize=True)
  assert ens.vectorized and len(ens.history.history["nll"]) == 3   # vectorize=True
  for m in range(3):
    alone = _manual_member_training(build, 7 + m, x, y, 3, 16, 1e-2)
    # 15 Adam steps of float32 arithmetic in another grouping. Not a rounding bound: Adam
    # divides each gradient by its running RMS, so a rounding-level change of a gradient
    # near 0 can move an update by O(lr), and no count of roundings bounds 15 such steps.
    # Measured: weights within 1 eps (1.2e-7), outputs within 1.5 eps of their magnitude,
    # with and without oneDNN; 2e-5 (~170 eps at 1) leaves room for other CPUs, while a
    # member trained on another data order differs by ~1e-2.
    for a, b in zip(ens.members[m].get_weights(), alone.get_weights()):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(ens(x).numpy()[:, m], alone(x).numpy(), rtol=1e-4, atol=2e-5)


def test_train_ensemble_falls_back_and_says_why():
  def build(seed):
    x = keras.Input((1,))
    h = keras.layers.Lambda(lambda t: t + 1.0, name="shift")(x)
    return keras.Model(x, keras.layers.Dense(2, kernel_initializer=keras.initializers.
                                             GlorotUniform(seed=seed))(h))

  x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
  y = x[:, 0] * 0.5
  with pytest.warns(td.ensemble.VectorizationWarning, match="'shift'"):
    ens = td.train_ensemble(build, (x, y), FAMILY, num_members=2, epochs=1, verbose=0)
  assert not ens.vectorized and not ens.training_vectorized and ens(x).shape == (32, 2, 2)
  with pytest.raises(vectorized.NotVectorizableError, match="'shift'"):
    td.train_ensemble(build, (x, y), FAMILY, num_members=2, epochs=1, verbose=0,
                      vectorize=True)
  with pytest.raises(ValueError, match="vectorize"):
    td.train_ensemble(build, (x, y), FAMILY, num_members=2, epochs=1, verbose=0,
                      vectorize=1)


def test_vectorized_training_from_a_dataset_reshuffles_per_member():
  x = np.linspace(-2, 2, 48, dtype=np.float32)[:, None]
  y = np.sin(x[:, 0])
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  ens = td.train_ensemble(lambda s: td.models.mlp((1,), [8], 2, seed=s), ds, FAMILY,
                          num_members=3, epochs=4, batch_size=16, learning_rate=1e-2,
                          seed=0, verbose=0, vectorize=True)
  nll = ens.history.history["nll"]
  assert ens.training_vectorized and len(nll) == 4 and nll[-1] < nll[0]


def test_divergence_is_loud():
  x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
  y = np.full(20, np.float32(1e30))   # finite, but its square overflows float32
  with pytest.raises(FloatingPointError, match="epoch 0"):
    td.train_ensemble(lambda s: td.models.mlp((1,), [4], 2, seed=s), (x, y), FAMILY,
                      num_members=2, epochs=2, verbose=0)


@pytest.mark.slow
def test_vectorized_ensemble_matches_side_by_side_statistics(load_or_skip):
  """On UCI yacht (split 0), vectorized and side-by-side training give ensembles of equal
  quality: they differ only in the members' (independent, random) data orders."""
  from tfp_distill.datasets import uci
  data = load_or_skip(uci.load_uci, "yacht", 0)
  family = td.families.HeteroscedasticNormal(1, min_variance=1e-4)
  build = lambda s: td.models.mlp(data.x_train.shape[1:], [50], 2, seed=s)
  scores = {True: [], False: []}
  for seed in range(3):
    for vectorize in (True, False):
      ens = td.train_ensemble(build, (data.x_train, data.y_train), family, num_members=5,
                              epochs=40, batch_size=32, learning_rate=1e-2, seed=seed,
                              verbose=0, vectorize=vectorize)
      assert ens.vectorized == ens.training_vectorized == vectorize
      z = ens(data.x_test)
      rmse = float(td.metrics.rmse(data.y_test, td.decompose_ensemble(z, family)
                                   ["prediction"]))
      nll = float(td.metrics.gaussian_mixture_nll(data.y_test, family.mean(z)[..., 0],
                                                  family.variance(z)[..., 0]))
      scores[vectorize].append((rmse, nll))
  vec, side = np.mean(scores[True], axis=0), np.mean(scores[False], axis=0)
  # Measured (normalised units): RMSE 0.047-0.057 and NLL -1.88..-1.55 per seed either
  # way; the means over 3 seeds agree to ~10% RMSE and ~0.1 nats. Bounds at ~2x that.
  assert abs(vec[0] - side[0]) < 0.2 * side[0], scores
  assert abs(vec[1] - side[1]) < 0.3, scores
