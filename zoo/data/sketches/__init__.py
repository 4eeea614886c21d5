"""Sketches (stroke-3 / stroke-5 drawings) for Sketch-RNN.

- :mod:`.strokes`: format conversions, cleaning, normalisation, augmentation.
- :mod:`.npz`: the safe reader/writer of sketch-rnn ``.npz`` files.
- :mod:`.synthetic`: the embedded procedural shapes.
- :mod:`.tfds`: the ``zoo_sketches`` TFDS builder and :func:`~.tfds.load_sketch_splits`,
  the one loading entry point.
- :mod:`.pipeline`: :class:`~.pipeline.SketchTrainStream` (a
  :class:`zoo.data.stream.ShardedStream`) and evaluation batches.
- :mod:`.export`: SVG / PNG / GIF / JSON output of drawings.
"""
