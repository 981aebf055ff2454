"""Request bodies: decode, recognise the kind, validate every field, or say which one is wrong.

Kinds (told apart by their main field) and the fields each may carry:

    rating      {"user_id", "movie_id"}
    pairs       {"pairs": [[user_id, movie_id], ...]}
    top_k       {"user_id", "k"?, "fallback"?, "rank_by"?, "novelty"?, "explain"?, filters?}
    new_user    {"ratings": {"movie_id": stars, ...}, "k"?, "movie_ids"?, "rank_by"?,
                 "novelty"?, "explain"?, filters?}
    similar     {"similar_to": movie_id, "k"?, "novelty"?, filters?}
    chart       {"chart": "popular", "k"?, filters?}
    search      {"search": "title as typed", "k"?}

    filters:    "genres": [names] (any of), "exclude_genres": [names], "exclude_movie_ids": [ids],
                "years": [first, last] (release years, both included)
    rank_by:    "ranking" (default: the ranking model) or "rating" (highest predicted rating)
    fallback:   "popular" (the chart stands in for a user the model does not know)
    novelty:    0 (default: the lists as ranked) to 1 (the least obvious lists offered)
    explain:    true adds to each entry the rated movies that put it there

Everything wrong raises :class:`~model.errors.BadRequestError` naming the field; a request
larger than :class:`Limits` allows raises its subclass :class:`~model.errors.TooLargeError`
(413), which names the endpoint that takes larger requests when there is one. The typed
requests carry raw ids and the model's own :class:`~model.filtering.MovieFilter`, which
:mod:`handler.answering` hands to the Recommender as they are; nothing here looks ids up
(unknown ids are the answering side's business) or imports TorchServe.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from model.errors import BadRequestError, TooLargeError
from model.filtering import NO_FILTER, MovieFilter
from model.results import FALLBACKS, RANK_BY
from model.search import MAX_QUERY_LENGTH

CHARTS = ("popular",)  # the charts a chart request may name


@dataclass(frozen=True)
class Limits:
    """Per-request limits, set under ``handler:`` in model-config.yaml."""

    max_k: int = 100  # top-K lists longer than this are refused (400)
    max_pairs: int = 10_000  # pairs per request (and movie_ids of a new user); 10k score in ms
    max_ratings: int = 1_000  # ratings of a new user (and excluded movies); ML-100K's top user: 737
    default_k: int = 10  # k when a top-K request gives none
    # The registration that takes requests above these limits (e.g. "movierec-bulk"), named in
    # the 413 answer; "" when there is none (this endpoint is the largest).
    bulk_model: str = ""

    def too_large(self, field: str, what: str, limit_name: str) -> TooLargeError:
        """The 413 error for ``what`` (e.g. "1500 pairs") exceeding ``limit_name``."""
        message = f"{what} exceed {limit_name}={getattr(self, limit_name)}"
        if self.bulk_model:
            message += (
                f" of this endpoint; send requests this large to /predictions/{self.bulk_model}"
            )
        return TooLargeError(field, message)

    def __post_init__(self) -> None:
        for name in ("max_k", "max_pairs", "max_ratings", "default_k"):
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
    """Top-``k`` unrated movies for a known user; ``fallback`` ("popular") for an unknown one."""

    user_id: int
    k: int
    filters: MovieFilter = NO_FILTER
    fallback: str | None = None
    rank_by: str = "ranking"
    novelty: float = 0.0
    explain: bool = False


@dataclass(frozen=True)
class NewUserRequest:
    """A user the model has not seen, given by ratings (raw movie ids, in request order)."""

    movie_ids: np.ndarray
    ratings: np.ndarray
    k: int
    filters: MovieFilter = NO_FILTER
    predict_movie_ids: np.ndarray | None = None  # movies whose rating to predict, if asked
    rank_by: str = "ranking"
    novelty: float = 0.0
    explain: bool = False


@dataclass(frozen=True)
class SimilarRequest:
    """Top-``k`` movies most similar to ``movie_id``."""

    movie_id: int
    k: int
    filters: MovieFilter = NO_FILTER
    novelty: float = 0.0


@dataclass(frozen=True)
class ChartRequest:
    """The top ``k`` of a chart (:data:`CHARTS`) among the movies ``filters`` keeps."""

    chart: str
    k: int
    filters: MovieFilter = NO_FILTER


@dataclass(frozen=True)
class SearchRequest:
    """Up to ``k`` movies whose titles best match ``query``."""

    query: str
    k: int


Request = (
    RatingRequest | TopKRequest | NewUserRequest | SimilarRequest | ChartRequest | SearchRequest
)

_FILTERS = frozenset({"genres", "exclude_genres", "exclude_movie_ids", "years"})
_LISTS = frozenset({"k", "rank_by", "novelty", "explain"})  # options of user lists
# Each kind's main field, which tells the kinds apart, and every field the kind accepts.
MAIN_FIELDS = {
    "pairs": "pairs",
    "ratings": "new_user",
    "similar_to": "similar",
    "chart": "chart",
    "search": "search",
    "user_id": "top_k",  # or "rating", with "movie_id"
}
_ALLOWED = {
    "rating": frozenset({"user_id", "movie_id"}),
    "pairs": frozenset({"pairs"}),
    "top_k": frozenset({"user_id", "fallback"}) | _LISTS | _FILTERS,
    "new_user": frozenset({"ratings", "movie_ids"}) | _LISTS | _FILTERS,
    "similar": frozenset({"similar_to", "k", "novelty"}) | _FILTERS,
    "chart": frozenset({"chart", "k"}) | _FILTERS,
    "search": frozenset({"search", "k"}),
}
# Every field some kind accepts, and "body": the labels error metrics count by; others "other".
FIELDS = frozenset().union(*_ALLOWED.values()) | {"body"}
_USAGE = (
    'expected {"user_id", "movie_id"}, {"pairs": [[user_id, movie_id], ...]}, '
    '{"user_id", "k"}, {"ratings": {"movie_id": rating, ...}, "k"}, {"similar_to", "k"}, '
    '{"chart": "popular", "k"} or {"search": "title", "k"}'
)
_MOVIE_KEY = re.compile(r"[0-9]{1,19}")


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
        except RecursionError:
            # TorchServe forwards JSON it failed to decode as bytes; without this, a body of
            # many nested brackets would fail the whole batch.
            raise BadRequestError("body", "invalid JSON: nested too deeply") from None
    return body


def _shown(value: object) -> str:
    return json.dumps(value)[:40]


def _as_id(value: object, field: str) -> int:
    # bool is an int subclass in Python; true/false are never ids.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(field, f"must be an integer id, got {_shown(value)}")
    if not 0 <= value < 2**63:
        raise BadRequestError(field, f"must be a non-negative 64-bit integer, got {value}")
    return value


def _pair_array(pairs: list) -> np.ndarray | None:
    """``pairs`` as an (n, 2) int64 array when every pair is two plain non-negative 64-bit
    ints (what clients send), else None: the pair-by-pair path then names what is wrong.

    One type check per pair and one conversion, instead of two validated ids per pair: a
    10,000-pair request is mostly this."""
    if not all(
        type(p) is list and len(p) == 2 and type(p[0]) is int and type(p[1]) is int for p in pairs
    ):
        return None  # bool is not ``int`` by type, so true/false fall through too
    try:
        array = np.array(pairs, dtype=np.int64)
    except OverflowError:  # an id of 2**63 or more
        return None
    return None if (array < 0).any() else array


def _id_list(value: object, field: str, limits: Limits, limit_name: str) -> np.ndarray:
    if not isinstance(value, list):
        raise BadRequestError(field, f"must be a list of integer ids, got {_shown(value)}")
    if len(value) > getattr(limits, limit_name):
        raise limits.too_large(field, f"{len(value)} ids", limit_name)
    return np.array([_as_id(v, f"{field}[{j}]") for j, v in enumerate(value)], dtype=np.int64)


def _k(body: dict, limits: Limits) -> int:
    k = body.get("k", limits.default_k)
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequestError("k", f"must be an integer, got {_shown(k)}")
    if not 1 <= k <= limits.max_k:
        raise BadRequestError("k", f"must be between 1 and max_k={limits.max_k}, got {k}")
    return k


def _rank_by(body: dict) -> str:
    value = body.get("rank_by", "ranking")
    if value not in RANK_BY:
        raise BadRequestError(
            "rank_by", f"must be one of {', '.join(RANK_BY)}, got {_shown(value)}"
        )
    return value


def _genres(body: dict, name: str, genre_names: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise BadRequestError(name, f"must be a list of genre names, got {_shown(value)}")
    for j, genre in enumerate(value):
        if not isinstance(genre, str) or genre not in genre_names:
            raise BadRequestError(
                f"{name}[{j}]", f"unknown genre {_shown(genre)}; known: {', '.join(genre_names)}"
            )
    return tuple(dict.fromkeys(value))  # each genre once, in the order sent


def _years(body: dict) -> tuple[int, int] | None:
    value = body.get("years")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(y, bool) or not isinstance(y, int) for y in value)
    ):
        raise BadRequestError("years", f"must be [first, last], two integers, got {_shown(value)}")
    first, last = value
    if first > last:
        raise BadRequestError("years", f"first year {first} is after last year {last}")
    if first < 0 or last >= 10_000:
        raise BadRequestError("years", f"must be years between 0 and 9999, got {_shown(value)}")
    return first, last


def _filters(body: dict, limits: Limits, genre_names: tuple[str, ...]) -> MovieFilter:
    excluded = body.get("exclude_movie_ids", [])
    return MovieFilter(
        genres=_genres(body, "genres", genre_names),
        exclude_genres=_genres(body, "exclude_genres", genre_names),
        exclude_movie_ids=tuple(
            _id_list(excluded, "exclude_movie_ids", limits, "max_ratings").tolist()
        ),
        years=_years(body),
    )


def _novelty(body: dict) -> float:
    value = body.get("novelty", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequestError("novelty", f"must be a number between 0 and 1, got {_shown(value)}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise BadRequestError("novelty", f"must be between 0 and 1, got {value}")
    return float(value)


def _explain(body: dict) -> bool:
    value = body.get("explain", False)
    if not isinstance(value, bool):
        raise BadRequestError("explain", f"must be true or false, got {_shown(value)}")
    return value


def _chart(body: dict) -> str:
    value = body["chart"]
    if not isinstance(value, str) or value not in CHARTS:
        raise BadRequestError("chart", f"must be one of {', '.join(CHARTS)}, got {_shown(value)}")
    return value


def _query(body: dict) -> str:
    value = body["search"]
    if not isinstance(value, str):
        raise BadRequestError("search", f"must be a string, got {_shown(value)}")
    if not value.strip():
        raise BadRequestError("search", "must not be empty")
    if len(value) > MAX_QUERY_LENGTH:
        raise BadRequestError(
            "search", f"{len(value)} characters exceed the limit of {MAX_QUERY_LENGTH}"
        )
    return value


def _ratings(value: object, limits: Limits, scale: tuple[float, float]) -> tuple[np.ndarray, ...]:
    if not isinstance(value, dict) or not value:
        raise BadRequestError(
            "ratings",
            'must be a non-empty object {"movie_id": rating, ...}; for a user without ratings '
            'send {"user_id": ..., "fallback": "popular"}',
        )
    if len(value) > limits.max_ratings:
        raise limits.too_large("ratings", f"{len(value)} ratings", "max_ratings")
    lo, hi = scale
    movie_ids: list[int] = []
    stars: list[float] = []
    # The field name is built only for an error: a bulk request carries a thousand ratings.
    for key, rating in value.items():
        movie = int(key) if _MOVIE_KEY.fullmatch(key) else 2**63
        if movie >= 2**63:
            raise BadRequestError(_rated(key), "keys must be movie ids written as decimal integers")
        if isinstance(rating, bool) or not isinstance(rating, (int, float)):
            raise BadRequestError(_rated(key), f"must be a number, got {_shown(rating)}")
        if not (math.isfinite(rating) and lo <= rating <= hi):
            raise BadRequestError(_rated(key), f"must be between {lo:g} and {hi:g}, got {rating}")
        movie_ids.append(movie)
        stars.append(float(rating))
    if len(set(movie_ids)) != len(movie_ids):  # "1" and "01" name one movie
        seen: set[int] = set()
        for key, movie in zip(value, movie_ids):
            if movie in seen:
                raise BadRequestError(_rated(key), f"movie id {movie} is rated twice")
            seen.add(movie)
    return np.array(movie_ids, dtype=np.int64), np.array(stars, dtype=np.float64)


def _rated(key: str) -> str:
    return f"ratings[{_shown(key)}]"


def request_kind(body: object) -> str | None:
    """The kind of a decoded body by its main field alone, without validating the rest; None
    when it has none, or two (:func:`parse_request` says which)."""
    if not isinstance(body, dict):
        return None
    main = [f for f in MAIN_FIELDS if f in body]
    if len(main) != 1:
        return None
    if main[0] == "user_id" and "movie_id" in body:
        return "rating"
    return MAIN_FIELDS[main[0]]


def field_label(field: object) -> str:
    """The metrics label of the field an error named: indices dropped, names outside
    :data:`FIELDS` counted as ``other`` (so clients cannot grow the label set)."""
    name = re.split(r"[\[.]", str(field), maxsplit=1)[0]
    return name if name in FIELDS else "other"


def _kind(body: dict) -> str:
    main = [f for f in MAIN_FIELDS if f in body]
    if not main:
        raise BadRequestError("body", f"no request kind recognised; {_USAGE}")
    if len(main) > 1:
        raise BadRequestError(main[1], f"{main[0]!r} and {main[1]!r} do not go together; {_USAGE}")
    kind = "rating" if main[0] == "user_id" and "movie_id" in body else MAIN_FIELDS[main[0]]
    extra = sorted(set(body) - _ALLOWED[kind])
    if extra:
        allowed = ", ".join(sorted(_ALLOWED[kind]))
        raise BadRequestError(
            extra[0], f"unknown field {extra[0]!r} for a {kind} request (allowed: {allowed})"
        )
    return kind


def _pairs(value: object, limits: Limits) -> RatingRequest:
    if not isinstance(value, list) or not value:
        raise BadRequestError("pairs", "must be a non-empty list of [user_id, movie_id]")
    if len(value) > limits.max_pairs:
        raise limits.too_large("pairs", f"{len(value)} pairs", "max_pairs")
    fast = _pair_array(value)
    if fast is not None:
        return RatingRequest(fast[:, 0], fast[:, 1], single=False)
    users, movies = np.empty(len(value), np.int64), np.empty(len(value), np.int64)
    for n, pair in enumerate(value):  # the slow path names the first bad pair
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadRequestError(f"pairs[{n}]", "must be a list [user_id, movie_id]")
        users[n] = _as_id(pair[0], f"pairs[{n}][0]")
        movies[n] = _as_id(pair[1], f"pairs[{n}][1]")
    return RatingRequest(users, movies, single=False)


def _new_user(
    body: dict, limits: Limits, k: int, filters: MovieFilter, scale: tuple[float, float]
) -> NewUserRequest:
    movie_ids, stars = _ratings(body["ratings"], limits, scale)
    predict = None
    if "movie_ids" in body:
        predict = _id_list(body["movie_ids"], "movie_ids", limits, "max_pairs")
        if not len(predict):
            raise BadRequestError("movie_ids", "must list at least one movie id")
    return NewUserRequest(
        movie_ids, stars, k, filters, predict, _rank_by(body), _novelty(body), _explain(body)
    )


def _fallback(body: dict) -> str | None:
    fallback = body.get("fallback")
    if fallback is not None and fallback not in FALLBACKS:
        raise BadRequestError(
            "fallback", f"must be one of {', '.join(FALLBACKS)}, got {_shown(fallback)}"
        )
    return fallback


def parse_request(
    body: object,
    limits: Limits,
    genre_names: tuple[str, ...] = (),
    rating_scale: tuple[float, float] = (1.0, 5.0),
) -> Request:
    """Validate one decoded body; raises :class:`BadRequestError` naming the field.

    ``genre_names`` and ``rating_scale`` are the model's (unknown genres and ratings off the
    scale are refused here).
    """
    if not isinstance(body, dict):
        raise BadRequestError("body", f"must be a JSON object; {_USAGE}")
    kind = _kind(body)
    if kind == "rating":
        user_id, movie_id = _as_id(body["user_id"], "user_id"), _as_id(body["movie_id"], "movie_id")
        return RatingRequest(np.array([user_id]), np.array([movie_id]), single=True)
    if kind == "pairs":
        return _pairs(body["pairs"], limits)
    k = _k(body, limits)
    if kind == "search":
        return SearchRequest(_query(body), k)
    filters = _filters(body, limits, genre_names)
    if kind == "chart":
        return ChartRequest(_chart(body), k, filters)
    if kind == "similar":
        return SimilarRequest(_as_id(body["similar_to"], "similar_to"), k, filters, _novelty(body))
    if kind == "new_user":
        return _new_user(body, limits, k, filters, rating_scale)
    fallback = _fallback(body)
    return TopKRequest(
        _as_id(body["user_id"], "user_id"),
        k,
        filters,
        fallback,
        _rank_by(body),
        _novelty(body),
        _explain(body),
    )
