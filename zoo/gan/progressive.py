"""Pieces of progressive-growing training shared by the progressive families (ProGAN, T2F).

The schedule itself (:class:`zoo.tasks.progan.Schedule`, :func:`zoo.tasks.progan.make_schedule`)
lives with ProGAN; these are the parts of its training step and data that another
progressive family repeats word for word:

* :func:`optimizer`: Adam from an ``optim`` config section (optionally with StyleGAN2's
  correction for a lazily applied regulariser);
* :func:`lod_blend`: the reference's level-of-detail blending of the reals during a fade;
* :func:`upsample_nearest`: pixel repetition (lower stages drawn at the final resolution);
* :func:`reset_optimizers_at_fade_end`: Adam's moments reset where a fade ends;
* :func:`staged_batches`: the batches of every stage from a step on, one stream per stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data.images import unconditional as image_data
from zoo.gan import core
from zoo.models import progan as progan_models

__all__ = [
  "lod_blend",
  "optimizer",
  "reset_optimizers_at_fade_end",
  "staged_batches",
  "upsample_nearest",
]


def optimizer(optim, reg_interval: int = 1) -> optax.GradientTransformation:
  """``optax.adam`` from an ``optim`` section (``lr``, ``b1``, ``b2``, ``eps``,
  ``lazy_adam_correction``: the lazy-regularisation correction for ``reg_interval``)."""
  lr, b1, b2 = optim.lr, optim.b1, optim.b2
  if optim.lazy_adam_correction:
    lr, b1, b2 = core.lazy_adam_hyperparameters(lr, b1, b2, interval=reg_interval)
  return optax.adam(lr, b1=b1, b2=b2, eps=optim.eps)


def upsample_nearest(x: jax.Array | np.ndarray, factor: int):
  """``[B, H, W, C]`` -> ``[B, fH, fW, C]`` by pixel repetition."""
  if factor == 1:
    return x
  xp = jnp if isinstance(x, jax.Array) else np
  return xp.repeat(xp.repeat(x, factor, axis=1), factor, axis=2)


def lod_blend(real, alpha, stage: int):
  """Reals at the stage's resolution blended, during a fade, with their 2x-blurred version
  (box-filtered and pixel-repeated) by ``alpha``, so D never sees a sharper real than fake.
  Stage 0 (no fade) returns ``real`` unchanged."""
  if stage == 0:
    return real
  low = upsample_nearest(jnp.asarray(image_data.downsample(real, 2)), 2)
  return progan_models.lerp(low, real, alpha)


def reset_optimizers_at_fade_end(
  state: Mapping[str, Any],
  step,
  stage: int,
  *,
  schedule,
  optimizers: Mapping[str, optax.GradientTransformation],
  enabled: bool,
):
  """The reference resets Adam whenever the level of detail's floor or ceiling changes: at
  the start of a fade (the growth does that) and again where the fade ends. Returns
  ``state`` with ``state[net]['opt_state']`` replaced by ``tx.init(params)`` for each
  ``net: tx`` of ``optimizers`` when ``step`` (may be traced) is the first step after
  ``stage``'s fade; unchanged otherwise, or when not ``enabled``."""
  if not (enabled and stage > 0 and schedule.fades[stage]):
    return state
  at_end = jnp.asarray(step) == schedule.starts[stage] + schedule.fades[stage]
  out = dict(state)
  for net, tx in optimizers.items():
    fresh = tx.init(state[net]["params"])
    opt = jax.tree.map(lambda a, b: jnp.where(at_end, a, b), fresh, state[net]["opt_state"])
    out[net] = {**state[net], "opt_state": opt}
  return out


def staged_batches(schedule, stream: Callable[[int], Any], start_step: int) -> Iterator[Any]:
  """Batches ``start_step, start_step + 1, ...`` to the schedule's end: stage ``s`` reads
  ``stream(s)`` (a :class:`zoo.data.stream.ShardedStream`) from its own position 0."""
  for s in range(schedule.stage_at(start_step), schedule.num_stages):
    first = max(start_step, schedule.starts[s])
    end = schedule.starts[s + 1] if s + 1 < schedule.num_stages else schedule.total
    yield from stream(s).iterate(first - schedule.starts[s], end - first)
