"""Train Sketch-RNN: ``python -m launch.sketch_rnn --config launch/configs/sketch_rnn.py --workdir DIR``."""

from absl import app, flags
from ml_collections import config_flags

from launch import common

_CONFIG = config_flags.DEFINE_config_file("config", "launch/configs/sketch_rnn.py",
                                          "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/sketch_rnn", "Checkpoints, logs and samples.")


def main(argv):
  del argv
  from zoo.tasks import sketch_rnn  # pylint: disable=g-import-not-at-top
  sketch_rnn.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
