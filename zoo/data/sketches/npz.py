"""Safe reading and writing of sketch-rnn / QuickDraw ``.npz`` files.

A sketch-rnn ``.npz`` (e.g. ``aaron_sheep.npz`` or the QuickDraw per-category
files) is a zip archive with members ``train.npy``, ``valid.npy`` and
``test.npy``.  Each member is a 1-D *object* array whose elements are int16
stroke-3 arrays ``[n, 3]`` of ``(dx, dy, pen_lift)``.

Object arrays are stored as pickles, which ``np.load`` only reads when
pickle loading is switched on -- and an arbitrary pickle can run arbitrary
code.  :func:`load_sketch_npz` never does that: it opens each zip member
itself, parses the ``.npy`` header with :mod:`numpy.lib.format`, reads
numeric arrays with pickle loading disabled, and decodes object arrays with
:class:`RestrictedUnpickler`, which resolves only the handful of numpy
callables needed to rebuild plain arrays and refuses every other global
*before* anything is called.

Every problem is reported as a one-line :class:`SketchDataError` of the form
``"<path>: <problem>"``.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zoo.errors import ZooError

try:  # numpy >= 2
  from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
  from numpy.core.multiarray import _reconstruct as _np_reconstruct

__all__ = [
  "SketchDataError",
  "SketchFileNotFoundError",
  "RestrictedUnpickler",
  "DEFAULT_SPLITS",
  "load_sketch_npz",
  "save_sketch_npz",
  "validate_sketch",
]

DEFAULT_SPLITS = ("train", "valid", "test")


class SketchDataError(ZooError, ValueError):
  """A sketch data file is malformed, unsafe or inconsistent (one-line message)."""


class SketchFileNotFoundError(SketchDataError, FileNotFoundError):
  """A sketch data file does not exist (one-line message)."""


class _ForbiddenGlobal(pickle.UnpicklingError):
  pass


def _latin1_encode(text, encoding="latin1", errors="strict"):
  """Stand-in for ``_codecs.encode``: Python 3 protocol-2 pickles spell ``bytes`` this way."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
    raise _ForbiddenGlobal("refused '_codecs.encode' call other than str -> latin1 bytes")
  return text.encode("latin1")


_ALLOWED_GLOBALS = {
  ("_codecs", "encode"): _latin1_encode,
  ("numpy", "ndarray"): np.ndarray,
  ("numpy", "dtype"): np.dtype,
  ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
  ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that can only rebuild numpy arrays (``ndarray``, ``dtype``, ``_reconstruct``).

  (Plus ``_codecs.encode`` limited to str -> latin1 bytes, which Python 3
  writes for ``bytes`` in protocol-2 pickles.)

  Any other global (``os.system``, ``builtins.eval``, ...) raises
  :class:`pickle.UnpicklingError` when it is looked up, so no callable
  outside the allow-list is ever invoked.
  """

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise _ForbiddenGlobal(
        f"refused to unpickle global '{module}.{name}' (only numpy array reconstruction is allowed)"
      ) from None


def _one_line(msg: object) -> str:
  return " ".join(str(msg).split())


def _fail(path, problem: str) -> SketchDataError:
  return SketchDataError(_one_line(f"{path}: {problem}"))


def _read_header(fp) -> tuple[tuple[int, ...], bool, np.dtype]:
  version = np.lib.format.read_magic(fp)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(fp)
  if version == (2, 0):
    return np.lib.format.read_array_header_2_0(fp)
  raise ValueError(f"unsupported .npy format version {version}")


def _read_member(zf: zipfile.ZipFile, member: str):
  # Read the whole member first: zipfile verifies its CRC only at the end.
  raw = zf.read(member)
  fp = io.BytesIO(raw)
  shape, _fortran, dtype = _read_header(fp)
  if dtype.hasobject:
    if dtype != np.dtype(object):
      raise ValueError(f"unsupported structured dtype {dtype}")
    # encoding='latin1' is what numpy uses for Python-2 era pickles
    # (the published sketch-rnn files were written by Python 2).
    obj = RestrictedUnpickler(fp, encoding="latin1").load()
    if not isinstance(obj, np.ndarray):
      raise ValueError(f"pickled payload is a {type(obj).__name__}, not an array")
    if obj.shape != tuple(shape):
      raise ValueError(f"array shape {obj.shape} does not match its header {tuple(shape)}")
    return obj
  return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def validate_sketch(sketch, where: str = "sketch") -> np.ndarray:
  """Check one stroke-3 sketch; returns it as a numpy array or raises ``ValueError``."""
  if isinstance(sketch, np.ndarray):
    arr = sketch
  else:
    try:
      arr = np.asarray(sketch)
    except Exception:
      raise ValueError(f"{where} is a {type(sketch).__name__}, not a numeric array") from None
  if arr.dtype.kind not in "iuf":
    raise ValueError(f"{where} has dtype {arr.dtype}, expected a numeric [n, 3] array")
  if arr.ndim != 2 or arr.shape[1] != 3:
    raise ValueError(f"{where} has shape {arr.shape}, expected a 2-D [n, 3] stroke-3 array")
  if arr.shape[0] == 0:
    raise ValueError(f"{where} is empty (0 points)")
  if arr.dtype.kind == "f" and not np.isfinite(arr).all():
    raise ValueError(f"{where} contains non-finite values (NaN or inf)")
  pen = arr[:, 2]
  if not np.all((pen == 0) | (pen == 1)):
    raise ValueError(f"{where} has pen_lift values other than 0 and 1")
  return arr


def _split_to_list(arr: np.ndarray, split: str) -> list[np.ndarray]:
  if arr.dtype == object:
    if arr.ndim != 1:
      raise ValueError(f"split '{split}' is an object array of shape {arr.shape}, expected 1-D")
    items = list(arr)
  elif arr.ndim == 3:  # numeric [N, n, 3]: N sketches of equal length
    items = list(arr)
  elif arr.ndim == 2:
    raise ValueError(
      f"split '{split}' is a single 2-D array of shape {arr.shape}; expected a list of [n, 3] sketches"
    )
  else:
    raise ValueError(f"split '{split}' has shape {arr.shape}, expected a list of [n, 3] sketches")
  if not items:
    raise ValueError(f"split '{split}' is empty")
  return [validate_sketch(s, f"split '{split}' element {i}") for i, s in enumerate(items)]


def load_sketch_npz(
  path: str | os.PathLike, *, splits: Sequence[str] = DEFAULT_SPLITS
) -> dict[str, list[np.ndarray]]:
  """Safely read a sketch-rnn ``.npz`` file -> ``{split: [stroke-3 array, ...]}``.

  Elements keep their stored dtype (int16 for the published files).
  Raises :class:`SketchDataError` (one line, naming the file) for a file
  that is not a zip/npz, is truncated or corrupt, lacks a requested split,
  holds anything but non-empty finite numeric ``[n, 3]`` arrays with 0/1
  pen values, or contains a pickle referencing anything but numpy array
  reconstruction (such a pickle is refused before any of it runs).
  """
  path = Path(path)
  if not path.exists():
    raise SketchFileNotFoundError(f"{path}: no such file")
  if not path.is_file():
    raise _fail(path, "not a regular file")
  if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
      head = f.read(4)
    if head == b"PK\x03\x04":
      raise _fail(path, "truncated or corrupt .npz archive (zip directory missing)")
    raise _fail(path, "not a .npz file (not a zip archive)")
  out: dict[str, list[np.ndarray]] = {}
  try:
    with zipfile.ZipFile(path) as zf:
      names = set(zf.namelist())
      available = sorted(n[:-4] if n.endswith(".npy") else n for n in names)
      for split in splits:
        member = f"{split}.npy" if f"{split}.npy" in names else split if split in names else None
        if member is None:
          raise _fail(
            path, f"missing split '{split}' (file has: {', '.join(available) or 'nothing'})"
          )
        try:
          arr = _read_member(zf, member)
          out[split] = _split_to_list(arr, split)
        except _ForbiddenGlobal as e:
          raise _fail(path, f"unsafe pickle in '{member}': {e}") from None
        except (EOFError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError) as e:
          raise _fail(path, f"truncated or corrupt member '{member}': {e}") from None
        except (ValueError, TypeError, OSError, AttributeError, IndexError, KeyError) as e:
          if isinstance(e, SketchDataError):
            raise
          raise _fail(path, f"bad member '{member}': {e}") from None
  except SketchDataError:
    raise
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise _fail(path, f"cannot read archive: {e}") from None
  return out


def save_sketch_npz(
  path: str | os.PathLike,
  splits: Mapping[str, Sequence[np.ndarray]],
  *,
  dtype=None,
  compressed: bool = True,
) -> Path:
  """Write ``{split: [stroke-3 arrays]}`` in the sketch-rnn ``.npz`` format (1-D object arrays).

  ``dtype=None`` stores int16 when every value is an integer within the
  int16 range (like the published files), float32 otherwise.  The file is
  written atomically (temporary file + rename) at exactly ``path``.
  """
  path = Path(path)
  arrays = {}
  for split, sketches in splits.items():
    checked = [validate_sketch(s, f"split '{split}' element {i}") for i, s in enumerate(sketches)]
    if not checked:
      raise ValueError(f"split '{split}' is empty")
    dt = dtype
    if dt is None:
      ints = all(
        np.array_equal(s, np.round(s)) and np.abs(s).max() <= np.iinfo(np.int16).max
        for s in checked
      )
      dt = np.int16 if ints else np.float32
    obj = np.empty(len(checked), dtype=object)
    for i, s in enumerate(checked):
      obj[i] = np.asarray(s, dtype=dt)
    arrays[split] = obj
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      buf = io.BytesIO()
      (np.savez_compressed if compressed else np.savez)(buf, **arrays)
      f.write(buf.getvalue())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path
