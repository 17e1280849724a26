"""Tests for tfp_distill.targets: streamed (x, z) pairs, sampling, cache, errors."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tfp_distill as td
import tolerance

FAMILY = td.families.HeteroscedasticNormal()


def _same_outputs(got, want, ensemble):
  """Teacher outputs computed twice (another batch grouping, a cache, a service): equal to
  the rounding of one member's forward pass (`tolerance.model_roundings`)."""
  ulps = tolerance.model_roundings(ensemble.members[0])
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=tolerance.atol(want, dtype=np.float32, ulps=ulps))


@pytest.fixture(scope="module")
def ensemble():
  return td.Ensemble([td.models.mlp((1,), [8], 2, seed=s) for s in range(3)], family=FAMILY)


def test_pairs_are_teacher_outputs_on_the_same_x(ensemble):
  x = np.linspace(-2, 2, 50, dtype=np.float32)[:, None]
  ds = td.teacher_targets(x, ensemble, batch_size=16, seed=1)
  seen = []
  for xb, zb in ds:
    assert zb.shape[1:] == (3, 2)
    _same_outputs(zb.numpy(), ensemble(xb).numpy(), ensemble)
    seen.append(xb.numpy()[:, 0])
  np.testing.assert_allclose(np.sort(np.concatenate(seen)), x[:, 0], rtol=0, atol=0)


def test_labels_and_extra_inputs(ensemble):
  x = np.zeros((10, 1), np.float32)
  y = np.arange(10, dtype=np.float32)
  xb, targets = next(iter(td.teacher_targets((x, y), ensemble, batch_size=10)))
  assert set(targets) == {"ensemble", "label"}
  np.testing.assert_array_equal(np.sort(targets["label"].numpy()), y)
  ds = td.teacher_targets(x, ensemble, batch_size=64, extra_inputs=np.ones((5, 1), np.float32))
  xs = np.concatenate([b[0].numpy() for b in ds])
  assert len(xs) == 15 and xs.sum() == 5
  with pytest.raises(ValueError, match="both carry labels"):
    td.teacher_targets((x, y), ensemble, extra_inputs=x)


def test_uniform_inputs_fresh_each_epoch_and_in_the_box():
  ds = td.targets.uniform_inputs([-5.0, 0.0], [5.0, 1.0], 2000, seed=3)
  first = np.stack([v.numpy() for v in ds])
  second = np.stack([v.numpy() for v in ds])
  assert first.shape == (2000, 2)
  assert not np.allclose(first, second)
  for a in (first, second):
    assert a[:, 0].min() >= -5 and a[:, 0].max() <= 5 and a[:, 1].min() >= 0
    # Mean of U[-5, 5] is 0 with sd 10/sqrt(12)/sqrt(2000) = 0.065: 4 sds is 0.26.
    assert abs(a[:, 0].mean()) < 0.26
  again = np.stack([v.numpy() for v in td.targets.uniform_inputs([-5., 0.], [5., 1.], 2000,
                                                                   seed=3)])
  np.testing.assert_array_equal(again, first)   # a function of the seed
  with pytest.raises(ValueError, match="high > low"):
    td.targets.uniform_inputs(1.0, 0.0, 10)


def test_perturbation_runs_before_the_teacher(ensemble):
  shift = lambda x, teacher, seed: x + 1.0
  x = np.zeros((4, 1), np.float32)
  xb, zb = next(iter(td.teacher_targets(x, ensemble, perturbation=shift, shuffle=False)))
  np.testing.assert_allclose(xb.numpy(), 1.0)
  _same_outputs(zb.numpy(), ensemble(np.ones((4, 1), np.float32)).numpy(), ensemble)


def test_disk_cache_round_trip(ensemble, tmp_path):
  x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
  y = x[:, 0] * 2
  cache = str(tmp_path / "cache")
  first = td.teacher_targets((x, y), ensemble, batch_size=40, cache_dir=cache, shuffle=False)
  xb, t = next(iter(first))
  _same_outputs(t["ensemble"].numpy(), ensemble(xb).numpy(), ensemble)
  np.testing.assert_allclose(t["label"].numpy(), xb.numpy()[:, 0] * 2, rtol=0, atol=0)
  # A second call with the same inputs and teacher reads the cache: the teacher is not
  # run (a wrapper that counts its calls sees none but the 64-row identity probe's).
  xb2, t2 = next(iter(td.teacher_targets((x, y), ensemble, batch_size=40, cache_dir=cache,
                                         shuffle=False)))
  np.testing.assert_array_equal(np.sort(t2["ensemble"].numpy(), axis=0),
                                np.sort(t["ensemble"].numpy(), axis=0))
  with pytest.raises(ValueError, match="members"):
    td.teacher_targets(x, td.Ensemble([td.models.mlp((1,), [8], 2, seed=0)]),
                       cache_dir=cache)
  with pytest.raises(ValueError, match="perturbation"):
    td.teacher_targets(x, ensemble, cache_dir=cache, perturbation=lambda x, t, s: x)


def test_a_cache_is_reused_only_for_its_inputs_and_teacher(ensemble, tmp_path):
  """Before: a complete cache was read for any inputs and any teacher with as many
  members (targets of another job, silently). Now each reuse is checked."""
  x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
  cache = str(tmp_path / "cache")
  list(td.teacher_targets(x, ensemble, batch_size=40, cache_dir=cache))
  other = td.Ensemble([td.models.mlp((1,), [8], 2, seed=s + 10) for s in range(3)])
  with pytest.raises(ValueError, match="made by another teacher"):
    td.teacher_targets(x, other, batch_size=40, cache_dir=cache)
  with pytest.raises(ValueError, match="made from other inputs"):
    td.teacher_targets(x + 1.0, ensemble, batch_size=40, cache_dir=cache)
  # A plain callable has no weights to fingerprint: it is rerun on 64 cached inputs.
  calls = []

  def teacher(t):
    calls.append(t.shape[0])             # None while traced in the pipeline
    return ensemble(t)

  folder = str(tmp_path / "callable")
  list(td.teacher_targets(x, teacher, batch_size=40, cache_dir=folder))
  calls.clear()
  list(td.teacher_targets(x, teacher, batch_size=40, cache_dir=folder))
  assert calls == [40]                         # the probe (all 40 rows < 64), nothing else
  with pytest.raises(ValueError, match="made by another teacher"):
    td.teacher_targets(x, lambda t: other(t), batch_size=40, cache_dir=folder)


def test_a_folder_not_written_here_is_never_deleted(ensemble, tmp_path):
  """Before: cache_dir on an existing folder without a manifest removed the whole folder
  ("its writer was stopped"). Now a folder without our marker is refused and untouched."""
  x = np.linspace(-1, 1, 20, dtype=np.float32)[:, None]
  users = tmp_path / "my_results"
  (users / "sub").mkdir(parents=True)
  (users / "thesis.tex").write_text("months of work")
  (users / "sub" / "data.csv").write_text("1,2,3")
  with pytest.raises(ValueError, match="did not write"):
    td.teacher_targets(x, ensemble, cache_dir=str(users))
  assert (users / "thesis.tex").read_text() == "months of work"
  assert (users / "sub" / "data.csv").read_text() == "1,2,3"
  assert sorted(p.name for p in users.iterdir()) == ["sub", "thesis.tex"]
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(ValueError, match="is a file"):
    td.teacher_targets(x, ensemble, cache_dir=str(tmp_path / "a_file"))
  # A stopped writer's folder is ours: only its data is rebuilt; a file the user put
  # there since is left alone.
  cache = tmp_path / "cache"
  list(td.teacher_targets(x, ensemble, batch_size=20, cache_dir=str(cache)))
  (cache / "targets.json").unlink()
  (cache / "notes.txt").write_text("mine")
  with pytest.warns(RuntimeWarning, match="has no manifest"):
    list(td.teacher_targets(x, ensemble, batch_size=20, cache_dir=str(cache)))
  assert (cache / "notes.txt").read_text() == "mine"


def test_cache_epochs_are_permutations_of_the_cached_rows(ensemble, tmp_path):
  """Chunks in a random order, rows shuffled within each, cut into batches: every row
  once per epoch, labels and targets still paired, another order every epoch."""
  x = np.arange(2500, dtype=np.float32)[:, None] / 2500.
  y = np.arange(2500, dtype=np.float32)
  ds = td.teacher_targets((x, y), ensemble, batch_size=300, cache_dir=str(tmp_path / "c"))
  assert json.loads((tmp_path / "c" / "targets.json").read_text())["format_version"] == 3
  orders = []
  for _ in range(2):
    batches = list(ds)
    assert [len(b[0]) for b in batches[:-1]] == [300] * (len(batches) - 1)
    labels = np.concatenate([t["label"].numpy() for _, t in batches])
    np.testing.assert_array_equal(np.sort(labels), y)
    for xb, t in batches:
      # x = y / 2500 in float32: x * 2500 recovers y to two roundings (the division and
      # the product), each eps/2 of |y| <= 2500.
      np.testing.assert_allclose(t["label"].numpy(), xb.numpy()[:, 0] * 2500., rtol=0,
                                 atol=tolerance.atol(y, dtype=np.float32, ulps=2))
      _same_outputs(t["ensemble"].numpy(), ensemble(xb).numpy(), ensemble)
    orders.append(labels)
  assert not np.array_equal(orders[0], orders[1])


def test_a_format_1_cache_still_loads(ensemble, tmp_path):
  """Caches written before chunked storage (one row per element) are read as they are."""
  x = np.linspace(0, 1, 30, dtype=np.float32)[:, None]
  z = ensemble(x).numpy()
  folder = tmp_path / "old"
  tf.data.Dataset.from_tensor_slices((x, z)).enumerate().save(str(folder))
  (folder / "targets.json").write_text(json.dumps({"members": 3, "format_version": 1}))
  batches = list(td.teacher_targets(x, ensemble, batch_size=8, cache_dir=str(folder)))
  assert [len(b[0]) for b in batches] == [8, 8, 8, 6]
  xs = np.concatenate([b[0].numpy() for b in batches])[:, 0]
  zs = np.concatenate([b[1].numpy() for b in batches])
  order = np.argsort(xs)
  np.testing.assert_allclose(zs[order], z, rtol=0, atol=0)


def test_bad_input_errors(ensemble):
  with pytest.raises(ValueError, match="empty"):
    td.teacher_targets(np.zeros((0, 1), np.float32), ensemble)
  with pytest.raises(ValueError, match="empty"):
    td.teacher_targets(tf.data.Dataset.from_tensor_slices(np.zeros((0, 1), np.float32)),
                       ensemble)
  x = np.zeros((4, 1), np.float32)
  x[2] = np.inf
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
    list(td.teacher_targets(x, ensemble))
  with pytest.raises(ValueError, match="labels"):
    td.teacher_targets((np.zeros((4, 1)), np.zeros(3)), ensemble)


def test_teacher_nan_is_reported(ensemble):
  broken = td.models.mlp((1,), [4], 2, seed=0)
  broken.layers[-1].bias.assign([np.nan, 0.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="teacher produced NaN"):
    list(td.teacher_targets(np.zeros((4, 1), np.float32), td.Ensemble([broken, broken])))


def test_jittered_inputs_statistics_and_freshness():
  x = np.array([[0.0, 10.0], [1.0, 20.0]], np.float32)
  ds = td.targets.jittered_inputs(x, 0.5, 4000, seed=2)
  first = np.stack([v.numpy() for v in ds])
  second = np.stack([v.numpy() for v in ds])
  assert first.shape == (4000, 2) and not np.allclose(first, second)
  rows = np.where(first[:, 1] > 15, 1, 0)           # which row each draw came from
  noise = first - x[rows]
  # Noise sd 0.5: the sample sd of 8000 values is within 3% (about 5 standard errors).
  np.testing.assert_allclose(noise.std(), 0.5, rtol=0.03)
  # Rows drawn uniformly: the share of row 1 is 0.5 +- 0.04 (5 standard errors).
  assert abs(rows.mean() - 0.5) < 0.04
  with pytest.raises(ValueError, match="scale"):
    td.targets.jittered_inputs(x, -1.0, 10)


def test_samplers_report_their_size():
  # Keras starts each epoch afresh only for datasets of known size.
  assert int(td.targets.uniform_inputs(0., 1., 300).cardinality()) == 300
  assert int(td.targets.jittered_inputs(np.zeros((5, 2)), 0.1, 3000).cardinality()) == 3000
  assert len(list(td.targets.jittered_inputs(np.zeros((5, 2)), 0.1, 3000))) == 3000


def test_a_cache_whose_writer_was_killed_is_rebuilt(ensemble, tmp_path):
  """The manifest is written last (atomically), so a writer killed mid-write leaves a
  folder without one: it is never read as complete, but removed and rebuilt. Emulated:
  a finished cache loses its manifest and half of one shard."""
  x = np.linspace(-1, 1, 50, dtype=np.float32)[:, None]
  folder = tmp_path / "cache"
  list(td.teacher_targets(x, ensemble, batch_size=50, cache_dir=str(folder)))
  (folder / "targets.json").unlink()
  shard = sorted(folder.rglob("*.snapshot"))[0]
  shard.write_bytes(shard.read_bytes()[:len(shard.read_bytes()) // 2])
  with pytest.warns(RuntimeWarning, match="has no manifest: its writer was stopped"):
    ds = td.teacher_targets(x, ensemble, batch_size=50, cache_dir=str(folder),
                            shuffle=False)
  (xb, zb), = list(ds)
  order = np.argsort(xb.numpy()[:, 0])
  _same_outputs(zb.numpy()[order], ensemble(x).numpy(), ensemble)
  assert "sha256" in json.loads((folder / "targets.json").read_text())


SLOW_TEACHER = """
import tensorflow as tf

def slow_teacher(x):       # x [batch, 1] -> z [batch, 3, 2], about 1 ms per row
  w = tf.random.stateless_normal([64, 64], [1, 2]) / 8.0
  h = tf.foldl(lambda acc, _: tf.tanh(acc @ w), tf.range(200),
               initializer=tf.tile(x, [1, 64]))
  return tf.reshape(h[:, :6], [-1, 3, 2])
"""


def test_a_cache_writer_killed_with_sigkill_is_detected_and_rebuilt(tmp_path):
  """A real kill: a process writing the cache is sent SIGKILL once its first shard file
  exists. The next run finds no manifest, warns, rebuilds, and gets the teacher's outputs
  (never the partial files)."""
  import signal
  import subprocess
  import sys
  import time
  folder = tmp_path / "cache"
  writer = SLOW_TEACHER + f"""
import numpy as np
import tfp_distill as td
x = np.linspace(-1, 1, 6000, dtype=np.float32)[:, None]
list(td.teacher_targets(x, slow_teacher, batch_size=500, cache_dir={str(folder)!r}))
"""
  proc = subprocess.Popen([sys.executable, "-c", writer], stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while not any(p.stat().st_size for p in folder.rglob("*.snapshot")):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.monotonic() < deadline, "the writer wrote nothing in 300 s"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  assert not (folder / "targets.json").exists()       # killed before it finished
  namespace = {}
  exec(SLOW_TEACHER, namespace)  # noqa: S102
  x = np.linspace(-1, 1, 6000, dtype=np.float32)[:, None]
  with pytest.warns(RuntimeWarning) as record:
    ds = td.teacher_targets(x, namespace["slow_teacher"], batch_size=6000,
                            cache_dir=str(folder), shuffle=False)
  messages = " ".join(str(w.message) for w in record)
  # The killed writer's lock (its PID is gone) is stale and replaced, then its data.
  assert f"removed a stale lock left by PID {proc.pid}" in messages
  assert "has no manifest: its writer was stopped" in messages
  (xb, zb), = list(ds)
  order = np.argsort(xb.numpy()[:, 0], kind="stable")
  # The slow teacher: 200 tanh layers of a 64-wide matmul (|tanh| <= 1): each step a
  # 64-term dot product and a tanh, errors damped by tanh' <= 1: 200 (64 + 4) eps.
  want = namespace["slow_teacher"](x).numpy()
  np.testing.assert_allclose(zb.numpy()[order], want, rtol=0, atol=tolerance.atol(
      want, dtype=np.float32, ulps=200 * (64 + 4), scale=1.0))
  assert (folder / "targets.json").exists()


def test_a_corrupted_cache_shard_is_named(ensemble, tmp_path):
  x = np.linspace(-1, 1, 50, dtype=np.float32)[:, None]
  folder = tmp_path / "cache"
  list(td.teacher_targets(x, ensemble, batch_size=50, cache_dir=str(folder)))
  shard = sorted(folder.rglob("*.snapshot"))[0]
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF                       # one flipped byte
  shard.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=rf"cache file .*{shard.name} is corrupted"):
    td.teacher_targets(x, ensemble, batch_size=50, cache_dir=str(folder))
  shard.unlink()
  with pytest.raises(ValueError, match=rf"is missing .*{shard.name}"):
    td.teacher_targets(x, ensemble, batch_size=50, cache_dir=str(folder))


def test_service_targets_asks_again_for_lost_batches(ensemble, monkeypatch):
  """The retry path, made deterministic: a stand-in for the service's `distribute` that
  drops batches 1 and 3 from the first job (as a dying worker would) and serves every
  later job whole. The lost batches come back from a second job, with a warning; with
  retries=0 they are reported missing."""
  jobs = []

  def lossy_distribute(processing_mode, service, job_name=None):
    assert processing_mode == "distributed_epoch"
    jobs.append(job_name)
    if len(jobs) > 1:
      return lambda ds: ds
    return lambda ds: ds.filter(lambda b, z: tf.logical_and(b != 1, b != 3))

  monkeypatch.setattr(tf.data.experimental.service, "distribute", lossy_distribute)
  x = np.linspace(-2, 2, 50, dtype=np.float32)[:, None]
  with pytest.warns(RuntimeWarning, match=r"lost 2 of 5 batches .* \(retry 1 of 3\)"):
    z = td.targets.service_targets(ensemble, x, "localhost:1", batch_size=10,
                                   job_name="job")
  _same_outputs(z, ensemble.predict_targets(x), ensemble)
  assert jobs == ["job", "job/retry-1"]
  jobs.clear()
  with pytest.raises(ValueError, match=r"no outputs for 2 of 5 batches \(first: 1\), "
                                       r"after 0 retries"):
    td.targets.service_targets(ensemble, x, "localhost:1", batch_size=10, retries=0)


def test_jittered_batches_rows_jitter_and_box_inputs():
  """One epoch holds every row once, num_jittered noisy copies (noise sd `scale`) and
  num_box fresh inputs uniform on the box widened by half its range on each side."""
  x = np.array([[0.0, 0.0], [10.0, 100.0], [20.0, 200.0]], np.float32)
  ds = td.targets.jittered_batches(x, 64, 0.01, 3000, seed=3, num_box=2000)
  assert int(ds.cardinality()) == -(-5003 // 64)
  epoch = np.concatenate([b.numpy() for b in ds])
  assert epoch.shape == (5003, 2)
  dist = np.abs(epoch[:, None, :] - x[None]).max(-1)            # [rows, 3]
  exact, near = (dist == 0).sum(0), (dist.min(1) > 0) & (dist.min(1) < 0.06)
  np.testing.assert_array_equal(exact, [1, 1, 1])               # each row once
  assert near.sum() == 3000                                     # the jittered copies
  noise = epoch[near] - x[dist[near].argmin(1)]
  # 6000 noise values of sd 0.01: the sample sd is within 3% (about 5 standard errors).
  np.testing.assert_allclose(noise.std(), 0.01, rtol=0.03)
  box = epoch[dist.min(1) >= 0.06]
  assert len(box) == 2000
  low, width = np.array([-10.0, -100.0]), np.array([40.0, 400.0])
  assert np.all(box >= low) and np.all(box <= low + width)
  # Uniform: mean low + width / 2 and sd width / sqrt(12), each within 5 standard errors.
  se = width / np.sqrt(12) / np.sqrt(2000)
  assert np.all(np.abs(box.mean(0) - (low + width / 2)) < 5 * se)
  np.testing.assert_allclose(box.std(0), width / np.sqrt(12), rtol=0.05)
  again = np.concatenate([b.numpy() for b in ds])
  assert not np.allclose(np.sort(again, 0), np.sort(epoch, 0))   # fresh every epoch
  with pytest.raises(ValueError, match="num_box"):
    td.targets.jittered_batches(x, 64, 0.01, 10, num_box=-1)


def test_jittered_batches_without_box_inputs_has_no_box_rows():
  x = np.array([[0.0], [10.0]], np.float32)
  epoch = np.concatenate([b.numpy() for b in td.targets.jittered_batches(x, 7, 0.01, 40)])
  assert epoch.shape == (42, 1)
  assert np.abs(epoch - np.round(epoch / 10) * 10).max() < 0.06   # rows and copies only


def test_jittered_batches_marginal_inputs_recombine_the_rows_values():
  """Marginal inputs: each feature a value of that feature in some row, fresh every
  epoch, not jittered; the rows themselves still appear once each."""
  x = np.array([[0.0, 100.0], [1.0, 200.0], [2.0, 300.0]], np.float32)
  ds = td.targets.jittered_batches(x, 50, 0.0, 0, seed=4, num_marginal=3000)
  epoch = np.concatenate([b.numpy() for b in ds])
  assert epoch.shape == (3003, 2)
  assert np.isin(epoch[:, 0], x[:, 0]).all() and np.isin(epoch[:, 1], x[:, 1]).all()
  # 9 combinations, each 1/9 of the 3000 draws (plus 1 for the rows, which are 3 of
  # them): within 5 standard errors of 3000 / 9.
  pairs, counts = np.unique(epoch, axis=0, return_counts=True)
  assert len(pairs) == 9
  se = np.sqrt(3000 * (1 / 9) * (8 / 9))
  assert np.all(np.abs(counts - 3000 / 9) < 5 * se + 1)
  again = np.concatenate([b.numpy() for b in ds])
  assert not np.array_equal(again, epoch)
  images = td.targets.jittered_batches(np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2),
                                       4, 0.0, 0, num_marginal=5)
  batch = np.concatenate([b.numpy() for b in images])
  assert batch.shape == (8, 2, 2, 2)
  # Element (i, j, k) of any input is that element of one of the three rows.
  rows = np.arange(24).reshape(3, 2, 2, 2)
  assert all(np.isin(batch[:, i, j, k], rows[:, i, j, k]).all()
             for i in range(2) for j in range(2) for k in range(2))
  with pytest.raises(ValueError, match="num_marginal"):
    td.targets.jittered_batches(x, 4, 0.0, 0, num_marginal=-2)


def test_jittered_batches_far_inputs_spread_by_their_scale():
  """Far inputs: a random row plus noise of s feature sd, s uniform on far_scale; with
  far_scale (2, 2) the noise sd is twice each feature's sd over the rows."""
  x = np.array([[0.0, 0.0], [2.0, 20.0]], np.float32)   # feature sd 1 and 10
  ds = td.targets.jittered_batches(x, 100, 0.0, 0, seed=5, num_far=20000,
                                   far_scale=(2.0, 2.0))
  epoch = np.concatenate([b.numpy() for b in ds])
  assert epoch.shape == (20002, 2)
  # Each feature's variance is sd^2 (the two rows, drawn equally) + (2 sd)^2 (the
  # noise) = 5 sd^2; 20,000 draws: within 3% (about 5 standard errors).
  np.testing.assert_allclose(epoch.std(0), np.sqrt(5) * np.array([1.0, 10.0]), rtol=0.03)
  np.testing.assert_allclose(epoch.mean(0), [1.0, 10.0], atol=5 * np.sqrt(5 * 100 / 20000))
  with pytest.raises(ValueError, match="far_scale"):
    td.targets.jittered_batches(x, 4, 0.0, 0, num_far=3, far_scale=(2.0, 1.0))
