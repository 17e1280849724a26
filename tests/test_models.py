"""Tests for tfp_distill.models: shapes, heads, seeds, parameter counts, round trips."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill import models
from tfp_distill._keras import keras

import tolerance

BATCH = 3


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=(BATCH,) + shape).astype(np.float32)


def _trainable_count(model):
  return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _non_trainable_count(model):
  return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def _multiply_adds(model):
  """Multiply-adds per example of the conv and dense layers, from the built shapes."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      kh, kw, cin, cout = layer.kernel.shape
      _, h, w, _ = layer.output.shape
      total += h * w * kh * kw * cin * cout
    elif isinstance(layer, keras.layers.Dense):
      total += layer.kernel.shape[0] * layer.kernel.shape[1]
  return total


def _small_resnet(**kwargs):
  return td.models.resnet18_cifar(width=8, **kwargs)


def test_public_names():
  assert set(td.models.__all__) == {"mlp", "small_cnn", "resnet18_cifar", "RandomSign",
                                    "DenseBatchEnsemble", "Conv2DBatchEnsemble",
                                    "batch_ensemble_cnn", "TileMembers", "MembersToAxis",
                                    "keras_module", "output_layer"}
  for name in td.models.__all__:
    assert hasattr(td.models, name)


# --- output shapes, with and without a head -----------------------------------------


@pytest.mark.parametrize("build, shape", [
    (td.models.small_cnn, (28, 28, 1)),
    (_small_resnet, (32, 32, 3)),
])
def test_params_shape(build, shape):
  model = build(output_size=7, seed=0)
  out = model(_images(shape))
  assert out.shape == (BATCH, 7)
  assert np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize("build, shape", [
    (td.models.small_cnn, (28, 28, 1)),
    (_small_resnet, (32, 32, 3)),
])
def test_normal_head_gives_distribution(build, shape):
  head = td.heads.NormalHead
  model = build(output_size=head.params_size(10), head=head(10), seed=0)
  assert head.params_size(10) == 20
  dist = model(_images(shape))
  assert dist.batch_shape == [BATCH]
  assert dist.event_shape == [10]
  assert dist.mean().shape == (BATCH, 10)
  assert dist.log_prob(tf.zeros([BATCH, 10])).shape == (BATCH,)


def test_small_cnn_other_filters_and_input():
  # 20x24 -> conv 18x22 -> pool 9x11 -> conv 7x9 -> pool 3x4: 3*4*8 = 96 features.
  model = td.models.small_cnn(input_shape=(20, 24, 3), filters=(8, 8), dense_units=16,
                              dropout=0.5, output_size=4, seed=0)
  assert model.get_layer("flatten").output.shape == (None, 96)
  assert model(_images((20, 24, 3))).shape == (BATCH, 4)
  # A third block would get a 3x4 map: conv 1x2, pool 0x1 -- empty, so it is refused.
  with pytest.raises(ValueError, match="too small"):
    td.models.small_cnn(input_shape=(20, 24, 3), filters=(8, 8, 8))


@pytest.mark.parametrize("kwargs", [{"dropout": 1.0}, {"dropout": -0.1}])
def test_small_cnn_rejects_bad_dropout(kwargs):
  with pytest.raises(ValueError, match="dropout"):
    td.models.small_cnn(**kwargs)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"l2": -1.0}])
def test_resnet_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError):
    td.models.resnet18_cifar(**kwargs)


def test_resnet_feature_map_sizes():
  # CIFAR stem: no stride, no max-pool, so the stages see 32, 32, 16, 8, 4.
  model = _small_resnet(seed=0)
  sizes = [model.get_layer(f"stage{s}_block2_out").output.shape[1:] for s in (1, 2, 3, 4)]
  assert sizes == [(32, 32, 8), (16, 16, 16), (8, 8, 32), (4, 4, 64)]
  # Projection shortcuts exactly where the shape changes: first block of stages 2-4.
  names = {layer.name for layer in model.layers}
  assert {n for n in names if n.endswith("_proj")} == {
      "stage2_block1_proj", "stage3_block1_proj", "stage4_block1_proj"}


@pytest.mark.parametrize("size", [32, 31])
def test_resnet_projection_equals_strided_1x1_conv(size):
  # The projection subsamples then applies a stride-1 1x1 conv (see resnet18_cifar);
  # this equals a 1x1 conv of stride 2 with 'same' padding, even and odd sizes.
  model = _small_resnet(input_shape=(size, size, 3), seed=0)
  block_input = model.get_layer("stage1_block2_out").output
  projected = model.get_layer("stage2_block1_proj").output
  probe = keras.Model(model.inputs, [block_input, projected])
  h, p = probe(_images((size, size, 3)))
  kernel = model.get_layer("stage2_block1_proj").kernel
  expected = tf.nn.conv2d(h, kernel, strides=2, padding="SAME")
  assert p.shape == expected.shape == (BATCH, (size + 1) // 2, (size + 1) // 2, 16)
  # Each side a dot product over the c input channels of the 1x1 kernel (c + 1 eps of
  # its sum of |terms|, elementwise): within twice that of each other.
  c = int(kernel.shape[-2])
  terms = tf.nn.conv2d(tf.abs(h), tf.abs(kernel), strides=2, padding="SAME").numpy()
  tolerance.assert_close(p.numpy(), expected.numpy(), dtype=np.float32, ulps=2 * (c + 1),
                         scale=terms)


# --- seeds ------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda seed: td.models.small_cnn(seed=seed, dropout=0.25),
    lambda seed: _small_resnet(seed=seed),
])
def test_same_seed_same_weights(build):
  a, b, c = build(3), build(3), build(4)
  assert len(a.weights) == len(b.weights)
  for wa, wb in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_array_equal(wa, wb)
  # A different seed changes every kernel (biases and BN start at constants).
  kernels = [(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()) if wa.ndim >= 2]
  assert kernels and all(not np.array_equal(wa, wc) for wa, wc in kernels)


def test_layers_get_distinct_seeds():
  # Layer i uses seed + i, so two layers of the same shape are not initialized alike.
  model = td.models.small_cnn(filters=(8, 8, 8), seed=0, input_shape=(40, 40, 1))
  k2 = model.get_layer("conv2").kernel.numpy()
  k3 = model.get_layer("conv3").kernel.numpy()
  assert k2.shape == k3.shape and not np.array_equal(k2, k3)


# --- parameter counts and multiply-adds ---------------------------------------------


def test_small_cnn_parameter_count_and_multiply_adds():
  # Defaults: 28x28x1 -> conv 26x26x32 -> pool 13x13x32 -> conv 11x11x64 -> pool 5x5x64
  # -> flatten 1600 -> dense 128 -> dense 10.
  #   conv1   3*3*1*32 + 32  =     320      26*26 * 3*3*1*32  =   194,688 MACs
  #   conv2   3*3*32*64 + 64 =  18,496      11*11 * 3*3*32*64 = 2,230,272 MACs
  #   dense1  1600*128 + 128 = 204,928      1600*128          =   204,800 MACs
  #   dense2  128*10 + 10    =   1,290      128*10            =     1,280 MACs
  #   total                    225,034                          2,631,040 MACs
  params = (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (1600 * 128 + 128) + (
      128 * 10 + 10)
  macs = (26 * 26 * 3 * 3 * 1 * 32 + 11 * 11 * 3 * 3 * 32 * 64 + 1600 * 128 + 128 * 10)
  assert params == 225_034 and macs == 2_631_040   # the numbers in the docstring
  model = td.models.small_cnn(seed=0)
  assert model.count_params() == params
  assert _trainable_count(model) == params
  assert _multiply_adds(model) == macs


def test_resnet18_cifar_parameter_count():
  # Convs have no bias; each BN has 2C trainable (gamma, beta) and 2C moving statistics.
  # stem:    conv 3*3*3*64 = 1,728;  BN 2*64 = 128                          ->     1,856
  # stage 1: 2 blocks * 2 * (conv 3*3*64*64 = 36,864 + BN 128)              ->   147,968
  # stage 2: block 1: 3*3*64*128 = 73,728 + 3*3*128*128 = 147,456
  #                   + proj 1*1*64*128 = 8,192 + 3 BN * 256 = 768  = 230,144
  #          block 2: 2 * (147,456 + 256)                            = 295,424 ->   525,568
  # stage 3: block 1: 294,912 + 589,824 + 32,768 + 3 * 512 = 919,040
  #          block 2: 2 * (589,824 + 512) = 1,180,672                          -> 2,099,712
  # stage 4: block 1: 1,179,648 + 2,359,296 + 131,072 + 3 * 1,024 = 3,673,088
  #          block 2: 2 * (2,359,296 + 1,024) = 4,720,640                      -> 8,393,728
  # dense:   512*10 + 10 = 5,130
  # total:   1,856 + 147,968 + 525,568 + 2,099,712 + 8,393,728 + 5,130 = 11,173,962
  def conv(k, cin, cout):
    return k * k * cin * cout

  def bn(c):
    return 2 * c

  stem = conv(3, 3, 64) + bn(64)
  trainable = stem
  bn_channels = 64
  cin = 64
  for cout in (64, 128, 256, 512):
    for block in range(2):
      trainable += conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout)
      bn_channels += 2 * cout
      if cin != cout:
        trainable += conv(1, cin, cout) + bn(cout)
        bn_channels += cout
      cin = cout
  trainable += 512 * 10 + 10
  assert trainable == 11_173_962
  model = td.models.resnet18_cifar(width=64, output_size=10, seed=0)
  assert _trainable_count(model) == trainable
  assert _non_trainable_count(model) == 2 * bn_channels == 9_600
  assert model.count_params() == 11_173_962 + 9_600
  assert _multiply_adds(model) == 555_422_720   # the number in the docstring


def test_resnet_l2_regularizes_every_kernel():
  model = _small_resnet(l2=1e-3, seed=0)
  kernels = [layer for layer in model.layers
             if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
  assert len(kernels) == 1 + 16 + 3 + 1   # stem, 8 blocks * 2, 3 projections, dense
  assert len(model.losses) == len(kernels)
  expected = sum(1e-3 * np.sum(layer.kernel.numpy() ** 2) for layer in kernels)
  # Positive terms: per kernel a sum of its n squares (n + 2 eps, the largest n counts),
  # then a sum over the 21 kernels (21), on either side (NumPy sums in float32 too).
  largest = max(layer.kernel.numpy().size for layer in kernels)
  tolerance.assert_close(float(tf.add_n(model.losses)), expected, dtype=np.float32,
                         ulps=2 * (largest + 2 + 21))
  assert not _small_resnet(seed=0).losses


# --- serialization ------------------------------------------------------------------


def test_small_cnn_config_round_trip():
  model = td.models.small_cnn(seed=0, dropout=0.25)
  x = _images((28, 28, 1))
  again = keras.Model.from_config(model.get_config())
  again.set_weights(model.get_weights())
  # The same float32 ops on the same weights: one forward pass's rounding at most.
  tolerance.assert_close(again(x).numpy(), model(x).numpy(), dtype=np.float32,
                         ulps=tolerance.model_roundings(model))
  assert again.get_config() == model.get_config()


def test_small_cnn_with_head_config_round_trip():
  head = td.heads.NormalHead
  model = td.models.small_cnn(output_size=head.params_size(10), head=head(10), seed=0)
  x = _images((28, 28, 1))
  again = keras.Model.from_config(model.get_config())
  again.set_weights(model.get_weights())
  a, b = model(x), again(x)
  # The same float32 ops on the same weights: one forward pass's rounding at most
  # (the head's softplus counted in it).
  bound = dict(dtype=np.float32, ulps=tolerance.model_roundings(model))
  tolerance.assert_close(b.mean().numpy(), a.mean().numpy(), **bound)
  tolerance.assert_close(b.stddev().numpy(), a.stddev().numpy(), **bound)


def test_small_cnn_keras_save_load(tmp_path):
  model = td.models.small_cnn(seed=0, dropout=0.25)
  x = _images((28, 28, 1))
  path = str(tmp_path / "cnn.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  tolerance.assert_close(loaded(x).numpy(), model(x).numpy(), dtype=np.float32,
                         ulps=tolerance.model_roundings(model))   # one forward pass
  for wa, wb in zip(model.get_weights(), loaded.get_weights()):
    np.testing.assert_array_equal(wa, wb)


# --- one training step --------------------------------------------------------------


@pytest.mark.parametrize("build, shape", [
    (lambda: td.models.small_cnn(dropout=0.25, seed=0), (28, 28, 1)),
    (lambda: _small_resnet(l2=1e-4, seed=0), (32, 32, 3)),
])
def test_one_training_step_is_finite(build, shape):
  model = build()
  model.compile(keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)   # tracing the train step costs more than the step
  x = _images(shape, seed=1)
  y = np.arange(BATCH) % 10
  before = [w.copy() for w in model.get_weights()]
  loss = model.train_on_batch(x, y)
  assert np.isfinite(loss)
  after = model.get_weights()
  assert all(np.all(np.isfinite(w)) for w in after)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))
  assert np.all(np.isfinite(model(x, training=False).numpy()))


# ---------------------------------------------------------------------------------------
# BatchEnsemble layers against an explicit per-member loop
# ---------------------------------------------------------------------------------------


def _randomize(layer, seed):
  rng = np.random.default_rng(seed)
  layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])


def test_dense_batch_ensemble_equals_a_member_loop():
  layer = models.DenseBatchEnsemble(5, ensemble_size=3, activation="tanh")
  x = np.random.default_rng(0).normal(size=(3 * 4, 6)).astype(np.float32)
  layer(x)
  _randomize(layer, 1)
  w, alpha, gamma, bias = (v.numpy() for v in (layer.kernel, layer.alpha, layer.gamma,
                                               layer.ensemble_bias))
  expected = np.concatenate([
      np.tanh(x[4 * e:4 * (e + 1)] @ (w * np.outer(alpha[e], gamma[e])) + bias[e])
      for e in range(3)])
  # Either side: the 6 products x (alpha W gamma) grouped differently (3 roundings each)
  # summed with the bias: (6 + 5) eps of the sum of |terms|; tanh adds 4 eps of its
  # value (and passes the rest on with gain <= 1).
  terms = np.concatenate([
      np.abs(x[4 * e:4 * (e + 1)]) @ np.abs(w * np.outer(alpha[e], gamma[e]))
      + np.abs(bias[e]) for e in range(3)])
  tolerance.assert_close(layer(x).numpy(), expected, dtype=np.float32,
                         ulps=2 * (6 + 5) + 4, scale=terms)


@pytest.mark.parametrize("padding,strides", [("valid", 1), ("same", 2)])
def test_conv2d_batch_ensemble_equals_a_member_loop(padding, strides):
  layer = models.Conv2DBatchEnsemble(4, 3, ensemble_size=2, strides=strides,
                                     padding=padding)
  x = np.random.default_rng(2).normal(size=(2 * 3, 7, 7, 5)).astype(np.float32)
  layer(x)
  _randomize(layer, 3)
  k, alpha, gamma, bias = (v.numpy() for v in (layer.kernel, layer.alpha, layer.gamma,
                                               layer.ensemble_bias))
  expected = np.concatenate([
      tf.nn.conv2d(x[3 * e:3 * (e + 1)], k * alpha[e][None, None, :, None]
                   * gamma[e][None, None, None, :], strides, padding.upper()).numpy()
      + bias[e] for e in range(2)])
  # Either side: 3 x 3 x 5 = 45 products x (alpha k gamma) grouped differently (3
  # roundings each), summed with the bias: (45 + 5) eps of the sum of |terms|.
  terms = np.concatenate([
      tf.nn.conv2d(np.abs(x[3 * e:3 * (e + 1)]), np.abs(k * alpha[e][None, None, :, None]
                   * gamma[e][None, None, None, :]), strides, padding.upper()).numpy()
      + np.abs(bias[e]) for e in range(2)])
  tolerance.assert_close(layer(x).numpy(), expected, dtype=np.float32, ulps=2 * (45 + 5),
                         scale=terms)


def test_batch_ensemble_layers_round_trip_and_reject_bad_batches(tmp_path):
  inputs = keras.Input((8, 8, 1))
  h = models.Conv2DBatchEnsemble(4, 3, ensemble_size=2, activation="relu",
                                 fast_weight_initializer=models.RandomSign(seed=1))(inputs)
  h = keras.layers.Flatten()(h)
  out = models.DenseBatchEnsemble(3, ensemble_size=2)(h)
  model = keras.Model(inputs, out)
  x = np.random.default_rng(4).normal(size=(4, 8, 8, 1)).astype(np.float32)
  path = str(tmp_path / "be.keras")
  model.save(path)
  again = keras.models.load_model(path)
  tolerance.assert_close(again(x).numpy(), model(x).numpy(), dtype=np.float32,
                         ulps=tolerance.model_roundings(model))   # one forward pass
  config = model.layers[1].get_config()
  assert models.Conv2DBatchEnsemble.from_config(config).get_config() == config
  signs = models.RandomSign(seed=3)((1000,)).numpy()
  assert set(np.unique(signs)) == {-1.0, 1.0} and abs(signs.mean()) < 0.1
  with pytest.raises(tf.errors.InvalidArgumentError, match="ensemble_size"):
    models.DenseBatchEnsemble(2, ensemble_size=3)(np.zeros((4, 2), np.float32))
  with pytest.raises(ValueError, match="ensemble_size must be >= 1"):
    models.DenseBatchEnsemble(2, ensemble_size=0)


def test_batch_ensemble_cnn_member_equals_an_explicit_small_cnn(tmp_path):
  """Member e of the BatchEnsemble CNN == small_cnn with kernels W * (alpha_e gamma_e^T)."""
  e = 3
  model = td.models.batch_ensemble_cnn((12, 12, 1), 5, e, filters=(4,), dense_units=6,
                                       seed=3)
  x = np.random.default_rng(0).uniform(size=(7, 12, 12, 1)).astype(np.float32)
  out = model(x).numpy()
  assert out.shape == (7, e, 5)
  for member in range(e):
    ref = td.models.small_cnn((12, 12, 1), 5, filters=(4,), dense_units=6, seed=99)
    for name, ref_name in (("conv1", "conv1"), ("dense1", "dense1"), ("logits", "params")):
      layer = model.get_layer(name)
      kernel = layer.kernel.numpy()
      alpha, gamma = layer.alpha.numpy()[member], layer.gamma.numpy()[member]
      scaled = kernel * alpha[:, None] * gamma if kernel.ndim == 2 else (
          kernel * alpha[None, None, :, None] * gamma)
      ref.get_layer(ref_name).set_weights([scaled, layer.ensemble_bias.numpy()[member]])
    # Both forward passes (tolerance.model_roundings of the small CNN, each), the
    # BatchEnsemble's kernels scaled by alpha and gamma in other groupings (3 roundings
    # per product, in 3 weighted layers).
    tolerance.assert_close(out[:, member], ref(x).numpy(), dtype=np.float32,
                           ulps=2 * tolerance.model_roundings(ref) + 3 * 3)
  assert not np.allclose(out[:, 0], out[:, 1])    # random-sign fast weights differ
  path = str(tmp_path / "be.keras")
  model.save(path)
  tolerance.assert_close(keras.models.load_model(path)(x).numpy(), out, dtype=np.float32,
                         ulps=tolerance.model_roundings(model))   # one forward pass
  again = td.models.batch_ensemble_cnn((12, 12, 1), 5, e, filters=(4,), dense_units=6,
                                       seed=3)
  np.testing.assert_array_equal(again(x).numpy(), out)
