"""Top-K lists of users the model has not seen, given by their ratings: the work behind
:meth:`model.recommender.Recommender.recommend_new_users`, in the order it is done.

For one batch of new users, :func:`recommend_new_users` reads the request's ratings (dense
indices; a user who asks for the rating of a movie the model does not know is refused whole),
folds every other user in with one solve (:mod:`model.foldin`), scores the catalogue for them,
re-ranks at their novelty, drops what they rated and what their filters rule out and keeps the
top K (one pass per way of ordering), predicts the listed movies' ratings in one pass and the
asked ones in one more, and explains the lists that ask for it. Each step is one call on the
:class:`~model.scoring.Scorer`, the same as the lists of known users take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from model.filtering import MovieFilter
from model.listing import IdArray, about, listed
from model.results import RANK_BY, MovieRating, NewUserRecommendation
from model.scoring import Scorer, rated_pairs


def recommend_new_users(
    scorer: Scorer,
    movie_ids: Sequence[IdArray],
    ratings: Sequence[Sequence[float] | np.ndarray],
    ks: list[int],
    filters: list[MovieFilter],
    orders: list[str],
    predict_movie_ids: list[IdArray | None],
    novelty: np.ndarray,
    explain: list[bool],
) -> list[NewUserRecommendation]:
    """See :meth:`model.recommender.Recommender.recommend_new_users`; every option holds one
    value per user (``novelty`` as float64)."""
    out = [NewUserRecommendation() for _ in movie_ids]

    # The request's ratings, in dense indices. A user who asks for the rating of a movie the
    # model does not know is refused before the solve, so that it changes no one else's list.
    served, rated, stars, unknown, asked = [], [], [], [], []
    for b, given_ids in enumerate(movie_ids):
        ask: np.ndarray | None = None
        if predict_movie_ids[b] is not None:
            ask_ids = np.asarray(predict_movie_ids[b], dtype=np.int64)
            ask, found = scorer.vocab.lookup_items(ask_ids)
            if not found.all():
                out[b] = NewUserRecommendation(
                    unknown_predicted_ids=tuple(ask_ids[~found].tolist())
                )
                continue
        given = np.asarray(given_ids, dtype=np.int64)
        idx, found = scorer.vocab.lookup_items(given)
        served.append(b)
        rated.append(idx[found])
        stars.append(np.asarray(ratings[b], dtype=np.float64)[found])
        unknown.append(tuple(given[~found].tolist()))
        asked.append(ask)
    if not served:
        return out

    # Fold in: every served user's vector and bias, in one solve.
    vectors, biases = scorer.fold_in(rated, stars)

    # Score the catalogue, re-rank at the users' novelty, drop rated and filtered movies and
    # keep the top k, one pass per way of ordering; rows are padded to the largest k.
    k = max(ks[b] for b in served)
    items = np.full((len(served), min(k, scorer.vocab.num_items)), -1)
    scores = np.full(items.shape, np.nan)
    novelties = novelty[served]
    for order in RANK_BY:
        rows = [j for j, b in enumerate(served) if orders[b] == order]
        if not rows:
            continue
        rows_rated, rows_stars = [rated[j] for j in rows], [stars[j] for j in rows]
        scored = scorer.score_vectors(vectors[rows], biases[rows], rows_rated, rows_stars, order)
        level = novelties[rows]
        scored = scorer.rerank(scored, level if level.any() else None)
        rated_rows, rated_items = rated_pairs(rows_rated)
        items[rows], scores[rows] = scorer.top_k(
            scored, rated_rows, rated_items, k, [filters[served[j]] for j in rows]
        )

    # Predict the listed movies' ratings in one pass, then the asked ones in one more.
    listed_ratings = scorer.predict_vectors(
        vectors,
        biases,
        np.repeat(np.arange(len(served)), items.shape[1]),
        np.maximum(items, 0).reshape(-1),
    ).reshape(items.shape)
    predictions = _predictions(scorer, vectors, biases, asked)

    # Explain the lists that ask for it, and answer.
    for j, b in enumerate(served):
        reasons = None
        if explain[b]:
            reasons = scorer.reasons((rated[j], stars[j]), items[j, : ks[b]])
        out[b] = NewUserRecommendation(
            listed(scorer.vocab, items[j], scores[j], ks[b], listed_ratings[j], reasons),
            scorer.ranked_by(orders[b]),
            unknown[j],
            predictions[j],
        )
    return out


def _predictions(
    scorer: Scorer, vectors: torch.Tensor, biases: torch.Tensor, asked: list[np.ndarray | None]
) -> list[tuple[MovieRating, ...] | None]:
    """The ratings folded-in users asked for (dense ``asked[j]``, None: none), one pass."""
    out: list[tuple[MovieRating, ...] | None] = [None] * len(asked)
    rows = [j for j, a in enumerate(asked) if a is not None]
    if not rows:
        return out
    chosen = [cast(np.ndarray, asked[j]) for j in rows]
    predicted = scorer.predict_vectors(
        vectors,
        biases,
        np.concatenate([np.full(len(a), j) for j, a in zip(rows, chosen)]),
        np.concatenate(chosen),
    ).tolist()
    start = 0
    for j, a in zip(rows, chosen):
        stop = start + len(a)
        movies = about(scorer.vocab, a)
        out[j] = tuple(MovieRating(*m, r) for m, r in zip(movies, predicted[start:stop]))
        start = stop
    return out
