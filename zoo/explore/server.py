"""The explorer's web app: a FastAPI application over loaded run backends.

``create_app({name: backend})`` returns the ASGI app; ``serve`` runs it with uvicorn.
The page (``static/``) is plain HTML, CSS and JavaScript served by the same process:
nothing to build, nothing fetched from the network.

API (JSON in and out; images are PNG data URLs):

* ``GET /api/runs``: ``[{name, family, kind, ...}]``, what each run offers.
* ``POST /api/runs/{name}/{action}``: ``action`` is one of the run's kind:
  generator ``image`` / ``interpolate`` / ``features`` / ``attributes`` / ``mouth``;
  translate ``translate``; sketch ``sample`` / ``complete`` / ``interpolate``.

Bad requests (unknown run or action, a body that is not a JSON object, values out of
range, an image that does not decode, strokes too many or too large) are answered with
4xx and ``{"error": "<one line>"}``; nothing else (no traceback) leaves the server.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from zoo.errors import ZooError

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
MAX_BODY = 8 << 20  # bytes: a 2048-pixel PNG drawing fits

ACTIONS = {
  "generator": {
    "image": "image",
    "interpolate": "interpolate",
    "features": "features",
    "attributes": "compute_attributes",
    "mouth": "mouth",
  },
  "translate": {"translate": "translate"},
  "sketch": {"sample": "sample", "complete": "complete", "interpolate": "interpolate"},
}

_log = logging.getLogger("zoo.explore")


def create_app(backends: Mapping[str, Any]):
  """The FastAPI app serving ``backends`` (``{name: backend}``, already loaded)."""
  app = FastAPI(title="zoo explorer", docs_url=None, redoc_url=None, openapi_url=None)
  described = {name: {"name": name, **b.describe()} for name, b in backends.items()}

  def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

  @app.exception_handler(Exception)
  async def _unexpected(request, exc):  # pylint: disable=unused-argument
    _log.error("explore: %s on %s: %s", type(exc).__name__, request.url.path, exc)
    return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

  @app.get("/")
  def index():
    return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

  @app.get("/static/{name}")
  def static(name: str):
    if name not in _STATIC_FILES:  # a fixed list: no path is ever built from a request
      return error(404, f"no static file {name!r}")
    return FileResponse(os.path.join(STATIC, name), media_type=_STATIC_FILES[name])

  @app.get("/api/runs")
  def runs():
    return list(described.values())

  @app.post("/api/runs/{name}/{action}")
  async def act(name: str, action: str, request: Request):
    backend = backends.get(name)
    if backend is None:
      return error(404, f"no run named {name!r}; known: {', '.join(backends) or 'none'}")
    kind = described[name]["kind"]
    method = ACTIONS[kind].get(action)
    if method is None:
      return error(404, f"a {kind} run has no action {action!r}; it has {', '.join(ACTIONS[kind])}")
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
      return error(413, f"request body larger than {MAX_BODY >> 20} MiB")
    body = await request.body()
    if len(body) > MAX_BODY:
      return error(413, f"request body larger than {MAX_BODY >> 20} MiB")
    try:
      req = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
      return error(400, "the request body is not JSON")
    if not isinstance(req, dict):
      return error(400, "the request body must be a JSON object")
    try:
      out = await run_in_threadpool(getattr(backend, method), req)
    except (ZooError, ValueError, TypeError, KeyError) as e:
      # Backends check their input and raise ZooError; the others are a bad request that
      # slipped past a check (a string where a list belongs, ...): still the client's.
      message = str(e) if isinstance(e, ZooError) else f"bad request ({type(e).__name__}: {e})"
      return error(400, message)
    if action == "attributes":
      described[name].update(out)
    return out

  return app


def serve(app, *, host: str = "127.0.0.1", port: int = 8000, log=print) -> None:
  """Runs ``app`` with uvicorn until interrupted; prints the URL first."""
  import uvicorn  # pylint: disable=g-import-not-at-top

  shown = "localhost" if host in ("127.0.0.1", "::1") else host
  if log:
    log(f"[explore] serving on http://{shown}:{port}/  (Ctrl-C stops)")
    sys.stdout.flush()
  uvicorn.run(app, host=host, port=port, log_level="warning")
