"""TFDS builder for the synthetic cartoon faces of :mod:`zoo.data.faces`.

Works without TensorFlow: prepare with ``file_format='array_record'`` and read
with :meth:`as_data_source` (random access, numpy outputs)::

    from zoo.data.faces.tfds import Faces
    b = Faces(config="res64", data_dir="/tmp/tfds", file_format="array_record")
    b.download_and_prepare()
    train = b.as_data_source()["train"]       # len(train), train[i] -> dict of numpy

Each split is the deterministic stream ``face_split(split, n, seed)`` of
:mod:`zoo.data.faces`, so prepared data equals on-the-fly rendering
(:class:`zoo.data.faces.pipeline.FacesSource`) example for example.
Features: ``image`` (PNG-encoded uint8 [H,W,3]), ``label_map`` uint8 [H,W],
``edges`` (PNG uint8 [H,W,3]), one ``ClassLabel`` per attribute,
``caption`` (Text; read back as UTF-8 ``bytes``) and ``index`` (int64, position in
the split stream).  Shuffling is disabled: record ``i`` of a split is stream
example ``i``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from zoo.data import faces


@dataclasses.dataclass
class FacesConfig(tfds.core.BuilderConfig):
  """Resolution and split sizes of one prepared variant."""

  height: int = 64
  width: int = 64
  num_train: int = 10_000
  num_valid: int = 1_000
  num_test: int = 1_000
  seed: int = 0


def _config(name: str, res: int, n_train: int, n_eval: int, description: str) -> FacesConfig:
  return FacesConfig(
    name=name,
    description=description,
    height=res,
    width=res,
    num_train=n_train,
    num_valid=n_eval,
    num_test=n_eval,
  )


class Faces(tfds.core.GeneratorBasedBuilder):
  """Procedural cartoon faces with attributes, segmentation, edges and captions."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    _config("res32", 32, 20_000, 2_000, "32x32 faces."),
    _config("res64", 64, 10_000, 1_000, "64x64 faces."),
    _config("res128", 128, 5_000, 500, "128x128 faces."),
    _config("tiny", 32, 64, 16, "32x32, a few examples (tests)."),
  ]
  DEFAULT_CONFIG_NAME = "res64"

  # TFDS resolves the builder's source location through importlib_resources,
  # which is not a dependency here; pin it (no checksums file lives there).
  code_path = epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly (not `dataset_info_from_configs`, which reads metadata
    # files next to the module).
    h, w = self.builder_config.height, self.builder_config.width
    feats = {
      "image": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8),
      "label_map": tfds.features.Tensor(shape=(h, w), dtype=np.uint8),
      "edges": tfds.features.Image(shape=(h, w, 3), dtype=np.uint8),
      "caption": tfds.features.Text(),
      "index": tfds.features.Scalar(dtype=np.int64),
    }
    for name, vocab in faces.ATTRIBUTES.items():
      feats[name] = tfds.features.ClassLabel(names=list(vocab))
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(feats),
      supervised_keys=None,
      disable_shuffling=True,  # record i of a split is stream example i
      homepage="https://example.invalid/zoo/faces",
      metadata=tfds.core.MetadataDict(label_names=list(faces.LABELS)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    c = self.builder_config
    return {
      "train": self._generate_examples("train", c.num_train),
      "valid": self._generate_examples("valid", c.num_valid),
      "test": self._generate_examples("test", c.num_test),
    }

  def _generate_examples(self, split: str, n: int):
    c = self.builder_config
    for i in range(n):
      ex = faces.make_example(i, seed=c.seed, split=split, height=c.height, width=c.width)
      record = {
        # PIL images are PNG-encoded by Pillow (numpy arrays would need TF).
        "image": Image.fromarray(ex["image"]),
        "label_map": ex["label_map"],
        "edges": Image.fromarray(ex["edges"]),
        "caption": ex["caption"],
        "index": i,
      }
      record.update(ex["attributes"])
      yield i, record
