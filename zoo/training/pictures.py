"""Pictures a person looks at during and after training: sample grids, time-lapse GIFs.

Shared by every image family (ProGAN, the text-to-image GANs, ...).
"""

from __future__ import annotations

import math
import re
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


def slug(text: str, limit: int = 48) -> str:
  """A file-name-safe form of ``text`` (lowercase words joined by ``_``)."""
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "caption"


def text_interpolations(generate, e1, e2, latents, *, steps: int, seed: int, rows: int = 4):
  """The interpolations of Reed et al.'s figures for a text-conditional generator.

  ``generate(embeddings [n, E], latents [n, L]) -> images``; ``latents(n, seed) -> [n, L]``.
  Returns ``{'captions': ..., 'latents': ...}``, each ``rows * steps`` images: from ``e1`` to
  ``e2`` with latent ``r`` fixed in row ``r``, and from latent ``r`` to ``r + 1`` (of a
  second draw) with ``e1`` fixed.
  """
  t = np.linspace(0.0, 1.0, steps)[:, None]
  lat = latents(rows, seed)
  emb_c = np.tile((1 - t) * e1 + t * e2, (rows, 1))
  img_c = generate(emb_c, np.repeat(lat, steps, axis=0))
  lat2 = latents(rows + 1, seed + 1)
  lat_int = np.concatenate([(1 - t) * lat2[r] + t * lat2[r + 1] for r in range(rows)])
  img_z = generate(np.repeat(np.asarray(e1)[None], rows * steps, axis=0), lat_int)
  return {"captions": img_c, "latents": img_z}


def write_interpolations(out: str, stem: str, sets, *, steps: int) -> list[str]:
  """For each ``name -> images`` (rows of ``steps``): ``<stem>_<name>.png`` (a grid) and
  ``<stem>_<name>.gif`` (the rows side by side, one frame per step, ping-pong)."""
  os.makedirs(out, exist_ok=True)
  paths = []
  for name, imgs in sets.items():
    grid = os.path.join(out, f"{stem}_{name}.png")
    Image.fromarray(sample_grid(imgs, cols=steps)).save(grid)
    frames = to_uint8(imgs).reshape(-1, steps, *imgs.shape[1:])
    frames = np.concatenate(list(frames), axis=2)
    gif = os.path.join(out, f"{stem}_{name}.gif")
    write_gif(np.concatenate([frames, frames[-2:0:-1]]), gif, ms=120)
    paths += [grid, gif]
  return paths


def write_caption_grid(imgs, workdir: str, caption: str, *, seed: int, output: str = "") -> str:
  """A text-to-image generator's samples for one caption as a grid at ``output`` (default
  ``WORKDIR/generated/<caption>_seed<seed>.png``); returns the path."""
  path = output or os.path.join(workdir, "generated", f"{slug(caption)}_seed{seed}.png")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(sample_grid(imgs)).save(path)
  return path


def write_caption_interpolations(
  sets, workdir: str, caption: str, caption2: str, *, steps: int, seed: int, output: str = ""
) -> list[str]:
  """:func:`write_interpolations` of :func:`text_interpolations`' ``sets`` into ``output``
  (default ``WORKDIR/interpolations``), named after both captions and the seed."""
  out = output or os.path.join(workdir, "interpolations")
  stem = f"{slug(caption, 24)}__{slug(caption2, 24)}_seed{seed}"
  return write_interpolations(out, stem, sets, steps=steps)


def captioned_grid(
  grid: np.ndarray, captions, *, width: int = 360, font_size: int = 13
) -> np.ndarray:
  """``grid`` (rows of equal height, as :func:`sample_grid` draws them) with each row's
  caption written, word-wrapped, in a white panel ``width`` pixels wide on its left."""
  from PIL import ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top

  grid = np.asarray(grid)
  n = len(captions)
  if n < 1 or grid.shape[0] < n:
    raise ValueError(f"{n} captions for a grid {grid.shape[0]} pixels high")
  row_h = grid.shape[0] / n
  panel = Image.new("RGB", (width, grid.shape[0]), "white")
  draw = ImageDraw.Draw(panel)
  font = ImageFont.load_default(size=font_size)
  line_h = font_size + 3
  max_lines = max(1, int(row_h - 4) // line_h)
  for r, text in enumerate(captions):
    lines, line = [], ""
    for word in str(text).split():
      trial = f"{line} {word}".strip()
      if line and draw.textlength(trial, font=font) > width - 12:
        lines.append(line)
        line = word
      else:
        line = trial
    lines.append(line)
    if len(lines) > max_lines:
      lines = lines[: max_lines - 1] + [lines[max_lines - 1] + " ..."]
    top = int(r * row_h + (row_h - len(lines) * line_h) / 2)
    for i, text_line in enumerate(lines):
      draw.text((6, top + i * line_h), text_line, fill=(0, 0, 0), font=font)
  return np.concatenate([np.asarray(panel), grid], axis=1)


def write_caption_samples(outdir: str, name: str, grid: np.ndarray, captions, step: int) -> None:
  """What a text-to-image run shows of its fixed captions at ``step``: the grid as
  ``name.png``, ``latest.png`` and a time-lapse frame, the captions (``captions.txt``), the
  grid with its captions beside the rows (``captioned.png``) and ``timelapse.gif``."""
  os.makedirs(os.path.join(outdir, "frames"), exist_ok=True)
  for path in (name + ".png", "latest.png", os.path.join("frames", f"{step:08d}.png")):
    Image.fromarray(grid).save(os.path.join(outdir, path))
  with open(os.path.join(outdir, "captions.txt"), "w") as f:
    f.write("".join(f"row {i + 1}: {t}\n" for i, t in enumerate(captions)))
  Image.fromarray(captioned_grid(grid, captions)).save(os.path.join(outdir, "captioned.png"))
  write_timelapse(os.path.join(outdir, "frames"), os.path.join(outdir, "timelapse.gif"))
