"""The import layering of ``zoo/``, checked by parsing every module (nothing is imported).

Imports point only down: data / losses / models -> training -> gan -> tasks -> apps
(``zoo/sketch.py``) -> launch. ``zoo.errors`` is importable by every module. ``zoo.eval``
(the offline judge) may import models and data only, and only tasks and apps import it.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"

BOTTOM = {"data", "losses", "models"}
#: layer -> the layers its modules may import (besides itself and ``errors``).
ALLOWED = {
  "root": set(),  # zoo/__init__.py
  "errors": set(),
  "data": BOTTOM,
  "losses": BOTTOM,
  "models": BOTTOM,
  "eval": {"data", "models"},
  "training": BOTTOM,
  "gan": BOTTOM | {"training"},
  "tasks": BOTTOM | {"training", "gan", "eval"},
  "app": BOTTOM | {"training", "gan", "eval", "tasks"},
}
APPS = {"sketch", "gan_tools", "explore"}  # zoo/<name>(.py) modules and packages that are apps


def layer_of(module: str) -> str | None:
  """The layer of a dotted module name under ``zoo`` (``None``: not a zoo module)."""
  parts = module.split(".")
  if parts[0] == "launch":
    return "launch"
  if parts[0] != "zoo":
    return None
  if len(parts) == 1:
    return "root"
  head = parts[1]
  if head == "errors":
    return "errors"
  if head in APPS:
    return "app"
  return head


def module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(ROOT).with_suffix("")
  parts = list(rel.parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
  """``(line, dotted name)`` of every import in ``source`` (relative ones resolved)."""
  out = []
  package = module if is_package else module.rpartition(".")[0]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
      else:
        target = node.module or ""
      if target in ("zoo", "launch"):  # from zoo import errors -> zoo.errors
        out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
      else:
        out.append((node.lineno, target))
  return out


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
  """One line per import of ``module`` that points up (or sideways) in the layering."""
  layer = layer_of(module)
  if layer not in ALLOWED:
    return [f"{module}: unknown layer {layer!r}; add it to tests/test_layering.py"]
  bad = []
  for line, target in imported_modules(source, module, is_package):
    t = layer_of(target)
    if t is None or t in (layer, "errors"):
      continue
    if t == "root" or t not in ALLOWED[layer]:
      bad.append(f"{module}:{line} ({layer}) imports {target} ({t})")
  return bad


def test_imports_respect_the_layers():
  files = sorted(ZOO.rglob("*.py"))
  assert len(files) > 20
  bad = []
  for path in files:
    bad += violations(
      path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )
  assert not bad, "imports pointing up the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize(
  "module,source,ok",
  [
    ("zoo.eval.face_classifier", "from zoo.models import face_classifier", True),
    ("zoo.eval.face_classifier", "def f():\n  from zoo.tasks import face_classifier", False),
    ("zoo.eval.metrics", "import zoo.training.checkpoint", False),
    ("zoo.eval.metrics", "from zoo.losses import gan", False),
    ("zoo.models.pix2pix", "from zoo.errors import ConfigError", True),
    ("zoo.models.pix2pix", "from zoo.training import loop", False),
    ("zoo.models.pix2pix", "from ..training import loop", False),
    ("zoo.training.loop", "from zoo import gan", False),
    ("zoo.training.loop", "from zoo.eval import metrics", False),
    ("zoo.gan.core", "from zoo.training import restore", True),
    ("zoo.gan.core", "from zoo.tasks import pix2pix", False),
    ("zoo.tasks.pix2pix", "from zoo.eval import metrics\nfrom zoo.gan import core", True),
    ("zoo.tasks.pix2pix", "from zoo.sketch import SketchModel", False),
    ("zoo.tasks.pix2pix", "import launch.common", False),
    ("zoo.sketch", "from zoo.tasks import sketch_rnn", True),
    ("zoo.newthing.x", "import numpy", False),
  ],
)
def test_checker_catches_upward_imports(module, source, ok):
  assert (violations(source, module) == []) == ok
