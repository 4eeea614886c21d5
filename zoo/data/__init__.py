"""Data of the zoo, grouped by domain, all batched by one stream primitive.

- :mod:`zoo.data.stream`: :class:`~zoo.data.stream.ShardedStream`, the deterministic,
  sharded, resumable batch stream every training stream below is built on.
- :mod:`zoo.data.sketches`: stroke formats, sketch-rnn ``.npz`` files, the embedded
  synthetic shapes, the TFDS builder, the Sketch-RNN stream and drawing export.
- :mod:`zoo.data.faces`: the synthetic cartoon faces (the renderer is the package
  itself), their grain pipeline and TFDS builder.
- :mod:`zoo.data.images`: paired ``A|B`` images (pix2pix) and unconditional image
  sources (folder, prepared TFDS dataset, faces) for the GANs.
"""
