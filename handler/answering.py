"""The HTTP API: answer a whole TorchServe batch with one Recommender call per kind of work.

Request kinds and their fields are in :mod:`handler.parsing`; the answers:

    rating     {"user_id", "movie_id", "title", "genres", "rating"}
    pairs      {"ratings": [r, ...]}                                   in request order
    top_k      {"user_id", "ranked_by", "recommendations": [...]}     + "fallback": "popular"
                                                                       when it was used
    new_user   {"ranked_by", "recommendations": [...], "unknown_movie_ids": [...]}
                                    + "predictions": [{"movie_id", "title", "genres", "rating"}]
                                    if asked
    similar    {"movie": {"movie_id", "title", "genres"}, "recommendations": [...]}
    chart      {"chart": "popular", "recommendations": [...]}
    search     {"query", "results": [{"movie_id", "title", "year", "genres", "ratings"}]}

A recommendation is ``{"movie_id", "title", "genres", "score"}``, plus ``"rating"`` (the
predicted rating of the user for that movie) in top_k and new_user lists, and ``"because"``
(``[{"movie_id", "title", "rating"}]``: up to 3 of the person's rated movies that added most to
the entry's ranking score, with the stars they gave) when the request asked to ``explain``.
A search result's ``year`` is null when the title gives none; ``ratings`` is how many ratings
the movie has in what the model learnt from. ``ranked_by`` says
what ordered the list: ``"ranking"`` (the ranking model; its score ranks movies within the list
and is not a rating) or ``"rating"`` (the score is the predicted rating), as the request's
``rank_by`` asked. In similar lists the score is the ranking model's (or, for a model without
one, a cosine similarity); in the popular fallback, a Bayesian-average rating. A top_k answered
by the popular fallback has ``"fallback"`` in place of ``"ranked_by"``.

Errors answer ``{"error": {"status", "field", "message"}}`` with 400 (malformed, out of range),
413 (over a size limit; the message names the endpoint for larger requests) or 404 (unknown
user or movie), per request: one bad request never affects the
others of its batch. Everything here is JSON shaping: the Recommender takes the typed requests'
raw ids and filters as they are and returns the records of :mod:`model.results`. Nothing here
imports TorchServe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from handler.parsing import (
    ChartRequest,
    Limits,
    NewUserRequest,
    RatingRequest,
    SearchRequest,
    SimilarRequest,
    TopKRequest,
    decode_body,
    field_label,
    parse_request,
    request_kind,
)
from model.errors import BadRequestError, UnknownIdError
from model.recommender import Recommender
from model.results import Movie, MovieRating, RecommendedMovie

Answer = tuple[int, dict]  # (HTTP status, JSON body)
Slots = list[Answer | None]  # one per row of the batch, filled in by kind


def error_answer(exc: BadRequestError | UnknownIdError) -> Answer:
    """The status and JSON body for an error raised while parsing or answering."""
    return exc.status, {"error": {"status": exc.status, "field": exc.field, "message": exc.message}}


def to_json(body: dict) -> str:
    """Compact JSON; NaN can never reach a client (scores are finite by construction)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _movie(movie: Movie | MovieRating | RecommendedMovie) -> dict:
    return {"movie_id": movie.movie_id, "title": movie.title, "genres": list(movie.genres)}


def _recommendations(movies: tuple[RecommendedMovie, ...]) -> list[dict]:
    out = []
    for movie in movies:
        entry = {**_movie(movie), "score": round(movie.score, 4)}
        if movie.rating is not None:
            entry["rating"] = round(movie.rating, 4)
        if movie.because is not None:
            entry["because"] = [
                {"movie_id": r.movie_id, "title": r.title, "rating": r.rating}
                for r in movie.because
            ]
        out.append(entry)
    return out


# The labels movierec's metrics count requests by (handler/metrics.py): each kind of request,
# "fallback" (a top_k answered with popular movies) and "invalid" (no kind recognised).
KINDS = (
    "rating",
    "pairs",
    "top_k",
    "new_user",
    "similar",
    "chart",
    "search",
    "fallback",
    "invalid",
)
# The kinds one Recommender call answers together: a rating and pairs share a forward pass.
_WORK = {"rating": "ratings", "pairs": "ratings", "top_k": "top_k", "new_user": "new_user"}
_WORK |= {"similar": "similar", "chart": "chart", "search": "search", "invalid": "invalid"}


@dataclass(frozen=True)
class Batch:
    """A batch answered: one ``(status, body)`` per row in order, each row's kind (a label of
    :data:`KINDS`) and the milliseconds of the work that answered each kind present (decoding
    and parsing its rows included; a rating and pairs share theirs)."""

    answers: list[Answer]
    kinds: list[str]
    ms: dict[str, float]

    def counted(self) -> list[tuple[str, int, str | None]]:
        """What the metrics count per request: kind, status and, for a 4xx, the label of the
        field at fault (:func:`handler.parsing.field_label`)."""
        return [
            (kind, status, _error_label(status, body))
            for kind, (status, body) in zip(self.kinds, self.answers)
        ]


def _error_label(status: int, body: dict) -> str | None:
    return field_label(body.get("error", {}).get("field")) if 400 <= status < 500 else None


def answer_batch(recommender: Recommender, rows: list, limits: Limits) -> Batch:
    """Answer every row of a TorchServe batch: each row decoded and parsed once, the requests
    grouped by kind, then one Recommender call per kind of work (ratings and pairs share one),
    whatever the batch size: one forward pass for all rating pairs, one catalogue-scoring pass
    per way of ordering for all known users' top-K, one solve for all new users, one
    similarity pass, and one popularity ranking; one title look-up per search.
    """
    answers: Slots = [None] * len(rows)
    kinds: list[str] = []
    work_ms: dict[str, float] = {}
    groups: dict[type, list[tuple[int, Any]]] = {kind: [] for kind in _ANSWER}
    genre_names, scale = recommender.genre_names, recommender.rating_scale
    for n, row in enumerate(rows):
        start = time.perf_counter()
        try:
            body = decode_body(row)
        except BadRequestError as exc:
            body, answers[n] = None, error_answer(exc)
        kind = request_kind(body) or "invalid"
        if answers[n] is None:
            try:
                request = parse_request(body, limits, genre_names, scale)
                groups[type(request)].append((n, request))
            except BadRequestError as exc:
                answers[n] = error_answer(exc)
        kinds.append(kind)
        work = _WORK[kind]
        work_ms[work] = work_ms.get(work, 0.0) + (time.perf_counter() - start) * 1e3
    for request_type, answer in _ANSWER.items():
        if groups[request_type]:
            start = time.perf_counter()
            answer(recommender, groups[request_type], answers)
            work = _WORK[kinds[groups[request_type][0][0]]]
            work_ms[work] += (time.perf_counter() - start) * 1e3
    done = cast(list[Answer], answers)  # every slot is filled: each kind answers all its rows
    for n, (status, body) in enumerate(done):
        if kinds[n] == "top_k" and status == 200 and body.get("fallback"):
            kinds[n] = "fallback"
    ms = {kind: work_ms[_WORK.get(kind, "top_k")] for kind in set(kinds)}
    return Batch(done, kinds, ms)


def _answer_ratings(
    recommender: Recommender, ratings: list[tuple[int, RatingRequest]], answers: Slots
) -> None:
    if not ratings:
        return
    users = np.concatenate([r.user_ids for _, r in ratings])
    movies = np.concatenate([r.movie_ids for _, r in ratings])
    predicted = recommender.predict(users, movies)
    known = predicted.known
    # The titles of every known single rating, in one look-up.
    starts = np.cumsum([0] + [len(r.user_ids) for _, r in ratings[:-1]])
    singles = [s for s, (_, r) in zip(starts, ratings) if r.single and known[s]]
    titled = dict(zip(singles, recommender.movies(movies[singles]) if singles else []))
    start = 0
    for n, request in ratings:
        stop = start + len(request.user_ids)
        bad = np.flatnonzero(~known[start:stop])
        if len(bad):
            j = int(bad[0])
            column = 0 if not predicted.user_known[start + j] else 1
            field = ("user_id", "movie_id")[column] if request.single else f"pairs[{j}][{column}]"
            value = (users if column == 0 else movies)[start + j]
            answers[n] = error_answer(UnknownIdError(field, int(value)))
        elif request.single:
            rating = round(float(predicted.ratings[start]), 4)
            movie = _movie(titled[start])
            answers[n] = (200, {"user_id": int(users[start]), **movie, "rating": rating})
        else:
            # np.round gives the same doubles as round(s, 4), without a Python call per pair.
            rounded = np.round(predicted.ratings[start:stop].astype(np.float64), 4)
            answers[n] = (200, {"ratings": rounded.tolist()})
        start = stop


def _answer_top_k(
    recommender: Recommender, top_k: list[tuple[int, TopKRequest]], answers: Slots
) -> None:
    if not top_k:
        return
    requests = [r for _, r in top_k]
    lists = recommender.recommend(
        [r.user_id for r in requests],
        [r.k for r in requests],
        [r.filters for r in requests],
        [r.rank_by for r in requests],
        [r.fallback for r in requests],
        [r.novelty for r in requests],
        [r.explain for r in requests],
    )
    for (n, request), found in zip(top_k, lists):
        body: dict = {"user_id": request.user_id}
        if found.fallback is not None:
            body["fallback"] = found.fallback
        elif found.user_known:
            body["ranked_by"] = found.ranked_by
        elif found.fallback_error is not None:
            answers[n] = error_answer(BadRequestError("fallback", found.fallback_error))
            continue
        else:
            answers[n] = error_answer(UnknownIdError("user_id", request.user_id))
            continue
        answers[n] = (200, {**body, "recommendations": _recommendations(found.movies)})


def _answer_new_users(
    recommender: Recommender, new_users: list[tuple[int, NewUserRequest]], answers: Slots
) -> None:
    if not new_users:
        return
    requests = [r for _, r in new_users]
    lists = recommender.recommend_new_users(
        [r.movie_ids for r in requests],
        [r.ratings for r in requests],
        [r.k for r in requests],
        [r.filters for r in requests],
        [r.rank_by for r in requests],
        [r.predict_movie_ids for r in requests],
        [r.novelty for r in requests],
        [r.explain for r in requests],
    )
    for (n, request), found in zip(new_users, lists):
        if found.unknown_predicted_ids:
            value = found.unknown_predicted_ids[0]  # the first unknown, in the order asked
            j = int(np.flatnonzero(np.asarray(request.predict_movie_ids) == value)[0])
            answers[n] = error_answer(UnknownIdError(f"movie_ids[{j}]", value))
            continue
        body = {
            "ranked_by": found.ranked_by,
            "recommendations": _recommendations(found.movies),
            "unknown_movie_ids": list(found.unknown_movie_ids),
        }
        if found.predictions is not None:
            body["predictions"] = [
                {**_movie(p), "rating": round(p.rating, 4)} for p in found.predictions
            ]
        answers[n] = (200, body)


def _answer_similar(
    recommender: Recommender, similar: list[tuple[int, SimilarRequest]], answers: Slots
) -> None:
    if not similar:
        return
    requests = [r for _, r in similar]
    lists = recommender.similar(
        [r.movie_id for r in requests],
        [r.k for r in requests],
        [r.filters for r in requests],
        [r.novelty for r in requests],
    )
    for (n, request), found in zip(similar, lists):
        if found.movie is None:
            answers[n] = error_answer(UnknownIdError("similar_to", request.movie_id))
        else:
            body = {"movie": _movie(found.movie), "recommendations": _recommendations(found.movies)}
            answers[n] = (200, body)


def _answer_charts(
    recommender: Recommender, charts: list[tuple[int, ChartRequest]], answers: Slots
) -> None:
    if not charts:
        return
    requests = [r for _, r in charts]
    try:
        lists = recommender.chart([r.k for r in requests], [r.filters for r in requests])
    except LookupError as exc:  # a vocabulary without rating statistics
        for n, _ in charts:
            answers[n] = error_answer(BadRequestError("chart", str(exc)))
        return
    for (n, request), found in zip(charts, lists):
        body = {"chart": request.chart, "recommendations": _recommendations(found.movies)}
        answers[n] = (200, body)


def _answer_searches(
    recommender: Recommender, searches: list[tuple[int, SearchRequest]], answers: Slots
) -> None:
    for n, request in searches:
        results = [
            {
                "movie_id": m.movie_id,
                "title": m.title,
                "year": m.year or None,
                "genres": list(m.genres),
                "ratings": m.ratings,
            }
            for m in recommender.search(request.query, request.k)
        ]
        answers[n] = (200, {"query": request.query, "results": results})


_ANSWER: dict[type, Callable[[Recommender, list, Slots], None]] = {
    RatingRequest: _answer_ratings,
    TopKRequest: _answer_top_k,
    NewUserRequest: _answer_new_users,
    SimilarRequest: _answer_similar,
    ChartRequest: _answer_charts,
    SearchRequest: _answer_searches,
}
