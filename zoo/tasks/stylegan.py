"""StyleGAN (Karras et al. 2019) as a zoo task: ProGAN's staged training with the style-based
generator of :mod:`zoo.models.stylegan`.

Everything but the networks and G's forward pass is ProGAN's task (:mod:`zoo.tasks.progan`):
the schedule in images with fade-in and per-stage minibatch, growth by parameter surgery,
level-of-detail blended reals, G's EMA for samples and evaluation, per-stage grids, the
time-lapse GIF and the classifier FD / attribute TV judges.

The reference's recipe (config ``launch/configs/stylegan.py``): the non-saturating logistic
loss with R1 (γ = 10) on reals, a gradient of a gradient (``loss.reg_interval`` > 1 applies
it lazily, scaled by the interval), Adam(1e-3, β = 0, 0.99), G's EMA with a 10k-image
half-life, style mixing with probability ``mixing.prob`` (0.9): two latents per fake, the
second's ``w`` from a random crossover layer on. G also tracks ``w_avg`` (its ``'stats'``
collection, updated by each step's first latents) for the truncation trick; samples and
evaluation use ``psi = 1`` and noise from a fixed key.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import ConfigError
from zoo.gan import objectives
from zoo.models import export as export_lib
from zoo.models import stylegan as models
from zoo.tasks import progan

__all__ = [
  "StyleGANTask",
  "StyleMixingObjective",
  "evaluate",
  "restore_state",
  "export",
  "sample",
  "train_and_evaluate",
  "validate_config",
]


def validate_config(c) -> None:
  """One-line ConfigError for a bad value (ProGAN's checks, StyleGAN's model and mixing)."""
  if c.model.get("condition", "none") != "none":
    raise ConfigError(
      f"bad stylegan config: model.condition={c.model.condition!r}: the networks have the "
      "projection and ACGAN heads, but training on labels is not wired in yet; use 'none'"
    )
  progan.validate_config(c, family="stylegan", networks=models.make_stylegan)
  if not 0.0 <= c.mixing.prob <= 1.0:
    raise ConfigError(f"bad stylegan config: mixing.prob={c.mixing.prob!r} must be in [0, 1]")


@dataclasses.dataclass(frozen=True)
class StyleMixingObjective(objectives.LatentObjective):
  """:class:`zoo.gan.objectives.LatentObjective` whose fakes mix two latents' styles.

  ``g_apply(g_vars, z1, z2, crossover [B], key) -> (images, updated_collections)``: the
  styles of ``z1`` before each example's crossover layer and of ``z2`` from it on (the
  crossover is uniform in ``[1, num_ws)`` with probability ``mixing_prob``, else
  ``num_ws``: no mixing), per-pixel noise from ``key``.
  """

  num_ws: int = 2
  mixing_prob: float = 0.9

  def generate(self, g_vars, batch, rng, step):
    n = batch[self.image_key].shape[0]
    k_z, k_mix, k_cross, k_noise = jax.random.split(rng, 4)
    z = jax.random.normal(k_z, (2, n, self.latent_dim), jnp.float32)
    mixed = jax.random.uniform(k_mix, (n,)) < self.mixing_prob
    cross = jax.random.randint(k_cross, (n,), 1, max(self.num_ws, 2))
    cross = jnp.where(mixed, cross, self.num_ws)
    return self.g_apply(g_vars, z[0], z[1], cross, k_noise)


class StyleGANTask(progan.ProGANTask):
  """ProGAN's staged task with StyleGAN's networks and style-mixing fakes."""

  name = "stylegan"

  @staticmethod
  def validate_config(config) -> None:
    validate_config(config)

  def networks(self, stage: int):
    return models.make_stylegan(self.config.model, stage)

  init_variables = staticmethod(models.init_variables)

  def objective(self, stage: int, alpha):
    g, d = self.networks(stage)

    def forward(m, z1, z2, cross):
      ws = models.mix_styles(m.map(z1, update_w_avg=True), m.map(z2), cross, m.num_ws)
      return m.synthesize(ws, alpha)

    def g_apply(v, z1, z2, cross, key):
      return g.apply(v, z1, z2, cross, method=forward, rngs={"noise": key}, mutable=["stats"])

    return StyleMixingObjective(
      g_apply=g_apply,
      d_apply=lambda v, x, step: d.apply(v, x, alpha)[0],
      latent_dim=self.config.model.latent_dim,
      losses=self.losses,
      num_ws=g.num_ws,
      mixing_prob=float(self.config.mixing.prob),
    )

  export_call = (
    "module.apply(variables, z [B, latent_dim], alpha, psi=psi, rngs={'noise': key}); "
    "or generator.jaxexport: call(variables, z [B, latent_dim] f32, psi f32, seed u32)"
  )

  def export_program(self, directory: str, g, g_vars, alpha: float) -> None:
    """``generator.jaxexport``: ``(variables, z [B, latent_dim] float32, psi float32 scalar,
    seed uint32 scalar) -> images [B, H, W, 3]`` float32 in [-1, 1]; the noise maps are
    drawn from ``seed``. Runs with jax and flax alone (see ``zoo.models.export``)."""

    def program(variables, z, psi, seed):
      key = jax.random.key(seed)
      return jnp.clip(g.apply(variables, z, alpha, psi=psi, rngs={"noise": key}), -1, 1)

    z = np.zeros((2, self.config.model.latent_dim), np.float32)
    export_lib.save_program(directory, program, g_vars, z, np.float32(1), np.uint32(0))

  def apply_generator(self, g, g_vars, z, alpha):
    noise = jax.random.key(self.config.seed + 3)
    return g.apply(g_vars, z, alpha, rngs={"noise": noise})


def train_and_evaluate(config, workdir: str, **kw):
  """Trains (or resumes) StyleGAN in ``workdir`` (see :func:`zoo.tasks.progan.train_and_evaluate`)."""
  return progan.train_and_evaluate(config, workdir, task_cls=StyleGANTask, **kw)


def restore_state(workdir: str, **kw):
  return progan.restore_state(workdir, task_cls=StyleGANTask, **kw)


def evaluate(workdir: str, **kw) -> dict:
  return progan.evaluate(workdir, task_cls=StyleGANTask, **kw)


def sample(workdir: str, **kw) -> str:
  return progan.sample(workdir, task_cls=StyleGANTask, **kw)


def export(workdir: str, **kw) -> str:
  """The EMA generator in the zoo's export format plus ``generator.jaxexport``."""
  return progan.export(workdir, task_cls=StyleGANTask, **kw)
