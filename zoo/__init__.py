"""zoo: a JAX/Flax functional model zoo of generative models."""
