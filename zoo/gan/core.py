"""The two-player train state and the alternating D-then-G update shared by every GAN.

State layout (a plain dict, so orbax, ``jax.tree`` and the growth surgery of
:mod:`zoo.gan.growth` see ordinary nested dicts)::

  {'g': {'params', 'opt_state'[, 'batch_stats']},
   'd': {'params', 'opt_state'[, 'batch_stats']},
   'g_ema': G params              # only when an EMA of G is kept
   'g_ema_collections': {...}     # G's batch statistics for the EMA params, when asked
  }

The growth stage of a progressive run is not a leaf of the state: the state's
shapes depend on it, so the loop records it in each checkpoint's metadata and
rebuilds the matching abstract state before restoring.

A family plugs into :func:`train_step` through an :class:`Objective`: how G turns
a batch into fakes, and the D and G losses (built from :mod:`zoo.losses`). One step:

1. ``n_critic`` times: G generates fakes (no gradient), D is updated on
   ``d_loss`` plus, every ``reg_interval``-th D update, ``reg_interval x`` its
   regulariser (lazy regularisation, StyleGAN2 Sec. 3.1).
2. G is updated on ``g_loss`` against the *updated* D, on the fakes of the last
   critic iteration: G runs forward once for both players (pix2pix's
   ``optimize_parameters``) and its gradient is pulled back through the saved
   ``jax.vjp``.
3. The EMA of G's params, when kept, moves toward the new params. A G with batch norm
   also needs batch statistics of its own for those params (the raw G's running
   averages describe other weights): with ``g_ema_collections`` the EMA params run
   forward on the step's inputs in training mode, which updates them as the raw G's
   running averages are updated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax
import jax.numpy as jnp
import optax

from zoo.losses import gan as gan_lib
from zoo.training.restore import generator_variables  # noqa: F401  (G for sampling: EMA if kept)

Array = jax.Array
State = dict
Metrics = dict

#: Variable collections of a network state that are not trained by its optimizer.
_NOT_VARIABLES = ("params", "opt_state")


class Objective(Protocol):
  """What a GAN family supplies to :func:`train_step` (all traced under jit).

  ``g_vars``/``d_vars`` are flax variable dicts (``{'params': ...[, 'batch_stats']}``).
  ``fake`` is whatever ``generate`` returns: an image array or a pytree of arrays
  (e.g. images plus a KL term that G's loss needs); ``g_loss`` is differentiated
  with respect to it.
  """

  def generate(self, g_vars, batch, rng, step) -> tuple[Any, Mapping[str, Any]]:
    """``(fake, updated_g_collections)``; differentiable in ``g_vars['params']``."""

  def d_loss(self, d_vars, batch, fake, rng, step) -> tuple[Array, tuple[Metrics, Mapping]]:
    """``(scalar loss, (metrics, updated_d_collections))``; ``fake`` carries no gradient."""

  def g_loss(self, d_vars, batch, fake, rng, step) -> tuple[Array, tuple[Metrics, Mapping]]:
    """``(scalar loss, (metrics, updated_d_collections))``."""


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of :func:`train_step`.

  Attributes:
    n_critic: D updates per G update.
    reg_interval: apply ``d_regularizer`` on every ``reg_interval``-th D update,
      scaled by ``reg_interval`` (1: every update, unscaled).
    ema_beta: per-step decay of G's EMA (see :func:`ema_beta`); None keeps no EMA.
  """

  n_critic: int = 1
  reg_interval: int = 1
  ema_beta: float | None = None

  def __post_init__(self):
    if self.n_critic < 1:
      raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")
    if self.reg_interval < 1:
      raise ValueError(f"reg_interval must be >= 1, got {self.reg_interval}")
    if self.ema_beta is not None and not 0.0 <= self.ema_beta < 1.0:
      raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")


# ---------------------------------------------------------------------------
# State.
# ---------------------------------------------------------------------------


def net_state(variables: Mapping[str, Any], tx: optax.GradientTransformation) -> dict:
  """``{'params', 'opt_state'[, other collections]}`` for one freshly initialised network."""
  out = {"params": variables["params"], "opt_state": tx.init(variables["params"])}
  out.update({k: v for k, v in variables.items() if k != "params"})
  return out


def net_variables(net: Mapping[str, Any], params=None) -> dict:
  """The flax variables of one network state (``params`` overrides its params)."""
  out = {"params": net["params"] if params is None else params}
  out.update({k: v for k, v in net.items() if k not in _NOT_VARIABLES})
  return out


def _collections(net: Mapping[str, Any]) -> dict:
  return {k: v for k, v in net.items() if k not in _NOT_VARIABLES}


def init_state(
  g_variables: Mapping[str, Any],
  d_variables: Mapping[str, Any],
  *,
  tx_g: optax.GradientTransformation,
  tx_d: optax.GradientTransformation,
  ema: bool = False,
  ema_collections: bool = False,
) -> State:
  """A fresh GAN state; with ``ema`` the EMA of G starts as a copy of G's params, and with
  ``ema_collections`` too its other collections (batch statistics) start as copies of G's."""
  state = {"g": net_state(g_variables, tx_g), "d": net_state(d_variables, tx_d)}
  if ema:
    state["g_ema"] = jax.tree.map(jnp.copy, g_variables["params"])
    if ema_collections:
      state["g_ema_collections"] = jax.tree.map(jnp.copy, _collections(g_variables))
  return state


# ---------------------------------------------------------------------------
# EMA and the Adam correction for lazy regularisation.
# ---------------------------------------------------------------------------


def ema_beta(*, batch_size: int, half_life_images: float) -> float:
  """Per-step EMA decay with a half-life given in images (StyleGAN's ``G_smoothing_kimg``).

  ``beta = 0.5 ** (batch_size / half_life_images)``: after ``half_life_images``
  images the old params weigh one half. ``half_life_images <= 0`` gives 0 (no smoothing).
  """
  if half_life_images <= 0:
    return 0.0
  return float(0.5 ** (batch_size / half_life_images))


def ema_update(ema_params, params, beta: float | Array):
  """``params + (ema - params) * beta`` leaf by leaf (StyleGAN's ``lerp(new, old, beta)``)."""
  return jax.tree.map(lambda e, p: p + (e - p) * beta, ema_params, params)


def lazy_adam_hyperparameters(
  learning_rate, b1: float, b2: float, *, interval: int
) -> tuple[Any, float, float]:
  """StyleGAN2's Adam correction for a regulariser applied every ``interval`` steps.

  With ``c = interval / (interval + 1)``: ``lr * c``, ``b1 ** c``, ``b2 ** c``
  (Karras et al. 2020, Appendix B / the reference's ``lazy_regularization``).
  ``learning_rate`` may be a float or an optax schedule.
  """
  if interval <= 1:
    return learning_rate, b1, b2
  c = interval / (interval + 1)
  lr = (lambda count: learning_rate(count) * c) if callable(learning_rate) else learning_rate * c
  return lr, b1**c, b2**c


# ---------------------------------------------------------------------------
# The step.
# ---------------------------------------------------------------------------


def _global_norm(tree) -> Array:
  return optax.tree.norm(tree)


def regularization_pattern(step: int, config: StepConfig) -> tuple[bool, ...] | None:
  """Which of ``step``'s critic iterations apply the lazy regulariser, as Python booleans.

  Pass it to :func:`train_step` as ``regularize`` and compile one program per pattern:
  the regulariser (R1 is a gradient of a gradient) then costs nothing on the steps that
  skip it, where a ``lax.cond`` inside one program makes every step pay for the branch
  it does not take (BENCHMARKS.md). ``None`` when every D update is regularised
  (``reg_interval <= 1``).
  """
  if config.reg_interval <= 1:
    return None
  n, k = config.n_critic, config.reg_interval
  return tuple((int(step) * n + i) % k == 0 for i in range(n))


def _regularised(
  d_loss_fn: Callable,
  regularizer: Callable | None,
  d_update: Array,
  interval: int,
  static: bool | None = None,
) -> Callable:
  """``d_loss_fn`` plus the lazily applied, interval-scaled regulariser; ``static``: whether
  this update applies it, known when tracing (else decided by ``lax.cond`` on ``d_update``)."""
  if regularizer is None:
    return d_loss_fn

  def total(params):
    loss, (metrics, collections) = d_loss_fn(params)
    apply, scale = gan_lib.lazy_regularization(d_update, interval=interval)

    def on():
      pen, m = regularizer(params)
      return scale * pen, dict(m)

    def off():  # the same metrics, zero: every program logs the same keys
      return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(on))

    if interval <= 1 or static is True:
      pen, m = on()
    elif static is False:
      pen, m = off()
    else:
      pen, m = jax.lax.cond(apply, on, off)
    return loss + pen, ({**metrics, **m, "D_reg": pen}, collections)

  return total


def train_step(
  state: State,
  batch: Any,
  rng: Array,
  step: Array,
  *,
  objective: Objective,
  tx_g: optax.GradientTransformation,
  tx_d: optax.GradientTransformation,
  config: StepConfig = StepConfig(),
  d_regularizer: Callable | None = None,
  regularize: tuple[bool, ...] | None = None,
) -> tuple[State, Metrics]:
  """One alternating update (see the module docstring); pure and jit-able.

  Args:
    state: the GAN state (layout above).
    batch: the step's real data (any pytree the objective understands).
    rng: this step's key. Critic iteration 0 passes it unchanged to ``generate``
      (so a one-critic family sees exactly the key the loop gave it).
    step: the global step (int32 scalar).
    objective: the family's losses, see :class:`Objective`.
    tx_g, tx_d: the players' optimizers.
    config: :class:`StepConfig`.
    d_regularizer: optional ``(d_vars, batch, fake, rng, step) -> (penalty, metrics)``
      (R1, R2, gradient penalty...), applied lazily per ``config.reg_interval``.
    regularize: :func:`regularization_pattern` of ``step`` (one static boolean per critic
      iteration), so that the program holds only the branch it runs; ``None`` decides
      inside the program (``lax.cond``), which any ``step`` may use.

  Returns:
    ``(new_state, metrics)``. Metrics: ``D`` and ``G`` (the players' objectives,
    D's including the scaled regulariser), their gradient norms, the objective's
    own metrics, and ``loss`` (= ``G``, NaN when either player's loss is not
    finite, so the loop's non-finite check covers both).
  """
  if regularize is not None and len(regularize) != config.n_critic:
    raise ValueError(f"regularize has {len(regularize)} entries for n_critic={config.n_critic}")
  step = jnp.asarray(step)
  g, d = state["g"], state["d"]
  g_collections = _collections(g)
  d_metrics: Metrics = {}
  for k in range(config.n_critic):
    r_gen = rng if k == 0 else jax.random.fold_in(rng, 1000 + k)
    r_d, r_reg = jax.random.split(jax.random.fold_in(rng, 2000 + k))

    def generate(params, r_gen=r_gen):
      fake, updated = objective.generate({"params": params, **g_collections}, batch, r_gen, step)
      return fake, dict(updated)

    if k == config.n_critic - 1:
      fake, g_vjp, g_updated = jax.vjp(generate, g["params"], has_aux=True)
    else:
      fake, _ = generate(g["params"])
    fake_sg = jax.lax.stop_gradient(fake)
    d_collections = _collections(d)

    def d_loss_fn(params, d_collections=d_collections, fake_sg=fake_sg, r_d=r_d):
      vars_ = {"params": params, **d_collections}
      loss, (metrics, updated) = objective.d_loss(vars_, batch, fake_sg, r_d, step)
      return loss, (metrics, dict(updated))

    regularizer = None
    if d_regularizer is not None:

      def regularizer(params, d_collections=d_collections, fake_sg=fake_sg, r_reg=r_reg):
        return d_regularizer({"params": params, **d_collections}, batch, fake_sg, r_reg, step)

    loss_fn = _regularised(
      d_loss_fn,
      regularizer,
      step * config.n_critic + k,
      config.reg_interval,
      None if regularize is None else bool(regularize[k]),
    )
    (d_loss, (d_metrics, d_updated)), d_grads = jax.value_and_grad(loss_fn, has_aux=True)(
      d["params"]
    )
    updates, d_opt = tx_d.update(d_grads, d["opt_state"], d["params"])
    d = {**d, **d_updated, "params": optax.apply_updates(d["params"], updates), "opt_state": d_opt}

  r_g = jax.random.fold_in(rng, 3000)
  d_vars = net_variables(d)

  def g_loss_fn(f):
    loss, (metrics, updated) = objective.g_loss(d_vars, batch, f, r_g, step)
    return loss, (metrics, dict(updated))

  (g_loss, (g_metrics, d_updated)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  updates, g_opt = tx_g.update(g_grads, g["opt_state"], g["params"])
  g = {**g, **g_updated, "params": optax.apply_updates(g["params"], updates), "opt_state": g_opt}
  d = {**d, **d_updated}

  new_state = {**state, "g": g, "d": d}
  if "g_ema" in state:
    beta = 0.0 if config.ema_beta is None else config.ema_beta
    new_state["g_ema"] = ema_update(state["g_ema"], g["params"], beta)
    if "g_ema_collections" in state:
      ema_vars = {**state["g_ema_collections"], "params": new_state["g_ema"]}
      _, ema_updated = objective.generate(ema_vars, batch, rng, step)
      new_state["g_ema_collections"] = {**state["g_ema_collections"], **dict(ema_updated)}

  finite = jnp.isfinite(d_loss) & jnp.isfinite(g_loss)
  metrics = {
    **d_metrics,
    **g_metrics,
    "loss": jnp.where(finite, g_loss, jnp.nan),
    "D": d_loss,
    "G": g_loss,
    "D_grad_norm": _global_norm(d_grads),
    "G_grad_norm": _global_norm(g_grads),
  }
  return new_state, metrics
