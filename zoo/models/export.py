"""One export format for trained networks: a flax module's weights + how to rebuild it.

:func:`save` writes two files to a directory (``name`` defaults to ``generator``)::

  <name>.msgpack  flax.serialization.to_bytes of the variables (numpy arrays)
  <name>.json     {"format": "zoo.generator/1",
                   "module": "zoo.models.pix2pix.UNetGenerator",
                   "kwargs": {...the module's dataclass fields...},
                   "variables": {"params/...": [shape, dtype], ...},
                   "info": {...anything the exporter adds: step, image size, ...}}

:func:`load` rebuilds the module from its dotted class path and kwargs and reads the
variables back, without the training code or its config::

  ex = load("runs/pix2pix/export")
  y = ex.module.apply(ex.variables, x, train=False)

Only classes under ``zoo.models.`` are ever imported. Tuples in the module's fields are
stored as JSON lists and come back as tuples (module fields are immutable); numpy/jax
dtypes as ``{"dtype": "float32"}``. Every problem with the files is a one-line
:class:`zoo.errors.CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.serialization
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import CheckpointError

FORMAT = "zoo.generator/1"
#: Module classes that may be rebuilt from an export (never arbitrary imports).
ALLOWED_PREFIX = "zoo.models."
_SKIP_FIELDS = ("parent", "name")


@dataclasses.dataclass(frozen=True)
class Exported:
  """A loaded export: the rebuilt module, its variables (jax arrays) and the ``info``."""

  module: nn.Module
  variables: dict
  info: dict


# ---------------------------------------------------------------------------
# Module <-> JSON.
# ---------------------------------------------------------------------------


def module_path(module: nn.Module) -> str:
  """``'zoo.models.pix2pix.UNetGenerator'`` for an instance of that class."""
  cls = type(module)
  return f"{cls.__module__}.{cls.__qualname__}"


def _encode(value: Any, where: str) -> Any:
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value)
  if isinstance(value, (tuple, list)):
    return [_encode(v, where) for v in value]
  if isinstance(value, Mapping):
    if not all(isinstance(k, str) for k in value):
      raise ValueError(f"cannot export {where}: a mapping with non-string keys")
    return {k: _encode(v, where) for k, v in value.items()}
  if isinstance(value, (type, np.dtype)):
    try:
      return {"dtype": np.dtype(value).name}
    except TypeError:
      pass
  raise ValueError(f"cannot export {where}={value!r}: not representable in JSON")


def _decode(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(_decode(v) for v in value)
  if isinstance(value, dict):
    if set(value) == {"dtype"} and isinstance(value["dtype"], str):
      return jnp.dtype(value["dtype"])
    return {k: _decode(v) for k, v in value.items()}
  return value


def _fields(cls) -> dict[str, dataclasses.Field]:
  return {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in _SKIP_FIELDS}


def module_kwargs(module: nn.Module) -> dict:
  """The module's constructor fields (all but ``parent``/``name``) as JSON values."""
  cls = type(module)
  return {k: _encode(getattr(module, k), f"{cls.__name__}.{k}") for k in _fields(cls)}


def _module_class(path: Any, source: str):
  if (
    not isinstance(path, str)
    or not path.startswith(ALLOWED_PREFIX)
    or not all(p.isidentifier() for p in path.split("."))
    or path.count(".") < 3
  ):
    raise CheckpointError(
      f"{source}: module {path!r} is not a class under {ALLOWED_PREFIX}; refusing to import it"
    )
  mod_name, cls_name = path.rsplit(".", 1)
  try:
    cls = getattr(importlib.import_module(mod_name), cls_name)
  except (ImportError, AttributeError) as e:
    raise CheckpointError(f"{source}: cannot find module class {path!r} ({e})") from None
  if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
    raise CheckpointError(f"{source}: {path!r} is not a flax module class")
  return cls


def build_module(path: str, kwargs: Mapping[str, Any], *, source: str = "export") -> nn.Module:
  """Rebuilds a module from :func:`module_path` and :func:`module_kwargs` (zoo.models only)."""
  cls = _module_class(path, source)
  if not isinstance(kwargs, Mapping):
    raise CheckpointError(f"{source}: 'kwargs' must be a JSON object")
  fields = _fields(cls)
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise CheckpointError(f"{source}: {path} has no field(s) {', '.join(unknown)}")
  try:
    return cls(**{k: _decode(v) for k, v in kwargs.items()})
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{source}: cannot build {path} ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------


def _manifest(variables) -> dict[str, list]:
  flat = traverse_util.flatten_dict(flax.serialization.to_state_dict(variables), sep="/")
  return {k: [list(np.shape(v)), np.asarray(v).dtype.name] for k, v in sorted(flat.items())}


def paths(directory: str, name: str = "generator") -> tuple[str, str]:
  """``(<directory>/<name>.msgpack, <directory>/<name>.json)``."""
  return os.path.join(directory, f"{name}.msgpack"), os.path.join(directory, f"{name}.json")


def _write_atomic(path: str, payload, mode: str) -> None:
  tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
  with open(tmp, mode) as f:
    f.write(payload)
  os.replace(tmp, path)


def save(
  directory: str,
  module: nn.Module,
  variables: Any,
  *,
  info: Mapping[str, Any] | None = None,
  name: str = "generator",
) -> tuple[str, str]:
  """Writes ``<directory>/<name>.msgpack`` and ``<name>.json`` (atomically, the JSON last).

  ``variables``: the module's variables (``{'params': ...[, 'batch_stats': ...]}``), on
  any device. ``info``: JSON-serialisable extras stored as ``"info"``. Returns the two
  paths. Raises ValueError when the module is not a ``zoo.models`` class or has a field
  that JSON cannot hold (a function, an array).
  """
  path = module_path(module)
  if not path.startswith(ALLOWED_PREFIX):
    raise ValueError(f"only modules under {ALLOWED_PREFIX} can be exported, got {path}")
  kwargs = module_kwargs(module)
  host = jax.tree.map(np.asarray, jax.device_get(variables))
  desc = {
    "format": FORMAT,
    "module": path,
    "kwargs": kwargs,
    "variables": _manifest(host),
    "info": dict(info or {}),
  }
  text = json.dumps(desc, indent=2, default=str)
  params_path, json_path = paths(directory, name)
  os.makedirs(directory, exist_ok=True)
  _write_atomic(params_path, flax.serialization.to_bytes(host), "wb")
  _write_atomic(json_path, text + "\n", "w")
  return params_path, json_path


def resolve(path: str, name: str = "generator") -> tuple[str, str]:
  """``(msgpack, json)`` paths for an export directory or either of its two files."""
  path = os.fspath(path)
  if not os.path.isdir(path) and path.endswith((".json", ".msgpack")):
    directory, base = os.path.split(path)
    name = base.rsplit(".", 1)[0]
    return paths(directory or ".", name)
  return paths(path, name)


def read_description(json_path: str) -> dict:
  """The export's JSON description (format checked); one-line CheckpointError otherwise."""
  if not os.path.isfile(json_path):
    raise CheckpointError(f"no exported model at {json_path}")
  try:
    with open(json_path) as f:
      desc = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{json_path} is unreadable ({type(e).__name__}: {e})") from None
  if not isinstance(desc, dict):
    raise CheckpointError(f"{json_path} is not a JSON object")
  if desc.get("format") != FORMAT:
    raise CheckpointError(f"{json_path}: format {desc.get('format')!r}, expected {FORMAT!r}")
  return desc


def load(path: str, *, name: str = "generator") -> Exported:
  """Loads what :func:`save` wrote (``path``: the directory or one of its two files)."""
  params_path, json_path = resolve(path, name)
  desc = read_description(json_path)
  module = build_module(desc.get("module"), desc.get("kwargs", {}), source=json_path)
  try:
    with open(params_path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise CheckpointError(f"cannot read {params_path} ({type(e).__name__}: {e})") from None
  try:
    variables = flax.serialization.msgpack_restore(raw)
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises many types
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise CheckpointError(
      f"{params_path} is corrupt or not a msgpack file ({type(e).__name__}: {first})"
    ) from None
  if not isinstance(variables, dict):
    raise CheckpointError(f"{params_path} does not hold a variables dict")
  expected = desc.get("variables")
  if expected is not None:
    try:
      got = _manifest(variables)
    except Exception:  # pylint: disable=broad-except
      got = None
    if got != expected:
      raise CheckpointError(
        f"{params_path} does not match {os.path.basename(json_path)} (different variables)"
      )
  info = desc.get("info") or {}
  return Exported(module=module, variables=jax.tree.map(jnp.asarray, variables), info=dict(info))


def save_program(
  directory: str,
  fn,
  variables: Any,
  *example_args,
  name: str = "generator",
  batch_axis_args: tuple[int, ...] = (0,),
) -> str:
  """Writes ``<directory>/<name>.jaxexport``: ``fn(variables, *args)`` serialized with
  ``jax.export`` (StableHLO), the batch of each argument in ``batch_axis_args`` (indices
  into ``example_args``) symbolic. Its weights are the ``<name>.msgpack`` that :func:`save`
  writes, so an application runs it with jax and flax alone::

    prog = jax.export.deserialize(open(".../generator.jaxexport", "rb").read())
    variables = flax.serialization.msgpack_restore(open(".../generator.msgpack", "rb").read())
    out = prog.call(variables, *args)

  Returns the path.
  """
  from jax import export as jax_export  # pylint: disable=g-import-not-at-top

  host = jax.tree.map(np.asarray, jax.device_get(variables))
  (batch,) = jax_export.symbolic_shape("b")
  specs = []
  for i, a in enumerate(example_args):
    a = np.asarray(a)
    shape = (batch, *a.shape[1:]) if i in batch_axis_args else a.shape
    specs.append(jax.ShapeDtypeStruct(shape, a.dtype))
  var_specs = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), host)
  exported = jax_export.export(jax.jit(fn))(var_specs, *specs)
  path = os.path.join(directory, f"{name}.jaxexport")
  os.makedirs(directory, exist_ok=True)
  _write_atomic(path, bytes(exported.serialize()), "wb")
  return path
