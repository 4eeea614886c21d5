"""What a training workdir guards: one writer at a time, and no silently mixed runs.

* :func:`check_usable` — a workdir that is a file, or cannot be written, is a one-line
  :class:`~zoo.errors.CheckpointError` before anything is created.
* :func:`lock` — ``<workdir>/.lock`` (``fcntl.flock`` plus the holder's PID and host): a
  second training process on the same workdir refuses in one line; a lock file left by a
  process that died is taken over with a message (the kernel drops a dead process's
  flock, so a killed run never leaves the workdir stuck). Re-entrant within a thread, so
  a caller that holds it (``get_or_train_classifier``) can train under it; ``wait=True``
  blocks instead of refusing.
* :class:`ResumeKeys` and :func:`check_resume` — when a workdir already holds
  checkpoints, the new config is compared with the run's ``config.json`` key by key
  (sectioned configs are flattened to ``section.key``, so flat and sectioned configs work
  alike). Each task declares its *shape* keys (they change parameter shapes: always
  refused) and its *free* keys (how long, how often to log/save/sample: always
  accepted); every other key changes the data or the optimisation and is refused unless
  the caller allows config changes (``--allow_config_change``), in which case the change
  is recorded in ``<workdir>/history.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import re
import socket
import threading
from typing import Any, Callable, Iterable, Mapping

import jax
import ml_collections

from zoo.errors import CheckpointError, ConfigError

LOCK_FILE = ".lock"
HISTORY_FILE = "history.jsonl"
DAMAGED_DIR = "checkpoints_damaged"
OVERRIDE_FLAG = "--allow_config_change"

# ---------------------------------------------------------------------------
# Usable workdir.
# ---------------------------------------------------------------------------


def check_local(workdir: str) -> str:
  """``workdir`` as a path; one-line CheckpointError for a URL such as ``gs://...``, which
  the local file API would take for a relative folder named ``gs:``."""
  workdir = os.fspath(workdir)
  if not workdir:
    raise CheckpointError("--workdir is empty")
  scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", workdir)
  if scheme:
    raise CheckpointError(
      f"workdir {workdir!r} is a {scheme.group(1)}:// URL; workdirs are local paths: mount "
      "the bucket (e.g. gcsfuse) and pass the mounted path (docs/multihost.md)"
    )
  return workdir


def check_usable(workdir: str) -> str:
  """``workdir`` as a path; one-line CheckpointError when it is a URL, or it (or a parent)
  is a file or is not writable. Creates nothing."""
  workdir = check_local(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir!r} is a file, not a directory")
  probe = os.path.abspath(workdir)
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    raise CheckpointError(f"workdir {workdir!r} cannot be created: {probe!r} is a file")
  if not os.access(probe, os.W_OK | os.X_OK):
    if probe == os.path.abspath(workdir):
      raise CheckpointError(f"workdir {workdir!r} is not writable")
    raise CheckpointError(f"workdir {workdir!r} cannot be created: {probe!r} is not writable")
  return workdir


def os_error_line(e: OSError, what: str) -> str:
  """``what: <strerror> (<file>)`` for an OSError, one line."""
  name = e.filename if e.filename is not None else ""
  return f"{what}: {e.strerror or type(e).__name__}" + (f" ({name})" if name else "")


# ---------------------------------------------------------------------------
# The lock.
# ---------------------------------------------------------------------------

_held = threading.local()  # {abs workdir: [file, depth]} per thread


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _read_holder(f) -> dict:
  try:
    f.seek(0)
    info = json.loads(f.read() or "{}")
    return info if isinstance(info, dict) else {}
  except (OSError, ValueError):
    return {}


def _holder_text(info: Mapping[str, Any]) -> str:
  pid, host, since = info.get("pid"), info.get("host"), info.get("since")
  if pid is None:
    return "another process"
  text = f"process {pid}"
  if host and host != socket.gethostname():
    text += f" on {host}"
  return text + (f" (since {since})" if since else "")


@contextlib.contextmanager
def lock(workdir: str, *, wait: bool = False, say: Callable[[str], None] | None = None):
  """Holds ``<workdir>/.lock`` for the block (creating the workdir); see the module doc.

  Raises CheckpointError (one line) when another process holds it and ``wait`` is False,
  or when the lock file cannot be created.
  """
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover - non-POSIX: no lock
    fcntl = None
  if fcntl is None or jax.process_index() != 0:  # one lock per run: process 0 holds it
    yield
    return
  key = os.path.abspath(workdir)
  held = getattr(_held, "locks", None)
  if held is None:
    held = _held.locks = {}
  if key in held:  # re-entered by the thread holding it
    held[key][1] += 1
    try:
      yield
    finally:
      held[key][1] -= 1
    return
  path = os.path.join(workdir, LOCK_FILE)
  try:
    os.makedirs(workdir, exist_ok=True)
    f = open(path, "a+")  # pylint: disable=consider-using-with
  except OSError as e:
    raise CheckpointError(os_error_line(e, f"cannot lock workdir {workdir!r}")) from None
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise CheckpointError(os_error_line(e, f"cannot lock workdir {workdir!r}")) from None
      info = _read_holder(f)
      raise CheckpointError(
        f"workdir {workdir!r} is in use by {_holder_text(info)}: another training run is "
        "writing it; wait for it to finish, stop it, or use another --workdir"
      ) from None
    old = _read_holder(f)
    pid = old.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and old.get("host") == socket.gethostname():
      if say is not None and not _pid_alive(pid):
        say(f"[workdir] took over the lock of {workdir} left by process {pid} (no longer running)")
    elif isinstance(pid, int) and pid != os.getpid() and say is not None:
      say(f"[workdir] took over the lock of {workdir} left by {_holder_text(old)} (not held)")
    f.seek(0)
    f.truncate()
    now = datetime.datetime.now().isoformat(timespec="seconds")
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now}))
    f.flush()
    held[key] = [f, 1]
    try:
      yield
    finally:
      del held[key]
      try:
        f.seek(0)
        f.truncate()  # released: an empty file is no one's lock
        f.flush()
      except OSError:
        pass
      fcntl.flock(f, fcntl.LOCK_UN)
  finally:
    f.close()


# ---------------------------------------------------------------------------
# Resume checks.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResumeKeys:
  """How a task's config keys may change between a run and its resume.

  Entries are dotted key prefixes (``'model'`` covers ``model.*``; ``'enc_rnn_size'``
  one flat key). ``shape``: keys that change parameter shapes or the state's structure
  (refused, never overridable). ``free``: keys that only say how long to train and how
  often to log, save, evaluate and draw (accepted). Every other key changes the data or
  the optimisation: refused unless config changes are allowed.
  """

  shape: tuple[str, ...] = ()
  free: tuple[str, ...] = ()

  def kind(self, key: str) -> str:
    def hit(prefixes):
      return any(key == p or key.startswith(p + ".") for p in prefixes)

    if hit(self.shape):
      return "shape"
    if hit(self.free):
      return "free"
    return "data"


#: Loop keys every task may change on resume.
LOOP_FREE = (
  "num_steps",
  "log_every",
  "save_every",
  "eval_every",
  "sample_every",
  "max_to_keep",
  "async_checkpoints",
)


def jsonable(config) -> dict:
  """A config (ConfigDict or dict) as plain JSON data (tuples become lists)."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(d, default=str))


def _as_config_value(current: Any, value: Any) -> Any:
  """A JSON ``value`` in the type of the config's ``current`` value (lists were tuples)."""
  if isinstance(current, tuple) and isinstance(value, list):
    inner = current[0] if current else None
    return tuple(_as_config_value(inner, v) for v in value)
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def run_config_overlay(base, saved: Mapping[str, Any], overrides: Mapping[str, Any] = None):
  """``base`` (a ConfigDict) with the values of a run's ``config.json`` (``saved``), then
  ``overrides`` (``{'section.key': value}``, as a command line gives them) on top.

  Rerunning a launcher with only ``--workdir`` (and perhaps ``--config.KEY`` overrides)
  thereby resumes the run as it was trained, not the config file's defaults. Keys of
  ``saved`` that ``base`` lacks (derived sections, keys since removed) are skipped; keys
  ``saved`` lacks (added since) keep ``base``'s value. One-line ConfigError when a saved
  value does not fit its key.
  """
  c = base.copy_and_resolve_references()

  def put(node, d: Mapping[str, Any], prefix: str) -> None:
    for k, v in d.items():
      if k not in node:
        continue
      cur = node[k]
      if isinstance(cur, (ml_collections.ConfigDict, Mapping)):
        if isinstance(v, Mapping):
          put(cur, v, f"{prefix}{k}.")
        continue
      try:
        node[k] = _as_config_value(cur, v)
      except (TypeError, ValueError) as e:
        raise ConfigError(
          f"the run's config.json has {prefix}{k}={v!r}, which the config cannot take "
          f"({e}); pass --config FILE to resume with a config file"
        ) from None

  with c.unlocked():
    put(c, saved, "")
    for path, v in (overrides or {}).items():
      *sections, key = path.split(".")
      node = c
      for s in sections:
        node = node[s]
      node[key] = v
  return c


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{'model': {'a': 1}, 'b': 2}`` -> ``{'model.a': 1, 'b': 2}``."""
  out = {}
  for k, v in d.items():
    name = f"{prefix}{k}"
    if isinstance(v, Mapping) and v:
      out.update(flatten(v, name + "."))
    else:
      out[name] = v
  return out


@dataclasses.dataclass
class Change:
  key: str
  kind: str  # shape | data | free
  run: Any
  config: Any

  def text(self) -> str:
    return f"{self.key}: run has {self.run!r}, config has {self.config!r}"


def differences(saved: Mapping[str, Any], new: Mapping[str, Any], keys: ResumeKeys) -> list[Change]:
  """The keys whose values differ between the run's config and the new one.

  Keys present on one side only are skipped: a config written by an older version of
  the code lacks newer keys (which then take their defaults).
  """
  a, b = flatten(jsonable(saved)), flatten(jsonable(new))
  out = []
  for k in sorted(set(a) & set(b)):
    if a[k] != b[k]:
      out.append(Change(k, keys.kind(k), a[k], b[k]))
  return out


def _list(changes: Iterable[Change], limit: int = 6) -> str:
  changes = list(changes)
  text = "; ".join(c.text() for c in changes[:limit])
  return text + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def check_resume(
  workdir: str,
  saved: Mapping[str, Any] | None,
  new: Mapping[str, Any],
  keys: ResumeKeys,
  *,
  allow_change: bool = False,
) -> list[Change]:
  """Compares the run's config (``saved``) with ``new`` before a resume; returns the
  accepted changes. Raises ConfigError (one line) for shape changes, and for data or
  optimisation changes unless ``allow_change``. Writes nothing."""
  if not saved:
    return []
  changes = differences(saved, new, keys)
  shape = [c for c in changes if c.kind == "shape"]
  if shape:
    raise ConfigError(
      f"workdir {workdir} holds a run with another architecture ({_list(shape)}); these "
      "change parameter shapes, so the run cannot continue with them: use another "
      "--workdir or the run's values"
    )
  data = [c for c in changes if c.kind == "data"]
  if data and not allow_change:
    raise ConfigError(
      f"workdir {workdir} holds a run with other data/optimisation settings ({_list(data)}); "
      f"rerun with {OVERRIDE_FLAG} to continue it with the new values (recorded in "
      f"{os.path.join(workdir, HISTORY_FILE)}), or use another --workdir"
    )
  return changes


def check_num_steps(workdir: str, step: int, num_steps: int) -> None:
  """A resume asking for fewer steps than the run has done says so (one line)."""
  if num_steps < step:
    raise ConfigError(
      f"workdir {workdir} is already at step {step}, past num_steps={num_steps}; nothing to "
      f"train (raise num_steps above {step} to continue it)"
    )


def record(workdir: str, event: str, **fields) -> None:
  """Appends one JSON line ``{time, event, ...}`` to ``<workdir>/history.jsonl``."""
  line = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "event": event, **fields}
  with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
    f.write(json.dumps(line, default=str) + "\n")


def changes_json(changes: Iterable[Change]) -> dict:
  return {c.key: {"run": c.run, "config": c.config, "kind": c.kind} for c in changes}


def set_aside(workdir: str, ckdir: str, step: int) -> str:
  """Moves the damaged step folder ``ckdir/<step>`` to ``workdir/checkpoints_damaged/`` (kept
  for inspection, out of the way of new saves); returns its new path."""
  dest_dir = os.path.join(workdir, DAMAGED_DIR)
  os.makedirs(dest_dir, exist_ok=True)
  dest, n = os.path.join(dest_dir, str(step)), 1
  while os.path.exists(dest):
    dest, n = os.path.join(dest_dir, f"{step}.{n}"), n + 1
  os.replace(os.path.join(ckdir, str(step)), dest)
  return dest


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as indented JSON, atomically (a reader never sees half a file)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, default=str)
  os.replace(tmp, path)
