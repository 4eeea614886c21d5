"""StyleGAN: ``python -m launch.stylegan --config launch/configs/stylegan.py --workdir DIR [--mode M]``.

Modes:
  train   train (or resume) in ``--workdir``: checkpoints with the growth stage, TensorBoard,
          per-stage sample grids and ``samples/timelapse.gif``, classifier FD per stage.
  eval    classifier FD and attribute TV distances of the latest checkpoint's samples.
  sample  a grid of ``--num`` samples (seed ``--seed``) from the latest checkpoint's EMA G.
  export  the generator in the zoo's export format plus ``generator.jaxexport``, a
          ``jax.export`` program an application runs with jax and flax alone.
"""

from launch import common

main = common.staged_gan_main(
  "stylegan", config="launch/configs/stylegan.py", workdir="runs/stylegan"
)

if __name__ == "__main__":
  common.run(main)
