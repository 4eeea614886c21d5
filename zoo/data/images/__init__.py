"""Images for the image GANs.

- :mod:`.paired`: aligned ``A|B`` pairs for image-to-image translation (pix2pix) and
  :class:`~.paired.PairedBatches`, their jittered training stream (a
  :class:`zoo.data.stream.ShardedStream`).
- :mod:`.unconditional`: single images (a folder, a prepared TFDS dataset or the
  synthetic faces) for the unconditional GANs, batched with
  :class:`zoo.data.stream.ShardedStream`.
"""
