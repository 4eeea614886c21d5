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

from launch import common

main = common.text_gan_main(
  "dcgan_cls", config="launch/configs/dcgan_cls.py", workdir="runs/dcgan_cls"
)

if __name__ == "__main__":
  common.run(main)
