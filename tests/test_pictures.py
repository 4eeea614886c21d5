"""Pictures shared by the image families: grids and captioned grids."""

import numpy as np
import pytest

from zoo.training import pictures


def test_sample_grid_layout_and_scaling():
  imgs = np.stack([np.full((8, 8, 3), v, np.float32) for v in (-1.0, 1.0, 0.0)])
  grid = pictures.sample_grid(imgs, cols=2, pad=1)
  # 8 px images scaled by 64 // 8 = 8; 2 rows x 2 cols with 1 px padding.
  assert grid.shape == (2 * 65 + 1, 2 * 65 + 1, 3) and grid.dtype == np.uint8
  assert (grid[1:65, 1:65] == 0).all() and (grid[1:65, 66:130] == 255).all()
  assert (grid[66:130, 1:65] == 128).all()


def test_captioned_grid_writes_each_caption_beside_its_row():
  rows, h = 3, 40
  grid = np.zeros((rows * h, 50, 3), np.uint8)
  captions = ["a bald person", "", "a person with " + "very " * 40 + "long hair"]
  out = pictures.captioned_grid(grid, captions, width=120)
  assert out.shape == (rows * h, 170, 3)
  np.testing.assert_array_equal(out[:, 120:], grid)
  panel = out[:, :120].min(axis=2) < 128  # dark text pixels
  inked = [panel[r * h : (r + 1) * h].any() for r in range(rows)]
  assert inked == [True, False, True]
  # The long caption is wrapped and cut to its row: nothing spills into the others.
  assert not panel[h : 2 * h].any()


def test_captioned_grid_refuses_more_captions_than_rows():
  with pytest.raises(ValueError, match="captions"):
    pictures.captioned_grid(np.zeros((2, 10, 3), np.uint8), ["a", "b", "c"])
