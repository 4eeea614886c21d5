"""ProGAN: ``python -m launch.progan --config launch/configs/progan.py --workdir DIR [--mode M]``.

Modes:
  train   train (or resume) in ``--workdir``: checkpoints with the growth stage, TensorBoard,
          per-stage sample grids and ``samples/timelapse.gif``, classifier FD per stage.
  eval    classifier FD and attribute TV distances of the latest checkpoint's samples.
  sample  a grid of ``--num`` samples (seed ``--seed``) from the latest checkpoint's EMA G.
  export  the generator in the zoo's export format (``export/generator.{json,msgpack}``,
          loaded by ``zoo.models.export.load``).
"""

from launch import common

main = common.staged_gan_main("progan", config="launch/configs/progan.py", workdir="runs/progan")

if __name__ == "__main__":
  common.run(main)
