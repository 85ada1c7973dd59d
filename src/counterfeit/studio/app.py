"""Counterfeit Studio: a small Starlette app, one HTML page and a JSON/PNG API for the same actions.

Every API handler runs in a worker thread behind one wrapper that turns refused input into a 4xx with a
one-line {"error": ...} and any other failure into a 500 with the same shape, so the server keeps serving.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.staticfiles import StaticFiles

from ..checkpoints import CheckpointError
from ..config import TOY_MODEL, ConfigError, RunConfig, make_config
from ..data import DataError
from ..runs import reached_nimg, training_process
from . import generate as gen
from . import latent_panel
from .jobs import RESUMABLE, Jobs, check_config, parse_options
from .params import MAX_BODY_BYTES, Params, StudioError, parse_body, run_file, run_path
from .playground import Playground
from .runs_view import list_runs, run_detail

log = logging.getLogger("counterfeit.studio")
STATIC = Path(__file__).parent / "static"
_USER_ERRORS = (ConfigError, DataError, CheckpointError, ValueError)


@dataclass
class Studio:
    """What the handlers share: the runs folder, training jobs, loaded models and playground sessions."""

    runs_dir: Path
    jobs: Jobs
    models: gen.ModelCache = field(default_factory=gen.ModelCache)
    playground: Playground = field(default_factory=Playground)
    # Model work in at most this many threads at once; more only fight over the same cores.
    compute: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(max(1, os.cpu_count() or 1)))


Handler = Callable[[Studio, Request, Params], Any]


def api(handler: Handler, body: bool = True) -> Callable:
    """Wrap a handler(studio, request, params): parameters from the query (GET) or a JSON body (POST), errors as JSON.

    `body=False` reads no body (the catch-all that answers 404/405 must answer so whatever was sent).
    """

    async def endpoint(request: Request) -> Response:
        try:
            if request.method == "POST" and body:
                ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
                # JSON only: a page on another site cannot send it without a CORS preflight, which we never grant.
                if ctype != "application/json":
                    raise StudioError("POST requests must send a JSON object with Content-Type: application/json", 415)
                params = Params(parse_body(await _read_body(request)))
            else:
                params = Params(dict(request.query_params))
            out = await run_in_threadpool(handler, request.app.state.studio, request, params)
            return out if isinstance(out, Response) else JSONResponse(out, headers={"Cache-Control": "no-store"})
        except StudioError as e:
            return JSONResponse({"error": str(e)}, e.status, headers=e.headers)
        except _USER_ERRORS as e:
            return JSONResponse({"error": str(e).splitlines()[0] if str(e) else type(e).__name__}, 400)
        except Exception as e:  # never a crash: log it and answer
            log.exception("studio request %s failed", request.url.path)
            return JSONResponse({"error": f"internal error ({type(e).__name__}: {str(e)[:200]}); the studio keeps running"}, 500)

    return endpoint


async def _read_body(request: Request) -> bytes:
    """The body, refused as soon as it passes MAX_BODY_BYTES (a missing Content-Length does not get around it)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise StudioError(f"request body is over {MAX_BODY_BYTES} bytes; send only the options", 413)
        chunks.append(chunk)
    return b"".join(chunks)


# ---- handlers: each checks its parameters, then calls the library through the panel modules ----


def options(studio: Studio, request: Request, params: Params) -> dict:
    """Menus for the page, from the registries: datasets, models, losses, playground remedies, limits."""
    from ..data import IDX_DATASETS, TOY_DATASETS
    from ..losses import LOSSES
    from ..models import MODELS
    from .jobs import MAX_KIMG, MAX_LIVE_JOBS
    from .playground import MAX_STEPS, REMEDIES

    params.done()
    models = {}
    for n, s in MODELS.items():
        cfg = make_config(model=n, data=next(iter(TOY_DATASETS)) if s.data_kind == "points" else None)  # what the form's empty fields give
        models[n] = {"summary": s.summary, "family": s.family, "data_kind": s.data_kind, "conditional": s.conditional,
                     "defaults": {"kimg": cfg.loop.total_kimg, "loss": cfg.loss.name if s.family == "gan" else None}}  # fmt: skip
    return {
        "datasets": [*IDX_DATASETS, *TOY_DATASETS], "toys": list(TOY_DATASETS), "models": models, "losses": list(LOSSES),
        "default_model": {"images": RunConfig().model.name, "points": TOY_MODEL},
        "remedies": list(REMEDIES), "limits": {"count": gen.MAX_COUNT, "kimg": MAX_KIMG, "live_jobs": MAX_LIVE_JOBS, "steps": MAX_STEPS},
        "runs_dir": str(studio.runs_dir),
    }  # fmt: skip


def runs(studio: Studio, request: Request, params: Params) -> dict:
    """The runs list and the studio's training jobs."""
    params.done()
    return list_runs(studio.runs_dir, studio.jobs)


def run(studio: Studio, request: Request, params: Params) -> dict:
    """One run's page data; `since` returns only stats rows from that index on."""
    since = params.int("since", 0, 0, 10**9)
    params.done()
    return run_detail(run_path(studio.runs_dir, request.path_params["name"]), studio.jobs, since)


def run_image(studio: Studio, request: Request, params: Params) -> Response:
    """A PNG from the run's samples folder (grids over training, reals)."""
    params.used.add("v")  # a cache-buster the page may add
    params.done()
    path = run_file(run_path(studio.runs_dir, request.path_params["name"]), "samples", request.path_params["file"])
    return FileResponse(path, media_type="image/png")


def model_info(studio: Studio, request: Request, params: Params) -> dict:
    """The newest model of a run: family, classes, z size, checkpoint."""
    ema = params.bool("ema", True)
    params.done()
    with studio.compute:
        return gen.run_info(studio.models.get(run_path(studio.runs_dir, request.path_params["name"]), ema))


def generate(studio: Studio, request: Request, params: Params) -> Response:
    """Samples as a PNG grid or a zip."""
    req = gen.parse_request(studio.runs_dir, params)
    with studio.compute:
        body, media, name = gen.render(studio.models, req)
    attach = req.fmt == "zip" or req.download
    headers = {"Content-Disposition": content_disposition("attachment" if attach else "inline", name), "Cache-Control": "no-store"}
    return Response(body, media_type=media, headers=headers)


def content_disposition(kind: str, filename: str) -> str:
    """A Content-Disposition header for any file name (RFC 6266): an ASCII fallback, and the UTF-8 name for browsers."""
    # Headers are Latin-1 on the wire, so a run renamed "mes chats été" broke the response; quotes would end the string.
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


def train(studio: Studio, request: Request, params: Params) -> dict:
    """Start a new training run with the CLI's options (validated by the same config code first)."""
    given = parse_options(params)
    params.done()
    check_config(given)
    return studio.jobs.start(given)


def resume(studio: Studio, request: Request, params: Params) -> dict:
    """Continue a run from its newest checkpoint (only --kimg and --device may change)."""
    run_dir = run_path(studio.runs_dir, request.path_params["name"])
    given = parse_options(params, RESUMABLE)
    params.done()
    job = studio.jobs.for_run(run_dir.name)
    if job is not None and job["alive"]:  # before the config checks: a run still starting has no checkpoint to resume from
        raise StudioError(f"{run_dir.name} is training already", 409)
    if (who := training_process(run_dir)) is not None:  # a trainer the studio did not start, from a terminal
        raise StudioError(f"{run_dir.name} is being trained by {who}, which the studio did not start; stop it there first", 409)
    cfg = check_config(given, run_dir)  # a kimg below what the run has reached is refused there
    reached = reached_nimg(run_dir)
    if reached >= cfg.loop.total_kimg * 1000:  # a job that would end at once, saying only "done"
        length = "the kimg asked for" if "kimg" in given else f"its planned {cfg.loop.total_kimg:g} kimg"
        raise StudioError(f"{run_dir.name} has reached {reached / 1000:g} kimg, {length}; give a larger kimg to train on", 409)
    return studio.jobs.start(given, resume=run_dir)


def stop_run(studio: Studio, request: Request, params: Params) -> dict:
    """Stop the run's training job: it saves a checkpoint and exits."""
    params.done()
    run_dir = run_path(studio.runs_dir, request.path_params["name"])
    name = run_dir.name
    job = studio.jobs.for_run(name)
    if job is None or not job["alive"]:
        if (who := training_process(run_dir)) is not None:
            raise StudioError(f"{name} is being trained by {who}, which the studio did not start; stop it with Ctrl-C there", 409)
        raise StudioError(f"{name} is not training (the studio only stops runs it started)", 409)
    return studio.jobs.stop(job["id"])


def jobs(studio: Studio, request: Request, params: Params) -> dict:
    """The studio's training jobs, newest first."""
    params.done()
    return {"jobs": studio.jobs.list()}


def stop_job(studio: Studio, request: Request, params: Params) -> dict:
    """Stop a job by id."""
    params.done()
    return studio.jobs.stop(request.path_params["job"])


def playground_new(studio: Studio, request: Request, params: Params) -> dict:
    """A new playground session."""
    s = studio.playground.create(params)
    with s.lock:
        return s.view(with_reals=True)


def playground_get(studio: Studio, request: Request, params: Params) -> dict:
    """A session's current view (with the reals)."""
    params.done()
    s = studio.playground.get(request.path_params["sid"])
    with s.lock, studio.compute:
        return s.view(with_reals=True)


def playground_step(studio: Studio, request: Request, params: Params) -> dict:
    """Train a session `steps` more steps and return its view."""
    from .playground import MAX_STEPS

    steps = params.int("steps", 10, 1, MAX_STEPS)  # 0 would let a page's training loop spin on requests that do nothing
    params.done()
    s = studio.playground.get(request.path_params["sid"])
    with s.lock, studio.compute:
        s.train(steps)
        return s.view()


def playground_reset(studio: Studio, request: Request, params: Params) -> dict:
    """Start a session over from its seed."""
    params.done()
    s = studio.playground.get(request.path_params["sid"])
    with s.lock:
        s.reset()
        return s.view(with_reals=True)


def latent_interpolate(studio: Studio, request: Request, params: Params) -> dict:
    """Frames of a walk between two seeds or classes."""
    with studio.compute:
        return latent_panel.interpolate(studio.models, studio.runs_dir, params)


def latent_arithmetic(studio: Studio, request: Request, params: Params) -> dict:
    """The pictures of an expression's operands and its result."""
    with studio.compute:
        return latent_panel.arithmetic(studio.models, studio.runs_dir, params)


def latent_dims(studio: Studio, request: Request, params: Params) -> dict:
    """A sample with a few z dimensions set by sliders."""
    with studio.compute:
        return latent_panel.dims(studio.models, studio.runs_dir, params)


def not_found(studio: Studio, request: Request, params: Params) -> dict:
    """Unknown API paths get a JSON 404 too; a known path asked with the wrong method gets a 405 naming the right one."""
    allowed = sorted({m for r in request.app.routes if isinstance(r, Route) and r.path != "/api/{rest:path}"
                      and r.matches(request.scope)[0] == Match.PARTIAL for m in (r.methods or ()) if m != "HEAD"})  # fmt: skip
    if allowed:
        raise StudioError(f"{request.url.path} takes {' or '.join(allowed)}, not {request.method}", 405, {"Allow": ", ".join(allowed)})
    raise StudioError(f"no API endpoint {request.method} {request.url.path}; see the README's Studio section", 404)


def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)


def create_app(runs_dir: str | Path, allowed_hosts: list[str] | None = None) -> Starlette:
    """The studio app over a runs folder; requests must name one of `allowed_hosts` (DNS-rebinding guard)."""
    runs_dir = Path(runs_dir).resolve()
    # Windows takes these from the registry, where some machines say text/plain: browsers then refuse the stylesheet.
    mimetypes.add_type("text/css", ".css")
    mimetypes.add_type("text/javascript", ".js")
    routes = [
        Route("/", _index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/options", api(options)),
        Route("/api/runs", api(runs)),
        Route("/api/runs/{name}", api(run)),
        Route("/api/runs/{name}/samples/{file}", api(run_image)),
        Route("/api/runs/{name}/model", api(model_info)),
        Route("/api/runs/{name}/resume", api(resume), methods=["POST"]),
        Route("/api/runs/{name}/stop", api(stop_run), methods=["POST"]),
        Route("/api/generate", api(generate)),
        Route("/api/train", api(train), methods=["POST"]),
        Route("/api/jobs", api(jobs)),
        Route("/api/jobs/{job}/stop", api(stop_job), methods=["POST"]),
        Route("/api/playground", api(playground_new), methods=["POST"]),
        Route("/api/playground/{sid}", api(playground_get)),
        Route("/api/playground/{sid}/step", api(playground_step), methods=["POST"]),
        Route("/api/playground/{sid}/reset", api(playground_reset), methods=["POST"]),
        Route("/api/latent/interpolate", api(latent_interpolate)),
        Route("/api/latent/arithmetic", api(latent_arithmetic)),
        Route("/api/latent/dims", api(latent_dims)),
        Route("/api/{rest:path}", api(not_found, body=False), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    hosts = allowed_hosts or ["127.0.0.1", "localhost", "::1", "[::1]"]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
                    exception_handlers={HTTPException: _http_error})  # fmt: skip
    app.state.studio = Studio(runs_dir, Jobs(runs_dir))
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 = any free one); a taken port is a one-line error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port or --host") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, ready: Callable[[str], None] | None = None) -> None:
    """Run the studio until Ctrl-C; `ready` gets the URL once the socket listens."""
    import torch
    import uvicorn

    # One torch thread per request: the server runs requests side by side, and on the busy 2-core machine a
    # playground step took 1.5 s with 2 threads against 57 ms with one (measured; see the README's Studio section).
    torch.set_num_threads(1)
    runs_dir = Path(runs_dir)
    for path in (runs_dir, runs_dir.parent):  # a typo deeper in the path would otherwise make a whole new tree
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--runs {runs_dir}: {path} is a file; give a folder (an existing one, or a new one inside one)")
    if not runs_dir.parent.is_dir():
        raise ConfigError(f"--runs {runs_dir}: {runs_dir.parent} does not exist; give an existing folder, or one inside it")
    sock = bind(host, port)  # before the folder is made: a refused start leaves nothing behind
    runs_dir.mkdir(exist_ok=True)
    local = host in ("127.0.0.1", "localhost", "::1")
    allowed = None if local else ["*"]  # bound to a network address: it is reached under names we cannot know
    server = uvicorn.Server(uvicorn.Config(create_app(runs_dir, allowed), log_level="warning", lifespan="off"))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    if ready:
        ready(url)
    server.run(sockets=[sock])
