"""TFDS builder package for :mod:`zoo.data.faces` (see :mod:`.builder`)."""

from zoo.data.faces_tfds.builder import Faces, FacesConfig

__all__ = ["Faces", "FacesConfig"]
