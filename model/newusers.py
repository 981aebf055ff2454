"""Top-K lists of users the model has not seen, given by their ratings: the new-user half of
:meth:`model.recommender.Recommender.recommend_new_users`.

The users of a batch are folded in with one solve (:mod:`model.foldin`), their lists scored in
one pass per way of ordering, and every rating they asked for predicted in one more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from model.filtering import MovieFilter
from model.listing import IdArray, about, each, listed
from model.results import RANK_BY, MovieRating, NewUserRecommendation
from model.scoring import Scorer


def recommend_new_users(
    scorer: Scorer,
    movie_ids: Sequence[IdArray],
    ratings: Sequence[Sequence[float] | np.ndarray],
    k: int | Sequence[int],
    filters: MovieFilter | Sequence[MovieFilter],
    rank_by: str | Sequence[str],
    predict_movie_ids: Sequence[IdArray | None] | None,
    novelty: np.ndarray | None = None,
    explain: list[bool] | None = None,
) -> list[NewUserRecommendation]:
    """See :meth:`model.recommender.Recommender.recommend_new_users`; ``novelty`` and
    ``explain`` hold one value per user (None: 0 and False for all)."""
    n = len(movie_ids)
    ks, fs = each(k, n, "k"), each(filters, n, "filters")
    orders: list[str] = each(rank_by, n, "rank_by")
    asked = [None] * n if predict_movie_ids is None else list(predict_movie_ids)
    out = [NewUserRecommendation() for _ in range(n)]
    served, rated, stars, unknown, ask_idx = [], [], [], [], []
    for b in range(n):
        ask: np.ndarray | None = None
        if asked[b] is not None:
            ask_ids = np.asarray(asked[b], dtype=np.int64)
            ask, found = scorer.vocab.lookup_items(ask_ids)
            if not found.all():  # refused whole, before the solve: it changes no one else's
                out[b] = NewUserRecommendation(
                    unknown_predicted_ids=tuple(ask_ids[~found].tolist())
                )
                continue
        given = np.asarray(movie_ids[b], dtype=np.int64)
        idx, found = scorer.vocab.lookup_items(given)
        served.append(b)
        rated.append(idx[found])
        stars.append(np.asarray(ratings[b], dtype=np.float64)[found])
        unknown.append(tuple(given[~found].tolist()))
        ask_idx.append(ask)
    if not served:
        return out
    vectors, biases = scorer.fold_in(rated, stars)
    items, scores = _top_k(
        scorer,
        (vectors, biases, rated, stars),
        [ks[b] for b in served],
        [fs[b] for b in served],
        [orders[b] for b in served],
        None if novelty is None else novelty[served],
    )
    listed_ratings = scorer.predict_vectors(
        vectors,
        biases,
        np.repeat(np.arange(len(served)), items.shape[1]),
        np.maximum(items, 0).reshape(-1),
    ).reshape(items.shape)
    predictions = _predictions(scorer, vectors, biases, ask_idx)
    for j, b in enumerate(served):
        reasons = None
        if explain is not None and explain[b]:
            reasons = scorer.reasons((rated[j], stars[j]), items[j, : ks[b]])
        out[b] = NewUserRecommendation(
            listed(scorer.vocab, items[j], scores[j], ks[b], listed_ratings[j], reasons),
            scorer.ranked_by(orders[b]),
            unknown[j],
            predictions[j],
        )
    return out


Users = tuple[torch.Tensor, torch.Tensor, list[np.ndarray], list[np.ndarray]]


def _top_k(
    scorer: Scorer,
    users: Users,
    ks: list[int],
    fs: list[MovieFilter],
    orders: list[str],
    novelty: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(S, k) items and scores of folded-in ``users`` (vectors, biases, rated dense indices,
    stars), k the largest asked, re-ranked at ``novelty`` (S,) where given: one scoring pass
    per way of ordering."""
    vectors, biases, rated, stars = users
    k = max(ks)
    items = np.full((len(rated), min(k, scorer.vocab.num_items)), -1)
    scores = np.full(items.shape, np.nan)
    for order in RANK_BY:
        rows = [j for j, o in enumerate(orders) if o == order]
        if rows:
            items[rows], scores[rows] = scorer.top_k_vectors(
                vectors[rows],
                biases[rows],
                [rated[j] for j in rows],
                k,
                [fs[j] for j in rows],
                stars=[stars[j] for j in rows],
                rank_by=order,
                novelty=None if novelty is None or not novelty[rows].any() else novelty[rows],
            )
    return items, scores


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
