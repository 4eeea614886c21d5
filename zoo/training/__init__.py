"""Shared training machinery: device mesh, checkpoints, metric writers and the generic loop.

Every launcher composes a *task* (model + losses + data for one system) with
:func:`zoo.training.loop.train`, so Sketch-RNN and the GANs share one jitted,
sharded, resumable loop.
"""
