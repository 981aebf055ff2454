"""Live fuzz run: malformed requests mixed with valid ones against a real TorchServe.

    python -m loadtest.scenarios.fuzz      # 2,000 malformed + 500 valid, 8 threads
    make fuzz                              # the same

Starts a private TorchServe on free ports serving ``model_store/movierec.mar`` (see
:mod:`loadtest.server`) and sends, from 8 concurrent threads so that TorchServe batches bad and
good requests together: bodies that are not JSON, not UTF-8, truncated, deeply nested, of the
wrong type, with NaN/Infinity, negative, huge, float or boolean ids, huge or zero k, unknown
fields, empty bodies, wrong content types, and bodies over the size limit; and valid requests
whose right answer is computed offline from the archive's own artifact. It passes when no
answer is a 5xx, every malformed request gets a 4xx with a JSON error (TorchServe's own 413 for
oversized bodies excepted), every valid request gets its right answer, and ``/ping`` is healthy
at the end. Prints the counts; exits 1 otherwise. Every loop is bounded.
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
from loadtest.server import ServerError, local_torchserve
from model.recommender import Recommender

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
    """One good request and its right answer, computed offline."""
    vocab = rec.vocab
    u = int(rng.integers(0, vocab.num_users))
    i = int(rng.integers(0, vocab.num_items))
    user_id, movie_id = int(vocab.user_ids[u]), int(vocab.movie_ids[i])
    if rng.random() < 0.5:
        rating = float(rec.predict_indices(np.array([u]), np.array([i]))[0])
        return {"user_id": user_id, "movie_id": movie_id}, round(rating, 4)
    items, _ = rec.top_k_indices(np.array([u]), 5)
    expected = [int(vocab.movie_ids[j]) for j in items[0] if j >= 0]
    return {"user_id": user_id, "k": 5}, expected


def _post(url: str, token: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            "POST",
            "/predictions/movierec",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException):
        # TorchServe may close the connection while refusing an oversized body.
        return 413 if len(body) > 1_048_576 else 0, b""
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
    got = [r["movie_id"] for r in answer["recommendations"]]
    return None if got == expected else f"{body}: top-5 {got} != {expected}"


def run(
    url: str, token: str, rec: Recommender, bad: int, good: int, threads: int, seed: int
) -> dict:
    """Send the mix; return counts and problems."""
    rng = np.random.default_rng(seed)
    users, movies = rec.vocab.user_ids, rec.vocab.movie_ids
    jobs = []
    for _ in range(bad):
        body, ctype = malformed(rng, int(rng.choice(users)), int(rng.choice(movies)))
        jobs.append(("bad", body, ctype, None, None))
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


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m loadtest.scenarios.fuzz", __doc__)
    p.add_argument("--malformed", type=int, default=2000)
    p.add_argument("--valid", type=int, default=500)
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
        try:
            with local_torchserve(mar.parent, ["movierec"], load_models=mar.name) as server:
                result = run(
                    server.url,
                    server.token(),
                    rec,
                    args.malformed,
                    args.valid,
                    args.threads,
                    args.seed,
                )
                status, raw = _get(server.url, server.token(), "/ping")
        except ServerError as exc:
            log.error("%s", exc)
            return 1
    healthy = status == 200 and b"Healthy" in raw
    print(
        f"sent {args.malformed} malformed and {args.valid} valid requests "
        f"from {args.threads} threads"
    )
    for (kind, code), n in sorted(result["statuses"].items()):
        print(f"  {kind:5s} -> HTTP {code}: {n}")
    fivexx = sum(n for (_, code), n in result["statuses"].items() if code >= 500 or code == 0)
    print(
        f"5xx or no answer: {fivexx}; problems: {len(result['problems'])}; "
        f"/ping afterwards: {'Healthy' if healthy else raw[:100]!r}"
    )
    for problem in result["problems"][:20]:
        print("  -", problem)
    return 0 if healthy and not result["problems"] else 1


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
