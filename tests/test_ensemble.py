"""Tests for tfp_distill.ensemble: stacking, joint training, save/load, errors."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
from tfp_distill._keras import keras

import tolerance

FAMILY = td.families.HeteroscedasticNormal()


def _member(seed, hidden=8):
  return td.models.mlp((1,), [hidden], FAMILY.params_size, seed=seed)


def test_ensemble_equals_per_member_loop():
  members = [_member(s) for s in range(4)]
  ens = td.Ensemble(members, family=FAMILY)
  x = np.linspace(-2, 2, 9, dtype=np.float32)[:, None]
  z = ens(x)
  assert z.shape == (9, 4, 2)
  # The members' own float32 ops, in another graph (and batches): one forward pass's
  # rounding, tolerance.model_roundings eps of the outputs' magnitude.
  bound = dict(dtype=np.float32, ulps=tolerance.model_roundings(members[0]))
  for m, member in enumerate(members):
    tolerance.assert_close(z[:, m].numpy(), member(x).numpy(), **bound)
  # Inside a tf.function with a dynamic batch, the same values.
  f = tf.function(ens.call, input_signature=[tf.TensorSpec([None, 1])])
  tolerance.assert_close(f(x).numpy(), z.numpy(), **bound)
  tolerance.assert_close(ens.predict_targets(x, batch_size=4), z.numpy(), **bound)


def test_save_load_round_trip(tmp_path):
  ens = td.Ensemble([_member(s) for s in range(3)], family=FAMILY)
  x = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
  ens.save(str(tmp_path / "ens"))
  loaded = td.Ensemble.load(str(tmp_path / "ens"))
  assert loaded.num_members == 3 and loaded.family == FAMILY
  np.testing.assert_allclose(loaded(x).numpy(), ens(x).numpy(), rtol=0, atol=0)
  with pytest.raises(FileNotFoundError, match="ensemble.json"):
    td.Ensemble.load(str(tmp_path / "nothing"))
  # A stacked (vectorized) ensemble saves its members and is stacked again on load.
  stacked = td.Ensemble([_member(s) for s in range(3)], family=FAMILY, vectorize=True)
  stacked.save(str(tmp_path / "stacked"))
  again = td.Ensemble.load(str(tmp_path / "stacked"), vectorize=True)
  assert again.vectorized
  np.testing.assert_allclose(again(x).numpy(), stacked(x).numpy(), rtol=0, atol=0)


def test_errors():
  with pytest.raises(ValueError, match="at least one member"):
    td.Ensemble([])
  # Callables and Keras 3 models are members too (tests/test_teachers.py); other objects
  # are not.
  with pytest.raises(ValueError, match="member 0 is of type int, not a Keras model"):
    td.Ensemble([3])
  bad = td.models.mlp((1,), [4], 3, seed=0)
  with pytest.raises(ValueError, match=r"differ in size: member 1 .* gives shape \[2, 3\]"):
    td.Ensemble([_member(0), bad])(np.zeros([2, 1], np.float32))
  with pytest.raises(ValueError, match="params_size=2"):
    td.Ensemble([bad], family=FAMILY)(np.zeros([2, 1], np.float32))


def _sinusoid(n, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-3, 3, (n, 1)).astype(np.float32)
  y = (np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
  return x, y


def test_joint_training_equals_independent_training():
  """Summed losses in one graph == M separate trainings with the same init and data order."""
  x, y = _sinusoid(64, 0)
  # shuffle_buffer=1 keeps the data order, so the reference loop sees the same batches.
  # Both trainers: members side by side in one graph, and vectorized (stacked weights).
  for vectorize in (False, True):
    ens = td.train_ensemble(_member, (x, y), FAMILY, num_members=2, epochs=2,
                            batch_size=16, seed=5, shuffle_buffer=1, verbose=0,
                            vectorize=vectorize)
    assert ens.training_vectorized == vectorize
    _check_equals_manual_training(ens, x, y)


def _check_equals_manual_training(ens, x, y):
  for m in range(2):
    member = _member(5 + m)
    opt = keras.optimizers.Adam(1e-3)
    for _ in range(2):
      for xb, yb in tf.data.Dataset.from_tensor_slices((x, y)).batch(16):
        with tf.GradientTape() as tape:
          loss = tf.reduce_mean(FAMILY.nll(yb, member(xb, training=True)))
        grads = tape.gradient(loss, member.trainable_variables)
        opt.apply_gradients(zip(grads, member.trainable_variables))
    # Same data order, init and optimizer: equal up to float32 summation order. Not a
    # rounding bound: Adam divides each gradient by its running RMS, so a rounding-level
    # change of a gradient near 0 can move a step by O(lr); 8 steps of lr = 1e-3 from the
    # same start stay within 1e-6 here (the outputs are of order 1; a member trained on
    # other batches differs by ~1e-3).
    np.testing.assert_allclose(ens.members[m](x).numpy(), member(x).numpy(), rtol=0,
                               atol=1e-6)


def test_member_streams_are_independent_permutations():
  x = np.arange(20, dtype=np.float32)[:, None]
  data = tf.data.Dataset.from_tensor_slices((x, x[:, 0]))
  stream = td.ensemble.member_streams(data, 3, 20, seed=0, shuffle_buffer=20)
  first, second = [[b[m][1].numpy() for m in range(3)] for b in stream.repeat(2).take(2)]
  for order in first + second:
    np.testing.assert_array_equal(np.sort(order), np.arange(20))   # each a permutation
  assert len({tuple(o) for o in first}) == 3          # members read in different orders
  assert any(tuple(a) != tuple(b) for a, b in zip(first, second))   # reshuffled per epoch


def test_array_member_streams_are_independent_permutations():
  x = np.arange(20, dtype=np.float32)[:, None]
  stream = td.ensemble.array_member_streams(x, x[:, 0], 3, 20, seed=0)
  epochs = [[b[m][1].numpy() for m in range(3)] for b in (next(iter(stream)),
                                                           next(iter(stream)))]
  for order in epochs[0] + epochs[1]:
    np.testing.assert_array_equal(np.sort(order), np.arange(20))
  for m in range(3):   # x and y stay paired
    batch = next(iter(stream))[m]
    np.testing.assert_array_equal(batch[0].numpy()[:, 0], batch[1].numpy())
  assert len({tuple(o) for o in epochs[0]}) == 3
  assert any(tuple(a) != tuple(b) for a, b in zip(*epochs))
  fixed = td.ensemble.array_member_streams(x, x[:, 0], 2, 20, seed=0, shuffle=False)
  np.testing.assert_array_equal(next(iter(fixed))[1][1].numpy(), np.arange(20))


def test_training_fits_data_and_members_differ():
  x, y = _sinusoid(512, 1)
  ens = td.train_ensemble(lambda seed: _member(seed, 32), (x, y), FAMILY, num_members=3,
                          epochs=40, batch_size=32, learning_rate=3e-3, seed=0, verbose=0)
  nll = ens.history.history["nll"]
  assert nll[-1] < nll[0] - 0.3, nll
  z = ens(x)
  u = td.decompose_ensemble(z, FAMILY)
  rmse = float(td.metrics.rmse(np.sin(x[:, 0]), u["prediction"]))
  assert rmse < 0.2, rmse   # noise sd 0.1; a fit of sin within ~2 noise sds
  assert float(tf.reduce_min(u["epistemic"])) > 0.0   # independent inits -> a spread


def test_train_ensemble_accepts_a_dataset_and_rejects_bad_data():
  x, y = _sinusoid(32, 2)
  ds = tf.data.Dataset.from_tensor_slices((x, y))
  ens = td.train_ensemble(_member, ds, FAMILY, num_members=2, epochs=1, verbose=0)
  assert ens(x).shape == (32, 2, 2)
  with pytest.raises(ValueError, match="empty"):
    td.train_ensemble(_member, (x[:0], y[:0]), FAMILY, num_members=2, epochs=1, verbose=0)
  x_nan = x.copy()
  x_nan[3] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    td.train_ensemble(_member, (x_nan, y), FAMILY, num_members=2, epochs=1, verbose=0)
  with pytest.raises(ValueError, match="params_size=2"):
    td.train_ensemble(lambda seed: td.models.mlp((1,), [4], 3, seed=seed), (x, y), FAMILY,
                      num_members=2, epochs=1, verbose=0)
