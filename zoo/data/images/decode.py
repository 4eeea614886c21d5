"""PIL images to 8-bit RGB, converting what a plain ``convert('RGB')`` gets wrong.

PIL opens 16-bit greyscale PNGs (and 16/32-bit integer TIFFs) in the integer modes
``I;16*`` / ``I``; ``convert('RGB')`` clips their values at 255, which binarises an
image that uses the 16-bit range. :func:`to_rgb8` scales them to 8 bits instead
(``round(v / 257)``, so 65535 -> 255) and refuses what it cannot represent (floating
point images, integer values outside 0..65535) with a one-line :class:`ImageDecodeError`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from zoo.errors import ZooError


class ImageDecodeError(ZooError, ValueError):
  """An image whose pixel format cannot be represented as 8-bit RGB (one line)."""


def to_rgb8(img: Image.Image, where: str = "image") -> np.ndarray:
  """uint8 ``[h, w, 3]`` of ``img``, 16-bit integer modes scaled (not clipped) to 8 bits."""
  mode = img.mode
  if mode.startswith("I;16") or mode == "I":
    x = np.asarray(img).astype(np.int64)
    if x.size and (x.min() < 0 or x.max() > 65535):
      raise ImageDecodeError(
        f"{where}: {mode} image values {x.min()}..{x.max()} are outside 0..65535; "
        "convert it to 8- or 16-bit RGB/greyscale"
      )
    g = ((x + 128) // 257).astype(np.uint8)  # round(v / 257): 0..65535 -> 0..255
    return np.repeat(g[..., None], 3, axis=-1)
  if mode == "F":
    raise ImageDecodeError(
      f"{where}: floating-point (mode F) images are not supported; save it as 8- or "
      "16-bit RGB/greyscale"
    )
  return np.asarray(img.convert("RGB"), np.uint8)


def to_rgb8_image(img: Image.Image, where: str = "image") -> Image.Image:
  """:func:`to_rgb8` as a PIL RGB image (for PIL resizing)."""
  if img.mode == "RGB":
    return img
  return Image.fromarray(to_rgb8(img, where))
