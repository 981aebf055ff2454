"""Live fuzz run: malformed requests mixed with valid ones against a real TorchServe and the
web app in front of it.

    python -m loadtest.scenarios.fuzz      # 2,000 malformed + 500 valid, 8 threads, each side
    make fuzz                              # the same

Starts a private TorchServe on free ports serving ``model_store/movierec.mar`` (see
:mod:`loadtest.server`) and sends, from 8 concurrent threads so that TorchServe batches bad and
good requests together: bodies that are not JSON, not UTF-8, truncated, deeply nested, of the
wrong type, with NaN/Infinity, negative, huge, float or boolean ids, huge or zero k, unknown
fields, bad search queries, charts, years, novelty and explain values, empty bodies, wrong
content types, and bodies over the size limit; and valid requests (ratings, lists at several
novelty values, explained lists, title searches, charts) whose right answer is computed offline
from the archive's own artifact. It passes when no
answer is a 5xx, every malformed request gets a 4xx with a JSON error (TorchServe's own 413 for
oversized bodies excepted), every valid request gets its right answer, and ``/ping`` is healthy
at the end.

The web app (``python -m web``, in front of that TorchServe) gets the same treatment on its own
JSON routes (``/api/search``, ``/api/chart``, ``/api/recommend``, ``/api/similar``): bodies that
are not JSON or not UTF-8, truncated, deeply nested, NaN, of the wrong type, with unknown or
missing fields, out-of-range stars, novelty and years, too many ratings, over its size limit,
and with the wrong content type, mixed with valid requests whose movies must be those
TorchServe lists for the same request. It passes when no answer is a 5xx, every malformed
request gets a 4xx with a JSON error and a message, and every valid one a 200 with the right
movies. Prints the counts; exits 1 otherwise. Every loop is bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import sys
import tempfile
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from loadtest.run import find_archive, parser
from loadtest.server import ServerError, endpoints, local_torchserve
from model.recommender import Recommender
from web import validation
from web.catalogue import Catalogue
from web.local import WebError, local_web

log = logging.getLogger("loadtest.scenarios.fuzz")


def malformed(rng: np.random.Generator, user: int, movie: int) -> tuple[bytes, str]:
    """One bad request: ``(body, content type)``."""
    json_type = "application/json"
    depth = int(rng.integers(50, 5000))
    nested = ("[" * depth + str(user) + "]" * depth).encode()  # deeper than Python's recursion
    cases = [
        (b"", json_type),
        (b"{", json_type),
        (b'{"user_id": 1, "k": ', json_type),
        (b"\xff\xfe\x00garbage", json_type),
        (nested, json_type),
        (b'{"user_id": NaN, "movie_id": 1}', json_type),
        (b'{"user_id": Infinity, "k": 5}', json_type),
        (
            json.dumps({"user_id": -int(rng.integers(1, 10**6)), "movie_id": movie}).encode(),
            json_type,
        ),
        (json.dumps({"user_id": 2**64 + int(rng.integers(0, 10)), "k": 3}).encode(), json_type),
        (json.dumps({"user_id": float(user), "movie_id": movie}).encode(), json_type),
        (json.dumps({"user_id": True, "movie_id": movie}).encode(), json_type),
        (json.dumps({"user_id": str(user), "movie_id": movie}).encode(), json_type),
        (json.dumps({"user_id": user, "k": int(rng.integers(10**3, 10**12))}).encode(), json_type),
        (json.dumps({"user_id": user, "k": 0}).encode(), json_type),
        (json.dumps({"user_id": user, "k": -3}).encode(), json_type),
        (json.dumps({"user_id": user, "movie": movie}).encode(), json_type),
        (json.dumps({"user_id": 10**9 + int(rng.integers(0, 1000)), "k": 3}).encode(), json_type),
        (json.dumps({"pairs": [[user, movie]] * 10_001}).encode(), json_type),
        (json.dumps({"pairs": [[user]]}).encode(), json_type),
        (json.dumps({"pairs": "1,2"}).encode(), json_type),
        (json.dumps({"ratings": {str(movie): 99}}).encode(), json_type),
        (json.dumps({"ratings": {"x": 3}}).encode(), json_type),
        (json.dumps({"ratings": []}).encode(), json_type),
        (json.dumps({"similar_to": None}).encode(), json_type),
        (json.dumps({"user_id": user, "genres": ["No Such Genre"]}).encode(), json_type),
        (json.dumps({"search": int(rng.integers(0, 100))}).encode(), json_type),
        (json.dumps({"search": ""}).encode(), json_type),
        (json.dumps({"search": "x" * int(rng.integers(201, 5000))}).encode(), json_type),
        (json.dumps({"search": ["heat"], "k": 3}).encode(), json_type),
        (json.dumps({"chart": "newest"}).encode(), json_type),
        (json.dumps({"chart": "popular", "years": [2000, 1990]}).encode(), json_type),
        (json.dumps({"chart": "popular", "years": [1990]}).encode(), json_type),
        (json.dumps({"user_id": user, "years": ["1990", 1999]}).encode(), json_type),
        (
            json.dumps({"user_id": user, "novelty": float(rng.uniform(1.01, 100))}).encode(),
            json_type,
        ),
        (json.dumps({"user_id": user, "novelty": "surprising"}).encode(), json_type),
        (b'{"similar_to": 1, "novelty": NaN}', json_type),
        (json.dumps({"ratings": {str(movie): 4}, "explain": "true"}).encode(), json_type),
        (json.dumps({"similar_to": movie, "explain": True}).encode(), json_type),
        (json.dumps([user, movie]).encode(), json_type),
        (b"null", json_type),
        (b'"just a string"', json_type),
        # JSON sent as text/plain is accepted on purpose (TorchServe hands it over as text).
        (f"user {user} movie {movie}".encode(), "text/plain"),
        (b"user_id=1&movie_id=2", "application/x-www-form-urlencoded"),
        (
            bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)),
            "application/octet-stream",
        ),
        (b"x" * (1_048_576 + 10), json_type),  # over max_request_size
    ]
    return cases[int(rng.integers(0, len(cases)))]


def valid(rng: np.random.Generator, rec: Recommender) -> tuple[dict, object]:
    """One good request and its right answer, computed offline: a rating, a top-5 (some at a
    novelty above 0, some explained), a title search or a chart."""
    vocab = rec.vocab
    u = int(rng.integers(0, vocab.num_users))
    i = int(rng.integers(0, vocab.num_items))
    user_id, movie_id = int(vocab.user_ids[u]), int(vocab.movie_ids[i])
    draw = rng.random()
    if draw < 0.4:
        rating = float(rec.scorer.predict_indices(np.array([u]), np.array([i]))[0])
        return {"user_id": user_id, "movie_id": movie_id}, round(rating, 4)
    if draw < 0.8:
        novelty = float(rng.choice([0.0, 0.5, 1.0]))
        body: dict = {"user_id": user_id, "k": 5}
        if novelty:
            body["novelty"] = novelty
        if rng.random() < 0.5:
            body["explain"] = True
        items, _ = rec.scorer.top_k_indices(np.array([u]), 5, novelty=np.array([novelty]))
        return body, [int(vocab.movie_ids[j]) for j in items[0] if j >= 0]
    if draw < 0.9:
        query = str(vocab.titles[i])
        return {"search": query, "k": 3}, [m.movie_id for m in rec.search(query, 3)]
    (chart,) = rec.chart(5)
    return {"chart": "popular", "k": 5}, [m.movie_id for m in chart.movies]


def _post(
    url: str, token: str | None, body: bytes, content_type: str, path: str = "/predictions/movierec"
) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException):
        # TorchServe (and the web app) may close the connection while refusing an oversized
        # body.
        limit = 1_048_576 if token is not None else validation.MAX_BODY_BYTES
        return 413 if len(body) > limit else 0, b""
    finally:
        conn.close()


def _check_valid(status: int, raw: bytes, body: dict, expected: object) -> str | None:
    if status != 200:
        return f"valid request {body} got HTTP {status}: {raw[:200]!r}"
    answer = json.loads(raw)
    if "movie_id" in body:
        return (
            None if abs(answer["rating"] - expected) <= 1e-3 else f"{body}: {answer} != {expected}"
        )
    got = [r["movie_id"] for r in answer.get("recommendations", answer.get("results", []))]
    return None if got == expected else f"{body}: list {got} != {expected}"


def run(
    url: str, token: str, rec: Recommender, bad: int, good: int, threads: int, seed: int
) -> dict:
    """Send the mix; return counts and problems."""
    rng = np.random.default_rng(seed)
    users, movies = rec.vocab.user_ids, rec.vocab.movie_ids
    # (kind, raw body, content type, the body as sent (valid ones), the expected answer)
    jobs: list[tuple[str, bytes, str, dict | None, object]] = []
    for _ in range(bad):
        raw, ctype = malformed(rng, int(rng.choice(users)), int(rng.choice(movies)))
        jobs.append(("bad", raw, ctype, None, None))
    for _ in range(good):
        body, expected = valid(rng, rec)
        jobs.append(("good", json.dumps(body).encode(), "application/json", body, expected))
    rng.shuffle(jobs)

    def send(job):
        kind, raw_body, ctype, body, expected = job
        status, raw = _post(url, token, raw_body, ctype)
        return kind, status, raw, body if kind == "good" else (raw_body[:80], ctype), expected

    statuses: Counter = Counter()
    problems: list[str] = []
    with ThreadPoolExecutor(threads) as pool:
        for kind, status, raw, body, expected in pool.map(send, jobs):
            statuses[(kind, status)] += 1
            if status >= 500 or status == 0:
                problems.append(f"{kind} request got HTTP {status}: {raw[:200]!r}")
            elif kind == "good":
                problem = _check_valid(status, raw, body, expected)
                if problem:
                    problems.append(problem)
            elif not 400 <= status < 500:
                problems.append(f"malformed request {body} answered HTTP {status}")
            elif status != 413:
                try:
                    error = json.loads(raw)["error"]
                    if not error.get("message") or "field" not in error:
                        problems.append(f"4xx without field and message: {raw[:200]!r}")
                except (ValueError, KeyError, TypeError):
                    if b"InvalidKeyException" not in raw:
                        problems.append(f"4xx without a JSON error body: {raw[:200]!r}")
    return {"statuses": statuses, "problems": problems}


WEB_ROUTES = sorted(validation.ROUTES)


def web_malformed(rng: np.random.Generator, movie: int) -> tuple[str, bytes, str]:
    """One bad request to the web app: ``(route, body, content type)``."""
    json_type = "application/json"
    depth = int(rng.integers(50, 5000))
    ratings = {str(movie): 5}
    cases = [
        ("/api/search", b"", json_type),
        ("/api/search", b'{"query": "sta', json_type),
        ("/api/search", b"\xff\xfe\x00garbage", json_type),
        ("/api/search", b"[" * depth + b"1" + b"]" * depth, json_type),
        ("/api/search", b'{"query": NaN}', json_type),
        ("/api/search", json.dumps({"query": "x"}).encode(), json_type),
        ("/api/search", json.dumps({"query": "x" * 5000}).encode(), json_type),
        ("/api/search", json.dumps({"query": ["star"]}).encode(), json_type),
        ("/api/search", json.dumps({"query": "star", "k": 100}).encode(), json_type),
        ("/api/search", b'{"query": "star"}', "text/plain"),
        ("/api/search", b"query=star", "application/x-www-form-urlencoded"),
        ("/api/chart", json.dumps({"genres": "Comedy"}).encode(), json_type),
        ("/api/chart", json.dumps({"genres": ["No Such Genre"]}).encode(), json_type),
        ("/api/chart", json.dumps({"years": [2000, 1990]}).encode(), json_type),
        ("/api/chart", json.dumps({"years": [1990, 1e9]}).encode(), json_type),
        ("/api/chart", json.dumps({"chart": "popular"}).encode(), json_type),
        ("/api/chart", b"null", json_type),
        ("/api/recommend", json.dumps({"ratings": {}}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": {str(movie): 9}}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": {str(movie): 2.7}}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": {"x": 3}}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": {str(movie): True}}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": ratings, "novelty": -1}).encode(), json_type),
        ("/api/recommend", json.dumps({"ratings": ratings, "explain": False}).encode(), json_type),
        (
            "/api/recommend",
            json.dumps({"ratings": {str(i): 3 for i in range(1001)}}).encode(),
            json_type,
        ),
        ("/api/recommend", b'{"ratings": {"1": Infinity}}', json_type),
        ("/api/similar", json.dumps({"movie_id": str(movie)}).encode(), json_type),
        ("/api/similar", json.dumps({"movie_id": -movie}).encode(), json_type),
        ("/api/similar", json.dumps({"movie_id": 2**64}).encode(), json_type),
        ("/api/similar", json.dumps({"movie_id": 10**9}).encode(), json_type),  # unknown: 404
        ("/api/similar", json.dumps({"similar_to": movie}).encode(), json_type),
        ("/api/similar", b"x" * (validation.MAX_BODY_BYTES + 10), json_type),
        ("/api/similar", bytes(rng.integers(0, 256, 64, dtype=np.uint8)), json_type),
    ]
    return cases[int(rng.integers(0, len(cases)))]


def web_valid(rng: np.random.Generator, rec: Recommender, catalogue: Catalogue) -> tuple[str, dict]:
    """One good request to the web app: ``(route, body)``."""
    vocab = rec.vocab
    movies = [int(m) for m in rng.choice(vocab.movie_ids, size=3, replace=False)]
    options: dict = {}
    if catalogue.genres and rng.random() < 0.3:
        options["genres"] = [str(rng.choice(catalogue.genres))]
    if catalogue.decades and rng.random() < 0.3:
        decade = int(rng.choice(catalogue.decades))
        options["years"] = [decade, decade + 9]
    route = WEB_ROUTES[int(rng.integers(0, len(WEB_ROUTES)))]
    if route == "/api/search":
        title = str(vocab.titles[vocab.item_index(np.array([movies[0]]))[0]])
        return route, {"query": title[: int(rng.integers(2, 12))].ljust(2, "x")}
    if route == "/api/chart":
        return route, options
    if rng.random() < 0.5:
        options["novelty"] = float(rng.choice([0.0, 0.5, 1.0]))
    if route == "/api/similar":
        return route, {"movie_id": movies[0], **options}
    steps = int((catalogue.rating_max - catalogue.rating_min) / catalogue.rating_step)
    stars = [
        catalogue.rating_min + catalogue.rating_step * int(rng.integers(0, steps + 1))
        for _ in movies
    ]
    return route, {"ratings": {str(m): s for m, s in zip(movies, stars)}, **options}


def _listed(answer: dict) -> list[int]:
    return [r["movie_id"] for r in answer.get("recommendations", answer.get("results", []))]


def run_web(
    web_url: str,
    model_url: str,
    token: str,
    rec: Recommender,
    catalogue: Catalogue,
    bad: int,
    good: int,
    threads: int,
    seed: int,
) -> dict:
    """Send the web mix; each valid request is also sent to TorchServe as the web app words it,
    and both must list the same movies."""
    rng = np.random.default_rng(seed)
    # (kind, route, raw body, content type, the body as sent (valid ones))
    jobs: list[tuple[str, str, bytes, str, dict | None]] = []
    for _ in range(bad):
        route, raw, ctype = web_malformed(rng, int(rng.choice(rec.vocab.movie_ids)))
        jobs.append(("bad", route, raw, ctype, None))
    for _ in range(good):
        route, body = web_valid(rng, rec, catalogue)
        jobs.append(("good", route, json.dumps(body).encode(), "application/json", body))
    rng.shuffle(jobs)

    def send(job):
        kind, route, raw_body, ctype, body = job
        status, raw = _post(web_url, None, raw_body, ctype, path=route)
        direct = None
        if kind == "good" and status == 200:
            sent = validation.ROUTES[route](body, catalogue)
            direct = _post(model_url, token, json.dumps(sent).encode(), "application/json")
        return kind, route, status, raw, raw_body[:80], direct

    statuses: Counter = Counter()
    problems: list[str] = []
    with ThreadPoolExecutor(threads) as pool:
        for kind, route, status, raw, shown, direct in pool.map(send, jobs):
            statuses[(kind, status)] += 1
            if status >= 500 or status == 0:
                problems.append(f"web {kind} {route} {shown!r} got HTTP {status}: {raw[:200]!r}")
            elif kind == "good":
                if status != 200:
                    problems.append(f"web valid {route} {shown!r} got HTTP {status}: {raw[:200]!r}")
                elif direct is None or direct[0] != 200:
                    problems.append(f"TorchServe refused what the web app sent for {shown!r}")
                elif _listed(json.loads(raw)) != _listed(json.loads(direct[1])):
                    problems.append(f"web {route} {shown!r} lists other movies than TorchServe")
            elif not 400 <= status < 500:
                problems.append(f"web malformed {route} {shown!r} answered HTTP {status}")
            else:
                try:
                    if not json.loads(raw)["error"]["message"]:
                        problems.append(f"web 4xx without a message: {raw[:200]!r}")
                except (ValueError, KeyError, TypeError):
                    problems.append(f"web 4xx without a JSON error body: {raw[:200]!r}")
    return {"statuses": statuses, "problems": problems}


def _report(title: str, result: dict) -> int:
    """Print one side's counts and problems; returns the number of 5xx or unanswered."""
    print(title)
    for (kind, code), n in sorted(result["statuses"].items()):
        print(f"  {kind:5s} -> HTTP {code}: {n}")
    for problem in result["problems"][:20]:
        print("  -", problem)
    return sum(n for (_, code), n in result["statuses"].items() if code >= 500 or code == 0)


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m loadtest.scenarios.fuzz", __doc__)
    p.add_argument("--malformed", type=int, default=2000)
    p.add_argument("--valid", type=int, default=500)
    p.add_argument("--web-malformed", type=int, default=2000, help="malformed web app requests")
    p.add_argument("--web-valid", type=int, default=500, help="valid web app requests")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    mar = find_archive(args.mar)
    if mar is None:
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(mar) as archive:
            archive.extractall(tmp)
        rec = Recommender.from_artifact(tmp)
        catalogue = Catalogue.from_artifact(tmp)  # the .mar carries config.json and vocab.npz
        try:
            with local_torchserve(mar.parent, *endpoints(mar)) as server:
                result = run(
                    server.url,
                    server.token(),
                    rec,
                    args.malformed,
                    args.valid,
                    args.threads,
                    args.seed,
                )
                web_log = server.home / "web.log"
                with local_web(server.url, server.key_file, tmp, web_log) as web_url:
                    web = run_web(
                        web_url,
                        server.url,
                        server.token(),
                        rec,
                        catalogue,
                        args.web_malformed,
                        args.web_valid,
                        args.threads,
                        args.seed,
                    )
                status, raw = _get(server.url, server.token(), "/ping")
        except (ServerError, WebError) as exc:
            log.error("%s", exc)
            return 1
    healthy = status == 200 and b"Healthy" in raw
    fivexx = _report(
        f"sent {args.malformed} malformed and {args.valid} valid requests to TorchServe "
        f"from {args.threads} threads",
        result,
    )
    fivexx += _report(
        f"sent {args.web_malformed} malformed and {args.web_valid} valid requests to the web "
        f"app's routes from {args.threads} threads",
        web,
    )
    problems = len(result["problems"]) + len(web["problems"])
    print(
        f"5xx or no answer: {fivexx}; problems: {problems}; "
        f"/ping afterwards: {'Healthy' if healthy else raw[:100]!r}"
    )
    return 0 if healthy and not problems else 1


def _get(url: str, token: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
