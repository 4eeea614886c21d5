"""Sketch-RNN: train, then sample / evaluate / interpolate / complete with the trained run.

  python -m launch.sketch_rnn --config launch/configs/sketch_rnn.py --workdir DIR        # train
  python -m launch.sketch_rnn --workdir DIR --mode=sample --num=16 --temperature=0.4 --seed=1
  python -m launch.sketch_rnn --workdir DIR --mode=eval
  python -m launch.sketch_rnn --workdir DIR --mode=interpolate --index=3,7 --steps=8
  python -m launch.sketch_rnn --workdir DIR --mode=interpolate --input=a.json --input=b.json
  python -m launch.sketch_rnn --workdir DIR --mode=complete --input=mine.json --num=8
  python -m launch.sketch_rnn --workdir DIR --mode=complete --index=5 --prefix_points=12

Modes other than ``train`` read the run's ``config.json`` and latest checkpoint
(``--config`` is not used) and write into ``--output`` (default
``DIR/<mode>``); see :mod:`zoo.sketch`. ``--input`` is a JSON file (sketch-rnn-js
stroke-5 rows or stroke-3 rows) or ``FILE.npz:split:index``; without it,
sketches come from the run's data set (``--split``, ``--index``).
"""

import sys

from absl import flags

from launch import common

_CONFIG = common.define_config(
  "launch/configs/sketch_rnn.py", "Config file (path[:variant]); train mode only."
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/sketch_rnn", "Checkpoints, logs and samples.")
_MODE = flags.DEFINE_string("mode", "train", "train | sample | eval | interpolate | complete")
_NUM = flags.DEFINE_integer(
  "num", None, "Sketches to draw (sample: 16) or candidates (complete: 8)."
)
_TEMPERATURE = flags.DEFINE_float(
  "temperature", None, "Sampling temperature > 0 (default: the run's sample_temperature)."
)
_GREEDY = flags.DEFINE_bool("greedy", False, "Most likely pen state / mixture / offset.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (same seed, same drawings).")
_INPUT = flags.DEFINE_multi_string(
  "input", [], "Sketch file: drawing.json or data.npz:split:index (repeat for interpolate)."
)
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (default: WORKDIR/<mode>).")
_SPLIT = flags.DEFINE_string("split", "test", "Data-set split for --index.")
_INDEX = flags.DEFINE_list(
  "index", ["0", "1"], "Data-set sketch indices (interpolate: two; complete: the first)."
)
_STEPS = flags.DEFINE_integer("steps", 8, "Interpolation steps (>= 2).")
_INTERPOLATION = flags.DEFINE_string("interpolation", "slerp", "slerp | linear")
_PREFIX_POINTS = flags.DEFINE_integer(
  "prefix_points",
  0,
  "complete: keep the first k points (0: all of --input, half of a data-set sketch).",
)
_LATENT = flags.DEFINE_string(
  "latent",
  "prefix",
  "complete, conditional models: z from the encoded prefix | a posterior sample | the prior.",
)


def _indices():
  from zoo.errors import ConfigError  # pylint: disable=g-import-not-at-top

  try:
    return [int(i) for i in _INDEX.value]
  except ValueError:
    raise ConfigError(f"--index must be integers, got {','.join(_INDEX.value)!r}") from None


def main(argv):
  from zoo import sketch  # pylint: disable=g-import-not-at-top

  mode, workdir = common.check_mode(argv, _MODE.value, sketch.MODES), _WORKDIR.value
  common_kw = dict(temperature=_TEMPERATURE.value, greedy=_GREEDY.value, seed=_SEED.value)
  if mode == "train":
    from zoo.tasks import sketch_rnn  # pylint: disable=g-import-not-at-top

    sketch_rnn.train_and_evaluate(
      common.run_config(_CONFIG, workdir), workdir, allow_config_change=common.allow_config_change()
    )
  elif mode == "sample":
    res = sketch.run_sample(
      workdir, output=_OUTPUT.value, num=16 if _NUM.value is None else _NUM.value, **common_kw
    )
    print(
      f"step {res['step']}: wrote {len(res['sketches'])} samples (svg, gif, json, "
      f"samples.png) to {res['output']}"
    )
  elif mode == "eval":
    res = sketch.run_eval(workdir)
    for split, metrics in res["results"].items():
      print(f"step {res['step']} {split}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"TensorBoard scalars in {res['tb']}")
  elif mode == "interpolate":
    res = sketch.run_interpolate(
      workdir,
      inputs=_INPUT.value,
      split=_SPLIT.value,
      indices=_indices(),
      steps=_STEPS.value,
      mode=_INTERPOLATION.value,
      output=_OUTPUT.value,
      **common_kw,
    )
    print(
      f"step {res['step']}: wrote a {len(res['interpolation'].sketches)}-step "
      f"{res['interpolation'].mode} interpolation to {res['output']}"
    )
  elif mode == "complete":
    res = sketch.run_complete(
      workdir,
      inputs=_INPUT.value,
      split=_SPLIT.value,
      index=(_indices() or [0])[0],
      prefix_points=_PREFIX_POINTS.value,
      num=8 if _NUM.value is None else _NUM.value,
      latent=_LATENT.value,
      output=_OUTPUT.value,
      **common_kw,
    )
    print(
      f"step {res['step']}: wrote {len(res['candidates'])} completions of a "
      f"{len(res['prefix'])}-point prefix to {res['output']}"
    )
  sys.stdout.flush()


if __name__ == "__main__":
  common.run(main)
