"""The adversarial core shared by every GAN family of the zoo.

- :mod:`zoo.gan.core`: the two-player train state (G and D params, optimizer state,
  optional batch statistics, optional EMA of G), the alternating D-then-G step with
  lazy regularisation, and EMA helpers.
- :mod:`zoo.gan.growth`: progressive growing as parameter-tree surgery.
"""
