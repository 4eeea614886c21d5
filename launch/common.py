"""What every launcher shares: distributed init, the config flag, and one-line errors.

Every failure caused by the user's input (a config key that does not exist, an unknown
config variant, a missing config file, a bad value, a workdir that cannot be used, a
file system that says no) ends the process with one ``error: <message>`` line on stderr
and exit status 2, without a traceback.
"""

import errno
import importlib
import os
import re
import sys

from absl import app, flags, logging

ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "train: resume a run whose data/optimisation settings differ from the new config, "
  "continuing with the new values (recorded in WORKDIR/history.jsonl). Architecture "
  "changes are always refused.",
)

MESH_MODEL = flags.DEFINE_integer(
  "mesh_model",
  1,
  "train: split the parameters and optimizer state of every large layer over groups of "
  "this many devices (a data x model mesh, fully sharded data parallelism) for models "
  "too large to replicate on each device; batches still split over every device. "
  "Must divide the device count. 1: replicate (data parallelism only).",
)

#: OSErrors that are the file system saying no (not bugs): reported in one line.
_USER_ERRNOS = {
  errno.EACCES,
  errno.EPERM,
  errno.EROFS,
  errno.ENOSPC,
  errno.EDQUOT,
  errno.ENOTDIR,
  errno.EISDIR,
  errno.ENOENT,
  errno.EEXIST,
  errno.ENAMETOOLONG,
}


def fail(message: str) -> None:
  """Prints ``error: <message>`` (one line) and exits with status 2.

  stderr is closed to later writers first: orbax's background threads print
  ``RuntimeError: Event loop is closed`` noise at interpreter exit after a failure.
  """
  line = " ".join(str(message).split())  # one line, whatever the message holds
  sys.stdout.flush()
  print(f"error: {line}", file=sys.stderr, flush=True)
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
  except OSError:  # pragma: no cover
    pass
  sys.exit(2)


def _config_error_line(e: BaseException, argv) -> str:
  """One line for an exception raised while loading ``--config`` or its overrides."""
  while isinstance(e, flags.Error) and e.__context__ is not None and e.__cause__ is None:
    e = e.__context__  # absl wraps the parser's exception
  text = str(e)
  m = re.search(r"No such file or directory: '([^']*)'", text)
  if isinstance(e, OSError) and m:
    return f"config file {m.group(1)!r} does not exist"
  if "Failed loading config file" in text:
    detail = [l.strip() for l in text.splitlines() if l.strip()][-1]
    return f"cannot load the config file: {detail}"
  if isinstance(e, (AttributeError, KeyError)):
    name = text.strip("\"' ")
    overrides = [
      a.split("=", 1)[0].lstrip("-") for a in argv if a.lstrip("-").startswith("config.")
    ]
    bad = (
      [o for o in overrides if o == f"config.{name}"]  # a top-level key before a nested one
      or [o for o in overrides if o.rsplit(".", 1)[-1] == name]
      or [f"config.{name}"]
    )
    key = bad[0].split(".", 1)[1]
    return f"unknown config key {key!r} (--{bad[0]}); see the config file for the keys"
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  last = re.sub(r"^(ValueError|TypeError): ", "", lines[-1]) if lines else type(e).__name__
  return f"bad --config: {last}"


def define_config(default: str, help_string: str):
  """``config_flags.DEFINE_config_file('config', default, ...)`` whose failures (an
  override of a key that does not exist, an unknown variant, a missing file: the default
  config is loaded, with the overrides, while the flag is defined) are one line, exit 2."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  try:
    return config_flags.DEFINE_config_file("config", default, help_string)
  except Exception as e:  # pylint: disable=broad-except  # ml_collections raises many types
    fail(_config_error_line(e, sys.argv))


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    context = e.__context__ or e.__cause__
    if context is not None and "config" in str(e).split(":", 1)[0]:
      fail(_config_error_line(context, argv))
    fail(str(e))
  except Exception as e:  # pylint: disable=broad-except  # a bad --config.KEY override
    fail(_config_error_line(e, argv))
  # ml_collections keeps a config file that failed to load as a placeholder that raises
  # on first use; report it now.
  value = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
  if type(value).__name__ == "_ErrorConfig":
    fail(_config_error_line(getattr(value, "_error"), argv))
  return rest


def _guarded(main):
  def wrapped(argv):
    from zoo.errors import ZooError  # pylint: disable=g-import-not-at-top
    from zoo.training.mesh import maybe_initialize_distributed  # pylint: disable=g-import-not-at-top

    logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines off the progress bar
    try:
      maybe_initialize_distributed()
      if MESH_MODEL.value != 1:
        from zoo.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top

        mesh_lib.set_default_model_axis(MESH_MODEL.value)
        mesh_lib.make_mesh()  # a model axis that does not divide the devices: one line now
      return main(argv)
    except ZooError as e:
      fail(str(e))
    except OSError as e:
      if e.errno not in _USER_ERRNOS:
        raise
      name = f" ({e.filename})" if e.filename else ""
      fail(f"{e.strerror or type(e).__name__}{name}")

  return wrapped


def run(main) -> None:
  """``absl.app.run`` with ZooError → ``error: <message>`` and exit status 2."""
  app.run(_guarded(main), flags_parser=_parse_flags)


def allow_config_change() -> bool:
  """The value of ``--allow_config_change`` (shared by every launcher)."""
  return bool(ALLOW_CONFIG_CHANGE.value)


def run_config(config_flag, workdir: str, *, log=print):
  """The config a command uses on ``workdir``.

  ``--config FILE`` given: that file with the command's ``--config.KEY`` overrides (the
  resume checks then compare it with the run's). Not given, on a workdir that holds a
  run's ``config.json``: that run's config with the overrides on top, so rerunning with
  ``--workdir`` alone resumes the run as it was trained. Otherwise the default file.
  """
  from zoo.training import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from zoo.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  flag = flags.FLAGS["config"]
  if flag.present or not os.path.isdir(workdir):
    return config_flag.value
  saved = ckpt_lib.read_run_config(workdir)
  if not saved:
    return config_flag.value
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  overrides = config_flags.get_override_values(flag)
  if log:
    log(
      f"using the run's config ({os.path.join(workdir, ckpt_lib.RUN_CONFIG)})"
      + (f" with {', '.join(sorted(overrides))} from the command line" if overrides else "")
      + "; --config FILE to use a config file instead"
    )
  return workdir_lib.run_config_overlay(config_flag.value, saved, overrides)


def check_mode(argv, mode: str, modes) -> str:
  """Rejects stray positional arguments and unknown ``--mode`` values (one-line errors)."""
  from zoo.errors import ConfigError  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; use --config.KEY=VALUE overrides")
  if mode not in modes:
    raise ConfigError(f"--mode={mode!r}, expected one of {', '.join(modes)}")
  return mode


def staged_gan_main(family: str, *, config: str, workdir: str):
  """Flags and ``main`` of a staged GAN launcher (ProGAN, StyleGAN): modes train, eval,
  sample and export over the entry points of ``zoo.tasks.<family>``, and the latent
  toolkit's modes (:func:`zoo.gan_tools.run_tool`)."""
  from zoo.gan_tools import TOOL_MODES  # pylint: disable=g-import-not-at-top

  modes = ("train", "eval", "sample", "export", *TOOL_MODES)
  config_flag = define_config(config, "Config file (path[:variant]).")
  workdir_flag = flags.DEFINE_string("workdir", workdir, "Checkpoints, logs and samples.")
  mode_flag = flags.DEFINE_string("mode", "train", f"One of {modes}.")
  num = flags.DEFINE_integer(
    "num", 64, "sample: images; toolkit modes: latents (default 8; judge: 500)."
  )
  seed = flags.DEFINE_integer("seed", 0, "sample and toolkit modes: latent seed.")
  output = flags.DEFINE_string(
    "output", "", "sample/export: output path; toolkit modes: folder (default WORKDIR/toolkit)."
  )
  tool = dict(
    psi=flags.DEFINE_float("psi", 1.0, "toolkit: truncation psi in [0, 1] (StyleGAN)."),
    psis=flags.DEFINE_string("psis", "1,0.85,0.7,0.5,0.3,0", "truncation: the psi columns."),
    edit_spec=flags.DEFINE_string(
      "edit", "", "edit: NAME=VALUE[:STRENGTH],... (e.g. mouth=smiling:1); animate: mouth."
    ),
    vectors=flags.DEFINE_string(
      "vectors", "", "attribute-vector CSV (default WORKDIR/attributes.csv)."
    ),
    attribute_images=flags.DEFINE_integer(
      "attribute_images", 10_000, "attributes: images to label."
    ),
    min_count=flags.DEFINE_integer(
      "min_count", 1000, "attributes: images a value needs for a vector."
    ),
    vector_method=flags.DEFINE_string(
      "vector_method",
      "mean",
      "attributes: 'mean' (mean latent of a value's images - mean of all) or 'regression' "
      "(its effect with the other attributes held fixed).",
    ),
    steps=flags.DEFINE_integer("steps", 8, "interpolate: images per row."),
    space=flags.DEFINE_string("space", "", "interpolate: 'w' (lerp, StyleGAN) or 'z' (slerp)."),
    layer=flags.DEFINE_integer("layer", -1, "features/animate: synthesis layer (-1: all / auto)."),
    frames=flags.DEFINE_integer("frames", 24, "animate: GIF frames."),
    strength=flags.DEFINE_float("strength", 1.0, "animate: edit strength at the widest mouth."),
    layers=flags.DEFINE_string(
      "layers",
      "",
      "edit/judge: the style range the attribute edit acts on (StyleGAN): coarse, middle, "
      "fine or LO-HI, e.g. 2-5 (default: every layer).",
    ),
  )

  def main(argv):
    mode = check_mode(argv, mode_flag.value, modes)
    wd = workdir_flag.value
    if mode in TOOL_MODES:
      from zoo import gan_tools  # pylint: disable=g-import-not-at-top

      n = num.value if flags.FLAGS["num"].present else None  # the mode's own default
      opts = {k: f.value for k, f in tool.items()}
      gan_tools.run_tool(mode, wd, num=n, seed=seed.value, output=output.value, **opts)
      return
    task = importlib.import_module(f"zoo.tasks.{family}")
    if mode == "train":
      task.train_and_evaluate(
        run_config(config_flag, wd), wd, allow_config_change=allow_config_change()
      )
    elif mode == "eval":
      task.evaluate(wd)
    elif mode == "sample":
      task.sample(wd, num=num.value, seed=seed.value, output=output.value)
    else:
      task.export(wd, output=output.value)

  return main


def text_gan_main(family: str, *, config: str, workdir: str):
  """Flags and ``main`` of a text-to-image launcher (the DCGAN, T2F): modes train, eval,
  generate, interpolate and export over the entry points of ``zoo.tasks.<family>``."""
  modes = ("train", "eval", "generate", "interpolate", "export")
  config_flag = define_config(config, "Config file (path[:variant]).")
  workdir_flag = flags.DEFINE_string("workdir", workdir, "Checkpoints, logs and samples.")
  mode_flag = flags.DEFINE_string("mode", "train", f"One of {modes}.")
  caption = flags.DEFINE_string(
    "caption", "a smiling person with curly red hair and round glasses", "generate/interpolate."
  )
  caption2 = flags.DEFINE_string("caption2", "a bald person with closed eyes", "interpolate.")
  num = flags.DEFINE_integer("num", 16, "generate: number of images.")
  steps = flags.DEFINE_integer("steps", 8, "interpolate: images per interpolation.")
  seed = flags.DEFINE_integer("seed", 0, "generate/interpolate: latent seed.")
  output = flags.DEFINE_string("output", "", "generate/interpolate/export: output path.")

  def main(argv):
    mode = check_mode(argv, mode_flag.value, modes)
    task = importlib.import_module(f"zoo.tasks.{family}")
    w = workdir_flag.value
    if mode == "train":
      task.train_and_evaluate(
        run_config(config_flag, w), w, allow_config_change=allow_config_change()
      )
    elif mode == "eval":
      task.evaluate(w)
    elif mode == "generate":
      task.generate(w, caption.value, num=num.value, seed=seed.value, output=output.value)
    elif mode == "interpolate":
      task.interpolate(
        w, caption.value, caption2.value, steps=steps.value, seed=seed.value, output=output.value
      )
    else:
      task.export(w, output=output.value)

  return main
