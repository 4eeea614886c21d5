"""Sketch-RNN config (hyperparameter names and defaults follow magenta's sketch_rnn).

Usage::

  python -m launch.sketch_rnn --config launch/configs/sketch_rnn.py --workdir runs/sketch_rnn
  python -m launch.sketch_rnn --config launch/configs/sketch_rnn.py:aaron_sheep \
      --config.data_set=/path/to/aaron_sheep.npz --workdir runs/sheep

Variants (after the colon):
  (none)       the embedded synthetic-shapes dataset and a model small enough for a CPU.
  magenta      magenta's full-size defaults on the embedded dataset.
  aaron_sheep  magenta's full-size defaults on aaron_sheep.npz (a local file).
  quickdraw    magenta's full-size defaults on a QuickDraw category read from
               ``manual_dir`` (``--config.data_set=quickdraw/cat``).

Every key can be overridden with ``--config.KEY=VALUE``; dependent values
(``max_seq_len`` when 0, the data scale factor) are derived from the data after
overrides.
"""

import ml_collections


def magenta_defaults() -> ml_collections.ConfigDict:
  """magenta sketch_rnn's ``get_default_hparams`` (same names, same values)."""
  c = ml_collections.ConfigDict()
  c.data_set = "aaron_sheep.npz"
  c.num_steps = 10_000_000
  c.save_every = 500
  c.max_seq_len = 250
  c.dec_rnn_size = 512
  c.dec_model = "lstm"
  c.enc_rnn_size = 256
  c.enc_model = "lstm"
  c.z_size = 128
  c.kl_weight = 0.5
  c.kl_weight_start = 0.01
  c.kl_tolerance = 0.2
  c.batch_size = 100
  c.grad_clip = 1.0
  c.num_mixture = 20
  c.learning_rate = 0.001
  c.decay_rate = 0.9999
  c.kl_decay_rate = 0.99995
  c.min_learning_rate = 0.00001
  c.use_recurrent_dropout = True
  c.recurrent_dropout_prob = 0.90
  c.use_input_dropout = False
  c.input_dropout_prob = 0.90
  c.use_output_dropout = False
  c.output_dropout_prob = 0.90
  c.random_scale_factor = 0.15
  c.augment_stroke_prob = 0.10
  c.conditional = True
  # HyperLSTM sizes (magenta's rnn.HyperLSTMCell defaults).
  c.hyper_num_units = 256
  c.hyper_embedding_size = 32
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = magenta_defaults()
  # zoo additions.
  c.seed = 0
  c.data_dir = ""  # TFDS data_dir (prepared datasets); "" = TFDS default
  c.manual_dir = ""  # where manually downloaded files live (QuickDraw .npz, ...)
  c.eval_batch_size = 0  # 0: same as batch_size
  c.log_every = 50
  c.eval_every = 500
  c.sample_every = 500
  c.num_samples = 16  # sketches drawn in each sample grid
  c.sample_temperature = 0.5
  c.max_to_keep = 3
  c.compute_dtype = "float32"  # or bfloat16 (params stay float32)

  variant = arg or "default"
  if variant == "default":
    # Embedded synthetic shapes; sizes chosen to learn visibly in minutes on 2 CPU cores.
    c.data_set = "synthetic"
    c.max_seq_len = 0  # derived: longest sketch over all splits
    c.num_steps = 3000
    c.batch_size = 64
    c.enc_rnn_size = 64
    c.dec_rnn_size = 128
    c.z_size = 32
    c.num_mixture = 10
    c.hyper_num_units = 64
    c.hyper_embedding_size = 16
    c.kl_decay_rate = 0.999
    c.decay_rate = 0.9995
    c.save_every = 500
    c.eval_every = 500
    c.sample_every = 500
  elif variant == "magenta":
    c.data_set = "synthetic"
    c.max_seq_len = 0
  elif variant == "aaron_sheep":
    c.data_set = "data/aaron_sheep.npz"
  elif variant == "quickdraw":
    c.data_set = "quickdraw/cat"
  else:
    raise ValueError(
      f"unknown sketch_rnn config variant {variant!r}; "
      "expected one of: default, magenta, aaron_sheep, quickdraw"
    )
  return c
