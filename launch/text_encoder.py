"""Caption encoder: ``python -m launch.text_encoder --config launch/configs/text_encoder.py --workdir DIR``.

Trains (or resumes) Reed's char-CNN-RNN with the DS-SJE loss against the face classifier's
features (trained first when missing), reports caption->image retrieval on held-out test
captions and exports the encoder to ``DIR/encoder/`` for the text-to-image GANs.
``--config.data.source=FOLDER`` trains it on a caption dataset you bring instead of the
embedded faces (the export records which).
"""

from absl import flags

from launch import common

_CONFIG = common.define_config("launch/configs/text_encoder.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/text_encoder", "Checkpoints, logs, the export.")


def main(argv):
  common.check_mode(argv, "train", ("train",))
  from zoo.tasks import text_encoder  # pylint: disable=g-import-not-at-top

  text_encoder.train_and_evaluate(
    common.run_config(_CONFIG, _WORKDIR.value),
    _WORKDIR.value,
    allow_config_change=common.allow_config_change(),
  )


if __name__ == "__main__":
  common.run(main)
