"""The HTTP API: answer a whole TorchServe batch with one vectorized call per kind of work.

Request kinds and their fields are in :mod:`handler.requests`; the answers:

    rating     {"user_id", "movie_id", "title", "genres", "rating"}
    pairs      {"ratings": [r, ...]}                                   in request order
    top_k      {"user_id", "ranked_by", "recommendations": [...]}     + "fallback": "popular"
                                                                       when it was used
    new_user   {"ranked_by", "recommendations": [...], "unknown_movie_ids": [...]}
                                    + "predictions": [{"movie_id", "title", "genres", "rating"}]
                                    if asked
    similar    {"movie": {"movie_id", "title", "genres"}, "recommendations": [...]}

A recommendation is ``{"movie_id", "title", "genres", "score"}``, plus ``"rating"`` (the
predicted rating of the user for that movie) in top_k and new_user lists. ``ranked_by`` says
what ordered the list: ``"ranking"`` (the ranking model; its score ranks movies within the list
and is not a rating) or ``"rating"`` (the score is the predicted rating), as the request's
``rank_by`` asked. In similar lists the score is the ranking model's (or, for a model without
one, a cosine similarity); in the popular fallback, a Bayesian-average rating.

Errors answer ``{"error": {"status", "field", "message"}}`` with 400 (malformed, out of range,
over a limit) or 404 (unknown user or movie), per request: one bad request never affects the
others of its batch. Nothing here imports TorchServe.
"""

from __future__ import annotations

import json

import numpy as np

from handler.requests import (
    Filters,
    Limits,
    NewUserRequest,
    RatingRequest,
    Request,
    SimilarRequest,
    TopKRequest,
    decode_body,
    parse_request,
)
from model.errors import BadRequestError, UnknownIdError
from model.recommender import ItemFilter, Recommender

__all__ = ["Answer", "Limits", "answer_batch", "error_answer", "parse_request", "to_json"]

Answer = tuple[int, dict]  # (HTTP status, JSON body)


def error_answer(exc: BadRequestError | UnknownIdError) -> Answer:
    """The status and JSON body for an error raised while parsing or answering."""
    return exc.status, {"error": {"status": exc.status, "field": exc.field, "message": exc.message}}


def to_json(body: dict) -> str:
    """Compact JSON; NaN can never reach a client (scores are finite by construction)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _item_filter(recommender: Recommender, filters: Filters) -> ItemFilter:
    # Excluding a movie the model does not know excludes nothing: not an error.
    idx, found = recommender.vocab.lookup_items(filters.exclude_movie_ids)
    return ItemFilter(filters.genres, filters.exclude_genres, tuple(idx[found].tolist()))


def _recommendations(
    recommender: Recommender,
    items: np.ndarray,
    scores: np.ndarray,
    k: int,
    ratings: np.ndarray | None = None,
):
    out = []
    for j, (item, score) in enumerate(zip(items[:k], scores[:k])):
        if item < 0:
            break  # fewer eligible movies than k
        entry = {**recommender.movie(int(item)), "score": round(float(score), 4)}
        if ratings is not None:
            entry["rating"] = round(float(ratings[j]), 4)
        out.append(entry)
    return out


def _ranked_by(recommender: Recommender, rank_by: str) -> str:
    return "ranking" if rank_by == "ranking" and recommender.ranker is not None else "rating"


def answer_batch(recommender: Recommender, rows: list, limits: Limits) -> list[Answer]:
    """Answer every row of a TorchServe batch. Returns one ``(status, body)`` per row, in order.

    Costs one forward pass for all rating pairs, one catalogue-scoring pass for all known
    users' top-K, one solve and one scoring pass for all new users, one similarity pass, and
    one popularity ranking, whatever the batch size.
    """
    answers: list[Answer | None] = [None] * len(rows)
    groups: dict[type, list[tuple[int, Request]]] = {
        RatingRequest: [],
        TopKRequest: [],
        NewUserRequest: [],
        SimilarRequest: [],
    }
    genre_names = recommender.vocab.genre_names
    scale = (recommender.model.config.min_rating, recommender.model.config.max_rating)
    for n, row in enumerate(rows):
        try:
            request = parse_request(decode_body(row), limits, genre_names, scale)
        except BadRequestError as exc:
            answers[n] = error_answer(exc)
            continue
        groups[type(request)].append((n, request))
    _answer_ratings(recommender, groups[RatingRequest], answers)
    _answer_top_k(recommender, groups[TopKRequest], answers)
    _answer_new_users(recommender, groups[NewUserRequest], answers)
    _answer_similar(recommender, groups[SimilarRequest], answers)
    return answers  # type: ignore[return-value]


def _answer_ratings(recommender: Recommender, ratings: list, answers: list) -> None:
    if not ratings:
        return
    vocab = recommender.vocab
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
            field = ("user_id", "movie_id")[column] if request.single else f"pairs[{j}][{column}]"
            value = (users if column == 0 else movies)[start + j]
            answers[n] = error_answer(UnknownIdError(field, int(value)))
        elif request.single:
            answers[n] = (
                200,
                {
                    "user_id": int(users[start]),
                    **recommender.movie(int(item_idx[start])),
                    "rating": round(float(scores[start]), 4),
                },
            )
        else:
            # np.round gives the same doubles as round(s, 4), without a Python call per pair.
            rounded = np.round(scores[start:stop].astype(np.float64), 4)
            answers[n] = (200, {"ratings": rounded.tolist()})
        start = stop


def _answer_top_k(recommender: Recommender, top_k: list, answers: list) -> None:
    if not top_k:
        return
    user_idx, found = recommender.vocab.lookup_users(np.array([r.user_id for _, r in top_k]))
    known, popular = [], []
    for (n, request), u, is_known in zip(top_k, user_idx, found):
        if is_known:
            known.append((n, request, u))
        elif request.fallback == "popular":
            popular.append((n, request))
        else:
            answers[n] = error_answer(UnknownIdError("user_id", request.user_id))
    for rank_by in ("ranking", "rating"):  # one scoring pass per way of ordering
        group = [entry for entry in known if entry[1].rank_by == rank_by]
        if not group:
            continue
        users = np.array([u for *_, u in group])
        items, scores = recommender.top_k_indices(
            users,
            max(r.k for _, r, _ in group),
            [_item_filter(recommender, r.filters) for _, r, _ in group],
            rank_by=rank_by,
        )
        ratings = recommender.predict_indices(
            np.repeat(users, items.shape[1]), np.maximum(items, 0).reshape(-1)
        ).reshape(items.shape)
        ranked_by = _ranked_by(recommender, rank_by)
        for row, (n, request, _) in enumerate(group):
            recs = _recommendations(recommender, items[row], scores[row], request.k, ratings[row])
            answers[n] = (
                200,
                {"user_id": request.user_id, "ranked_by": ranked_by, "recommendations": recs},
            )
    if popular:
        try:
            items, scores = recommender.popular_indices(
                len(popular),
                max(r.k for _, r in popular),
                [_item_filter(recommender, r.filters) for _, r in popular],
            )
        except LookupError as exc:
            for n, _ in popular:
                answers[n] = error_answer(BadRequestError("fallback", str(exc)))
            return
        for row, (n, request) in enumerate(popular):
            recs = _recommendations(recommender, items[row], scores[row], request.k)
            answers[n] = (
                200,
                {"user_id": request.user_id, "fallback": "popular", "recommendations": recs},
            )


def _answer_new_users(recommender: Recommender, new_users: list, answers: list) -> None:
    vocab = recommender.vocab
    served = []
    for n, request in new_users:
        predict_idx = None
        if request.predict_movie_ids is not None:
            predict_idx, found = vocab.lookup_items(request.predict_movie_ids)
            if not found.all():
                j = int(np.flatnonzero(~found)[0])
                value = int(request.predict_movie_ids[j])
                answers[n] = error_answer(UnknownIdError(f"movie_ids[{j}]", value))
                continue
        rated_idx, rated_found = vocab.lookup_items(request.movie_ids)
        served.append((n, request, rated_idx[rated_found], rated_found, predict_idx))
    if not served:
        return
    rated = [idx for _, _, idx, _, _ in served]
    stars = [r.ratings[f] for _, r, _, f, _ in served]
    vectors, biases = recommender.fold_in(rated, stars)
    k = max(r.k for _, r, *_ in served)
    items = np.full((len(served), min(k, recommender.vocab.num_items)), -1)
    scores = np.full(items.shape, np.nan)
    for rank_by in ("ranking", "rating"):  # one scoring pass per way of ordering
        rows = [row for row, (_, r, *_) in enumerate(served) if r.rank_by == rank_by]
        if not rows:
            continue
        items[rows], scores[rows] = recommender.top_k_vectors(
            vectors[rows],
            biases[rows],
            [rated[row] for row in rows],
            k,
            [_item_filter(recommender, served[row][1].filters) for row in rows],
            stars=[stars[row] for row in rows],
            rank_by=rank_by,
        )
    listed = recommender.predict_vectors(
        vectors,
        biases,
        np.repeat(np.arange(len(served)), items.shape[1]),
        np.maximum(items, 0).reshape(-1),
    ).reshape(items.shape)
    asked = [(row, p) for row, (*_, p) in enumerate(served) if p is not None]
    if asked:
        predicted = recommender.predict_vectors(
            vectors,
            biases,
            np.concatenate([np.full(len(p), row) for row, p in asked]),
            np.concatenate([p for _, p in asked]),
        )
    start = 0
    for row, (n, request, _, found, predict_idx) in enumerate(served):
        body = {
            "ranked_by": _ranked_by(recommender, request.rank_by),
            "recommendations": _recommendations(
                recommender, items[row], scores[row], request.k, listed[row]
            ),
            "unknown_movie_ids": request.movie_ids[~found].tolist(),
        }
        if predict_idx is not None:
            stop = start + len(predict_idx)
            body["predictions"] = [
                {**recommender.movie(int(i)), "rating": round(float(r), 4)}
                for i, r in zip(predict_idx, predicted[start:stop])
            ]
            start = stop
        answers[n] = (200, body)


def _answer_similar(recommender: Recommender, similar: list, answers: list) -> None:
    if not similar:
        return
    item_idx, found = recommender.vocab.lookup_items(np.array([r.movie_id for _, r in similar]))
    served = []
    for (n, request), i, is_known in zip(similar, item_idx, found):
        if is_known:
            served.append((n, request, i))
        else:
            answers[n] = error_answer(UnknownIdError("similar_to", request.movie_id))
    if not served:
        return
    items, scores = recommender.similar_indices(
        np.array([i for *_, i in served]),
        max(r.k for _, r, _ in served),
        [_item_filter(recommender, r.filters) for _, r, _ in served],
    )
    for row, (n, request, i) in enumerate(served):
        answers[n] = (
            200,
            {
                "movie": recommender.movie(int(i)),
                "recommendations": _recommendations(
                    recommender, items[row], scores[row], request.k
                ),
            },
        )
