"""Text-conditional DCGAN: ``python -m launch.dcgan_cls --config launch/configs/dcgan_cls.py --workdir DIR``.

Modes:
  train        train (or resume); the caption encoder and the face classifier are trained
               first when missing. Samples (rows = fixed held-out captions, listed in
               ``samples/captions.txt``), ``samples/timelapse.gif``, TensorBoard, ``eval.json``.
               ``--config.data.source=FOLDER``: a caption dataset you bring (Reed's CUB /
               flowers format or Face2Text's), with an encoder trained on it.
  eval         caption accuracy, FD and mismatch rejection of the latest checkpoint.
  generate     a grid of ``--num`` samples for ``--caption``.
  interpolate  ``--caption`` -> ``--caption2`` with fixed latents, and between latents with
               ``--caption`` fixed: PNG grids and GIFs in ``DIR/interpolations/``.
  export       G (zoo export format) and its text encoder in ``DIR/export/``.
"""

from absl import flags

from launch import common

MODES = ("train", "eval", "generate", "interpolate", "export")

_CONFIG = common.define_config("launch/configs/dcgan_cls.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/dcgan_cls", "Checkpoints, logs and samples.")
_MODE = flags.DEFINE_string("mode", "train", f"One of {MODES}.")
_CAPTION = flags.DEFINE_string(
  "caption", "a smiling person with curly red hair and round glasses", "generate/interpolate."
)
_CAPTION2 = flags.DEFINE_string("caption2", "a bald person with closed eyes", "interpolate.")
_NUM = flags.DEFINE_integer("num", 16, "generate: number of images.")
_STEPS = flags.DEFINE_integer("steps", 8, "interpolate: images per interpolation.")
_SEED = flags.DEFINE_integer("seed", 0, "generate/interpolate: latent seed.")
_OUTPUT = flags.DEFINE_string("output", "", "generate/interpolate/export: output path.")


def main(argv):
  mode = common.check_mode(argv, _MODE.value, MODES)
  from zoo.tasks import dcgan_cls  # pylint: disable=g-import-not-at-top

  w = _WORKDIR.value
  if mode == "train":
    dcgan_cls.train_and_evaluate(
      common.run_config(_CONFIG, w), w, allow_config_change=common.allow_config_change()
    )
  elif mode == "eval":
    dcgan_cls.evaluate(w)
  elif mode == "generate":
    dcgan_cls.generate(w, _CAPTION.value, num=_NUM.value, seed=_SEED.value, output=_OUTPUT.value)
  elif mode == "interpolate":
    dcgan_cls.interpolate(
      w, _CAPTION.value, _CAPTION2.value, steps=_STEPS.value, seed=_SEED.value, output=_OUTPUT.value
    )
  else:
    dcgan_cls.export(w, output=_OUTPUT.value)


if __name__ == "__main__":
  common.run(main)
