"""A tiny regression task for testing the generic loop without any real model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass
class ToyTask:
  batch_size: int = 8
  lr: float = 0.2
  nan_at: int = -1  # make the loss NaN from this step on (tests the non-finite stop)
  dim: int = 3
  process_index: int = 0
  process_count: int = 1
  name: str = "toy"

  def __post_init__(self):
    self.tx = optax.adam(self.lr)
    self.true_w = np.arange(1, self.dim + 1, dtype=np.float32)
    self.evaluated = []

  def init_state(self, rng):
    params = {"w": jax.random.normal(rng, (self.dim,)) * 0.1, "b": jnp.zeros(())}
    return {"params": params, "opt_state": self.tx.init(params)}

  def batch_size_at(self, step):
    return self.batch_size

  def batch(self, step):
    n = self.batch_size_at(step)
    r = np.random.default_rng([7, step])
    x = r.normal(size=(n, self.dim)).astype(np.float32)
    y = (x @ self.true_w + 0.5).astype(np.float32)
    per = n // self.process_count
    sl = slice(self.process_index * per, (self.process_index + 1) * per)
    return {"x": x[sl], "y": y[sl]}

  def train_batches(self, start_step):
    step = start_step
    while True:
      yield self.batch(step)
      step += 1

  def train_step(self, state, batch, rng, step):
    noise = 1e-3 * jax.random.normal(rng, ())  # makes the RNG matter for resume tests

    def loss_fn(p):
      pred = batch["x"] @ p["w"] + p["b"] + noise
      loss = jnp.mean((pred - batch["y"]) ** 2)
      return jnp.where(step >= self.nan_at, jnp.nan, loss) if self.nan_at >= 0 else loss

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    return (
      {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state},
      {"loss": loss},
    )

  def evaluate(self, state, step):
    self.evaluated.append(step)
    return {"valid/w_err": float(jnp.sum((state["params"]["w"] - self.true_w) ** 2))}

  def write_samples(self, state, step, workdir, writer):
    pass


@dataclasses.dataclass
class ToyStagedTask(ToyTask):
  """ToyTask in stages: stage s adds a weight vector ``w_s`` and has its own batch size."""

  stage_steps: int = 5
  num_stages: int = 3
  batch_sizes: tuple = (8, 4, 8)
  name: str = "toy_staged"

  def __post_init__(self):
    super().__post_init__()
    self.grown = []
    self.sampled = []

  def stage_at(self, step):
    return min(step // self.stage_steps, self.num_stages - 1)

  def init_state(self, rng, stage):
    params = {
      f"w_{k}": jax.random.normal(jax.random.fold_in(rng, k), (self.dim,)) * 0.1
      for k in range(stage + 1)
    }
    params["b"] = jnp.zeros(())
    return {"params": params, "opt_state": self.tx.init(params)}

  def grow(self, state, rng, stage):
    self.grown.append(stage)
    fresh = self.init_state(rng, stage)
    params = dict(fresh["params"], **state["params"])  # old leaves copied unchanged
    return {"params": params, "opt_state": self.tx.init(params)}

  def batch_size_at(self, step):
    return self.batch_sizes[self.stage_at(step)]

  def train_step(self, state, batch, rng, step, stage):
    assert batch["x"].shape[0] == self.batch_sizes[stage]
    noise = 1e-3 * jax.random.normal(rng, ())

    def loss_fn(p):
      w = sum(p[f"w_{k}"] for k in range(stage + 1)) / (stage + 1)
      return jnp.mean((batch["x"] @ w + p["b"] + noise - batch["y"]) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    return (
      {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state},
      {"loss": loss},
    )

  def evaluate(self, state, step):
    self.evaluated.append(step)
    return {}

  def write_samples(self, state, step, workdir, writer):
    self.sampled.append(step)
