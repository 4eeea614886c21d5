"""What every launcher shares: distributed init and one-line errors for bad input."""

import sys

from absl import app, logging


def _guarded(main):
  def wrapped(argv):
    from zoo.errors import ZooError  # pylint: disable=g-import-not-at-top
    from zoo.training.mesh import maybe_initialize_distributed  # pylint: disable=g-import-not-at-top

    logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines off the progress bar
    maybe_initialize_distributed()
    try:
      return main(argv)
    except ZooError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped


def run(main) -> None:
  """``absl.app.run`` with ZooError → ``error: <message>`` and exit status 2."""
  app.run(_guarded(main))


def check_mode(argv, mode: str, modes) -> str:
  """Rejects stray positional arguments and unknown ``--mode`` values (one-line errors)."""
  from zoo.errors import ConfigError  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; use --config.KEY=VALUE overrides")
  if mode not in modes:
    raise ConfigError(f"--mode={mode!r}, expected one of {', '.join(modes)}")
  return mode
