"""Pictures a person looks at during and after training: sample grids, time-lapse GIFs.

Shared by every image family (ProGAN, the text-to-image GANs, ...).
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """float images in [-1, 1] -> uint8."""
  return np.clip((np.asarray(images) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def sample_grid(images: np.ndarray, *, cols: int = 0, pad: int = 1, scale: int = 0) -> np.ndarray:
  """uint8 grid of float images in [-1, 1], each scaled up to at least 64 pixels high."""
  x = to_uint8(images)
  n, h, w, _ = x.shape
  scale = scale or max(1, 64 // h)
  x = np.repeat(np.repeat(x, scale, axis=1), scale, axis=2)
  h, w = h * scale, w * scale
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = -(-n // cols)
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) :][:, :w] = x[i]
  return out


def write_timelapse(frames_dir: str, path: str, *, max_frames: int = 120, ms: int = 150) -> None:
  """An animated GIF of every frame in ``frames_dir`` (evenly thinned to ``max_frames``)."""
  names = sorted(f for f in os.listdir(frames_dir) if f.endswith(".png"))
  if not names:
    return
  if len(names) > max_frames:
    keep = np.linspace(0, len(names) - 1, max_frames).round().astype(int)
    names = [names[i] for i in sorted(set(keep))]
  write_gif(
    [np.asarray(Image.open(os.path.join(frames_dir, n)).convert("RGB")) for n in names], path, ms=ms
  )


def write_gif(frames, path: str, *, ms: int = 150) -> None:
  """An animated GIF of uint8 ``frames`` [T, H, W, 3] (written atomically)."""
  imgs = [Image.fromarray(np.asarray(f)) for f in frames]
  tmp = path + ".tmp.gif"
  imgs[0].save(tmp, save_all=True, append_images=imgs[1:], duration=ms, loop=0)
  os.replace(tmp, path)
