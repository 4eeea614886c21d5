"""Text-conditional DCGAN config (Reed et al. 2016, "Generative Adversarial Text to Image
Synthesis": GAN, GAN-CLS, GAN-INT, GAN-INT-CLS).

Usage::

  python -m launch.dcgan_cls --config launch/configs/dcgan_cls.py --workdir runs/dcgan_cls
  python -m launch.dcgan_cls --workdir runs/dcgan_cls --mode generate \
      --caption "a smiling person with curly red hair and round glasses" --num 16
  python -m launch.dcgan_cls --workdir runs/dcgan_cls --mode interpolate \
      --caption "a person with black hair" --caption2 "a person with blond hair"
  python -m launch.dcgan_cls --config launch/configs/dcgan_cls.py:gan_cls --workdir runs/gan_cls
  python -m launch.dcgan_cls --config launch/configs/dcgan_cls.py --config.data.source=/data/cub \
      --workdir runs/dcgan_cub

Variants (after the colon): the objective, on the embedded captioned faces at the CPU
sizes below; add ``,paper`` (e.g. ``gan_int_cls,paper``) for the paper's 64x64 networks
(ngf = ndf = 64, 600 epochs' worth of steps), and ``,projection`` for a projection
discriminator (``model.conditioning='projection'``, Miyato & Koyama 2018) in place of the
paper's concatenation.
  gan_int_cls (default)  matching-aware D + interpolated embeddings for G
  gan_cls                matching-aware D only
  gan_int                interpolation only, plain conditional D
  gan                    plain conditional GAN

The caption encoder is Reed's char-CNN-RNN, pre-trained with the DS-SJE loss against the
face classifier's features (``python -m launch.text_encoder``; ``text.encoder_workdir``;
trained first when missing, like the classifier). The embeddings of every training
caption are computed once, as the reference does with its pre-computed ``.t7`` files.

Sections: model (``make_dcgan_cls(**model)``), objective, loss, optim, ema, data, text, eval.

Data (``zoo.data.caption_pairs``):
  data.source    '' (default): the embedded captioned faces (``data.num_faces``,
                 ``data.captions_per_face``, ``data.seed``). A folder path: a caption
                 dataset you bring in Reed's format (CUB-200-2011, Oxford-102 flowers) or
                 Face2Text's, detected; its 'train' pairs train, held-out captions of its
                 'test' split judge (FD and mismatch rejection only: real captions name no
                 attributes); ``data.seed`` orders the held-out test images.
  data.data_dir  where TFDS prepares the folder (builder ``zoo_captions``, config
                 ``<format>_<resolution>``); '' = TFDS's default.
  text.encoder_workdir  '' = ``runs/text_encoder`` (``$ZOO_TEXT_ENCODER``) for the
                 embedded faces, and that path + ``_<folder name>`` for a folder (e.g.
                 ``runs/text_encoder_cub``): an encoder is trained there on that data when
                 missing. An encoder trained on other data than ``data.source`` is
                 refused (one line).
"""

import ml_collections

OBJECTIVES = {
  "gan": dict(cls=False, int_beta=0.0),
  "gan_cls": dict(cls=True, int_beta=0.0),
  "gan_int": dict(cls=False, int_beta=0.5),
  "gan_int_cls": dict(cls=True, int_beta=0.5),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p for p in (arg or "gan_int_cls").split(",") if p]
  objective = parts[0]
  if objective not in OBJECTIVES or any(p not in ("paper", "projection") for p in parts[1:]):
    raise ValueError(
      f"unknown dcgan_cls config variant {arg!r}; expected one of {sorted(OBJECTIVES)}, "
      "optionally followed by ',paper' and/or ',projection'"
    )
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(
    dict(
      resolution=32,
      # A quarter of the paper's widths: the convolutions dominate a CPU step and their
      # cost goes with the square of the width (see BENCHMARKS.md).
      ngf=16,
      ndf=16,
      latent_dim=100,
      proj_dim=128,
      minibatch_kernels=0,  # > 0: minibatch discrimination in D (Salimans et al.)
      # How D reads the text: 'concat' (the paper) or 'projection' (Miyato & Koyama).
      conditioning="concat",
      minibatch_kernel_dim=5,
      num_channels=3,
    )
  )
  # int_beta = 0 turns GAN-INT off; feature_matching > 0 weights Salimans' feature matching.
  # wrong_caption: GAN-CLS's wrong caption for a real image, 'random' (another example's,
  # the paper) or 'contradicting' (wrong in as few named attributes as possible; the
  # embedded faces only, whose captions name attributes).
  c.objective = ml_collections.ConfigDict(
    dict(**OBJECTIVES[objective], feature_matching=0.0, wrong_caption="random")
  )
  c.loss = ml_collections.ConfigDict(dict(d_loss="logistic", g_loss="nonsaturating", n_critic=1))
  c.optim = ml_collections.ConfigDict(dict(lr=2e-4, b1=0.5, b2=0.999))
  # An exponential moving average of G's params (half-life in images; 0: none, as in the
  # paper), with batch statistics of its own; samples and evaluation then use it.
  c.ema = ml_collections.ConfigDict(dict(half_life_images=0))
  # source: '' = the embedded captioned faces, else a caption dataset folder (see above).
  # render_processes: processes drawing the embedded faces in their first epoch (drawing
  # holds the GIL); 0 draws in the stream's reader threads.
  c.data = ml_collections.ConfigDict(
    dict(num_faces=10_000, captions_per_face=5, seed=0, source="", data_dir="", render_processes=2)
  )
  # '' = runs/text_encoder, or runs/text_encoder_<folder name> for a folder source.
  c.text = ml_collections.ConfigDict(dict(encoder_workdir=""))
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000, fd=True))
  c.batch_size = 64
  c.num_steps = 6000
  c.num_captions = 8  # fixed captions drawn in the sample grids (rows) ...
  c.num_latents = 8  # ... times fixed latents (columns)
  c.log_every = 50
  c.save_every = 500
  c.eval_every = 1000
  c.sample_every = 250
  c.max_to_keep = 3
  if "paper" in parts:
    c.model.resolution = 64
    c.model.ngf = 64
    c.model.ndf = 64
    c.num_steps = 100_000
    c.eval_every = 5000
    c.save_every = 2000
  if "projection" in parts:
    c.model.conditioning = "projection"
  return c
