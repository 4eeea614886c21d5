"""Faces attribute classifier: ``python -m launch.face_classifier --config launch/configs/face_classifier.py --workdir DIR``.

Modes:
  train  train (or resume) in ``--workdir``; writes checkpoints, TensorBoard logs,
         ``eval.json`` (per-attribute test accuracy) and the exported classifier
         (``classifier/``, loaded by ``zoo.eval.face_classifier.FaceClassifier.load``).
  eval   load the exported classifier and print its per-attribute test accuracy.
"""

from absl import flags

from launch import common

MODES = ("train", "eval")

_CONFIG = common.define_config("launch/configs/face_classifier.py", "Config file (path[:variant]).")
_WORKDIR = flags.DEFINE_string(
  "workdir", "runs/face_classifier", "Checkpoints, logs and the exported classifier."
)
_MODE = flags.DEFINE_string("mode", "train", f"One of {MODES}.")


def main(argv):
  mode = common.check_mode(argv, _MODE.value, MODES)
  from zoo.tasks import face_classifier  # pylint: disable=g-import-not-at-top

  config = common.run_config(_CONFIG, _WORKDIR.value)
  if mode == "train":
    face_classifier.train_and_evaluate(
      config, _WORKDIR.value, allow_config_change=common.allow_config_change()
    )
  else:
    print(face_classifier.format_eval(face_classifier.evaluate_exported(config, _WORKDIR.value)))


if __name__ == "__main__":
  common.run(main)
