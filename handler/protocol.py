"""The HTTP API: parse and validate request bodies, answer a whole batch with vectorized calls.

Request bodies (JSON objects) and their answers:

    {"user_id": 196, "movie_id": 242}       -> {"user_id": 196, "movie_id": 242, "rating": 3.9}
    {"pairs": [[196, 242], [186, 302]]}     -> {"ratings": [3.9, 4.1]}
    {"user_id": 196, "k": 10}               -> {"user_id": 196, "recommendations": [
                                                  {"movie_id", "title", "genres", "score"}, ...]}

Errors answer ``{"error": {"status", "field", "message"}}`` with 400 (malformed body, wrong
type, out-of-range k, too many pairs) or 404 (unknown user or movie). One bad request never
affects the others of its batch. Nothing here imports TorchServe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from model.errors import BadRequestError, UnknownIdError
from model.recommender import Recommender


@dataclass(frozen=True)
class Limits:
    """Per-request limits, set under ``handler:`` in model-config.yaml."""

    max_k: int = 100  # top-K lists longer than this are refused (400)
    max_pairs: int = 10_000  # pairs per request; 10k pairs score in milliseconds
    default_k: int = 10  # k when a top-K request gives none

    def __post_init__(self) -> None:
        for name in ("max_k", "max_pairs", "default_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"handler setting {name} must be >= 1, got {getattr(self, name)}")
        if self.default_k > self.max_k:
            raise ValueError(
                f"handler setting default_k={self.default_k} exceeds max_k={self.max_k}"
            )


@dataclass(frozen=True)
class RatingRequest:
    """One or many (user_id, movie_id) pairs; ``single`` answers with one rating."""

    user_ids: np.ndarray
    movie_ids: np.ndarray
    single: bool


@dataclass(frozen=True)
class TopKRequest:
    """Top-``k`` unrated movies for a known user."""

    user_id: int
    k: int


Request = RatingRequest | TopKRequest
Answer = tuple[int, dict]  # (HTTP status, JSON body)

_SHAPES = {
    frozenset({"user_id", "movie_id"}): "rating",
    frozenset({"pairs"}): "pairs",
    frozenset({"user_id", "k"}): "top_k",
    frozenset({"user_id"}): "top_k",
}
_USAGE = (
    'expected {"user_id", "movie_id"}, {"pairs": [[user_id, movie_id], ...]} or {"user_id", "k"}'
)


def decode_body(row: dict) -> object:
    """The JSON value of one TorchServe request row (body under ``body`` or ``data``)."""
    body = row.get("body") if isinstance(row, dict) else None
    if body is None and isinstance(row, dict):
        body = row.get("data")
    if body is None:
        raise BadRequestError(
            "body", 'no JSON body (send one with "Content-Type: application/json"); ' + _USAGE
        )
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequestError("body", f"not UTF-8 text ({exc.reason})") from None
    if isinstance(body, str):
        if not body.strip():
            raise BadRequestError("body", "empty request body; " + _USAGE)
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadRequestError("body", f"invalid JSON: {exc}") from None
    return body


def _as_id(value: object, field: str) -> int:
    # bool is an int subclass in Python; true/false are never ids.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(field, f"must be an integer id, got {json.dumps(value)[:40]}")
    if not 0 <= value < 2**63:
        raise BadRequestError(field, f"must be a non-negative 64-bit integer, got {value}")
    return value


def parse_request(body: object, limits: Limits) -> Request:
    """Validate one decoded body; raises :class:`BadRequestError` naming the field."""
    if not isinstance(body, dict):
        raise BadRequestError("body", f"must be a JSON object; {_USAGE}")
    kind = _SHAPES.get(frozenset(body))
    if kind is None:
        unknown = sorted(set(body) - {"user_id", "movie_id", "pairs", "k"})
        field = unknown[0] if unknown else "body"
        what = (
            f"unknown field {field!r}" if unknown else f"fields {sorted(body)} do not go together"
        )
        raise BadRequestError(field, f"{what}; {_USAGE}")
    if kind == "rating":
        user_id, movie_id = _as_id(body["user_id"], "user_id"), _as_id(body["movie_id"], "movie_id")
        return RatingRequest(np.array([user_id]), np.array([movie_id]), single=True)
    if kind == "pairs":
        pairs = body["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise BadRequestError("pairs", "must be a non-empty list of [user_id, movie_id]")
        if len(pairs) > limits.max_pairs:
            raise BadRequestError(
                "pairs", f"{len(pairs)} pairs exceed max_pairs={limits.max_pairs}"
            )
        users, movies = np.empty(len(pairs), np.int64), np.empty(len(pairs), np.int64)
        for n, pair in enumerate(pairs):
            if not isinstance(pair, list) or len(pair) != 2:
                raise BadRequestError(f"pairs[{n}]", "must be a list [user_id, movie_id]")
            users[n] = _as_id(pair[0], f"pairs[{n}][0]")
            movies[n] = _as_id(pair[1], f"pairs[{n}][1]")
        return RatingRequest(users, movies, single=False)
    k = body.get("k", limits.default_k)
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequestError("k", f"must be an integer, got {json.dumps(k)[:40]}")
    if not 1 <= k <= limits.max_k:
        raise BadRequestError("k", f"must be between 1 and max_k={limits.max_k}, got {k}")
    return TopKRequest(_as_id(body["user_id"], "user_id"), k)


def error_answer(exc: BadRequestError | UnknownIdError) -> Answer:
    """The status and JSON body for an error raised while parsing or answering."""
    return exc.status, {"error": {"status": exc.status, "field": exc.field, "message": exc.message}}


def answer_batch(recommender: Recommender, rows: list, limits: Limits) -> list[Answer]:
    """Answer every row of a TorchServe batch: one forward pass for all rating pairs, one
    scoring pass for all top-K users. Returns one ``(status, body)`` per row, in order."""
    answers: list[Answer | None] = [None] * len(rows)
    ratings: list[tuple[int, RatingRequest]] = []
    top_k: list[tuple[int, TopKRequest]] = []
    for n, row in enumerate(rows):
        try:
            request = parse_request(decode_body(row), limits)
        except BadRequestError as exc:
            answers[n] = error_answer(exc)
            continue
        (ratings if isinstance(request, RatingRequest) else top_k).append((n, request))
    vocab = recommender.vocab

    if ratings:
        users = np.concatenate([r.user_ids for _, r in ratings])
        movies = np.concatenate([r.movie_ids for _, r in ratings])
        user_idx, user_found = vocab.lookup_users(users)
        item_idx, item_found = vocab.lookup_items(movies)
        ok = user_found & item_found
        scores = np.full(len(users), np.nan, dtype=np.float32)
        scores[ok] = recommender.predict_indices(user_idx[ok], item_idx[ok])
        start = 0
        for n, request in ratings:
            stop = start + len(request.user_ids)
            bad = np.flatnonzero(~ok[start:stop])
            if len(bad):
                j = int(bad[0])
                column = 0 if not user_found[start + j] else 1
                field = (
                    ("user_id", "movie_id")[column] if request.single else f"pairs[{j}][{column}]"
                )
                value = (users if column == 0 else movies)[start + j]
                answers[n] = error_answer(UnknownIdError(field, int(value)))
            elif request.single:
                answers[n] = (
                    200,
                    {
                        "user_id": int(users[start]),
                        "movie_id": int(movies[start]),
                        "rating": round(float(scores[start]), 4),
                    },
                )
            else:
                answers[n] = (200, {"ratings": [round(s, 4) for s in scores[start:stop].tolist()]})
            start = stop

    if top_k:
        user_idx, found = vocab.lookup_users(np.array([r.user_id for _, r in top_k]))
        for (n, request), known in zip(top_k, found):
            if not known:
                answers[n] = error_answer(UnknownIdError("user_id", request.user_id))
        served = [(n, r, u) for (n, r), u, known in zip(top_k, user_idx, found) if known]
        if served:
            k_max = max(r.k for _, r, _ in served)
            items, scores = recommender.top_k_indices(np.array([u for *_, u in served]), k_max)
            for row, (n, request, _) in enumerate(served):
                recs = []
                for item, score in zip(items[row, : request.k], scores[row, : request.k]):
                    if item < 0:
                        break  # the user has rated everything else
                    recs.append({**recommender.movie(int(item)), "score": round(float(score), 4)})
                answers[n] = (200, {"user_id": request.user_id, "recommendations": recs})
    return answers  # type: ignore[return-value]


def to_json(body: dict) -> str:
    """Compact JSON; NaN can never reach a client (scores are finite by construction)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)
