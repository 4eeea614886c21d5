"""Progressive growing as parameter-tree surgery (pure functions on pytrees).

A progressive GAN (e.g. :mod:`zoo.models.progan`) names its parameters by
resolution, so the stage ``s + 1`` networks hold every layer of stage ``s``
under the same key path (minus layers no longer used, such as toRGB two
resolutions down). Growing is then: build and initialise the stage ``s + 1``
train state (``fresh``), and take from the old state every leaf whose key path
it also has (:func:`copy_matching`, :func:`grow_state`). Leaves are reused as
they are, never recomputed, so the copy is bit-identical; the grown state
shares buffers with the old one (do not donate the old state afterwards).

Train-state layout (see :mod:`zoo.gan.core`)::

  {'g': {'params', 'opt_state'[, 'batch_stats', ...]},
   'd': {...same...},
   'g_ema': G params                 # optional
   ...other entries...}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["copy_matching", "dropped_leaves", "grow_state", "new_leaves"]

PyTree = Any
_NETS = ("g", "d")


def _sig(x: Any) -> tuple[tuple[int, ...], Any]:
  """(shape, dtype) of an array or Python scalar leaf, without a device transfer."""
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return tuple(x.shape), x.dtype
  a = np.asarray(x)
  return a.shape, a.dtype


def _flat(tree: PyTree) -> list[tuple[tuple, Any]]:
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def copy_matching(old_tree: PyTree, new_tree: PyTree) -> PyTree:
  """``new_tree``'s structure, with every leaf that ``old_tree`` also has taken from it.

  Leaves are matched by key path (``jax.tree_util`` paths, so this works for
  flax param dicts, ``FrozenDict`` and optax states such as
  ``(ScaleByAdamState(count, mu, nu), EmptyState())`` alike). Matched leaves
  are the old objects themselves (bit-identical); unmatched ones come from
  ``new_tree``; old leaves missing from ``new_tree`` are dropped.

  Raises:
    ValueError: a matched leaf differs in shape or dtype (the message names
      the path).
  """
  old = dict(_flat(old_tree))
  pairs, treedef = jax.tree_util.tree_flatten_with_path(new_tree)
  leaves = []
  for path, new_leaf in pairs:
    if path in old:
      old_leaf = old[path]
      if _sig(old_leaf) != _sig(new_leaf):
        (os, od), (ns, nd) = _sig(old_leaf), _sig(new_leaf)
        raise ValueError(
          f"cannot carry leaf {jax.tree_util.keystr(path)}: old {od}{list(os)} "
          f"vs new {nd}{list(ns)}"
        )
      leaves.append(old_leaf)
    else:
      leaves.append(new_leaf)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def new_leaves(old_tree: PyTree, new_tree: PyTree) -> list[str]:
  """Key paths (``keystr``) of ``new_tree`` leaves that ``old_tree`` lacks, in tree order."""
  old = {p for p, _ in _flat(old_tree)}
  return [jax.tree_util.keystr(p) for p, _ in _flat(new_tree) if p not in old]


def dropped_leaves(old_tree: PyTree, new_tree: PyTree) -> list[str]:
  """Key paths of ``old_tree`` leaves that ``new_tree`` no longer has."""
  return new_leaves(new_tree, old_tree)


def _same_structure(a: PyTree, b: PyTree) -> bool:
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  return ta == tb and all(_sig(x) == _sig(y) for x, y in zip(la, lb))


def _other(old: Mapping, fresh: Mapping, key: str) -> Any:
  """Generic entries: kept from ``old`` only if it has them with the same structure."""
  if key in old and _same_structure(old[key], fresh[key]):
    return old[key]
  return fresh[key]


def _require(old: Mapping, key: str, where: str) -> Any:
  if key not in old:
    raise ValueError(f"old state lacks {where}{key!r}, which the grown state has")
  return old[key]


def grow_state(state: Mapping, fresh: Mapping, *, reset_optimizer: bool) -> dict:
  """Grow a GAN train state into the layout of ``fresh`` (the next stage).

  Args:
    state: the current train state (layout in the module docstring).
    fresh: a freshly initialised state of the next stage, same layout, with
      ``opt_state = tx.init(new_params)``.
    reset_optimizer: if True, the optimizer states are ``fresh``'s (zero
      moments, step count 0), as ProGAN's ``reset_opt_for_new_lod``; else the
      old optimizer state is carried leaf by leaf (moments of old parameters
      and the step count kept; new parameters start at ``fresh``'s zeros).

  Returns:
    A new dict with ``fresh``'s structure: ``params`` and the other variable
    collections of ``g``/``d`` (e.g. ``batch_stats``) and ``g_ema`` are
    :func:`copy_matching` (old, fresh); any other entry is the old one if it
    has the same tree structure, leaf shapes and dtypes, else ``fresh``'s.

  Raises:
    ValueError: ``fresh`` has a network, variable collection or ``g_ema``
      that ``state`` lacks, or a carried leaf changed shape or dtype.
  """
  out: dict = {}
  for key in fresh:
    if key in _NETS:
      old_net = _require(state, key, "")
      net: dict = {}
      for col in fresh[key]:
        if col == "opt_state":
          old_opt = _require(old_net, col, f"{key!r}/")
          net[col] = fresh[key][col] if reset_optimizer else copy_matching(old_opt, fresh[key][col])
        else:
          net[col] = copy_matching(_require(old_net, col, f"{key!r}/"), fresh[key][col])
      out[key] = net
    elif key == "g_ema":
      out[key] = copy_matching(_require(state, key, ""), fresh[key])
    else:
      out[key] = _other(state, fresh, key)
  return out
