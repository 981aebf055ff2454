"""Test doubles for the web app: a small model server that speaks movierec's HTTP API, and a
web app run in a thread.

:class:`FakeModelServer` answers ``POST /predictions/movierec`` and
``POST /predictions/movierec-bulk`` (alike) as the handler does for the kinds the page uses
(search, chart, new user with reasons, similar, and the empty body the health check sends),
with bearer keys read from its own key_file.json, and records each body it was sent and the
path it came on. Its ``mode`` makes it answer as TorchServe does while the model is loading
(``"starting"``); :meth:`FakeModelServer.stop` leaves nothing listening (``down``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from difflib import SequenceMatcher
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvicorn

from loadtest.server import free_ports
from web.__main__ import uvicorn_config
from web.app import create_app
from web.catalogue import Catalogue
from web.upstream import Upstream

# movie_id, title, genres, number of ratings
MOVIES = [
    (1, "Toy Story (1995)", ["Animation", "Comedy"], 452),
    (50, "Star Wars (1977)", ["Action", "Sci-Fi"], 583),
    (127, "Godfather, The (1972)", ["Crime", "Drama"], 413),
    (172, "Empire Strikes Back, The (1980)", ["Action", "Sci-Fi"], 367),
    (181, "Return of the Jedi (1983)", ["Action", "Sci-Fi"], 507),
    (100, "Fargo (1996)", ["Crime", "Drama"], 508),
    (9, "Casablanca (1942)", ["Drama", "Romance"], 243),
    (700, "Quiet Film (1957)", ["Drama"], 12),
    (666, "<img src=x onerror=alert(1)> (1999)", ["Comedy"], 30),
]
GENRES = ("Action", "Animation", "Comedy", "Crime", "Drama", "Romance", "Sci-Fi")
# The interactive endpoint and the bulk one; the fake answers both the same way.
INTERACTIVE, BULK = "/predictions/movierec", "/predictions/movierec-bulk"


def _year(title: str) -> int | None:
    return int(title[-5:-1]) if title.endswith(")") and title[-5:-1].isdigit() else None


def _entry(movie: tuple) -> dict:
    movie_id, title, genres, _ = movie
    return {"movie_id": movie_id, "title": title, "genres": genres}


def _error(status: int, field: str, message: str) -> tuple[int, dict]:
    return status, {"error": {"status": status, "field": field, "message": message}}


class FakeModelServer:
    """movierec's model server in miniature (module docstring); ``url`` and ``key_file``
    are what the web app is given."""

    def __init__(self, home: Path):
        self.home = home
        self.key_file = home / "key_file.json"
        self.bodies: list[object] = []
        self.paths: list[str] = []  # the path of each of ``bodies``
        self.mode = "ready"
        self.rotate_key("key-0")
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = fake.answer(self.path, self.headers.get("Authorization"), raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def rotate_key(self, key: str) -> None:
        """What the key supervisor does: a new inference key, written to the key file."""
        self.key = key
        self.key_file.write_text(json.dumps({"inference": {"key": key}, "API": {"key": "api"}}))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str, authorization: str | None, raw: bytes) -> tuple[int, dict]:
        if path not in (INTERACTIVE, BULK):
            return 404, {"code": 404, "type": "ModelNotFoundException", "message": "no model"}
        if authorization != f"Bearer {self.key}":
            return 400, {"code": 400, "type": "InvalidKeyException", "message": "bad token"}
        if self.mode == "starting":
            message = 'Model "movierec" has no worker to serve inference request.'
            return 503, {"code": 503, "type": "ServiceUnavailableException", "message": message}
        body = json.loads(raw)
        self.bodies.append(body)
        self.paths.append(path)
        if not body:
            return _error(400, "body", "empty request body")
        for field in ("search", "chart", "ratings", "similar_to"):
            if field in body:
                return getattr(self, f"_{field}")(body)
        return _error(400, "body", "no request kind recognised")

    def _kept(self, body: dict, exclude: set[int]) -> list[tuple]:
        genres, years = body.get("genres"), body.get("years")
        for genre in genres or []:
            if genre not in GENRES:
                return []
        return [
            m
            for m in MOVIES
            if m[0] not in exclude
            and (not genres or set(genres) & set(m[2]))
            and (not years or years[0] <= (_year(m[1]) or -1) <= years[1])
        ]

    def _search(self, body: dict) -> tuple[int, dict]:
        query = body["search"].lower()
        scored = [
            (SequenceMatcher(None, query, m[1].lower()[: len(query) + 2]).ratio(), m)
            for m in MOVIES
        ]
        found = [m for s, m in sorted(scored, key=lambda p: -p[0]) if s >= 0.6][: body["k"]]
        results = [{**_entry(m), "year": _year(m[1]), "ratings": m[3]} for m in found]
        return 200, {"query": body["search"], "results": results}

    def _chart(self, body: dict) -> tuple[int, dict]:
        if body.get("genres") and any(g not in GENRES for g in body["genres"]):
            return _error(400, "genres[0]", "unknown genre")
        kept = sorted(self._kept(body, set()), key=lambda m: -m[3])[: body["k"]]
        recs = [{**_entry(m), "score": m[3] / 100} for m in kept]
        return 200, {"chart": "popular", "recommendations": recs}

    def _ratings(self, body: dict) -> tuple[int, dict]:
        rated = {int(k): v for k, v in body["ratings"].items()}
        known = {m[0]: m for m in MOVIES}
        novelty = body.get("novelty", 0.0)
        kept = self._kept(body, set(rated))
        # Liked genres count, popularity less so as novelty grows.
        liked = {g for i, s in rated.items() if i in known and s >= 3 for g in known[i][2]}

        def score(m: tuple) -> float:
            return len(liked & set(m[2])) + (1 - 2 * novelty) * math.log(m[3])

        recs = []
        for m in sorted(kept, key=score, reverse=True)[: body["k"]]:
            entry = {**_entry(m), "score": round(score(m), 4), "rating": 3.5}
            if body.get("explain"):
                best = sorted((i for i in rated if i in known), key=lambda i: -rated[i])[:3]
                entry["because"] = [
                    {"movie_id": i, "title": known[i][1], "rating": rated[i]} for i in best
                ]
            recs.append(entry)
        unknown = [i for i in rated if i not in known]
        return 200, {"ranked_by": "ranking", "recommendations": recs, "unknown_movie_ids": unknown}

    def _similar_to(self, body: dict) -> tuple[int, dict]:
        known = {m[0]: m for m in MOVIES}
        movie = known.get(body["similar_to"])
        if movie is None:
            return _error(404, "similar_to", f"unknown movie id {body['similar_to']}")
        kept = [m for m in self._kept(body, {movie[0]}) if set(m[2]) & set(movie[2])]
        recs = [{**_entry(m), "score": 1.0} for m in kept[: body["k"]]]
        return 200, {"movie": _entry(movie), "recommendations": recs}


@contextmanager
def fake_model_server(home: Path) -> Iterator[FakeModelServer]:
    server = FakeModelServer(home)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def web_app(upstream: Upstream, catalogue: Catalogue) -> Iterator[str]:
    """The web app on a free loopback port, in a thread of this process; yields its URL."""
    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn_config(create_app(upstream, catalogue), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web app did not start on port {port}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
