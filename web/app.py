"""The ASGI app: the page's static files and its JSON routes, every answer with security headers.

    GET  /                 the page (web/static/index.html)
    GET  /static/...       its script, style sheet and icon
    GET  /api/config       genres, decades and the star scale (:class:`~web.catalogue.Catalogue`)
    GET  /api/health       {"state": "ready"} or the model server's state, with a message
    POST /api/search       title suggestions        \
    POST /api/chart        the popular chart         |  bodies: :mod:`web.validation`;
    POST /api/recommend    a person's list           |  answers: the model server's
    POST /api/similar      more like one movie      /

Errors are JSON, ``{"error": {"status", "field", "message"}}`` (plus ``"state"`` when the model
server gave no answer, :mod:`web.upstream`): 400 for a body the page would never send, 404, 405,
413 for a body over :data:`~web.validation.MAX_BODY_BYTES`, 415 for one that is not JSON, 503
while the model server is down or starting, 502 when it failed. Nothing answers 500: an
unexpected exception is logged and answered 502 as the model server's failure would be.

Every answer carries a Content-Security-Policy that allows this origin's own script, style and
images and nothing else (no inline script or style, no framing), ``X-Content-Type-Options:
nosniff`` and ``Referrer-Policy: no-referrer``; API answers are never cached. Only requests
naming a loopback host (or the host the app binds) are served, which keeps another site from
reaching this app through DNS rebinding.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.catalogue import Catalogue
from web.upstream import Upstream, UpstreamError
from web.validation import MAX_BODY_BYTES, ROUTES, Builder, RequestError, decode_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",  # frame-ancestors' older equivalent
    "cross-origin-opener-policy": "same-origin",
}
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every response (static files and
    errors included), and ``Cache-Control: no-store`` to API answers."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error_response(status: int, field: str | None, message: str) -> JSONResponse:
    """The JSON error every route answers with."""
    return JSONResponse(
        {"error": {"status": status, "field": field, "message": message}}, status_code=status
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes, and refused
    (415) unless it is declared JSON: a form posted from another site cannot be."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, "content-type", "send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body", f"{int(declared)} bytes exceed the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body", f"more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404 no such route or file, 405 wrong method), as JSON."""
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    return error_response(status, None, getattr(exc, "detail", str(exc)))


async def unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its trace; the page gets a message, never a 500 with a trace."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(502, None, f"the web app failed: {type(exc).__name__}")


def create_app(upstream: Upstream, catalogue: Catalogue, hosts: list[str] | None = None) -> ASGIApp:
    """The web app over ``upstream`` (the model server) and ``catalogue``.

    Parameters
    ----------
    upstream : Upstream
        Where the routes' requests go.
    catalogue : Catalogue
        Genres, decades and the star scale, for ``/api/config`` and for checking ratings.
    hosts : list of str, optional
        Host names requests may name besides the loopback ones (e.g. the address bound).

    Returns
    -------
    ASGI app
        Starlette's app inside :class:`SecurityHeaders`, outermost so that even Starlette's
        own last-resort error answers carry the headers.
    """

    def model_route(build: Builder) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of one model route: read, check, ask the model server, answer."""

        async def endpoint(request: Request) -> Response:
            try:
                body = build(decode_json(await read_body(request)), catalogue)
                answer = await run_in_threadpool(upstream.predict, body)
            except RequestError as exc:
                return error_response(exc.status, exc.field, exc.message)
            except UpstreamError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status)
            except Exception as exc:  # a bug: logged with its trace, answered without one
                return await unexpected(request, exc)
            return JSONResponse(answer)

        return endpoint

    async def config(request: Request) -> Response:
        return JSONResponse(catalogue.to_json())

    async def health(request: Request) -> Response:
        problem = await run_in_threadpool(upstream.state)
        if problem is None:
            return JSONResponse({"state": "ready", "message": "The model server is ready"})
        return JSONResponse({"state": problem.state, "message": problem.message})

    async def index(request: Request) -> Response:
        # no-cache: a new version of the page is picked up at the next load.
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    routes = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/api/config", config, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        *(Route(path, model_route(build), methods=["POST"]) for path, build in ROUTES.items()),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    trusted = Middleware(TrustedHostMiddleware, allowed_hosts=[*LOOPBACK_HOSTS, *(hosts or [])])
    app = Starlette(
        routes=routes,
        middleware=[trusted],
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )
    return SecurityHeaders(app)
