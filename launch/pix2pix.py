"""pix2pix: ``python -m launch.pix2pix --config launch/configs/pix2pix.py --workdir DIR [--mode M]``.

Modes:
  train   train (or resume) in ``--workdir``: checkpoints, TensorBoard, sample grids
          (``samples/*.png``: input | output | target), val L1/PSNR.
  test    translate the ``phase`` split (or ``--config.test_dir``) with the latest
          checkpoint; writes images and ``index.html`` under ``results/``.
  export  write the generator as ``export/generator.msgpack`` + ``generator.json``
          (load with ``zoo.tasks.pix2pix.load_exported``).
"""

from absl import flags

from launch import common

MODES = ("train", "test", "export")

_CONFIG = common.define_config("launch/configs/pix2pix.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/pix2pix", "Checkpoints, logs and samples.")
_MODE = flags.DEFINE_string("mode", "train", f"One of {MODES}.")


def main(argv):
  mode = common.check_mode(argv, _MODE.value, MODES)
  from zoo.tasks import pix2pix  # pylint: disable=g-import-not-at-top

  config = common.run_config(_CONFIG, _WORKDIR.value)
  if mode == "train":
    pix2pix.train_and_evaluate(
      config, _WORKDIR.value, allow_config_change=common.allow_config_change()
    )
  elif mode == "test":
    pix2pix.test(config, _WORKDIR.value)
  else:
    pix2pix.export(config, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
