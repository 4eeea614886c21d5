"""The explorer: ``python -m launch.explore --workdir RUN [--workdir RUN ...] [--runs FOLDER]``.

Serves a local web page (http://localhost:PORT/) over the given runs of any launcher:
generators (StyleGAN, ProGAN, T2F, DCGAN-CLS), pix2pix (draw and translate) and
Sketch-RNN (draw and complete). It listens on 127.0.0.1 only unless ``--host`` says
otherwise. Each run is loaded and its generation functions compiled before the URL is
printed.
"""

from absl import flags

from launch import common

_WORKDIRS = flags.DEFINE_multi_string("workdir", [], "A run to serve (repeatable).")
_RUNS = flags.DEFINE_string("runs", "", "Serve every run found in this folder (e.g. runs/).")
_HOST = flags.DEFINE_string(
  "host", "127.0.0.1", "Address to listen on; anything but localhost opens the server to others."
)
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on.")


def main(argv):
  from zoo.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from zoo.explore import backends, server  # pylint: disable=g-import-not-at-top

  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; give runs with --workdir or --runs")
  if not 0 < _PORT.value < 65536:
    raise ConfigError(f"--port={_PORT.value} must be in 1..65535")
  workdirs = list(_WORKDIRS.value)
  if _RUNS.value:
    found = backends.find_runs(_RUNS.value)
    if not found:
      raise ConfigError(f"no runs the explorer can show under {_RUNS.value!r}")
    workdirs += [w for w in found if w not in workdirs]
  if not workdirs:
    raise ConfigError("no runs: give --workdir RUN (repeatable) or --runs FOLDER")
  loaded = {
    name: backends.load_backend(w, log=print)
    for name, w in zip(backends.run_names(workdirs), workdirs)
  }
  if _HOST.value not in ("127.0.0.1", "localhost", "::1"):
    print(f"[explore] warning: listening on {_HOST.value}: anyone who can reach it can use it")
  server.serve(server.create_app(loaded), host=_HOST.value, port=_PORT.value)


if __name__ == "__main__":
  common.run(main)
