"""Folders a job owns: a marker, a lock, atomic writes, and the job's fingerprint.

```none
--out DIR, cache_dir=DIR
  new or empty      ─► created; the marker (.tfp_distill.json) is written first: ours
  holds our marker  ─► ours: an output is replaced or removed only if the marker lists it
  non-empty, no marker, or a file ─► refused in one line; nothing in it is touched
  DIR/.tfp_distill.lock ─► one run at a time (a lock left by a dead process is stale)
  outputs ─► written under a temporary name in DIR, recorded, then moved into place
             (os.replace): a reader sees the old file or the new one, never half of one
```

A tool may delete only what it can prove it wrote: `JobFolder.remove` and the replacing
writes refuse a name the marker does not list, whatever is in the folder.

The fingerprint of a job (`job_fingerprint`) is what makes a saved state belong to a run:
every setting that changes the result and a SHA-256 of every file it reads. A backup or a
cache stores it; `fingerprint_differences` names what a later run changed, so a resume or
a cache reuse with other settings, data or teachers is refused instead of silently
mixing two jobs.
"""

import datetime
import hashlib
import json
import math
import os
import shutil
import socket
import warnings

import numpy as np

__all__ = ["FolderError", "JobFolder", "LOCK_NAME", "MARKER_NAME", "fingerprint_differences",
           "job_fingerprint", "path_digest", "strict_json"]

MARKER_NAME = ".tfp_distill.json"
LOCK_NAME = ".tfp_distill.lock"
_MARKER_FORMAT = 1


class FolderError(ValueError):
  """A folder the job may not use (or a lock held by another run); one-line message."""

  def __init__(self, message):
    super().__init__(" ".join(str(message).split()))


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def strict_json(value):
  """`value` with every non-finite float (NaN, +-Inf) replaced by None, NumPy scalars and
  arrays made Python: what `json.dumps(..., allow_nan=False)` accepts (RFC 8259 JSON)."""
  if isinstance(value, dict):
    return {str(k): strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return strict_json(value.tolist())
  if isinstance(value, (np.bool_, bool)):
    return bool(value)
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  return value


def _write_atomic(path, data):
  """Writes bytes to `path` through a temporary file in the same folder and os.replace."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _process_start(pid):
  """The start time of a process in clock ticks since boot (Linux /proc), or None."""
  try:
    with open(f"/proc/{int(pid)}/stat", encoding="ascii") as f:
      stat = f.read()
  except OSError:
    return None
  # Field 22; the command name (field 2) is in parentheses and may hold spaces.
  fields = stat[stat.rfind(")") + 2:].split()
  return int(fields[19]) if len(fields) > 19 else None


def _alive(pid, start=None):
  """Whether process `pid` runs on this host (and, if known, started at `start`)."""
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  except (OverflowError, ValueError):
    return False
  now = _process_start(pid)
  return start is None or now is None or now == start


class JobFolder:
  """An output folder owned by one job: marker, lock and atomic, recorded writes.

  ```python
  folder = JobFolder("run", flag="--out")
  with folder:                      # claims the folder (or refuses it) and locks it
    folder.remove("report.json")    # only if an earlier run of ours wrote it
    folder.write_bytes("student.npz", data)
    folder.write_json("report.json", report)   # last: the folder now describes the run
  ```

  Args:
    path: str, the folder.
    flag: str, how the user named it (in error messages), e.g. "--out" or "cache_dir".
    tool: str, what writes it (stored in the marker).
    kind: str, what the folder is for (stored in the marker; a folder made for another
      kind, e.g. a target cache used as --out, is refused).

  Raises (from `claim`):
    FolderError: the path is a file, a non-empty folder without our marker, a folder of
      another kind, or not writable.
  """

  def __init__(self, path, flag="--out", tool="tfp-distill distill", kind="job"):
    self.path = os.fspath(path)
    self.flag = flag
    self.tool = tool
    self.kind = kind
    self._marker = None
    self._locked = False

  def __repr__(self):
    return f"JobFolder({self.path!r})"

  # -- ownership -------------------------------------------------------------------------

  def _marker_path(self):
    return os.path.join(self.path, MARKER_NAME)

  def _read_marker(self):
    try:
      with open(self._marker_path(), encoding="utf-8") as f:
        marker = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
      raise FolderError(f"{self.flag} {self.path}: its marker {MARKER_NAME} is unreadable "
                        f"({error}); choose a new or empty folder.") from error
    if not (isinstance(marker, dict) and isinstance(marker.get("outputs"), list)):
      raise FolderError(f"{self.flag} {self.path}: its marker {MARKER_NAME} is not one "
                        "tfp_distill wrote; choose a new or empty folder.")
    return marker

  def _save_marker(self):
    _write_atomic(self._marker_path(),
                  json.dumps(self._marker, indent=1, sort_keys=True).encode())

  def claim(self):
    """Makes the folder ours (new or empty) or checks that it is; refuses anything else."""
    if os.path.lexists(self.path) and not os.path.isdir(self.path):
      raise FolderError(f"{self.flag} {self.path} is a file, not a folder: choose a "
                        "folder name.")
    if os.path.isdir(self.path):
      try:
        entries = sorted(os.listdir(self.path))
      except OSError as error:
        raise FolderError(f"{self.flag} {self.path} cannot be read: {error.strerror}.") \
            from error
      if MARKER_NAME in entries:
        self._marker = self._read_marker()
        if self._marker.get("kind", "job") != self.kind:
          raise FolderError(
              f"{self.flag} {self.path} is a tfp_distill {self._marker.get('kind')} "
              f"folder, not a {self.kind} folder: choose another.")
        self._check_writable()
        return self
      if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise FolderError(
            f"{self.flag} {self.path} already holds files tfp_distill did not write "
            f"({shown}; no {MARKER_NAME} marker): choose a new or empty folder. Nothing "
            "in it was changed.")
    try:
      os.makedirs(self.path, exist_ok=True)
    except OSError as error:
      raise FolderError(f"{self.flag} {self.path} cannot be created: "
                        f"{error.strerror or error}.") from error
    self._marker = {"tool": self.tool, "kind": self.kind, "format": _MARKER_FORMAT,
                    "created": _now(), "outputs": []}
    try:
      self._save_marker()
    except OSError as error:
      raise FolderError(f"{self.flag} {self.path} is not writable: "
                        f"{error.strerror or error}.") from error
    return self

  def _check_writable(self):
    probe = os.path.join(self.path, f".write-test-{os.getpid()}")
    try:
      with open(probe, "wb") as f:
        f.write(b"0")
      os.remove(probe)
    except OSError as error:
      raise FolderError(f"{self.flag} {self.path} is not writable: "
                        f"{error.strerror or error}.") from error

  @property
  def outputs(self):
    """The names (relative paths) this tool wrote in the folder and still lists."""
    return list(self._marker["outputs"]) if self._marker else []

  def owns(self, name):
    """Whether `name` (relative path) is an output the marker lists."""
    return self._marker is not None and name in self._marker["outputs"]

  def _record(self, name, present):
    outputs = self._marker["outputs"]
    if present and name not in outputs:
      outputs.append(name)
    elif not present and name in outputs:
      outputs.remove(name)
    else:
      return
    self._save_marker()

  def file(self, name):
    """The path of an output."""
    return os.path.join(self.path, name)

  def reserve(self, name):
    """Records `name` as ours before other code creates it there (a backup, logs).

    Returns:
      str, its path.

    Raises:
      FolderError: `name` exists and the marker does not list it.
    """
    self._check_replaceable(name)
    self._record(name, True)
    return self.file(name)

  # -- lock ------------------------------------------------------------------------------

  def lock(self):
    """Takes the folder's lock; refuses while another live run holds it.

    A lock whose process is gone (a killed run: same host, PID not running, or running
    but started at another time, i.e. a reused PID) is stale: it is replaced, with a
    warning.
    """
    path = os.path.join(self.path, LOCK_NAME)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "start": _process_start(os.getpid()), "started": _now()}
    for _ in range(3):
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._lock_holder(path)
        if holder is None:            # being written by its owner this instant
          continue
        if holder.get("host") != me["host"]:
          raise FolderError(
              f"{self.flag} {self.path} is locked by a run on host {holder.get('host')} "
              f"(PID {holder.get('pid')}, started {holder.get('started')}): wait for it, "
              f"or if it is dead, delete {path}.") from None
        if _alive(holder.get("pid", -1), holder.get("start")):
          raise FolderError(
              f"{self.flag} {self.path} is in use by another run (PID {holder.get('pid')}, "
              f"started {holder.get('started')}): wait for it to finish or choose another "
              "folder.") from None
        stale = f"{path}.stale-{os.getpid()}"
        try:
          os.replace(path, stale)    # only one of several racing runs gets the old lock
        except FileNotFoundError:
          continue
        os.remove(stale)
        warnings.warn(f"{self.flag} {self.path}: removed a stale lock left by PID "
                      f"{holder.get('pid')} (no longer running).", RuntimeWarning,
                      stacklevel=2)
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self._locked = True
      self._remove_stale_temporaries()
      return self
    raise FolderError(f"{self.flag} {self.path}: could not take the lock {path} (another "
                      "run keeps taking it).")

  def _remove_stale_temporaries(self):
    """Removes the temporaries of our writes that a killed run left (we hold the lock)."""
    for name in self.outputs:
      base = os.path.basename(name)
      if base.startswith(".") and (".tmp-" in base or ".old-" in base):
        _remove_path(self.file(name))
        self._record(name, False)

  @staticmethod
  def _lock_holder(path):
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read()
    except FileNotFoundError:
      return None
    try:
      holder = json.loads(text)
    except json.JSONDecodeError:
      holder = None
    if not isinstance(holder, dict):
      # Empty or torn: a writer between os.open and its write, or one killed right there.
      import time
      age = time.time() - os.path.getmtime(path) if os.path.exists(path) else 0
      return None if age < 5 else {"pid": -1, "host": socket.gethostname()}
    return holder

  def unlock(self):
    """Releases the lock if this process holds it."""
    if not self._locked:
      return
    path = os.path.join(self.path, LOCK_NAME)
    holder = self._lock_holder(path)
    if holder is not None and holder.get("pid") == os.getpid():
      os.remove(path)
    self._locked = False

  def __enter__(self):
    self.claim()
    self.lock()
    return self

  def __exit__(self, *exc):
    self.unlock()
    return False

  # -- writes ----------------------------------------------------------------------------

  def _check_replaceable(self, name):
    target = self.file(name)
    if os.path.lexists(target) and not self.owns(name):
      raise FolderError(f"{self.flag} {self.path}: {name} exists and was not written by "
                        "tfp_distill; move it away first. Nothing was changed.")

  def write(self, name, writer):
    """Writes an output (file or folder) with `writer(tmp_path)`, then moves it in place.

    Args:
      name: str, the output's name relative to the folder (no "..").
      writer: callable(str) that creates a file or a folder at the given path.

    Returns:
      str, the output's path.

    Raises:
      FolderError: `name` exists and is not ours.
      OSError: the writer's own failures (disk full, ...); the temporary is removed and
        the previous output, if any, is left as it was.
    """
    if os.path.isabs(name) or ".." in name.split(os.sep):
      raise ValueError(f"JobFolder.write: {name!r} must be a relative name inside the "
                       "folder.")
    self._check_replaceable(name)
    target = self.file(name)
    parent = os.path.dirname(target)
    if parent != self.path:
      os.makedirs(parent, exist_ok=True)
    # The temporary keeps the name's extension (Keras picks the format from it).
    stem, ext = os.path.splitext(os.path.basename(target))
    tmp = os.path.join(parent, f".{stem}.tmp-{os.getpid()}{ext}")
    trash = os.path.join(parent, f".{stem}.old-{os.getpid()}{ext}")
    _remove_path(tmp)
    rel_tmp, rel_trash = (os.path.relpath(p, self.path) for p in (tmp, trash))
    # Recorded first: whatever a crash leaves (the temporary, the output) is provably ours.
    self._record(name, True)
    self._record(rel_tmp, True)
    try:
      writer(tmp)
      if not os.path.lexists(tmp):
        raise RuntimeError(f"JobFolder.write({name!r}): the writer created nothing.")
      if os.path.isdir(tmp) and os.path.lexists(target):
        self._record(rel_trash, True)
        os.replace(target, trash)    # folders cannot be replaced in one rename
        os.replace(tmp, target)
        _remove_path(trash)
        self._record(rel_trash, False)
      else:
        os.replace(tmp, target)
    except BaseException:
      _remove_path(tmp)
      if os.path.lexists(trash) and not os.path.lexists(target):
        os.replace(trash, target)
      self._record(rel_trash, False)
      if not os.path.lexists(target):
        self._record(name, False)
      self._record(rel_tmp, False)
      raise
    self._record(rel_tmp, False)
    return target

  def write_bytes(self, name, data):
    """Writes bytes atomically (see `write`)."""
    def writer(tmp):
      with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return self.write(name, writer)

  def write_text(self, name, text):
    """Writes UTF-8 text atomically (see `write`)."""
    return self.write_bytes(name, text.encode("utf-8"))

  def write_json(self, name, value):
    """Writes strict JSON (non-finite floats as null, see `strict_json`) atomically."""
    return self.write_text(name, json.dumps(strict_json(value), indent=2,
                                            allow_nan=False) + "\n")

  def remove(self, name):
    """Removes an output the marker lists (a no-op for one that is already gone).

    Raises:
      FolderError: `name` exists but the marker does not list it.
    """
    target = self.file(name)
    if not self.owns(name):
      if os.path.lexists(target):
        raise FolderError(f"{self.flag} {self.path}: {name} was not written by "
                          "tfp_distill; it is left in place and the run stops. Move it "
                          "away first.")
      return
    _remove_path(target)
    self._record(name, False)


def _remove_path(path):
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.remove(path)


# ---------------------------------------------------------------------------------------
# Fingerprints.


def path_digest(path):
  """SHA-256 of a file, or of a folder's files (names and contents), as "sha256:<hex>".

  Args:
    path: str, a file or a folder (walked in sorted order; symbolic links followed).

  Raises:
    FileNotFoundError: the path does not exist.
  """
  path = os.fspath(path)
  digest = hashlib.sha256()

  def add_file(file_path):
    with open(file_path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)

  if os.path.isdir(path):
    for root, dirs, names in os.walk(path):
      dirs.sort()
      for name in sorted(names):
        full = os.path.join(root, name)
        digest.update(os.path.relpath(full, path).encode() + b"\0")
        add_file(full)
        digest.update(b"\0")
  else:
    add_file(path)
  return "sha256:" + digest.hexdigest()


def job_fingerprint(settings, paths=None):
  """What a job is: its result-changing settings and a digest of every file it reads.

  Args:
    settings: dict of JSON values (str keys), e.g. seed, learning_rate, method.
    paths: None or dict {role: path or list of paths} (e.g. {"train": "x.npz",
      "teacher": [...]}); entries that are not existing paths (e.g. "tfds:mnist") are kept
      as strings.

  Returns:
    dict {"settings": ..., "files": {role: digest or [digests]}}, JSON.
  """
  def digest(p):
    p = os.fspath(p)
    return path_digest(p) if os.path.exists(p) else p

  files = {}
  for role, value in (paths or {}).items():
    if value is None:
      files[role] = None
    elif isinstance(value, (list, tuple)):
      files[role] = [digest(v) for v in value]
    else:
      files[role] = digest(value)
  return strict_json({"settings": dict(settings), "files": files})


def fingerprint_differences(saved, current):
  """What differs between two fingerprints, one readable item per setting or file.

  Returns:
    list of str such as "seed 0 -> 1" or "the train file's contents"; empty if equal.
  """
  out = []
  for part, label in (("settings", "{} {} -> {}"), ("files", "the {} file's contents")):
    a, b = (saved or {}).get(part, {}), (current or {}).get(part, {})
    for key in sorted(set(a) | set(b)):
      if a.get(key) != b.get(key):
        if part == "settings":
          out.append(label.format(key, json.dumps(a.get(key)), json.dumps(b.get(key))))
        else:
          out.append(label.format(key))
  return out
