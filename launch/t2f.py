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

from launch import common

main = common.text_gan_main("t2f", config="launch/configs/t2f.py", workdir="runs/t2f")

if __name__ == "__main__":
  common.run(main)
