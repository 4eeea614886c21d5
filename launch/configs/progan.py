"""ProGAN config (Karras et al. 2018, "Progressive Growing of GANs").

Usage::

  python -m launch.progan --config launch/configs/progan.py --workdir runs/progan
  python -m launch.progan --config launch/configs/progan.py:portrait --workdir runs/progan_portrait
  python -m launch.progan --config launch/configs/progan.py:paper \
      --config.data.source=/path/to/images --workdir runs/progan_256
  python -m launch.progan --workdir runs/progan --mode sample --num 64
  python -m launch.progan --workdir runs/progan --mode export

Variants (after the colon):
  (none)    the embedded synthetic faces, 4x4 -> 32x32, small channel counts, a schedule
            scaled down from the paper's 600k/600k images so it trains on a CPU.
  portrait  the same on rectangular faces: 4x2 -> 32x16 (height = 2 x width).
  paper     the paper's networks and schedule (fmaps 8192/512, latent 512, 600k fade +
            600k stable images per stage, minibatch 16 -> 4 by resolution) up to 256x256.

Data (``data.source``): '' or 'faces' = embedded synthetic faces; a folder path (jpg/png,
centre-cropped and resized to the final resolution); 'tfds:NAME' = a TFDS dataset already
prepared in ``data.data_dir`` (e.g. 'tfds:celeb_a'; never downloaded here).

Sections: model (the networks, ``Generator(**model)``-style), schedule (stages in images),
loss (zoo.gan.objectives.LossConfig), optim, ema, data, eval. Every key can be overridden
with ``--config.SECTION.KEY=VALUE``.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(
    dict(
      start=(4, 4),
      latent_dim=512,
      fmap_base=8192,
      fmap_max=512,
      num_channels=3,
      normalize_latents=True,
      use_pixelnorm=True,
      mbstd_group_size=4,
      # D's own widths (0: the generator's fmap_base / fmap_max)
      d_fmap_base=0,
      d_fmap_max=0,
    )
  )
  c.schedule = ml_collections.ConfigDict(
    dict(
      resolution=(256, 256),  # final (height, width) = start x 2^k
      fade_images=600_000,
      stable_images=600_000,
      final_stable_images=600_000,
      # Minibatch per stage (4x4 first); the last entry repeats for the rest.
      batch_sizes=(16, 16, 16, 16, 16, 16, 14, 6, 3),
      reset_optimizer=True,  # the reference resets Adam's moments at each new resolution
    )
  )
  c.loss = ml_collections.ConfigDict(
    dict(
      d_loss="wgan",
      g_loss="wgan",
      reg="gp",
      reg_weight=10.0,
      reg_interval=1,
      drift=1e-3,
      n_critic=1,
    )
  )
  c.optim = ml_collections.ConfigDict(
    dict(lr=1e-3, b1=0.0, b2=0.99, eps=1e-8, lazy_adam_correction=False)
  )
  c.ema = ml_collections.ConfigDict(dict(half_life_images=10_000))  # 0: no EMA of G
  # render_processes: processes drawing the embedded faces in their first epoch (drawing
  # holds the GIL, so reader threads cannot draw in parallel); 0 draws in those threads.
  c.data = ml_collections.ConfigDict(
    dict(source="", num_train=20_000, seed=0, data_dir="", render_processes=2)
  )
  c.eval = ml_collections.ConfigDict(
    # fd: 'auto' uses a trained face classifier when one exists, 'train' trains it first.
    # num_real: validation faces whose predicted attributes are the real distribution
    # that the samples' per-attribute TV is measured against (FD uses num_samples).
    dict(num_samples=1000, num_real=5000, fd="auto")
  )
  c.num_samples = 64  # fixed latents drawn in the sample grids and the time-lapse
  c.log_every = 50
  c.save_every = 500
  c.eval_every = 0  # 0: at each stage end and at the end
  c.sample_every = 250
  c.max_to_keep = 3
  c.async_checkpoints = True

  variant = arg or "default"
  if variant in ("default", "portrait"):
    # Channels 128 (4x4) halving per level down to 16 at 32x32: the high-resolution
    # blocks dominate the cost on a CPU, the low ones decide the layout. Minibatch 16 as
    # in the paper's configuration, which gives more updates per image than larger ones.
    c.model.latent_dim = 128
    c.model.fmap_base = 256
    c.model.fmap_max = 128
    c.schedule.resolution = (32, 32)
    c.schedule.fade_images = 20_000
    c.schedule.stable_images = 40_000
    c.schedule.final_stable_images = 80_000
    c.schedule.batch_sizes = (16,)
    c.data.num_train = 10_000
    if variant == "portrait":
      c.model.start = (4, 2)
      c.schedule.resolution = (32, 16)
  elif variant != "paper":
    raise ValueError(
      f"unknown progan config variant {variant!r}; expected default, portrait, paper"
    )
  return c
