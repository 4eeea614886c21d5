"""T2F config (akanimax/T2F, "Text to Face": an LSTM caption encoder, conditioning
augmentation and a progressively grown, text-conditional ProGAN).

Usage::

  python -m launch.t2f --config launch/configs/t2f.py --workdir runs/t2f
  python -m launch.t2f --config launch/configs/t2f.py:paper --workdir runs/t2f_64
  python -m launch.t2f --workdir runs/t2f --mode generate \
      --caption "a smiling person with curly red hair and round glasses" --num 16
  python -m launch.t2f --workdir runs/t2f --mode interpolate \
      --caption "a person with black hair" --caption2 "a person with blond hair"
  python -m launch.t2f --workdir runs/t2f --mode export
  python -m launch.t2f --config launch/configs/t2f.py --config.data.source=/data/cub \
      --workdir runs/t2f_cub

Variants (after the colon; add ``,pretrained`` to either, e.g. ``t2f.py:pretrained``, for
the zoo's frozen pretrained caption encoder in place of the jointly trained LSTM, with the
CA's KL weight at 0.05 instead of the reference's 1; add ``,projection`` for a projection
discriminator, ``model.conditioning='projection'``, in place of the reference's concatenated
condition, or ``,projection_map`` to project onto D's whole start-resolution map; add
``,gan_cls`` for GAN-CLS's logistic loss with a light R1 (γ = 0.01, no drift) in place of
WGAN-GP, and G drawn from the CA's mean, ``loss.ca_noise=0`` with no KL term; ``best`` is
``pretrained,projection,gan_cls`` with twice the default's channels (256 at 4x4 down to 32
at 32x32) and a longer last stage, the recipe that meets the 90 % caption accuracy on the
CPU):
  (none)  the embedded captioned faces, 4x4 -> 32x32, small encoder and channel counts,
          a schedule scaled down like ProGAN's default so it trains on a CPU.
  paper   the reference's 64x64 configuration (configs/11.conf of akanimax/T2F): word
          embeddings 128, a 3-layer LSTM of 256 units, CA output 178, generator input 256
          (so z has 78 numbers), 256 feature maps up to 32x32 and 128 at 64x64, the text
          compressed to 128 in D, minibatch 16, Adam(1e-3, 0, 0.99), drift 1e-3. The
          reference counts training in epochs per depth ([160, 80, 40, 20, 10] with 85 %
          of each fading in) over Face2Text; the zoo's schedule is in images, uniform over
          the stages, so this uses ProGAN's 600k-image fade and stable phases.

Reference semantics kept (see :mod:`zoo.tasks.t2f`): WGAN-GP (λ = 10) + drift, the
matching-aware term (but weighted as GAN-CLS, ``loss.balanced_mismatch``; False gives the
reference's sum; balanced, it also works with ``loss.d_loss='logistic'``, where it is
GAN-CLS's loss), KL weight 1, the text embedding (not the CA output) shown to D's
last block, G's loss reaching the encoder through D's condition too, no Adam reset at
new resolutions and an EMA of G (the reference's decay 0.999 per step ~ 11k images at
minibatch 16).

Sections: model (``zoo.models.t2f.make_t2f``), schedule (stages in images, as ProGAN's),
loss (``zoo.gan.objectives.LossConfig`` keys + ``kl_weight``, ``matching_aware``,
``cond_grad``), optim, ema, data, text (the vocabulary and the padded caption length),
eval. Every key can be overridden with ``--config.SECTION.KEY=VALUE``.

Data (``zoo.data.caption_pairs``):
  data.source    '' (default): the embedded captioned faces, ``data.num_faces`` faces with
                 ``data.captions_per_face`` captions each, drawn from ``data.seed``. A
                 folder path: a caption dataset you bring, Reed's format (CUB-200-2011,
                 Oxford-102 flowers: ``images/`` or ``jpg/``, ``text_c10/``,
                 ``trainvalclasses.txt``, ``testclasses.txt``) or Face2Text's (images
                 and one ``captions.json``/``.csv``/``.tsv``), detected; every (image,
                 caption) pair of its 'train' split trains, held-out captions of its
                 'test' split judge (FD and mismatch rejection: real captions name no
                 attributes). ``num_faces``/``captions_per_face`` do not apply;
                 ``data.seed`` orders the held-out test images.
  data.data_dir  where TFDS prepares the folder (builder ``zoo_captions``, config
                 ``<format>_<H>`` at the final resolution); '' = TFDS's default
                 (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(
    dict(
      start=(4, 4),
      latent_dim=78,  # z; the generator's input is ca_dim + latent_dim
      ca_dim=178,
      embed_dim=128,  # word embedding
      hidden_dim=256,  # LSTM units = the text embedding's size
      num_layers=3,
      cond_dim=128,  # the text compressed in D's last block
      d_condition="embedding",  # 'embedding' (reference) | 'ca' (the augmented condition)
      # How D's last block reads it: 'concat' (reference) | 'projection' (Miyato & Koyama).
      conditioning="concat",
      # 'lstm': the word LSTM trained with G (reference); 'pretrained': the zoo's frozen
      # caption encoder (text.encoder_workdir), the reference's use_pretrained_encoder.
      text_encoder="lstm",
      fmap_base=4096,
      fmap_max=256,
      num_channels=3,
      normalize_latents=False,  # the reference feeds [c, z] as it is
      use_pixelnorm=True,
      mbstd_group_size=4,
      d_fmap_base=0,  # D's own widths (0: the generator's fmap_base / fmap_max)
      d_fmap_max=0,
    )
  )
  c.schedule = ml_collections.ConfigDict(
    dict(
      resolution=(64, 64),  # final (height, width) = start x 2^k
      fade_images=600_000,
      stable_images=600_000,
      final_stable_images=600_000,
      batch_sizes=(16,),  # per stage (4x4 first); the last entry repeats
      reset_optimizer=False,  # the reference keeps its Adam states across depths
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
      kl_weight=1.0,  # the CA's KL in G's loss
      matching_aware=True,  # + mean D(real, wrong caption) in D's loss
      cond_grad=True,  # G's loss reaches the encoder through D's condition input too
      # D(fake) and D(real, wrong caption) weighted 1/2 each, as GAN-CLS; False: the
      # reference's D(fake) - D(real) + D(real, wrong), whose minimum for a D that ignores
      # the text is every score at -1 / (2 drift) (see zoo.gan.objectives).
      balanced_mismatch=True,
      # Scale of the CA's noise eps in training and sampling alike (1: StackGAN's
      # c = mu + sigma eps; 0: G is trained and drawn on c = mu).
      ca_noise=1.0,
      # D's mismatched pairs: 'other' (each real image with the previous example's caption,
      # the reference) or 'near_miss' (each caption with a face that contradicts exactly
      # one attribute it names; the embedded faces only).
      mismatch_pairs="other",
    )
  )
  c.optim = ml_collections.ConfigDict(
    dict(lr=1e-3, b1=0.0, b2=0.99, eps=1e-8, lazy_adam_correction=False)
  )
  c.ema = ml_collections.ConfigDict(dict(half_life_images=10_000))  # 0: no EMA of G
  # source: '' = the embedded captioned faces, else a caption dataset folder (see above).
  # render_processes: processes drawing the embedded faces in their first epoch (drawing
  # holds the GIL); 0 draws in the stream's reader threads.
  c.data = ml_collections.ConfigDict(
    dict(num_faces=10_000, captions_per_face=5, seed=0, source="", data_dir="", render_processes=2)
  )
  # Captions are at most 48 words; the reference pads to 100.
  # encoder_workdir: the pretrained caption encoder (model.text_encoder='pretrained');
  # '' = the default for the data, trained first when missing (launch.text_encoder).
  c.text = ml_collections.ConfigDict(dict(max_len=64, min_count=1, encoder_workdir=""))
  # Judged on eval.num_samples held-out captions by the face classifier (trained first
  # when missing); 0 turns evaluation off.
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000, fd=True))
  c.num_captions = 8  # fixed held-out captions in the sample grids (rows) ...
  c.num_latents = 8  # ... times fixed latents (columns)
  c.log_every = 50
  c.save_every = 500
  c.eval_every = 0  # 0: at each stage end and at the end
  c.sample_every = 250
  c.max_to_keep = 3
  c.async_checkpoints = True

  parts = [p for p in (arg or "").split(",") if p]
  unknown = set(parts) - {
    "default",
    "paper",
    "pretrained",
    "projection",
    "projection_map",
    "gan_cls",
    "best",
  }
  if unknown or ("default" in parts and "paper" in parts):
    raise ValueError(
      f"unknown t2f config variant {arg!r}; expected default or paper, optionally with "
      "',pretrained', ',projection' (or ',projection_map') and/or ',gan_cls'; or best"
    )
  if "best" in parts:
    if "paper" in parts:
      raise ValueError("t2f config variant 'best' is a recipe for the default (CPU) variant")
    parts += ["pretrained", "projection", "gan_cls"]
  if "pretrained" in parts:
    c.model.text_encoder = "pretrained"
    # At the reference's KL weight (1) the CA's KL stays near one nat: the condition G gets
    # is almost pure noise, far less than the bits a caption names. A small weight keeps
    # the augmentation while letting the caption through (README: T2F, where it stands).
    c.loss.kl_weight = 0.05
  for p in ("projection", "projection_map"):
    if p in parts:
      c.model.conditioning = p
  if "gan_cls" in parts:
    # WGAN-GP's critic is Lipschitz in the image, so the score gap a few-pixel attribute
    # (eyes, mouth) can open is small and D checks mostly the large areas; the logistic
    # loss saturates on what D already rejects and turns to the rest. Its bounded
    # adversarial gradient no longer outweighs the CA's KL term, which then drowns the
    # caption in noise, so the CA is reduced to its mean (README: T2F, what holds it back).
    c.loss.update(
      d_loss="logistic",
      g_loss="nonsaturating",
      reg="r1",
      reg_weight=0.01,
      drift=0.0,
      ca_noise=0.0,
      kl_weight=0.0,
    )
  variant = "paper" if "paper" in parts else "default"
  if variant == "default":
    c.model.latent_dim = 64
    c.model.ca_dim = 64
    c.model.embed_dim = 64
    c.model.hidden_dim = 128
    c.model.num_layers = 1
    c.model.cond_dim = 32
    # Channels 128 (4x4) halving per level down to 16 at 32x32, as ProGAN's default.
    c.model.fmap_base = 256
    c.model.fmap_max = 128
    c.schedule.resolution = (32, 32)
    c.schedule.fade_images = 20_000
    c.schedule.stable_images = 40_000
    c.schedule.final_stable_images = 80_000
    c.data.num_faces = 2_000
    if "best" in parts:
      # Twice the default's channels at every level, 256 at 4x4 (G's first block, D's
      # last, where the caption is projected; widening only 8x8 and up did little), and a
      # longer 32x32 stage (README: T2F, "Lower still, then wider").
      c.model.fmap_base = 512
      c.model.fmap_max = 256
      c.schedule.final_stable_images = 140_000
  return c
