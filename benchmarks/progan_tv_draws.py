"""Probe: how far a trained ProGAN run's attribute balance is from the issue's 0.1 TV
goal, over several latent draws (README: the adversarial core and ProGAN).

  python benchmarks/progan_tv_draws.py runs/progan [draws]

Needs a trained face classifier (runs/face_classifier or $ZOO_FACE_CLASSIFIER). For each
draw of ``eval.num_samples`` latents of the EMA generator at the latest step, prints the
classifier FD and per-attribute total-variation distances against the run's real faces,
as training's evaluation computes them; draw 0 is the latents that evaluation uses.
"""

import sys

import jax

from zoo.eval import metrics as em
from zoo.tasks import progan


def main(workdir: str, draws: int) -> None:
  task, state, step = progan.restore_state(workdir, fd="train")
  clf, real_feats, real_pred = task._fd_judge()  # pylint: disable=protected-access
  n = task.config.eval.num_samples
  for d in range(draws):
    z = task.generator_inputs(jax.random.key(task.config.seed + 2 + 1000 * d), n)
    fake = task.generate(state, z, step)
    tv = em.attribute_tv_distance(clf.predict(fake), real_pred)
    fd = float(em.frechet_distance(clf.features(fake), real_feats))
    worst = max((k for k in tv if k != "max"), key=tv.get)
    print(
      f"step {step} draw {d}: FD {fd:.0f}, max TV {tv[worst]:.3f} ({worst}); "
      + ", ".join(f"{k} {v:.3f}" for k, v in tv.items() if k != "max"),
      flush=True,
    )


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
