"""Metric writing (TensorBoard via tensorboardX, no TensorFlow) and a progress bar."""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import jax
import numpy as np
import tqdm


class MetricWriter:
  """Writes scalars to TensorBoard event files and a ``metrics.jsonl`` (process 0 only)."""

  def __init__(self, logdir: str, *, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      os.makedirs(logdir, exist_ok=True)
      self._tb = SummaryWriter(logdir, flush_secs=10)
      self._jsonl = open(os.path.join(logdir, "metrics.jsonl"), "a")

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in values.items()}
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    """``image``: uint8 [H, W, 3] or [H, W]."""
    if not self.enabled:
      return
    img = np.asarray(image)
    if img.ndim == 2:
      img = img[..., None]
    self._tb.add_image(tag, img, step, dataformats="HWC")

  def text(self, step: int, tag: str, text: str) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


class Progress:
  """A tqdm bar (rate and ETA) on process 0; silent elsewhere."""

  def __init__(self, *, total: int, initial: int, desc: str, enabled: bool | None = None):
    enabled = jax.process_index() == 0 if enabled is None else enabled
    self._bar = tqdm.tqdm(
      total=total,
      initial=initial,
      desc=desc,
      unit="step",
      dynamic_ncols=True,
      disable=not enabled,
      mininterval=1.0,
    )
    self._t0 = time.perf_counter()

  def update(self, n: int = 1, **postfix) -> None:
    if postfix:
      self._bar.set_postfix(
        {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()}, refresh=False
      )
    self._bar.update(n)

  def write(self, msg: str) -> None:
    self._bar.write(msg)

  def close(self) -> None:
    self._bar.close()
