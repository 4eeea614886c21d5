"""Test setup: 4 virtual CPU devices so multi-device sharding is exercised everywhere.

The flag must be set before JAX initialises its backend, so it lives here.
Single-device runs use a mesh over ``jax.devices()[:1]``.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=4"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHEEP = REPO.parent / "shared" / "data" / "aaron_sheep.npz"


@pytest.fixture
def sheep_path():
  if not SHEEP.exists():
    pytest.skip(
      f"real dataset not found at {SHEEP} (aaron_sheep.npz, CC BY-NC 4.0); "
      "place it there to run this test"
    )
  return SHEEP
