"""StyleGAN: ``python -m launch.stylegan --config launch/configs/stylegan.py --workdir DIR [--mode M]``.

Modes:
  train   train (or resume) in ``--workdir``: checkpoints with the growth stage, TensorBoard,
          per-stage sample grids and ``samples/timelapse.gif``, classifier FD per stage.
  eval    classifier FD and attribute TV distances of the latest checkpoint's samples.
  sample  a grid of ``--num`` samples (seed ``--seed``) from the latest checkpoint's EMA G.
  export  the generator in the zoo's export format plus ``generator.jaxexport``, a
          ``jax.export`` program an application runs with jax and flax alone.
"""

from absl import flags

from launch import common

MODES = ("train", "eval", "sample", "export")

_CONFIG = common.define_config("launch/configs/stylegan.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/stylegan", "Checkpoints, logs and samples.")
_MODE = flags.DEFINE_string("mode", "train", f"One of {MODES}.")
_NUM = flags.DEFINE_integer("num", 64, "sample: number of images.")
_SEED = flags.DEFINE_integer("seed", 0, "sample: latent seed.")
_OUTPUT = flags.DEFINE_string("output", "", "sample/export: output path (default: in workdir).")


def main(argv):
  mode = common.check_mode(argv, _MODE.value, MODES)
  from zoo.tasks import stylegan  # pylint: disable=g-import-not-at-top

  if mode == "train":
    stylegan.train_and_evaluate(
      _CONFIG.value, _WORKDIR.value, allow_config_change=common.allow_config_change()
    )
  elif mode == "eval":
    stylegan.evaluate(_WORKDIR.value)
  elif mode == "sample":
    stylegan.sample(_WORKDIR.value, num=_NUM.value, seed=_SEED.value, output=_OUTPUT.value)
  else:
    stylegan.export(_WORKDIR.value, output=_OUTPUT.value)


if __name__ == "__main__":
  common.run(main)
