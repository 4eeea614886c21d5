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

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data.images import unconditional as image_data
from zoo.errors import ConfigError
from zoo.gan import core, growth
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


# ---------------------------------------------------------------------------
# The schedule and the staged task.
# ---------------------------------------------------------------------------


def _hw(v, what: str) -> tuple[int, int]:
  if isinstance(v, int):
    return v, v
  if isinstance(v, (tuple, list)) and len(v) == 1:  # `--config.x=16` on a tuple field
    return _hw(v[0], what)
  try:
    h, w = (int(x) for x in v)
  except (TypeError, ValueError):
    raise ConfigError(f"{what}={v!r} must be an int or (height, width)") from None
  return h, w


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Stages in steps: ``starts[s]`` is stage s's first step, ``fades[s]`` its fade length."""

  start: tuple[int, int]
  batch_sizes: tuple[int, ...]
  starts: tuple[int, ...]
  fades: tuple[int, ...]
  total: int

  @property
  def num_stages(self) -> int:
    return len(self.batch_sizes)

  def resolution(self, stage: int) -> tuple[int, int]:
    return progan_models.resolution_at(self.start, stage)

  def stage_at(self, step: int) -> int:
    s = 0
    while s + 1 < self.num_stages and step >= self.starts[s + 1]:
      s += 1
    return s

  def alpha(self, step, stage: int):
    """Fade-in weight of ``stage`` at ``step`` (1 outside a fade); works on traced steps."""
    if self.fades[stage] == 0:
      return jnp.float32(1.0)
    t = (jnp.asarray(step, jnp.float32) - self.starts[stage]) / self.fades[stage]
    return jnp.clip(t, 0.0, 1.0)

  def images_seen(self, step: int) -> int:
    n, s = 0, 0
    for s in range(self.num_stages):
      end = self.starts[s + 1] if s + 1 < self.num_stages else self.total
      n += (min(step, end) - self.starts[s]) * self.batch_sizes[s] if step > self.starts[s] else 0
    return n


#: Resume rules for a staged run's config (see ``zoo.training.workdir.ResumeKeys``): the
#: keys that place the stages are fixed, while the last stage's length only moves the end,
#: like ``num_steps``, so a finished run can be trained further at its final resolution.
SCHEDULE_SHAPE_KEYS = (
  "schedule.resolution",
  "schedule.fade_images",
  "schedule.stable_images",
  "schedule.batch_sizes",
  "schedule.reset_optimizer",
)
SCHEDULE_FREE_KEYS = ("schedule.final_stable_images",)


def make_schedule(c) -> Schedule:
  """The :class:`Schedule` of config ``c`` (ConfigError, one line, when inconsistent)."""
  sc = c.schedule
  start = progan_models.check_start(_hw(c.model.start, "model.start"))
  final = _hw(sc.resolution, "schedule.resolution")
  k = 0
  while progan_models.resolution_at(start, k) != final:
    res = progan_models.resolution_at(start, k)
    if res[0] > final[0] or res[1] > final[1] or k > 10:
      raise ConfigError(
        f"schedule.resolution={final[0]}x{final[1]} is not model.start={start[0]}x{start[1]} x 2^k"
      )
    k += 1
  progan_models.validate_resolutions([progan_models.resolution_at(start, s) for s in range(k + 1)])
  num_stages = k + 1
  bs = list(sc.batch_sizes) if not isinstance(sc.batch_sizes, int) else [sc.batch_sizes]
  if len(bs) < num_stages:
    bs += [bs[-1]] * (num_stages - len(bs))
  bs = bs[:num_stages]
  for b in bs:
    if not isinstance(b, int) or b < 1:
      raise ConfigError(f"schedule.batch_sizes={tuple(sc.batch_sizes)!r} must be positive ints")
  for key in ("fade_images", "stable_images", "final_stable_images"):
    if not isinstance(sc[key], int) or sc[key] < 0:
      raise ConfigError(f"schedule.{key}={sc[key]!r} must be an integer >= 0")
  starts, fades, step = [], [], 0
  for s in range(num_stages):
    fade = 0 if s == 0 else math.ceil(sc.fade_images / bs[s])
    stable_images = sc.final_stable_images if s == num_stages - 1 else sc.stable_images
    stable = math.ceil(stable_images / bs[s])
    if fade + stable == 0:
      raise ConfigError(f"stage {s} has no steps: raise schedule.stable_images or fade_images")
    starts.append(step)
    fades.append(fade)
    step += fade + stable
  return Schedule(start, tuple(bs), tuple(starts), tuple(fades), step)


class StagedGANTask:
  """What every progressive family's task shares (a staged :class:`zoo.training.loop.Task`).

  A subclass sets ``config`` (with ``schedule.reset_optimizer`` and ``ema.half_life_images``),
  ``schedule`` (:class:`Schedule`), ``losses`` (:class:`zoo.gan.objectives.LossConfig`),
  ``tx_g``/``tx_d``, and defines ``networks(stage) -> (G, D)``,
  ``init_variables(net, rng) -> variables`` and ``objective(stage, alpha)`` (a
  :mod:`zoo.gan.objectives` objective with a ``regularizer()``).
  """

  def step_variant(self, step: int):
    """Which D updates of ``step`` apply a lazy regulariser (the loop compiles one step per
    pattern, see :func:`zoo.gan.core.regularization_pattern`); ``None`` when all do."""
    return core.regularization_pattern(step, self.losses.step_config())

  def train_step(self, state, batch, rng, step, stage, variant=None):
    """One step at ``stage``: Adam reset where a fade ends, real images blended across
    the fade like the fakes, then the core's alternating update."""
    state = reset_optimizers_at_fade_end(
      state,
      step,
      stage,
      schedule=self.schedule,
      optimizers={"g": self.tx_g, "d": self.tx_d},
      enabled=self.config.schedule.reset_optimizer,
    )
    alpha = self.schedule.alpha(step, stage)
    batch = {**batch, "image": lod_blend(batch["image"], alpha, stage)}
    if "wrong_image" in batch:  # reals too: the matching-aware term's mismatched images
      batch["wrong_image"] = lod_blend(batch["wrong_image"], alpha, stage)
    obj = self.objective(stage, alpha)
    state, metrics = core.train_step(
      state,
      batch,
      rng,
      step,
      objective=obj,
      tx_g=self.tx_g,
      tx_d=self.tx_d,
      config=self.step_config(stage),
      d_regularizer=obj.regularizer(),
      regularize=variant,
    )
    return state, {**metrics, "alpha": alpha, "stage": jnp.float32(stage)}

  def stage_at(self, step: int) -> int:
    return self.schedule.stage_at(step)

  def init_state(self, rng, stage: int = 0):
    g, d = self.networks(stage)
    k_g, k_d = jax.random.split(rng)
    return core.init_state(
      self.init_variables(g, k_g),
      self.init_variables(d, k_d),
      tx_g=self.tx_g,
      tx_d=self.tx_d,
      ema=self.config.ema.half_life_images > 0,
    )

  def grow(self, state, rng, stage: int):
    """The state of ``stage - 1`` grown into ``stage`` by parameter surgery."""
    fresh = self.init_state(rng, stage)
    return growth.grow_state(state, fresh, reset_optimizer=self.config.schedule.reset_optimizer)

  def step_config(self, stage: int) -> core.StepConfig:
    beta = core.ema_beta(
      batch_size=self.schedule.batch_sizes[stage],
      half_life_images=self.config.ema.half_life_images,
    )
    return self.losses.step_config(ema_beta=beta)
