"""The page's JSON routes: decode a body, accept only what the page sends, build the model's.

Each route takes one JSON object with only these fields and answers with the TorchServe body
it stands for (see docs/web.md for the answers):

    /api/search     {"query": "godf"}                                  -> {"search", "k"}
    /api/chart      {"genres"?, "years"?}                              -> {"chart": "popular", ...}
    /api/recommend  {"ratings": {"movie_id": stars}, "genres"?, "years"?, "novelty"?}
                                                    -> a new-user request with "explain": true
    /api/similar    {"movie_id", "genres"?, "years"?, "novelty"?}      -> {"similar_to", ...}

``genres`` is a list of genre names (any of them), ``years`` ``[first, last]`` (both included),
``novelty`` a number from 0 (the lists as ranked) to 1 (the least obvious). Stars must lie on the
catalogue's scale and step (:class:`~web.catalogue.Catalogue`). List lengths are fixed here, not
chosen by the page: they are what the page shows. Everything else (unknown fields, wrong types,
out-of-range values, bodies that are not a JSON object) raises :class:`RequestError` naming the
field, which the app answers with a 4xx; nothing here talks to TorchServe.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from web.catalogue import Catalogue

MAX_BODY_BYTES = 64 * 1024  # 1,000 ratings take ~15 KiB of JSON: room to spare, not to abuse
# The bulk endpoint's max_ratings (handler/model-config-bulk.yaml): requests above the
# interactive endpoint's 250 go to the bulk endpoint through the client (web/upstream.py).
MAX_RATINGS = 1_000
MIN_QUERY, MAX_QUERY = 2, 100  # suggestions start at 2 characters; no title is near 100
MAX_GENRES = 40  # more than any MovieLens release has (ML-25M: 20)
MAX_NAME = 40  # characters of one genre name
# How many movies each list shows: what fits a page without scrolling for long.
SEARCH_K, CHART_K, RECOMMEND_K, SIMILAR_K = 8, 20, 12, 8
_MOVIE_KEY = re.compile(r"[0-9]{1,19}")


@dataclass
class RequestError(Exception):
    """A request the page would never send: ``status`` (4xx), the ``field`` and why."""

    status: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _shown(value: object) -> str:
    """A value as JSON, cut short: error messages quote what was sent, never all of it."""
    return json.dumps(value)[:40]


def _reject_constant(name: str) -> float:
    # json.loads takes NaN and Infinity by default; no field of the page ever holds them.
    raise ValueError(f"{name} is not a JSON number")


def decode_json(raw: bytes) -> object:
    """The JSON value of a request body; raises :class:`RequestError` (400) for anything
    that is not UTF-8 JSON (NaN and Infinity included)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "body", f"not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise RequestError(400, "body", "empty body: send a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError, and so is NaN's refusal
        raise RequestError(400, "body", f"invalid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "body", "invalid JSON: nested too deeply") from None


def _fields(body: object, route: str, required: tuple[str, ...], allowed: frozenset[str]) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, "body", f"must be a JSON object, got {_shown(body)}")
    extra = sorted(set(body) - allowed)
    if extra:
        raise RequestError(
            400,
            extra[0],
            f"unknown field {extra[0]!r} for {route} (allowed: {', '.join(sorted(allowed))})",
        )
    for name in required:
        if name not in body:
            raise RequestError(400, name, f"missing; {route} needs {', '.join(required)}")
    return body


def _movie_id(value: object, field: str) -> int:
    # bool is an int subclass in Python; true/false are never ids.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise RequestError(400, field, f"must be a movie id (an integer >= 0), got {_shown(value)}")
    return value


def _genres(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_GENRES:
        raise RequestError(400, "genres", f"must be a list of at most {MAX_GENRES} genre names")
    for j, name in enumerate(value):
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise RequestError(400, f"genres[{j}]", f"must be a genre name, got {_shown(name)}")
    return list(value)


def _years(value: object) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(y, bool) or not isinstance(y, int) for y in value)
    ):
        raise RequestError(400, "years", f"must be [first, last], two years, got {_shown(value)}")
    first, last = value
    if not 0 <= first <= last <= 9999:
        raise RequestError(400, "years", f"must be years 0..9999, first <= last, got {value}")
    return [first, last]


def _novelty(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise RequestError(400, "novelty", f"must be a number from 0 to 1, got {_shown(value)}")
    return float(value)


def _ratings(value: object, catalogue: Catalogue) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise RequestError(400, "ratings", 'must be a non-empty object {"movie_id": stars, ...}')
    if len(value) > MAX_RATINGS:
        raise RequestError(400, "ratings", f"{len(value)} ratings exceed {MAX_RATINGS}")
    lo, hi, step = catalogue.rating_min, catalogue.rating_max, catalogue.rating_step
    out: dict[str, float] = {}
    for key, stars in value.items():
        field = f"ratings[{_shown(key)}]"
        if not _MOVIE_KEY.fullmatch(key) or int(key) >= 2**63:
            raise RequestError(400, field, "keys must be movie ids written as decimal integers")
        if isinstance(stars, bool) or not isinstance(stars, (int, float)):
            raise RequestError(400, field, f"must be a number of stars, got {_shown(stars)}")
        steps = (stars - lo) / step
        if not (lo <= stars <= hi and math.isclose(steps, round(steps), abs_tol=1e-9)):
            raise RequestError(
                400, field, f"must be {lo:g} to {hi:g} stars in steps of {step:g}, got {stars}"
            )
        out[str(int(key))] = float(stars)
    return out


def _filters(body: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "genres" in body:
        genres = _genres(body["genres"])
        if genres:
            out["genres"] = genres
    if "years" in body:
        out["years"] = _years(body["years"])
    return out


def _options(body: dict) -> dict[str, Any]:
    out = _filters(body)
    if "novelty" in body:
        out["novelty"] = _novelty(body["novelty"])
    return out


_LIST = frozenset({"genres", "years"})
_TUNED = _LIST | {"novelty"}


def search(body: object, catalogue: Catalogue) -> dict:
    """``{"query"}`` -> a title search for up to :data:`SEARCH_K` movies."""
    body = _fields(body, "/api/search", ("query",), frozenset({"query"}))
    query = body["query"]
    if not isinstance(query, str):
        raise RequestError(400, "query", f"must be text, got {_shown(query)}")
    query = query.strip()
    if not MIN_QUERY <= len(query) <= MAX_QUERY:
        raise RequestError(400, "query", f"must be {MIN_QUERY} to {MAX_QUERY} characters")
    return {"search": query, "k": SEARCH_K}


def chart(body: object, catalogue: Catalogue) -> dict:
    """``{"genres"?, "years"?}`` -> the popular chart's top :data:`CHART_K`."""
    body = _fields(body, "/api/chart", (), _LIST)
    return {"chart": "popular", "k": CHART_K, **_filters(body)}


def recommend(body: object, catalogue: Catalogue) -> dict:
    """``{"ratings", "genres"?, "years"?, "novelty"?}`` -> a new user's top
    :data:`RECOMMEND_K`, each with the rated movies that put it there."""
    body = _fields(body, "/api/recommend", ("ratings",), _TUNED | {"ratings"})
    ratings = _ratings(body["ratings"], catalogue)
    return {"ratings": ratings, "k": RECOMMEND_K, "explain": True, **_options(body)}


def similar(body: object, catalogue: Catalogue) -> dict:
    """``{"movie_id", "genres"?, "years"?, "novelty"?}`` -> the :data:`SIMILAR_K` movies most
    like it."""
    body = _fields(body, "/api/similar", ("movie_id",), _TUNED | {"movie_id"})
    movie_id = _movie_id(body["movie_id"], "movie_id")
    return {"similar_to": movie_id, "k": SIMILAR_K, **_options(body)}


Builder = Callable[[object, Catalogue], dict]
ROUTES: dict[str, Builder] = {
    "/api/search": search,
    "/api/chart": chart,
    "/api/recommend": recommend,
    "/api/similar": similar,
}
