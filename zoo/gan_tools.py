"""The latent toolkit: look inside and steer a trained generator of the zoo.

Works on a StyleGAN (conditional ones too: their ``z`` carries a drawn label), ProGAN,
T2F or DCGAN-CLS workdir (the last two for one caption at a time). Latents are
StyleGAN's intermediate ``w`` (``space == 'w'``) or the others' ``z`` (``space == 'z'``;
T2F's is the noise and the conditioning-augmentation noise); feature maps, local edits
and style mixing need StyleGAN's named synthesis layers.

Example::

    from zoo import gan_tools as gt

    m = gt.LatentModel.load("runs/stylegan")
    w = m.sample(8, seed=0)                           # [8, w_dim]
    imgs = m.images(w, psi=0.7)                       # float32 [8, H, W, 3] in [-1, 1]
    vecs = gt.attribute_vectors(m, n=10_000)          # "mouth=open" -> mean w - overall mean
    vecs.save_csv("runs/stylegan/attributes.csv")
    smiling = m.images(gt.edit(w, vecs, {"mouth=smiling": 1.0}))
    feats = m.features(w)                             # {layer: [8, h, w, c]}
    diff = gt.feature_diff(m, 4, w_open, w_closed)    # channels that make a mouth open
    opened = gt.local_edit(m, w, 4, diff.channels(8), gt.MOUTH_REGION, diff.pattern(8))

Conventions
-----------
* Images are float32 in [-1, 1], ``[n, H, W, 3]``, at the trained stage's resolution.
* Randomness comes from seeds only. StyleGAN's per-pixel noise maps are drawn once from
  ``noise_seed`` and shared by every image (the reference's fixed noise), so an image does
  not change with the batch it is drawn in, ``psi = 0`` gives one image, and an edited
  image keeps the noise of the unedited one.
* Regions are ``(top, left, bottom, right)`` fractions of the image in ``[0, 1]``; they
  map onto any layer's grid.
* Truncation (``psi``) acts in W: ``w_avg + psi (w - w_avg)`` for layers below
  ``cutoff``. ProGAN pixel-normalises ``z``, so scaling ``z`` would change nothing: there
  ``psi`` must be 1.
* Bad input (a CSV of another model, a layer or channel that does not exist, a region
  outside the image, ``psi`` outside [0, 1], ...) raises :class:`~zoo.errors.ConfigError`
  with one line, before anything is written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import faces
from zoo.errors import ConfigError
from zoo.gan import core
from zoo.models import stylegan as sg_models
from zoo.models.progan import channels_at
from zoo.tasks import progan as progan_task
from zoo.tasks import stylegan as stylegan_task
from zoo.training import pictures
from zoo.training import restore as restore_lib

__all__ = [
  "MOUTH_REGION",
  "VECTOR_METHODS",
  "AttributeVectors",
  "FeatureDiff",
  "LatentModel",
  "attribute_vectors",
  "check_vector_method",
  "decorrelate",
  "edit",
  "feature_diff",
  "feature_map_view",
  "interpolate",
  "local_edit",
  "mixing_grid",
  "mouth_animation",
  "relabel",
  "slerp",
  "truncation_grid",
]

#: Where the embedded faces draw the mouth, ``(top, left, bottom, right)`` fractions.
MOUTH_REGION = (0.52, 0.3, 0.78, 0.7)
_CHUNK = 64


def _family(config: Mapping[str, Any], workdir: str = "") -> str:
  if workdir and os.path.exists(os.path.join(workdir, "vocab.json")):
    return "t2f"
  if "text" in config:
    return "dcgan_cls"
  return "stylegan" if "w_dim" in config.get("model", {}) else "progan"


def _check_psi(psi) -> float:
  try:
    psi = float(psi)
  except (TypeError, ValueError):
    raise ConfigError(f"psi={psi!r} must be a number in [0, 1]") from None
  if not 0.0 <= psi <= 1.0:
    raise ConfigError(f"psi={psi} must be in [0, 1] (1: no truncation, 0: the average image)")
  return psi


@dataclasses.dataclass
class LatentModel:
  """A trained generator (its EMA weights) at its last stage, with numpy in and out.

  Build it with :meth:`load`. ``space`` is ``'w'`` (StyleGAN) or ``'z'`` (ProGAN);
  ``latent_size`` the size of a latent in that space.
  """

  family: str
  workdir: str
  step: int
  stage: int
  g: Any
  g_vars: Any
  alpha: float
  latent_dim: int
  #: Text-conditional families (T2F, DCGAN-CLS): the caption every image is drawn for,
  #: and ``(check(caption), draw(caption, z) -> images)``.
  caption: str | None = None
  text_fns: Any = None
  #: A conditional StyleGAN's label size (the faces' attributes as one-hots). Its ``z``
  #: is the noise with a label appended (``[n, noise + label_dim]``, as the task's), so
  #: ``sample_z`` draws both and ``to_latent`` maps both into W.
  label_dim: int = 0

  @classmethod
  def load(
    cls,
    workdir: str,
    *,
    step: int | None = None,
    caption: str | None = None,
    require_caption: bool = True,
  ) -> LatentModel:
    """The EMA generator of a StyleGAN, ProGAN, T2F or DCGAN-CLS run (latest checkpoint,
    or ``step``); the text-conditional ones draw every image for ``caption`` (with
    ``require_caption=False`` it may come later, through :meth:`with_caption`)."""
    config = restore_lib.read_config(workdir)
    family = _family(config, workdir)
    if family in ("t2f", "dcgan_cls"):
      if not caption and require_caption:
        raise ConfigError(f"this {family} run draws images for a caption; give one (--caption)")
      model = cls._load_text(family, workdir, step)
      return model.with_caption(caption) if caption else model
    if caption is not None:
      raise ConfigError(f"a caption was given, but this is an unconditional {family} run")
    task_cls = stylegan_task.StyleGANTask if family == "stylegan" else progan_task.ProGANTask
    task, state, step = progan_task.restore_state(workdir, step=step, task_cls=task_cls)
    stage = task._state_stage(step)  # pylint: disable=protected-access
    g, _ = task.networks(stage)
    label_dim = int(getattr(task, "label_dim", 0))
    return cls(
      family=family,
      workdir=workdir,
      step=int(step),
      stage=int(stage),
      g=g,
      g_vars=jax.device_get(core.generator_variables(state)),
      alpha=float(task.schedule.alpha(step - 1, stage)),
      latent_dim=int(task.config.model.latent_dim) + label_dim,
      label_dim=label_dim,
    )

  @classmethod
  def _load_text(cls, family, workdir, step) -> LatentModel:
    if family == "t2f":
      from zoo.tasks import t2f  # pylint: disable=g-import-not-at-top

      task, state, step = t2f.restore_task(workdir, step=step)

      def check(caption):
        task.check_readable([caption])  # CaptionError (one line) for a caption it cannot read

      def draw(caption, z):
        return task.generate_for(state, [caption] * len(z), z, step)

      dim, stage = task.noise_dim, task._state_stage(step)  # pylint: disable=protected-access
    else:
      from zoo.tasks import dcgan_cls  # pylint: disable=g-import-not-at-top

      task, state, step = dcgan_cls.restore_task(workdir, step=step)

      def check(caption):
        task.encoder.encode([caption])

      def draw(caption, z):  # one caption embedded once, for every latent
        return task.generate(state, z, np.repeat(task.encoder.embed([caption]), len(z), axis=0))

      dim, stage = int(task.config.model.latent_dim), 0
    return cls(family, workdir, int(step), int(stage), None, None, 1.0, dim, text_fns=(check, draw))

  def with_caption(self, caption: str) -> LatentModel:
    """The same text-conditional generator drawing every image for ``caption``."""
    if self.text_fns is None:
      raise ConfigError(f"a caption was given, but this is an unconditional {self.family} run")
    if not isinstance(caption, str) or not caption.strip():
      raise ConfigError("the caption is empty")
    self.text_fns[0](caption)
    out = dataclasses.replace(self, caption=caption)
    if "resolution" in self._cache:
      out._cache["resolution"] = self._cache["resolution"]  # pylint: disable=protected-access
    return out

  def __post_init__(self):
    self._cache: dict = {}

  # ---- description ---------------------------------------------------------------
  @property
  def space(self) -> str:
    return "w" if self.family == "stylegan" else "z"

  @property
  def noise_dim(self) -> int:
    """The noise part of ``z`` (all of it unless the run is conditional)."""
    return self.latent_dim - self.label_dim

  @property
  def latent_size(self) -> int:
    return int(self.g.w_dim) if self.space == "w" else self.latent_dim

  @property
  def resolution(self) -> tuple[int, int]:
    if self.g is None:  # a text family: draw one image once to see
      if "resolution" not in self._cache:
        self._cache["resolution"] = tuple(self.images(self.sample_z(1))[0].shape[:2])
      return self._cache["resolution"]
    return tuple(self.g.resolution)

  @property
  def num_layers(self) -> int:
    """Synthesis layers (StyleGAN): two per resolution."""
    self._need_layers("layers")
    return int(self.g.num_ws)

  def layer_shape(self, layer: int) -> tuple[int, int, int]:
    """``(h, w, channels)`` of synthesis layer ``layer``'s output."""
    self.check_layer(layer)
    h, w = sg_models.layer_resolution(self.g.start, layer)
    return h, w, channels_at(layer // 2, fmap_base=self.g.fmap_base, fmap_max=self.g.fmap_max)

  def check_layer(self, layer) -> int:
    self._need_layers("feature maps and local edits")
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
      raise ConfigError(f"layer={layer!r} must be an integer")
    if not 0 <= layer < self.num_layers:
      raise ConfigError(
        f"layer {layer} does not exist; this generator has layers 0..{self.num_layers - 1}"
      )
    return int(layer)

  def layer_range(self, spec) -> tuple[int, int] | None:
    """Synthesis layers ``[lo, hi)`` named by ``spec``: ``'coarse'``, ``'middle'`` or
    ``'fine'`` (:func:`style_ranges`), ``'LO-HI'`` (inclusive, e.g. ``'2-5'``), a pair
    ``(lo, hi)``, or None / ``''`` / ``'all'`` for every layer (returns None)."""
    if spec is None or spec in ("", "all"):
      return None
    self._need_layers("style-range edits")
    if isinstance(spec, str):
      named = style_ranges(self)
      if spec in named:
        lo, hi = named[spec]
      else:
        try:
          a, b = (int(x) for x in spec.split("-"))
        except ValueError:
          raise ConfigError(
            f"layers={spec!r}: expected coarse, middle, fine, all or LO-HI (e.g. 2-5)"
          ) from None
        lo, hi = a, b + 1
    else:
      lo, hi = (int(x) for x in spec)
    if not 0 <= lo < hi <= self.num_layers:
      raise ConfigError(
        f"layers={spec!r} is not a range of this generator's layers 0..{self.num_layers - 1}"
      )
    return lo, hi

  def _need_layers(self, what: str) -> None:
    if self.family != "stylegan":
      raise ConfigError(
        f"{what} need a StyleGAN run (named synthesis layers); this is {self.family}"
      )

  @property
  def w_avg(self) -> np.ndarray:
    self._need_layers("w_avg")
    return np.asarray(self.g_vars["stats"]["w_avg"], np.float32)

  # ---- latents ------------------------------------------------------------------
  def sample_z(self, n: int, seed: int = 0) -> np.ndarray:
    """``z ~ N(0, I)``: ``[n, latent_dim]``; latent ``i`` depends on ``seed`` and ``i`` only.

    A conditional run's ``z`` ends with a label: every attribute's value drawn uniformly,
    as the embedded faces draw theirs, one-hot."""
    if n < 1:
      raise ConfigError(f"n={n} must be >= 1")
    key = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (self.noise_dim,)))(keys), np.float32)
    if not self.label_dim:
      return z
    labels = jax.vmap(lambda k: self._random_label(jax.random.fold_in(k, 1)))(keys)
    return np.concatenate([z, np.asarray(labels, np.float32)], axis=1)

  @staticmethod
  def _random_label(key) -> jax.Array:
    """One-hot of a uniformly drawn value per face attribute (``[label_dim]``)."""
    keys = jax.random.split(key, len(faces.ATTRIBUTE_SIZES))
    return jnp.concatenate(
      [
        jax.nn.one_hot(jax.random.randint(k, (), 0, size), size)
        for k, size in zip(keys, faces.ATTRIBUTE_SIZES)
      ]
    )

  def to_latent(self, z) -> np.ndarray:
    """The model's latent of ``z``: ``w = mapping(z)`` (StyleGAN; a conditional run maps
    the noise with its appended label) or ``z`` itself."""
    z = self._check_latents(z, self.latent_dim, "z")
    if self.space == "z":
      return z
    if "map" not in self._cache:
      g, split = self.g, self.noise_dim

      def map_fn(v, z):
        label = z[:, split:] if self.label_dim else None
        return g.apply(v, z[:, :split], label, method=g.map)

      self._cache["map"] = jax.jit(map_fn)
    return self._chunked(lambda zc: self._cache["map"](self.g_vars, zc), z)

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """``n`` latents in the model's space: ``to_latent(sample_z(n, seed))``."""
    return self.to_latent(self.sample_z(n, seed))

  def mean_latent(self) -> np.ndarray:
    return self.w_avg if self.space == "w" else np.zeros(self.latent_dim, np.float32)

  def _check_latents(self, x, size: int, name: str, per_layer: bool = False) -> np.ndarray:
    x = np.asarray(x, np.float32)
    ok = x.ndim == 2 or (per_layer and x.ndim == 3)
    if not ok or x.shape[-1] != size or x.shape[0] < 1:
      want = f"[n, {size}]" + (f" or [n, {self.g.num_ws}, {size}]" if per_layer else "")
      raise ConfigError(f"{name} must be {want}, got shape {x.shape}")
    if x.ndim == 3 and x.shape[1] != self.g.num_ws:
      raise ConfigError(f"{name} must have {self.g.num_ws} layers, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
      raise ConfigError(f"{name} has non-finite values")
    return x

  @staticmethod
  def _chunked(fn, *arrays):
    """``fn`` over chunks of ``_CHUNK`` rows, each padded to a power of two (>= 8) so few
    shapes are compiled; outputs (an array or a tuple of them) concatenated."""
    n = arrays[0].shape[0]
    out = []
    for i in range(0, n, _CHUNK):
      parts = [a[i : i + _CHUNK] for a in arrays]
      m = parts[0].shape[0]
      pad = min(_CHUNK, max(8, 1 << (m - 1).bit_length())) - m  # few compiled shapes
      if pad:
        parts = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in parts]
      out.append(jax.tree.map(lambda x, m=m: np.asarray(x)[:m], fn(*parts)))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *out)

  # ---- images -------------------------------------------------------------------
  def styles(self, latents, *, psi: float = 1.0, cutoff: int | None = None) -> np.ndarray:
    """Per-layer styles ``[n, num_layers, w_dim]`` of W latents, truncated."""
    psi = _check_psi(psi)
    ws = self._check_latents(latents, self.latent_size, "latents", per_layer=True)
    if ws.ndim == 2:
      ws = np.repeat(ws[:, None], self.num_layers, axis=1)
    if cutoff is not None and not 0 <= int(cutoff) <= self.num_layers:
      raise ConfigError(f"cutoff={cutoff} must be in [0, {self.num_layers}]")
    return np.asarray(sg_models.truncate(ws, self.w_avg, psi, cutoff))

  def images(
    self,
    latents,
    *,
    psi: float = 1.0,
    cutoff: int | None = None,
    edits: Mapping[int, Any] | None = None,
    style_edits: Mapping[int, Any] | None = None,
    noise_seed: int = 0,
  ) -> np.ndarray:
    """Images ``[n, H, W, 3]`` in [-1, 1] of latents in the model's space.

    StyleGAN: ``latents`` ``[n, w_dim]`` or per-layer ``[n, num_layers, w_dim]``;
    ``edits`` ``{layer: delta}`` adds ``delta`` (``[h, w, c]`` or ``[n, h, w, c]``) to that
    layer's output, ``style_edits`` ``{layer: delta}`` adds ``delta`` (``[2 c]`` or ``[n, 2
    c]``) to its style (:meth:`style_codes`). ProGAN: ``z [n, latent_dim]``.
    """
    return self._run(
      latents,
      psi=psi,
      cutoff=cutoff,
      edits=edits,
      style_edits=style_edits,
      noise_seed=noise_seed,
    )[0]

  def features(
    self,
    latents,
    layers: Sequence[int] | None = None,
    *,
    psi: float = 1.0,
    edits: Mapping[int, Any] | None = None,
    noise_seed: int = 0,
  ) -> dict[int, np.ndarray]:
    """``{layer: [n, h, w, c]}`` synthesis-layer outputs (StyleGAN), after any edit."""
    layers = (
      list(range(self.num_layers)) if layers is None else [self.check_layer(l) for l in layers]
    )
    return self._run(latents, psi=psi, edits=edits, noise_seed=noise_seed, layers=tuple(layers))[1]

  def images_and_features(
    self,
    latents,
    *,
    psi: float = 1.0,
    edits: Mapping[int, Any] | None = None,
    noise_seed: int = 0,
  ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """:meth:`images` and every layer's :meth:`features` from one pass (StyleGAN)."""
    layers = tuple(range(self.num_layers))
    return self._run(latents, psi=psi, edits=edits, noise_seed=noise_seed, layers=layers)[:2]

  def style_codes(self, latents, *, psi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Images and the style space S (StyleGAN): every layer's AdaIN style, its ``c``
    scales then ``c`` biases, concatenated over the layers: ``[n, H, W, 3]``, ``[n,
    style_size]`` (:meth:`style_slices` names each layer's part)."""
    self._need_layers("style codes")
    imgs, _, codes = self._run(latents, psi=psi, styles=tuple(range(self.num_layers)), noise_seed=0)
    return imgs, np.concatenate([codes[l] for l in range(self.num_layers)], axis=1)

  def style_slices(self) -> list[slice]:
    """Layer ``i``'s part of a style code: ``[scales (c_i), biases (c_i)]``."""
    out, at = [], 0
    for layer in range(self.num_layers):
      c = self.layer_shape(layer)[2]
      out.append(slice(at, at + 2 * c))
      at += 2 * c
    return out

  @property
  def style_size(self) -> int:
    return self.style_slices()[-1].stop

  def style_edit_of(self, delta) -> dict[int, np.ndarray]:
    """A style-space vector ``[style_size]`` as ``style_edits`` ``{layer: [2 c]}`` (the
    layers it changes)."""
    delta = np.asarray(delta, np.float32)
    if delta.shape != (self.style_size,):
      raise ConfigError(f"a style edit must be [{self.style_size}], got shape {delta.shape}")
    return {l: delta[sl] for l, sl in enumerate(self.style_slices()) if np.any(delta[sl])}

  def _edits(self, edits, n: int, shape_of=None, what="edit") -> dict[int, np.ndarray]:
    out = {}
    for layer, delta in (edits or {}).items():
      layer = self.check_layer(layer)
      shape = (shape_of or self.layer_shape)(layer)
      d = np.asarray(delta, np.float32)
      if d.shape == shape:
        d = np.broadcast_to(d, (n, *shape))
      if d.shape != (n, *shape):
        raise ConfigError(
          f"the {what} of layer {layer} must be {list(shape)} or [{n}, ...], got {d.shape}"
        )
      out[layer] = d
    return out

  def _run(
    self,
    latents,
    *,
    psi,
    cutoff=None,
    edits=None,
    style_edits=None,
    noise_seed=0,
    layers=(),
    styles=(),
  ):
    """Images, ``{layer: features}`` of ``layers`` and ``{layer: style}`` of ``styles``."""
    if self.family != "stylegan":
      if _check_psi(psi) != 1.0:
        raise ConfigError(
          f"truncation needs a W space (StyleGAN); {self.family} has none, so psi must be 1"
        )
      if edits or style_edits:
        self._need_layers("local and style edits")
      z = self._check_latents(latents, self.latent_dim, "latents")
      if self.text_fns is not None:
        if self.caption is None:
          raise ConfigError(f"this {self.family} run draws images for a caption; give one")
        draw = self.text_fns[1]
        return np.clip(self._chunked(lambda zc: draw(self.caption, zc), z), -1, 1), {}, {}
      if "progan" not in self._cache:
        g, alpha = self.g, self.alpha
        self._cache["progan"] = jax.jit(lambda v, z: jnp.clip(g.apply(v, z, alpha), -1, 1))
      return self._chunked(lambda zc: self._cache["progan"](self.g_vars, zc), z), {}, {}
    ws = self.styles(latents, psi=psi, cutoff=cutoff)
    n = ws.shape[0]
    edit_arrays = self._edits(edits, n)
    style_arrays = self._edits(
      style_edits, n, lambda l: (2 * self.layer_shape(l)[2],), what="style edit"
    )
    order, style_order = sorted(edit_arrays), sorted(style_arrays)
    key = ("synth", tuple(order), tuple(style_order), layers, styles)
    if key not in self._cache:
      g, alpha = self.g, self.alpha

      def one(v, ws1, deltas, style_deltas, seed):
        rng = jax.random.key(seed)  # the same noise maps for every image
        img, st = g.apply(
          v,
          ws1[None],
          alpha,
          edits={l: d[None] for l, d in zip(order, deltas)},
          style_edits={l: d[None] for l, d in zip(style_order, style_deltas)},
          rngs={"noise": rng},
          method=g.synthesize,
          mutable=["intermediates"],
        )
        inter = st["intermediates"]["synthesis"]
        return (
          jnp.clip(img[0], -1, 1),
          tuple(inter[f"layer{l}"][0][0] for l in layers),
          tuple(inter[f"style{l}"][0][0] for l in styles),
        )

      self._cache[key] = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, None)))
    fn = self._cache[key]
    seed = np.uint32(noise_seed)
    deltas = [edit_arrays[l] for l in order] + [style_arrays[l] for l in style_order]
    k = len(order)

    def run(w, *d):
      return fn(self.g_vars, w, list(d[:k]), list(d[k:]), seed)

    imgs, feats, codes = self._chunked(run, ws, *deltas)
    return imgs, dict(zip(layers, feats)), dict(zip(styles, codes))


# ---------------------------------------------------------------------------
# Attribute vectors
# ---------------------------------------------------------------------------

_CSV_MAGIC = "# zoo attribute vectors"
#: How :func:`attribute_vectors` turns labelled latents into directions.
VECTOR_METHODS = ("mean", "regression")


def check_vector_method(method, what: str = "method") -> str:
  """``method`` if it is one of :data:`VECTOR_METHODS`, else one ``ConfigError`` line
  naming it as ``what``."""
  if method not in VECTOR_METHODS:
    raise ConfigError(f"{what}={method!r}, expected one of {', '.join(VECTOR_METHODS)}")
  return method


@dataclasses.dataclass
class AttributeVectors:
  """Directions in a model's latent space, one per attribute value (``"mouth=open"``):
  the mean latent of the images showing that value minus the mean latent of all
  (``method="mean"``), or that value's effect with the other attributes held fixed
  (``method="regression"``, :func:`attribute_vectors`).

  ``space`` / ``size`` / ``family`` / ``step`` say which model they belong to; loading
  them for another model is refused.
  """

  vectors: dict[str, np.ndarray]
  counts: dict[str, int]
  space: str
  size: int
  family: str
  step: int
  method: str = "mean"

  @property
  def names(self) -> list[str]:
    return list(self.vectors)

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self.vectors:
      known = ", ".join(self.vectors) or "none"
      raise ConfigError(f"no attribute vector {name!r}; known: {known}")
    return self.vectors[name]

  def check_model(self, model: LatentModel) -> None:
    if (self.space, self.size) != (model.space, model.latent_size) or self.family != model.family:
      raise ConfigError(
        f"these attribute vectors are for a {self.family} {self.space}-space of size {self.size}; "
        f"the model is a {model.family} {model.space}-space of size {model.latent_size}"
      )

  def save_csv(self, path: str) -> str:
    """One row per vector (``name, count, v0 .. v{size-1}``) under a header line naming
    the model's family, latent space, size and step. Written atomically."""
    buf = io.StringIO()
    buf.write(
      f"{_CSV_MAGIC}: family={self.family} space={self.space} size={self.size} step={self.step}"
      f" method={self.method}\n"
    )
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "count"] + [f"v{i}" for i in range(self.size)])
    for name, v in self.vectors.items():
      w.writerow([name, self.counts.get(name, 0)] + [f"{x:.8g}" for x in v])
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(buf.getvalue())
    os.replace(tmp, path)
    return path

  @classmethod
  def load_csv(cls, path: str, model: LatentModel | None = None) -> AttributeVectors:
    """Reads :meth:`save_csv`'s file; with ``model``, refuses vectors of another model."""
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read()
    except (OSError, UnicodeDecodeError) as e:
      raise ConfigError(f"cannot read attribute vectors {path}: {e}") from None
    lines = text.splitlines()
    if not lines or not lines[0].startswith(_CSV_MAGIC + ":"):
      raise ConfigError(f"{path} is not a zoo attribute-vector CSV (no {_CSV_MAGIC!r} header)")
    meta = dict(kv.split("=", 1) for kv in lines[0].split(":", 1)[1].split() if "=" in kv)
    try:
      space, size, family, step = (
        meta["space"],
        int(meta["size"]),
        meta["family"],
        int(meta["step"]),
      )
    except (KeyError, ValueError):
      raise ConfigError(f"{path}: bad header line {lines[0]!r}") from None
    # files written before regression vectors name no method
    method = check_vector_method(meta.get("method", "mean"), f"{path}: method")
    rows = list(csv.reader(lines[1:]))
    if not rows or rows[0][:2] != ["name", "count"]:
      raise ConfigError(f"{path}: the second line must be the column header name,count,v0,...")
    vectors, counts = {}, {}
    for i, row in enumerate(rows[1:], start=3):
      if len(row) != size + 2:
        raise ConfigError(f"{path} line {i}: {len(row) - 2} values, the header says size={size}")
      try:
        v = np.asarray([float(x) for x in row[2:]], np.float32)
        counts[row[0]] = int(row[1])
      except ValueError:
        raise ConfigError(f"{path} line {i}: not a number") from None
      if not np.all(np.isfinite(v)):
        raise ConfigError(f"{path} line {i}: non-finite value")
      vectors[row[0]] = v
    out = cls(vectors, counts, space, size, family, step, method)
    if model is not None:
      out.check_model(model)
    return out


def attribute_vectors(
  model: LatentModel,
  n: int = 10_000,
  *,
  labels: Mapping[str, Sequence[Any]] | None = None,
  classifier=None,
  min_count: int = 1000,
  seed: int = 0,
  psi: float = 1.0,
  method: str = "mean",
) -> AttributeVectors:
  """Attribute directions of ``model``, one for every attribute value shown by at least
  ``min_count`` of ``n`` generated images.

  ``method="mean"``: mean latent of those images - mean of all. When the generator ties
  two attributes together (open mouths drawn mostly with dark skin), this vector carries
  both. ``method="regression"``: the latents are fitted by least squares on every
  attribute's value indicators at once, ``w - mean(w) = sum_a B[a, value_a(w)]``, and the
  vector of a value is its coefficient ``B[a, value]``: its effect with the other
  attributes held fixed (each attribute's coefficients are centred so that their
  frequency-weighted mean is 0, so with one attribute both methods agree).

  Labels come from ``labels`` (``{attribute: [n] values or codes}`` for the images of
  ``model.sample(n, seed)``, e.g. a person's own labels) or else from the face
  ``classifier`` (default: the zoo's trained one).
  """
  if n < 2:
    raise ConfigError(f"n={n} must be >= 2")
  check_vector_method(method)
  latents = model.sample(n, seed)
  if labels is None:
    if classifier is None:
      from zoo.eval import face_classifier as fc  # pylint: disable=g-import-not-at-top

      classifier = fc.load_classifier(fc.default_classifier_workdir())
    labels = classifier.predict(model.images(latents, psi=psi))
    names = {k: faces.ATTRIBUTES.get(k) for k in labels}
  else:
    names = {}
    for k, v in labels.items():
      if len(v) != n:
        raise ConfigError(f"labels[{k!r}] has {len(v)} values for {n} images")
      names[k] = None
  labels = {k: np.asarray(v) for k, v in labels.items()}
  effects = (_mean_effects if method == "mean" else _regression_effects)(latents, labels)
  vectors, counts = {}, {}
  for attr, vals in labels.items():
    for value in np.unique(vals):
      count = int(np.sum(vals == value))
      if count < min_count:
        continue
      vocab = names.get(attr)
      label = (
        vocab[int(value)] if vocab is not None and np.issubdtype(vals.dtype, np.integer) else value
      )
      key = f"{attr}={label}"
      vectors[key] = effects[attr, value].astype(np.float32)
      counts[key] = count
  return AttributeVectors(
    vectors, counts, model.space, model.latent_size, model.family, model.step, method
  )


def _mean_effects(latents, labels) -> dict[tuple[str, Any], np.ndarray]:
  """``{(attribute, value): mean latent of its images - mean of all}``."""
  mean = latents.mean(0)
  return {
    (attr, value): latents[vals == value].mean(0) - mean
    for attr, vals in labels.items()
    for value in np.unique(vals)
  }


def _regression_effects(latents, labels) -> dict[tuple[str, Any], np.ndarray]:
  """``{(attribute, value): B[attribute, value]}`` of the joint least-squares fit of the
  centred latents on the centred value indicators of every attribute (each attribute's
  most frequent value is the reference column left out, then every attribute's
  coefficients are shifted to a frequency-weighted mean of 0)."""
  x = latents.astype(np.float64)
  x = x - x.mean(0)
  columns, blocks = [], []
  for attr, vals in labels.items():
    values, counts = np.unique(vals, return_counts=True)
    ref = values[np.argmax(counts)]
    block = [(attr, ref, None)]
    for value in values:
      if value != ref:
        block.append((attr, value, len(columns)))
        columns.append((vals == value).astype(np.float64))
    blocks.append((block, counts / len(vals), values))
  coef = np.zeros((0, x.shape[1]))
  if columns:
    design = np.stack(columns, 1)
    coef = np.linalg.lstsq(design - design.mean(0), x, rcond=None)[0]
  effects = {}
  for block, freq, values in blocks:
    raw = {v: np.zeros(x.shape[1]) if c is None else coef[c] for _, v, c in block}
    shift = sum(f * raw[v] for f, v in zip(freq, values))
    effects.update({(attr, v): raw[v] - shift for attr, v, _ in block})
  return effects


def decorrelate(a, b) -> np.ndarray:
  """``a`` minus its projection on ``b``: the part of direction ``a`` that ``b`` lacks."""
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  if a.shape != b.shape or a.ndim != 1:
    raise ConfigError(f"decorrelate needs two vectors of one size, got {a.shape} and {b.shape}")
  bb = float(b @ b)
  return a if bb == 0 else a - (float(a @ b) / bb) * b


def edit(
  latents, vectors: AttributeVectors | None, strengths, *, layers=None, num_layers=None
) -> np.ndarray:
  """``latents + sum(strength * vector)``. ``strengths``: ``{name: strength}`` with names
  looked up in ``vectors``, or ``[(vector or name, strength), ...]``.

  ``layers``: ``(lo, hi)`` to edit StyleGAN's styles of synthesis layers ``lo..hi-1`` only
  (:meth:`LatentModel.layer_range` names them); the result is then per-layer
  ``[n, num_layers, w_dim]``, from per-layer latents or from ``[n, w_dim]`` ones repeated
  ``num_layers`` times. None: every layer, latents keep their shape.
  """
  x = np.asarray(latents, np.float32).copy()
  sl = slice(None)
  if layers is not None:
    lo, hi = layers
    if x.ndim == 2:
      if num_layers is None:
        raise ConfigError("a style-range edit of [n, w_dim] latents needs num_layers")
      x = np.repeat(x[:, None], int(num_layers), axis=1)
    if x.ndim != 3 or not 0 <= lo < hi <= x.shape[1]:
      raise ConfigError(f"layers={tuple(layers)} do not fit latents of shape {x.shape}")
    sl = slice(lo, hi)
  items = strengths.items() if isinstance(strengths, Mapping) else strengths
  for k, s in items:
    if isinstance(k, str) and vectors is None:
      raise ConfigError(f"edit by name {k!r} needs attribute vectors")
    v = vectors[k] if isinstance(k, str) else np.asarray(k, np.float32)
    if v.shape != x.shape[-1:]:
      raise ConfigError(f"an edit vector of size {v.shape} for latents of size {x.shape[-1]}")
    if layers is None:
      x = x + float(s) * v
    else:
      x[:, sl] += float(s) * v
  return x


def relabel(model: LatentModel, z, values: Mapping[str, Any]) -> np.ndarray:
  """A conditional StyleGAN's ``z [n, latent_dim]`` with some attributes' labels set:
  ``values`` ``{attribute: value name or code}``, the noise and other labels kept. So
  ``model.to_latent(relabel(model, z, {"mouth": "open"}))`` draws the same faces with an
  open mouth, as far as the generator follows its labels."""
  if not model.label_dim:
    raise ConfigError(
      f"relabel needs a conditional run (a label in z); this {model.family} run has none"
    )
  z = model._check_latents(z, model.latent_dim, "z").copy()  # pylint: disable=protected-access
  offsets = np.cumsum((model.noise_dim, *faces.ATTRIBUTE_SIZES))
  for attribute, value in values.items():
    code = _code(attribute, value)
    i = faces.ATTRIBUTE_NAMES.index(attribute)
    if not 0 <= code < faces.ATTRIBUTE_SIZES[i]:
      raise ConfigError(f"{attribute} has no value {code}; it has {faces.ATTRIBUTE_SIZES[i]}")
    z[:, offsets[i] : offsets[i + 1]] = 0.0
    z[:, offsets[i] + code] = 1.0
  return z


# ---------------------------------------------------------------------------
# Interpolation, truncation, mixing
# ---------------------------------------------------------------------------


def slerp(a, b, t) -> np.ndarray:
  """Spherical interpolation of Gaussian latents (``t`` in [0, 1], any shape ``[T]``)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  t = np.asarray(t, np.float64)[..., None]
  na, nb = (
    a / np.linalg.norm(a, axis=-1, keepdims=True),
    b / np.linalg.norm(b, axis=-1, keepdims=True),
  )
  omega = np.arccos(np.clip(np.sum(na * nb, -1, keepdims=True), -1.0, 1.0))
  so = np.sin(omega)
  lin = (1 - t) * a + t * b
  sph = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.where(so == 0, 1, so)
  return np.where(so < 1e-6, lin, sph).astype(np.float32)


def interpolate(
  model: LatentModel, z1, z2, steps: int = 8, *, space: str | None = None
) -> np.ndarray:
  """Latents (the model's space) ``[steps, size]`` from ``z1`` to ``z2`` (each ``[latent_dim]``):
  slerp in Z, or lerp in W of the mapped endpoints (``space='w'``, StyleGAN's default)."""
  space = space or model.space
  if space not in ("w", "z") or (space == "w" and model.space != "w"):
    raise ConfigError(f"space={space!r} must be 'z' or (for StyleGAN) 'w'")
  if steps < 2:
    raise ConfigError(f"steps={steps} must be >= 2")
  t = np.linspace(0.0, 1.0, steps)
  z = np.stack([np.asarray(z1, np.float32), np.asarray(z2, np.float32)])
  if space == "z":
    split = model.noise_dim  # a conditional run's labels are lerped
    lerp = (1 - t)[:, None] * z[0, split:] + t[:, None] * z[1, split:]
    return model.to_latent(np.concatenate([slerp(z[0, :split], z[1, :split], t), lerp], axis=1))
  w = model.to_latent(z)
  return ((1 - t)[:, None] * w[0] + t[:, None] * w[1]).astype(np.float32)


def truncation_grid(model: LatentModel, psis: Sequence[float], *, n: int = 6, seed: int = 0):
  """uint8 grid: one row per latent, one column per ``psi``."""
  w = model.sample(n, seed)
  cols = [model.images(w, psi=p) for p in psis]
  imgs = np.stack(cols, axis=1).reshape(-1, *cols[0].shape[1:])
  return pictures.sample_grid(imgs, cols=len(psis))


def style_ranges(model: LatentModel) -> dict[str, tuple[int, int]]:
  """Layer ranges ``[lo, hi)`` of coarse / middle / fine styles: the resolutions split in
  three (the paper's 4-8 / 16-32 / 64-1024 at 1024x1024)."""
  levels = model.num_layers // 2
  a = max(1, round(levels / 3))
  b = max(a + 1, round(2 * levels / 3)) if levels > 2 else min(a + 1, levels)
  return {"coarse": (0, 2 * a), "middle": (2 * a, 2 * b), "fine": (2 * b, model.num_layers)}


def mixing_grid(
  model: LatentModel, *, rows: int = 3, cols: int = 4, seed: int = 0, noise_seed: int = 0
):
  """The paper's style-mixing figure: sources A down the left, B across the top, and for
  each of coarse / middle / fine a block of rows where B's styles replace A's at those
  layers. Returns ``(uint8 grid, {name: (lo, hi)})``."""
  model._need_layers("style mixing")  # pylint: disable=protected-access
  wa, wb = model.sample(rows, seed), model.sample(cols, seed + 1)
  a_img, b_img = model.images(wa, noise_seed=noise_seed), model.images(wb, noise_seed=noise_seed)
  blank = -np.ones_like(a_img[:1])
  tiles = [blank, *b_img]
  ranges = style_ranges(model)
  L = model.num_layers
  for lo, hi in ranges.values():
    if lo >= hi:
      continue
    for r in range(rows):
      ws = np.repeat(np.repeat(wa[r][None, None], L, 1), cols, 0)
      ws[:, lo:hi] = wb[:, None]
      tiles += [a_img[r : r + 1], *model.images(ws, noise_seed=noise_seed)[:, None]]
  imgs = np.concatenate([t.reshape(-1, *a_img.shape[1:]) for t in tiles])
  return pictures.sample_grid(imgs, cols=cols + 1), ranges


# ---------------------------------------------------------------------------
# Feature maps and local edits
# ---------------------------------------------------------------------------


def feature_map_view(
  fmap, *, scale: float | None = None, cols: int = 0, tile: int = 32
) -> np.ndarray:
  """uint8 picture of one layer's channels ``[h, w, c]``, one tile per channel: blue
  where negative, white near zero, red where positive (saturating at ``scale``, default
  the 99th percentile of ``|fmap|``)."""
  f = np.asarray(fmap, np.float32)
  if f.ndim != 3:
    raise ConfigError(f"a feature map must be [h, w, c], got shape {f.shape}")
  s = float(scale or np.percentile(np.abs(f), 99) or 1.0)
  v = np.clip(f / s, -1, 1).transpose(2, 0, 1)[..., None]  # [c, h, w, 1]
  white = np.ones(3, np.float32)
  red, blue = np.array([0.85, 0.1, 0.1], np.float32), np.array([0.1, 0.25, 0.85], np.float32)
  rgb = np.where(v > 0, white + v * (red - white), white + (-v) * (blue - white))
  up = max(1, tile // f.shape[0])
  return pictures.sample_grid(
    rgb * 2 - 1, cols=cols or int(math.ceil(math.sqrt(f.shape[2]))), scale=up
  )


def region_mask(shape: tuple[int, int], region: Sequence[float]) -> np.ndarray:
  """bool ``[h, w]`` of the cells whose centres fall in ``(top, left, bottom, right)``."""
  r = tuple(float(x) for x in region) if len(region) == 4 else None
  if r is None or not (0 <= r[0] < r[2] <= 1 and 0 <= r[1] < r[3] <= 1):
    raise ConfigError(
      f"region {tuple(region)} must be (top, left, bottom, right) fractions with "
      "0 <= top < bottom <= 1 and 0 <= left < right <= 1"
    )
  h, w = shape
  ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
  m = ((ys >= r[0]) & (ys <= r[2]))[:, None] & ((xs >= r[1]) & (xs <= r[3]))[None, :]
  if not m.any():  # a region smaller than one cell: the cell under its centre
    m[min(int((r[0] + r[2]) / 2 * h), h - 1), min(int((r[1] + r[3]) / 2 * w), w - 1)] = True
  return m


@dataclasses.dataclass
class FeatureDiff:
  """Mean feature difference at one layer between images with and without an attribute."""

  layer: int
  diff: np.ndarray  # [h, w, c]: mean(with) - mean(without)

  def channels(self, k: int | None = None, region: Sequence[float] | None = None) -> list[int]:
    """The ``k`` channels whose difference carries most energy (inside ``region``)."""
    d = (
      self.diff
      if region is None
      else self.diff * region_mask(self.diff.shape[:2], region)[..., None]
    )
    order = np.argsort(-np.sum(d * d, axis=(0, 1)))
    return [int(c) for c in order[: k or len(order)]]

  def peak(self, channel: int) -> tuple[float, float]:
    """``(y, x)`` fraction of the image where ``channel`` differs most."""
    a = np.abs(self.diff[..., channel])
    y, x = np.unravel_index(int(np.argmax(a)), a.shape)
    return (y + 0.5) / a.shape[0], (x + 0.5) / a.shape[1]

  def pattern(self, channels: Sequence[int] | None = None, region: Sequence[float] | None = None):
    """The difference kept at ``channels`` and inside ``region`` (zero elsewhere)."""
    out = np.zeros_like(self.diff)
    ch = list(range(self.diff.shape[-1])) if channels is None else list(channels)
    out[..., ch] = self.diff[..., ch]
    if region is not None:
      out *= region_mask(self.diff.shape[:2], region)[..., None]
    return out


def feature_diff(
  model: LatentModel, layer: int, with_latents, without_latents, *, noise_seed: int = 0
):
  """:class:`FeatureDiff` of ``layer`` between two sets of latents (one of each is enough)."""
  layer = model.check_layer(layer)
  fa = model.features(with_latents, [layer], noise_seed=noise_seed)[layer].mean(0)
  fb = model.features(without_latents, [layer], noise_seed=noise_seed)[layer].mean(0)
  return FeatureDiff(layer, (fa - fb).astype(np.float32))


def local_edit_delta(
  model: LatentModel, layer: int, channels: Sequence[int], region: Sequence[float], delta
) -> np.ndarray:
  """The ``[h, w, c]`` array :meth:`LatentModel.images` adds to ``layer``: ``delta`` (a
  number, or an ``[h, w, c]`` pattern) at ``channels`` inside ``region``, zero elsewhere."""
  h, w, c = model.layer_shape(model.check_layer(layer))
  channels = [int(x) for x in channels]
  bad = [x for x in channels if not 0 <= x < c]
  if bad or not channels:
    raise ConfigError(
      f"channels {bad or channels} do not exist; layer {layer} has channels 0..{c - 1}"
    )
  mask = np.zeros((h, w, c), np.float32)
  mask[..., channels] = 1.0
  mask *= region_mask((h, w), region)[..., None]
  d = np.asarray(delta, np.float32)
  if d.ndim and d.shape != (h, w, c):
    raise ConfigError(f"delta must be a number or [{h}, {w}, {c}], got {d.shape}")
  return mask * d


def local_edit(model: LatentModel, latents, layer, channels, region, delta, **kw) -> np.ndarray:
  """Images of ``latents`` with ``delta`` added to ``layer``'s ``channels`` in ``region``."""
  d = local_edit_delta(model, layer, channels, region, delta)
  return model.images(latents, edits={int(layer): d}, **kw)


# ---------------------------------------------------------------------------
# The mouth
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class MouthEdit:
  """A local edit that opens a closed mouth: ``strength * pattern`` at ``layer``."""

  layer: int
  pattern: np.ndarray  # [h, w, c]
  channels: list[int]
  region: tuple[float, float, float, float]
  examples: int  # images of each kind the pattern was measured on

  def edits(self, strength: float) -> dict[int, np.ndarray]:
    return {self.layer: np.float32(strength) * self.pattern}


def find_mouth_edit(
  model: LatentModel,
  *,
  classifier=None,
  layer: int | None = None,
  channels: int | None = None,
  region: Sequence[float] = MOUTH_REGION,
  n: int = 512,
  seed: int = 1,
  max_examples: int = 64,
) -> MouthEdit:
  """The feature pattern of an open mouth minus a closed one at ``layer`` (default: the
  first layer of the highest resolution, where the mouth spans the most cells), kept in
  ``region`` and at the ``channels`` strongest channels (default: all), measured on up to
  ``max_examples`` classified samples of each kind among ``n``."""
  if classifier is None:
    from zoo.eval import face_classifier as fc  # pylint: disable=g-import-not-at-top

    classifier = fc.load_classifier(fc.default_classifier_workdir())
  layer = model.check_layer(max(0, model.num_layers - 2) if layer is None else layer)
  region = tuple(float(x) for x in region)
  region_mask((4, 4), region)  # validates
  w = model.sample(n, seed)
  mouth = classifier.predict(model.images(w))["mouth"]
  vocab = faces.ATTRIBUTES["mouth"]
  opened, closed = w[mouth == vocab.index("open")], w[mouth == vocab.index("closed")]
  if len(opened) < 1 or len(closed) < 1:
    raise ConfigError(
      f"among {n} samples the classifier found {len(opened)} open and {len(closed)} closed "
      "mouths; need at least one of each (train longer or raise n)"
    )
  k = min(len(opened), len(closed), max_examples)
  diff = feature_diff(model, layer, opened[:k], closed[:k])
  ch = diff.channels(channels, region) if channels else None
  pattern = diff.pattern(ch, region)
  return MouthEdit(layer, pattern, ch or list(range(pattern.shape[-1])), region, k)


def mouth_animation(
  model: LatentModel, latent, mouth: MouthEdit, *, frames: int = 24, strength: float = 1.0
):
  """Frames ``[frames, H, W, 3]`` (floats in [-1, 1]) of one latent whose mouth opens
  and closes: the edit's strength follows ``strength * (1 - cos 2 pi t) / 2``."""
  if frames < 2:
    raise ConfigError(f"frames={frames} must be >= 2")
  w = np.asarray(latent, np.float32).reshape(1, -1)
  t = np.arange(frames) / frames
  s = strength * (1 - np.cos(2 * np.pi * t)) / 2
  pattern = mouth.pattern[None] * s[:, None, None, None].astype(np.float32)
  return model.images(np.repeat(w, frames, 0), edits={mouth.layer: pattern})


# ---------------------------------------------------------------------------
# What ``python -m launch.stylegan --mode=...`` (and launch.progan) runs
# ---------------------------------------------------------------------------

TOOL_MODES = (
  "attributes",
  "edit",
  "interpolate",
  "truncation",
  "mixing",
  "features",
  "animate",
  "judge",
)
#: (attribute, from, to) edits the judge reports.
JUDGED_EDITS = (
  ("mouth", "closed", "open"),
  ("eyes", "open", "closed"),
  ("glasses", "none", "round"),
)


def _parse_strengths(text: str) -> dict[str, float]:
  """``"mouth=smiling:1,glasses=round:-0.5"`` -> ``{"mouth=smiling": 1.0, ...}``."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, _, s = part.rpartition(":")
    try:
      out[name or part] = float(s) if name else 1.0
    except ValueError:
      raise ConfigError(
        f"--edit={text!r}: {s!r} is not a strength (use NAME=VALUE[:STRENGTH])"
      ) from None
  if not out:
    raise ConfigError("--edit names no attribute vector (e.g. --edit=mouth=smiling:1)")
  return out


def _save_png(path: str, grid: np.ndarray) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  Image.fromarray(grid).save(path)
  return path


def run_tool(
  mode: str,
  workdir: str,
  *,
  num: int | None = None,
  seed: int = 0,
  psi: float = 1.0,
  psis: str = "1,0.85,0.7,0.5,0.3,0",
  edit_spec: str = "",
  vectors: str = "",
  attribute_images: int = 10_000,
  min_count: int = 1000,
  vector_method: str = "mean",
  steps: int = 8,
  space: str = "",
  layer: int = -1,
  frames: int = 24,
  strength: float = 1.0,
  layers: str = "",
  caption: str | None = None,
  output: str = "",
  log=print,
) -> list[str]:
  """One toolkit mode on the run in ``workdir``; returns the files written (in
  ``output``, default ``WORKDIR/toolkit``). Every argument is checked before writing."""
  if mode not in TOOL_MODES:
    raise ConfigError(f"--mode={mode!r}, expected one of {', '.join(TOOL_MODES)}")
  psi = _check_psi(psi)
  check_vector_method(vector_method, "--vector_method")
  if num is None:
    num = 500 if mode == "judge" else 8
  if num < 1:
    raise ConfigError(f"--num={num} must be >= 1")
  psi_list = []
  for p in psis.split(","):
    try:
      psi_list.append(_check_psi(p.strip()))
    except ConfigError as e:
      raise ConfigError(f"--psis: {e}") from None
  model = LatentModel.load(workdir, caption=caption)
  layer_arg = None if layer < 0 else model.check_layer(layer)
  style_range = model.layer_range(layers) if mode in ("edit", "judge") else None
  out = output or os.path.join(workdir, "toolkit")
  vec_path = vectors or os.path.join(workdir, "attributes.csv")
  written: list[str] = []
  say = log or (lambda _: None)

  def need_vectors() -> AttributeVectors:
    if not os.path.exists(vec_path):
      raise ConfigError(f"no attribute vectors at {vec_path}; run --mode=attributes first")
    return AttributeVectors.load_csv(vec_path, model)

  if mode == "attributes":
    vecs = attribute_vectors(
      model, attribute_images, min_count=min_count, seed=seed, psi=psi, method=vector_method
    )
    os.makedirs(os.path.dirname(os.path.abspath(vec_path)), exist_ok=True)
    written.append(vecs.save_csv(vec_path))
    say(
      f"[toolkit] {len(vecs.names)} attribute vectors ({vector_method}) from "
      f"{attribute_images} images: {vec_path}"
    )
    for name in vecs.names:
      say(f"  {name}: {vecs.counts[name]} images, |v| = {np.linalg.norm(vecs[name]):.3f}")
    return written

  if mode == "edit":
    vecs = need_vectors()
    strengths = _parse_strengths(edit_spec)
    for k in strengths:
      vecs[k]  # pylint: disable=pointless-statement  # unknown names fail before writing
    scales = np.linspace(-2.0, 2.0, 5)
    w = model.sample(num, seed)
    cols = [
      model.images(
        edit(
          w,
          vecs,
          {k: s * v for k, v in strengths.items()},
          layers=style_range,
          num_layers=style_range and model.num_layers,
        ),
        psi=psi,
      )
      for s in scales
    ]
    grid = pictures.sample_grid(np.stack(cols, 1).reshape(-1, *cols[0].shape[1:]), cols=len(scales))
    os.makedirs(out, exist_ok=True)
    name = pictures.slug(edit_spec) + (f"_layers{layers}" if style_range else "")
    written.append(_save_png(os.path.join(out, f"edit_{name}.png"), grid))
  elif mode == "interpolate":
    z = model.sample_z(2 * num, seed)
    rows = [
      model.images(interpolate(model, z[2 * i], z[2 * i + 1], steps, space=space or None), psi=psi)
      for i in range(num)
    ]
    imgs = np.stack(rows)
    os.makedirs(out, exist_ok=True)
    sp = space or model.space
    written.append(
      _save_png(
        os.path.join(out, f"interpolate_{sp}.png"),
        pictures.sample_grid(imgs.reshape(-1, *imgs.shape[2:]), cols=steps),
      )
    )
    frames_ = [
      pictures.sample_grid(imgs[:, t]) for t in list(range(steps)) + list(range(steps - 2, 0, -1))
    ]
    gif = os.path.join(out, f"interpolate_{sp}.gif")
    pictures.write_gif(frames_, gif)
    written.append(gif)
  elif mode == "truncation":
    os.makedirs(out, exist_ok=True)
    grid = truncation_grid(model, psi_list, n=num, seed=seed)
    written.append(_save_png(os.path.join(out, "truncation.png"), grid))
  elif mode == "mixing":
    grid, ranges = mixing_grid(model, rows=min(num, 4), cols=min(num, 6), seed=seed)
    os.makedirs(out, exist_ok=True)
    written.append(_save_png(os.path.join(out, "mixing.png"), grid))
    say(
      "[toolkit] style mixing rows: "
      + ", ".join(f"{k} layers {a}-{b - 1}" for k, (a, b) in ranges.items() if a < b)
    )
  elif mode == "features":
    layers = list(range(model.num_layers)) if layer_arg is None else [layer_arg]
    w = model.sample(num, seed)
    feats = model.features(w, layers, psi=psi)
    os.makedirs(out, exist_ok=True)
    written.append(
      _save_png(
        os.path.join(out, "features_image.png"), pictures.sample_grid(model.images(w[:1], psi=psi))
      )
    )
    for l in layers:
      written.append(
        _save_png(os.path.join(out, f"features_layer{l}.png"), feature_map_view(feats[l][0]))
      )
      written.append(
        _save_png(
          os.path.join(out, f"features_mean_layer{l}.png"), feature_map_view(feats[l].mean(0))
        )
      )
  elif mode == "animate":
    if edit_spec != "mouth":
      raise ConfigError(f"--edit={edit_spec!r}: animate knows the mouth only (--edit=mouth)")
    mouth = find_mouth_edit(model, layer=layer_arg, seed=seed + 1)
    w = model.sample(max(num, 1), seed)
    # Start from closed mouths: the edit adds (open - closed).
    frames_ = [
      mouth_animation(model, w[i], mouth, frames=frames, strength=strength)
      for i in range(min(num, 8))
    ]
    grid_frames = [pictures.sample_grid(np.stack([f[t] for f in frames_])) for t in range(frames)]
    os.makedirs(out, exist_ok=True)
    gif = os.path.join(out, "mouth.gif")
    pictures.write_gif(grid_frames, gif, ms=80)
    written.append(gif)
    say(f"[toolkit] mouth edit at layer {mouth.layer} from {mouth.examples} open/closed pairs")
  elif mode == "judge":
    written += _judge(
      model, need_vectors(), out, psi_list, layer_arg, strength, num, say, style_range, psi
    )
  for p in written:
    say(f"[toolkit] wrote {p}")
  return written


def _judge(
  model, vecs, out, psis, layer, strength, num, say, style_range=None, psi=1.0
) -> list[str]:
  """The issue's judged numbers: attribute edits, the local mouth edit, truncation; the
  edits on samples truncated by ``psi``."""
  from zoo.data.images import unconditional as image_data  # pylint: disable=g-import-not-at-top
  from zoo.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  n = num
  clf = _default_classifier(None)
  results: dict[str, Any] = {
    "step": model.step,
    "n": n,
    "strength": strength,
    "vector_method": vecs.method,
    "psi": psi,
  }
  where = ""
  if style_range:
    results["layers"] = list(style_range)
    where = f" (layers {style_range[0]}-{style_range[1] - 1})"
  for attr, a, b in JUDGED_EDITS:
    if f"{attr}={a}" in vecs.vectors and f"{attr}={b}" in vecs.vectors:
      r = judge_edit(
        model,
        vecs,
        attr,
        a,
        b,
        n=n,
        strength=strength,
        classifier=clf,
        layers=style_range,
        psi=psi,
      )
      results[f"edit {attr} {a}->{b}"] = r
      say(
        f"[judge] {attr} {a}->{b}{where}: flip {r['flip']:.3f}, others kept >= {r['keep_min']:.3f}"
      )
    if model.label_dim:  # a conditional run: the same noise drawn for the other label
      r = judge_relabel(model, attr, a, b, n=n, classifier=clf, psi=psi)
      results[f"relabel {attr} {a}->{b}"] = r
      say(
        f"[judge] relabel {attr} {a}->{b}: flip {r['flip']:.3f}, others kept >= {r['keep_min']:.3f}"
      )
  mouth = find_mouth_edit(model, classifier=clf, layer=layer)
  r = judge_mouth_edit(model, mouth, vecs, n=n, strength=strength, classifier=clf, psi=psi)
  results["mouth local edit"] = {"layer": mouth.layer, **r}
  say(
    f"[judge] local mouth edit (layer {mouth.layer}): flip {r['local_flip']:.3f} "
    f"(global vector {r['global_flip']:.3f}), change outside the mouth {r['outside_ratio']:.3f} "
    "of the global edit's"
  )
  real = image_data.validation_faces(model.resolution, 1000)
  curve = truncation_curve(model, psis, classifier=clf, real_images=real)
  results["truncation"] = curve
  for row in curve:
    say(
      f"[judge] psi {row['psi']:g}: FD {row['FD']:.1f}, diversity {row['diversity_bits']:.3f} bits"
    )
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "judge.json")
  workdir_lib.write_json(path, results)
  svg = os.path.join(out, "truncation_curve.svg")
  chart = line_chart_svg(
    [r["psi"] for r in curve],
    {
      "classifier FD (1,000 samples)": [r["FD"] for r in curve],
      "attribute diversity (mean entropy, bits)": [r["diversity_bits"] for r in curve],
    },
    xlabel="truncation psi",
  )
  with open(svg, "w", encoding="utf-8") as f:
    f.write(chart)
  return [path, svg]


# ---------------------------------------------------------------------------
# Judges: does an edit do what it says, and what does truncation cost?
# ---------------------------------------------------------------------------


def _default_classifier(classifier):
  if classifier is not None:
    return classifier
  from zoo.eval import face_classifier as fc  # pylint: disable=g-import-not-at-top

  return fc.load_classifier(fc.default_classifier_workdir())


def _code(attribute: str, value) -> int:
  vocab = faces.ATTRIBUTES.get(attribute)
  if vocab is None:
    raise ConfigError(f"unknown attribute {attribute!r}; known: {', '.join(faces.ATTRIBUTES)}")
  if isinstance(value, str):
    if value not in vocab:
      raise ConfigError(f"{attribute} has no value {value!r}; known: {', '.join(vocab)}")
    return vocab.index(value)
  return int(value)


def _sources(model, classifier, attribute, code, n, seed, psi, draw=None):
  """``n`` latents whose images the classifier gives ``attribute == code``, their
  predictions and their images, drawn in batches from ``seed`` on: ``draw(seed, m) ->
  (latents, images)``, by default ``m`` samples in the model's space."""

  def sample(s, m):
    w = model.sample(m, s)
    return w, model.images(w, psi=psi)

  got, preds, imgs, s = [], [], [], seed
  while sum(len(g) for g in got) < n:
    w, images = (draw or sample)(s, 4 * n)
    p = classifier.predict(images)
    keep = p[attribute] == code
    got.append(w[keep])
    imgs.append(images[keep])
    preds.append({k: v[keep] for k, v in p.items()})
    s += 1
    if s - seed > 20:
      raise ConfigError(f"too few samples show {attribute}={code} to judge the edit")
  before = {k: np.concatenate([p[k] for p in preds])[:n] for k in preds[0]}
  return np.concatenate(got)[:n], before, np.concatenate(imgs)[:n]


def judge_edit(
  model: LatentModel,
  vectors: AttributeVectors,
  attribute: str,
  source,
  target,
  *,
  n: int = 500,
  strength: float = 1.0,
  classifier=None,
  seed: int = 100,
  psi: float = 1.0,
  layers=None,
) -> dict[str, float]:
  """Edits ``n`` samples showing ``attribute=source`` by ``strength * (v[target] -
  v[source])`` (in the style range ``layers``, :meth:`LatentModel.layer_range`; default
  every layer) and classifies them again. Returns ``flip`` (the fraction now showing
  ``target``), ``keep/<other attribute>`` (the fraction whose prediction of it did not
  change), ``keep_min`` and ``pixel_change`` (mean absolute change of the images)."""
  clf = _default_classifier(classifier)
  src, dst = _code(attribute, source), _code(attribute, target)
  vocab = faces.ATTRIBUTES[attribute]
  direction = vectors[f"{attribute}={vocab[dst]}"] - vectors[f"{attribute}={vocab[src]}"]
  w, before, imgs0 = _sources(model, clf, attribute, src, n, seed, psi)
  rng = model.layer_range(layers)
  edited = edit(w, None, [(direction, strength)], layers=rng, num_layers=rng and model.num_layers)
  return _outcome(clf, attribute, dst, before, imgs0, model.images(edited, psi=psi))


def _outcome(clf, attribute, dst, before, imgs0, imgs1) -> dict[str, float]:
  """:func:`judge_edit`'s numbers for images ``imgs0`` edited into ``imgs1``."""
  after = clf.predict(imgs1)
  out = {"flip": float(np.mean(after[attribute] == dst))}
  keep = {f"keep/{k}": float(np.mean(after[k] == before[k])) for k in after if k != attribute}
  out.update(keep)
  out["keep_min"] = min(keep.values()) if keep else 1.0
  out["pixel_change"] = float(np.abs(imgs1 - imgs0).mean())
  return out


def judge_relabel(
  model: LatentModel,
  attribute: str,
  source,
  target,
  *,
  n: int = 500,
  classifier=None,
  seed: int = 100,
  psi: float = 1.0,
) -> dict[str, float]:
  """A conditional run's label edit, judged as :func:`judge_edit` judges a vector edit:
  ``n`` samples drawn for ``attribute=source`` whose images show it, drawn again from the
  same noise for ``target`` (:func:`relabel`), both truncated by ``psi``. Same keys as
  :func:`judge_edit`."""
  clf = _default_classifier(classifier)
  src, dst = _code(attribute, source), _code(attribute, target)

  def draw(s, m):
    z = relabel(model, model.sample_z(m, s), {attribute: src})
    return z, model.images(model.to_latent(z), psi=psi)

  z, before, imgs0 = _sources(model, clf, attribute, src, n, seed, psi, draw=draw)
  imgs1 = model.images(model.to_latent(relabel(model, z, {attribute: dst})), psi=psi)
  return _outcome(clf, attribute, dst, before, imgs0, imgs1)


def judge_mouth_edit(
  model: LatentModel,
  mouth: MouthEdit,
  vectors: AttributeVectors,
  *,
  n: int = 500,
  strength: float = 1.0,
  classifier=None,
  seed: int = 100,
  psi: float = 1.0,
) -> dict[str, float]:
  """The local mouth edit against the global ``mouth=open - mouth=closed`` vector edit on
  the same ``n`` closed-mouth samples (truncated by ``psi``): ``local_flip`` /
  ``global_flip`` (fractions now predicted open) and the mean absolute pixel change outside
  the mouth region for each (``local_outside``, ``global_outside``) and their ratio
  ``outside_ratio``."""
  clf = _default_classifier(classifier)
  w, _, base = _sources(model, clf, "mouth", _code("mouth", "closed"), n, seed, psi)
  local = model.images(w, psi=psi, edits=mouth.edits(strength))
  direction = vectors["mouth=open"] - vectors["mouth=closed"]
  glob = model.images(edit(w, None, [(direction, strength)]), psi=psi)
  outside = ~region_mask(base.shape[1:3], mouth.region)
  open_code = faces.ATTRIBUTES["mouth"].index("open")

  def change(x):
    return float(np.abs(x - base)[:, outside].mean())

  out = {
    "local_flip": float(np.mean(clf.predict(local)["mouth"] == open_code)),
    "global_flip": float(np.mean(clf.predict(glob)["mouth"] == open_code)),
    "local_outside": change(local),
    "global_outside": change(glob),
  }
  out["outside_ratio"] = out["local_outside"] / max(out["global_outside"], 1e-12)
  return out


def truncation_curve(
  model: LatentModel,
  psis: Sequence[float],
  *,
  n: int = 1000,
  classifier=None,
  real_images=None,
  seed: int = 2,
) -> list[dict[str, float]]:
  """Per ``psi``: classifier FD of ``n`` truncated samples against ``real_images`` (when
  given) and attribute diversity, the mean over attributes of the predicted
  distribution's entropy in bits."""
  from zoo.eval import metrics as em  # pylint: disable=g-import-not-at-top

  clf = _default_classifier(classifier)
  real_feats = None if real_images is None else clf.features(real_images)
  w = model.sample(n, seed)
  rows = []
  for p in psis:
    imgs = model.images(w, psi=p)
    pred = clf.predict(imgs)
    ent = []
    for v in pred.values():
      q = np.bincount(np.asarray(v)) / len(v)
      q = q[q > 0]
      ent.append(float(-(q * np.log2(q)).sum()))
    row = {"psi": float(p), "diversity_bits": float(np.mean(ent))}
    if real_feats is not None:
      row["FD"] = float(em.frechet_distance(clf.features(imgs), real_feats))
    rows.append(row)
  return rows


def line_chart_svg(
  xs, series: Mapping[str, Sequence[float]], *, xlabel: str, width: int = 560
) -> str:
  """A small SVG chart: one panel per series (its own y range) over the shared ``xs``."""
  xs = [float(x) for x in xs]
  ph, pad, gap = 150, 48, 24
  height = len(series) * (ph + gap) + pad
  lo_x, hi_x = min(xs), max(xs)

  def sx(x):
    return pad + (x - lo_x) / ((hi_x - lo_x) or 1) * (width - 2 * pad)

  parts = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
    'font-family="sans-serif" font-size="12">',
    f'<rect width="{width}" height="{height}" fill="white"/>',
  ]
  for i, (name, ys) in enumerate(series.items()):
    top = gap + i * (ph + gap)
    ys = [float(y) for y in ys]
    lo, hi = min(ys), max(ys)

    def sy(y, top=top, lo=lo, hi=hi):
      return top + ph - (y - lo) / ((hi - lo) or 1) * ph

    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
    parts += [
      f'<text x="{pad}" y="{top - 6}" font-weight="bold">{name}</text>',
      f'<line x1="{pad}" y1="{top + ph}" x2="{width - pad}" y2="{top + ph}" stroke="#888"/>',
      f'<line x1="{pad}" y1="{top}" x2="{pad}" y2="{top + ph}" stroke="#888"/>',
      f'<text x="{pad - 4}" y="{top + 4}" text-anchor="end">{hi:.4g}</text>',
      f'<text x="{pad - 4}" y="{top + ph}" text-anchor="end">{lo:.4g}</text>',
      f'<polyline points="{pts}" fill="none" stroke="#c0392b" stroke-width="2"/>',
    ]
    parts += [
      f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#c0392b"/>' for x, y in zip(xs, ys)
    ]
    parts += [
      f'<text x="{sx(x):.1f}" y="{top + ph + 14}" text-anchor="middle">{x:g}</text>' for x in xs
    ]
  parts.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">{xlabel}</text></svg>')
  return "\n".join(parts)
