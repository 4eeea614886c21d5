"""T2F: ``python -m launch.t2f --config launch/configs/t2f.py --workdir DIR [--mode M]``.

Modes:
  train        train (or resume); the face classifier is trained first when missing.
               ``--config.data.source=FOLDER``: a caption dataset you bring (Reed's CUB /
               flowers format or Face2Text's) instead of the embedded faces.
               Checkpoints with the growth stage, ``vocab.json``, TensorBoard, per-stage
               sample grids (rows = fixed held-out captions, listed in
               ``samples/captions.txt``) and ``samples/timelapse.gif``, ``eval.json``.
  eval         caption accuracy, classifier FD and mismatch rejection of the latest
               checkpoint (``DIR/eval_<step>.json``).
  generate     a grid of ``--num`` samples for ``--caption``.
  interpolate  ``--caption`` -> ``--caption2`` with fixed latents, and between latents with
               ``--caption`` fixed: PNG grids and GIFs in ``DIR/interpolations/``.
  export       the generator (text encoder and CA included) in the zoo's export format and
               its ``vocab.json``, in ``DIR/export/``.
"""

from absl import flags

from launch import common

MODES = ("train", "eval", "generate", "interpolate", "export")

_CONFIG = common.define_config("launch/configs/t2f.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/t2f", "Checkpoints, logs and samples.")
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
  from zoo.tasks import t2f  # pylint: disable=g-import-not-at-top

  w = _WORKDIR.value
  if mode == "train":
    t2f.train_and_evaluate(
      common.run_config(_CONFIG, w), w, allow_config_change=common.allow_config_change()
    )
  elif mode == "eval":
    t2f.evaluate(w)
  elif mode == "generate":
    t2f.generate(w, _CAPTION.value, num=_NUM.value, seed=_SEED.value, output=_OUTPUT.value)
  elif mode == "interpolate":
    t2f.interpolate(
      w, _CAPTION.value, _CAPTION2.value, steps=_STEPS.value, seed=_SEED.value, output=_OUTPUT.value
    )
  else:
    t2f.export(w, output=_OUTPUT.value)


if __name__ == "__main__":
  common.run(main)
