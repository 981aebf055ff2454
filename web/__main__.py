"""python -m web: serve the page on 127.0.0.1:8000 (``WEB_PORT`` or ``--port`` moves it).

    python -m web                                   # what `make serve` starts in the background
    python -m web --port 8001 --artifact artifacts/ml-1m
    python -m web --wait                            # until the page answers; prints its address
    python -m web --stop --pid-file logs/web.pid

The model server is found as the client finds it (``--url``, else ``$MOVIEREC_URL``, else
``inference_address`` of config.properties), and its key in key_file.json (``--key-file``, else
``$MOVIEREC_KEY_FILE``), read again at every call. Genres, decades and the star scale come from
``--artifact`` (:mod:`web.catalogue`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from client import find_url
from model import console

log = logging.getLogger("web")

DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"  # loopback only, like TorchServe's ports: nothing here is public


def page_url(host: str, port: int) -> str:
    """The page's address as a browser should open it."""
    return f"http://{host}:{port}/"


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether this web app (not just anything) answers on ``host:port``."""
    try:
        with urllib.request.urlopen(f"{page_url(host, port)}api/config", timeout=timeout) as r:
            return "rating" in json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


def wait(host: str, port: int, timeout: float) -> int:
    """Poll until the page answers; 0 and its address printed, or 1 after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(host, port):
            print(f"The page: {page_url(host, port)} (open it in a browser)")
            return 0
        time.sleep(0.2)
    log.error("the web app did not answer on %s within %.0f s", page_url(host, port), timeout)
    return 1


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running ``python -m web`` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"-m" in argv and argv[argv.index(b"-m") + 1 : argv.index(b"-m") + 2] == [b"web"]


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(pid_file: Path, timeout: float = 10.0) -> int:
    """Stop the web app named in ``pid_file`` (only if it is one); 0 when none runs now."""
    pid = _read_pid(pid_file)
    if pid is None or not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        log.error("web app %d did not stop", pid)
        return 1
    pid_file.unlink(missing_ok=True)
    print(f"stopped the web app (pid {pid})")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = console.parser("python -m web", __doc__)
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: loopback)")
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("WEB_PORT") or DEFAULT_PORT),
        help="port (default: $WEB_PORT, else 8000)",
    )
    p.add_argument("--allow-host", action="append", default=[], help="another Host name to serve")
    p.add_argument("--url", default=None, help="the model server's inference address")
    p.add_argument("--key-file", default=None, help="TorchServe's key_file.json")
    p.add_argument("--config", default="config.properties", help="TorchServe's config file")
    p.add_argument("--model", default="movierec", help="the model's name on the server")
    p.add_argument("--artifact", default="artifacts/ml-100k", help="the served artifact folder")
    p.add_argument(
        "--rating-step", type=float, default=None, help="stars' step (default: from --artifact)"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the model")
    p.add_argument("--pid-file", default=None, help="write the pid here (and remove it on exit)")
    p.add_argument("--stop", action="store_true", help="stop the web app of --pid-file")
    p.add_argument(
        "--wait", type=float, nargs="?", const=30.0, default=None, help="wait for the page (s)"
    )
    return p.parse_args(argv)


def uvicorn_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """How uvicorn serves the app: no Server header (nothing to advertise), no access lines
    (the page sends a request per keystroke and star; the model server's log and metrics
    count them), no proxy headers (nothing stands in front of it)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


def serve(args: argparse.Namespace) -> int:
    """Run the app with uvicorn until SIGTERM or SIGINT."""
    from web.app import create_app
    from web.catalogue import Catalogue
    from web.upstream import Upstream

    catalogue = Catalogue.from_artifact(args.artifact, args.rating_step)
    key_file = Path(args.key_file or os.environ.get("MOVIEREC_KEY_FILE", "key_file.json"))
    upstream = Upstream(
        args.url or find_url(args.config), key_file.resolve(), args.model, args.timeout
    )
    app = create_app(upstream, catalogue, [args.host, *args.allow_host])
    log.info(
        "page on %s; model server %s (key file %s); catalogue from %s: %d genres, "
        "stars %g-%g in steps of %g",
        page_url(args.host, args.port),
        upstream.url,
        upstream.key_file,
        catalogue.source,
        len(catalogue.genres),
        catalogue.rating_min,
        catalogue.rating_max,
        catalogue.rating_step,
    )
    server = uvicorn.Server(uvicorn_config(app, args.host, args.port))
    server.run()
    # uvicorn exits 0 after a signal, and 1 when it could not start (the port is taken).
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pid_file = Path(args.pid_file) if args.pid_file else None
    if args.stop:
        if pid_file is None:
            log.error("--stop needs --pid-file")
            return 2
        return stop(pid_file)
    if args.wait is not None:
        return wait(args.host, args.port, args.wait)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler that
    # was there before it: this one, so that the pid file below is removed and the exit is 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if pid_file is not None:
        running = _read_pid(pid_file)
        if running is not None and running != os.getpid() and _alive(running):
            log.error("a web app already runs (pid %d, %s)", running, pid_file)
            return 1
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        return serve(args)
    finally:
        if pid_file is not None and _read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
