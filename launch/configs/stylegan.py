"""StyleGAN config (Karras et al. 2019, "A Style-Based Generator Architecture for GANs").

Usage::

  python -m launch.stylegan --config launch/configs/stylegan.py --workdir runs/stylegan
  python -m launch.stylegan --config launch/configs/stylegan.py:portrait --workdir runs/stylegan_portrait
  python -m launch.stylegan --config launch/configs/stylegan.py:conditional --workdir runs/stylegan_cond
  python -m launch.stylegan --config launch/configs/stylegan.py:paper \
      --config.data.source=/path/to/images --workdir runs/stylegan_256
  python -m launch.stylegan --workdir runs/stylegan --mode sample --num 64
  python -m launch.stylegan --workdir runs/stylegan --mode eval

Variants (after the colon):
  (none)    the embedded synthetic faces, 4x4 -> 32x32, small widths (mapping 8 x 128,
            channels 128 halving to 16 at 32x32) and ProGAN's CPU schedule, without
            style mixing (mixing.prob 0; the paper's 0.9 in ``paper``).
  portrait  the same on rectangular faces: 4x2 -> 32x16 (height = 2 x width).
  conditional  the default conditioned on the faces' attributes: a label (one one-hot per
            attribute) into the mapping network and a projection discriminator
            (model.condition='projection'; 'acgan' for an ACGAN head).
  paper     the paper's networks (mapping 8 x 512, fmaps 8192/512) and schedule (600k
            fade + 600k stable images per stage, minibatch by resolution) up to 256x256.

Data (``data.source``) as ProGAN's: '' = embedded faces, a folder of jpg/png, or
'tfds:NAME' prepared in ``data.data_dir``.

Sections: model (``zoo.models.stylegan.make_stylegan``), schedule (stages in images, as
ProGAN's), loss (``zoo.gan.objectives.LossConfig``), optim, ema, mixing, data, eval.
"""

import ml_collections

from launch.configs import progan as progan_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant not in ("default", "portrait", "paper", "conditional"):
    raise ValueError(
      f"unknown stylegan config variant {variant!r}; expected default, portrait, paper, conditional"
    )
  # The schedule, data, evaluation and loop keys are ProGAN's for the same variant.
  c = progan_config.get_config("default" if variant == "conditional" else variant)
  c.model = ml_collections.ConfigDict(
    dict(
      start=c.model.start,
      latent_dim=512,
      w_dim=512,
      mapping_layers=8,
      mapping_hidden=512,
      mapping_lr_multiplier=0.01,
      fmap_base=8192,
      fmap_max=512,
      num_channels=3,
      mbstd_group_size=4,
      # D's own widths (0: the generator's fmap_base / fmap_max)
      d_fmap_base=0,
      d_fmap_max=0,
      w_avg_beta=0.995,
      condition="none",
    )
  )
  # Non-saturating logistic loss with R1 (gamma 10) on reals; reg_interval 16 with
  # optim.lazy_adam_correction=True is StyleGAN2's lazy variant.
  c.loss = ml_collections.ConfigDict(
    dict(
      d_loss="logistic",
      g_loss="nonsaturating",
      reg="r1",
      reg_weight=10.0,
      reg_interval=1,
      drift=0.0,
      n_critic=1,
      # Conditional runs: D's matching-aware term on real images with wrong labels
      # ('other': another example's; 'near_miss': one attribute changed), as GAN-CLS.
      mismatch="none",
    )
  )
  c.optim = ml_collections.ConfigDict(
    dict(lr=1e-3, b1=0.0, b2=0.99, eps=1e-8, lazy_adam_correction=False)
  )
  c.ema = ml_collections.ConfigDict(dict(half_life_images=10_000))
  c.mixing = ml_collections.ConfigDict(dict(prob=0.9))
  if variant in ("default", "portrait", "conditional"):
    c.model.latent_dim = 128
    c.model.w_dim = 128
    c.model.mapping_hidden = 128
    c.model.fmap_base = 256
    c.model.fmap_max = 128
    # The paper's mixing probability of 0.9 costs these 16-channel 32x32 layers more
    # than they can spare (README: StyleGAN); set it back with --config.mixing.prob=0.9.
    c.mixing.prob = 0.0
  if variant == "conditional":
    # The faces' attributes (concatenated one-hots) enter the mapping network and a
    # projection discriminator; --config.model.condition=acgan uses ACGAN's classifier
    # head instead.
    c.model.condition = "projection"
  return c
