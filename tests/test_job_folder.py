"""Folders a job owns (td.job_folder): refusal of folders not ours, deletion only of what
the marker lists, atomic writes, the lock, fingerprints; and td.callbacks.EpochBackup."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfp_distill as td
from tfp_distill import job_folder
from tfp_distill._keras import keras


def test_a_users_folder_is_refused_and_left_as_it_was(tmp_path, file_tree):
  users = tmp_path / "results"
  (users / "backup").mkdir(parents=True)
  (users / "backup" / "weights.h5").write_bytes(b"\x00\x01")
  (users / "report.json").write_text('{"mine": 1}')
  before = file_tree(users)
  with pytest.raises(job_folder.FolderError, match="already holds files tfp_distill did "
                     r"not write \(backup, report.json; no .tfp_distill.json marker\)"):
    job_folder.JobFolder(users).claim()
  assert file_tree(users) == before
  (tmp_path / "file").write_text("x")
  with pytest.raises(job_folder.FolderError, match="is a file, not a folder"):
    job_folder.JobFolder(tmp_path / "file").claim()


def test_only_outputs_the_marker_lists_are_replaced_or_removed(tmp_path):
  folder = job_folder.JobFolder(tmp_path / "run").claim()
  folder.write_text("report.md", "first")
  folder.write("saved_model", lambda p: (os.makedirs(p), open(os.path.join(p, "a"), "w")
                                         .close()))
  assert sorted(folder.outputs) == ["report.md", "saved_model"]
  (tmp_path / "run" / "notes.txt").write_text("the user's")
  # A later run claims the folder again: ours (the marker), its own files replaceable.
  again = job_folder.JobFolder(tmp_path / "run").claim()
  again.write_text("report.md", "second")
  again.write("saved_model", lambda p: (os.makedirs(p), open(os.path.join(p, "b"), "w")
                                        .close()))
  assert (tmp_path / "run" / "report.md").read_text() == "second"
  assert sorted(os.listdir(tmp_path / "run" / "saved_model")) == ["b"]
  with pytest.raises(job_folder.FolderError, match="notes.txt was not written by"):
    again.remove("notes.txt")
  with pytest.raises(job_folder.FolderError, match="notes.txt exists and was not written"):
    again.write_text("notes.txt", "overwrite?")
  again.remove("report.md")
  again.remove("report.md")                    # gone already: nothing to do
  assert (tmp_path / "run" / "notes.txt").read_text() == "the user's"
  assert sorted(os.listdir(tmp_path / "run")) == [".tfp_distill.json", "notes.txt",
                                                  "saved_model"]


def test_a_failed_write_leaves_the_previous_output(tmp_path):
  folder = job_folder.JobFolder(tmp_path / "run").claim()
  folder.write_text("report.json", "old")

  def disk_full(path):
    with open(path, "w") as f:
      f.write("half")
    raise OSError(28, "No space left on device")

  with pytest.raises(OSError, match="No space left"):
    folder.write("report.json", disk_full)
  assert (tmp_path / "run" / "report.json").read_text() == "old"
  assert sorted(os.listdir(tmp_path / "run")) == [".tfp_distill.json", "report.json"]


def test_strict_json_has_no_nan():
  report = {"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.int64(3),
            "d": {"e": np.array([1.0, np.nan])}, "f": np.bool_(True)}
  text = json.dumps(job_folder.strict_json(report), allow_nan=False)
  assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3, "d": {"e": [1.0, None]},
                              "f": True}


def test_the_lock_refuses_a_live_run_and_replaces_a_dead_ones(tmp_path):
  run = job_folder.JobFolder(tmp_path / "run").claim()
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    lock = tmp_path / "run" / job_folder.LOCK_NAME
    import socket
    lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                "started": "then"}))
    with pytest.raises(job_folder.FolderError, match=f"in use by another run \\(PID "
                       f"{sleeper.pid}"):
      run.lock()
  finally:
    sleeper.kill()
    sleeper.wait()
  with pytest.warns(RuntimeWarning, match=f"stale lock left by PID {sleeper.pid}"):
    run.lock()
  assert json.loads(lock.read_text())["pid"] == os.getpid()
  run.unlock()
  assert not lock.exists()
  # Another host's lock is never taken over.
  lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
  with pytest.raises(job_folder.FolderError, match="locked by a run on host elsewhere"):
    run.lock()


def test_fingerprints_name_what_differs(tmp_path):
  data = tmp_path / "train.npz"
  np.savez(data, x=np.zeros((3, 2)))
  a = job_folder.job_fingerprint({"seed": 0, "method": "end2"}, {"train": data})
  assert a == job_folder.job_fingerprint({"seed": 0, "method": "end2"}, {"train": data})
  np.savez(data, x=np.ones((3, 2)))
  b = job_folder.job_fingerprint({"seed": 1, "method": "end2"}, {"train": data})
  assert job_folder.fingerprint_differences(a, b) == ["seed 0 -> 1",
                                                      "the train file's contents"]
  folder = tmp_path / "saved"
  (folder / "variables").mkdir(parents=True)
  (folder / "variables" / "v").write_bytes(b"1")
  first = job_folder.path_digest(folder)
  (folder / "variables" / "v").write_bytes(b"2")
  assert job_folder.path_digest(folder) != first


def _trainer(seed=0):
  model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)),
                            keras.layers.Dense(1)])
  model.build((None, 3))
  model.set_weights([np.random.default_rng(seed + i).normal(size=w.shape).astype("float32")
                     for i, w in enumerate(model.get_weights())])
  model.compile(keras.optimizers.Adam(0.05), loss="mse")
  return model


def test_epoch_backup_resumes_with_model_optimizer_and_early_stopping_together(tmp_path):
  """Train 6 epochs with early stopping; separately, 3 epochs, then a fresh process state
  restored from the backup and 3 more: the same weights and the same stopping state."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype("float32")
  y = x.sum(1, keepdims=True)

  def run(folder, epochs, initial=None, resume=False):
    model = _trainer()
    stopping = td.callbacks.ResumableEarlyStopping("loss", patience=2)
    backup = td.callbacks.EpochBackup(folder, [stopping], fingerprint={"settings": {"a": 1}})
    start = backup.restore(model) if resume else 0
    assert initial is None or start == initial
    model.fit(x, y, batch_size=16, epochs=epochs, initial_epoch=start, shuffle=False,
              verbose=0, callbacks=[stopping, backup])
    return model, stopping, backup

  whole, whole_stop, whole_backup = run(tmp_path / "whole", 6)
  run(tmp_path / "parts", 3)
  resumed, resumed_stop, resumed_backup = run(tmp_path / "parts", 6, initial=3, resume=True)
  for a, b in zip(whole.get_weights(), resumed.get_weights()):
    # The same float32 ops in the same order: equal bit for bit.
    np.testing.assert_array_equal(a, b)
  assert resumed_stop.state == whole_stop.state
  assert resumed_backup.history == whole_backup.history
  assert len(resumed_backup.history["loss"]) == 6
  # A backup of another job is refused, naming the difference.
  other = td.callbacks.EpochBackup(tmp_path / "parts", fingerprint={"settings": {"a": 2}})
  with pytest.raises(ValueError, match="belongs to another job; it differs in a 1 -> 2"):
    other.restore(_trainer())


def test_an_interrupted_epoch_save_leaves_the_previous_epoch(tmp_path, monkeypatch):
  """A kill while an epoch is written (emulated: the write fails half-way) leaves the
  previous complete epoch as the one to resume from, never a mixture."""
  x = np.ones((8, 3), "float32")
  model = _trainer()
  stopping = td.callbacks.ResumableEarlyStopping("loss", patience=5)
  backup = td.callbacks.EpochBackup(tmp_path / "b", [stopping])
  model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[stopping, backup])
  original = np.savez

  def dies(*args, **kwargs):
    raise KeyboardInterrupt

  backup = td.callbacks.EpochBackup(tmp_path / "b", [stopping])
  assert backup.restore(model) == 2
  monkeypatch.setattr(np, "savez", dies)
  with pytest.raises(KeyboardInterrupt):
    model.fit(x, x[:, :1], epochs=3, initial_epoch=2, verbose=0,
              callbacks=[stopping, backup])
  monkeypatch.setattr(np, "savez", original)
  assert os.path.basename(backup.latest()) == "epoch-000001"
  assert td.callbacks.EpochBackup(tmp_path / "b", [stopping]).restore(model) == 2
  assert sorted(os.listdir(tmp_path / "b")) == ["epoch-000001", "latest"]
  with pytest.raises(ValueError, match="holds the state of 1 callbacks, this run has 0"):
    td.callbacks.EpochBackup(tmp_path / "b").restore(model)
