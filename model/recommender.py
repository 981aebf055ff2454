"""The Recommender: raw MovieLens ids and one filter in, everything an answer needs out.

This is the seam between serving and the model. The handler hands it raw ids (users, movies),
:class:`~model.filtering.MovieFilter` and the list options of many requests at once, and gets
back the records of :mod:`model.results` (ids, titles, genres, scores, predicted ratings, the
ids it did not know, whether a fallback stood in); it never sees a dense index, the vocabulary
or the network. The shape follows spotlight's ``predict(user_ids, item_ids)`` and implicit's
``recommend(userid, user_items, N, filter_items=...)``, batched:

- :meth:`Recommender.predict`: ratings of (user, movie) pairs;
- :meth:`Recommender.recommend`: top-K lists of users, with the popularity chart standing in
  for unknown users when asked;
- :meth:`Recommender.recommend_new_users`: top-K lists (and asked ratings) of users given by
  their ratings, folded in without retraining;
- :meth:`Recommender.similar`: the movies most like a movie;
- :meth:`Recommender.chart`: the best-liked movies (Bayesian-average rating), for browsing;
- :meth:`Recommender.search`: movies found by their title, as people type it.

User lists can be explained (``explain``: the rated movies behind each entry) and made less
obvious (``novelty``, :mod:`model.novelty`). Per-row options (``k``, ``filters``, ``rank_by``,
``fallback``, ``novelty``, ``explain``) take one value for every row,
or a list or tuple with one per row. Each call costs one tensor pass per kind of work for the
whole batch, done by the :class:`~model.scoring.Scorer` it holds (``recommender.scorer``): the
dense-index layer, which offline code builds with :meth:`Scorer.from_artifact
<model.scoring.Scorer.from_artifact>` and calls directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch

from model import newusers
from model.errors import UnknownIdError
from model.filtering import NO_FILTER, MovieFilter
from model.listing import IdArray, each, listed, movies_at
from model.results import (
    FALLBACKS,
    RANK_BY,
    FoundMovie,
    Movie,
    NewUserRecommendation,
    RatingPrediction,
    Recommendation,
    SimilarMovies,
)
from model.scoring import NO_POPULARITY, Scorer
from model.search import TitleIndex
from model.vocab import Vocabulary

Novelty = float | Sequence[float]
Explain = bool | Sequence[bool]


class Recommender:
    """Ratings, top-K lists, new users and similar movies in raw MovieLens ids, over the
    dense-index work of its :class:`~model.scoring.Scorer`.

    Build it with :meth:`from_artifact`, or around a scorer: ``Recommender(Scorer(...))``.

    Parameters
    ----------
    scorer : Scorer
        The model, its vocabulary and its ranking model, in dense indices (``self.scorer``).
    """

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self._titles: TitleIndex | None = None

    @classmethod
    def from_artifact(cls, directory: str | Path, ridge: float = 1.0) -> Self:
        """Load an artifact folder (see :mod:`model.artifact`), with its ranking model;
        ``ridge`` weighs the prior of new users' fold-in (:mod:`model.foldin`)."""
        return cls(Scorer.from_artifact(directory, ridge))

    @property
    def vocab(self) -> Vocabulary:
        """The scorer's vocabulary: raw ids, titles, genres, who rated what."""
        return self.scorer.vocab

    @property
    def popularity(self) -> torch.Tensor | None:
        """Every movie's Bayesian-average rating (N,), what the chart and the popular fallback
        rank by; None for a vocabulary without rating statistics."""
        return self.scorer.popularity

    @property
    def titles(self) -> TitleIndex:
        """The title index of :meth:`search`, built on first use (a worker that is never
        asked to search never pays for it)."""
        if self._titles is None:
            self._titles = TitleIndex(self.vocab.titles, self.vocab.rating_count)
        return self._titles

    @property
    def genre_names(self) -> tuple[str, ...]:
        """Every genre a filter may name, in the catalogue's order."""
        return self.vocab.genre_names

    @property
    def rating_scale(self) -> tuple[float, float]:
        """The lowest and highest rating (what new users' ratings must lie within)."""
        config = self.scorer.model.config
        return config.min_rating, config.max_rating

    @property
    def num_users(self) -> int:
        """How many users the model knows."""
        return self.vocab.num_users

    @property
    def num_movies(self) -> int:
        """How many movies the catalogue holds."""
        return self.vocab.num_items

    def movie(self, movie_id: int) -> Movie:
        """Title and genres of one movie; raises :class:`~model.errors.UnknownIdError`."""
        return self.movies(np.array([movie_id], dtype=np.int64))[0]

    def movies(self, movie_ids: IdArray) -> list[Movie]:
        """Title and genres of each movie, in one look-up; raises
        :class:`~model.errors.UnknownIdError` naming the first unknown one."""
        ids = np.asarray(movie_ids, dtype=np.int64)
        idx, found = self.vocab.lookup_items(ids)
        if not found.all():
            raise UnknownIdError("movie_id", int(ids[~found][0]))
        return movies_at(self.vocab, idx)

    # ------------------------------------------------------------------ ratings

    def predict(self, user_ids: IdArray, movie_ids: IdArray) -> RatingPrediction:
        """Predicted ratings of the pairs ``(user_ids[p], movie_ids[p])``, in one pass."""
        users = np.asarray(user_ids, dtype=np.int64)
        movies = np.asarray(movie_ids, dtype=np.int64)
        if users.shape != movies.shape:
            raise ValueError(f"{len(users)} user ids but {len(movies)} movie ids")
        user_idx, user_known = self.vocab.lookup_users(users)
        item_idx, movie_known = self.vocab.lookup_items(movies)
        ok = user_known & movie_known
        ratings = np.full(len(users), np.nan, dtype=np.float32)
        ratings[ok] = self.scorer.predict_indices(user_idx[ok], item_idx[ok])
        return RatingPrediction(ratings, user_known, movie_known)

    # ------------------------------------------------------------------ known users

    def recommend(
        self,
        user_ids: IdArray,
        k: int | Sequence[int],
        filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER,
        rank_by: str | Sequence[str] = "ranking",
        fallback: str | Sequence[str | None] | None = None,
        novelty: Novelty = 0.0,
        explain: Explain = False,
    ) -> list[Recommendation]:
        """The best ``k`` movies each user has not rated, one list per user, in order.

        ``rank_by`` (see :data:`~model.results.RANK_BY`) orders each list; ``fallback``
        ``"popular"`` lets the popularity chart stand in for a user the model does not know
        (else that user gets ``user_known=False`` and no list). ``novelty`` (0 to 1) asks for
        less obvious lists, ``explain`` for the rated movies behind each entry. One scoring
        pass per way of ordering, one chart for every fallback.
        """
        users = np.asarray(user_ids, dtype=np.int64)
        n = len(users)
        ks, fs = each(k, n, "k"), each(filters, n, "filters")
        orders: list[str] = each(rank_by, n, "rank_by")
        falls: list[str | None] = each(fallback, n, "fallback")
        options = _Options(each(novelty, n, "novelty"), each(explain, n, "explain"))
        for value in {f for f in falls if f is not None} - set(FALLBACKS):
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {value!r}")
        for order in set(orders):
            self.scorer.ranked_by(order)  # refuses an unknown way of ordering
        user_idx, known = self.vocab.lookup_users(users)
        out = [Recommendation(user_known=False) for _ in range(n)]
        for order in RANK_BY:  # one scoring pass per way of ordering
            rows = [r for r in range(n) if known[r] and orders[r] == order]
            lists = self._user_lists(user_idx, rows, ks, fs, order, options)
            for r, recommendation in zip(rows, lists):
                out[r] = recommendation
        popular = [r for r in range(n) if not known[r] and falls[r] is not None]
        for r, recommendation in zip(popular, self._chart(popular, ks, fs)):
            out[r] = recommendation
        return out

    def _user_lists(
        self,
        user_idx: np.ndarray,
        rows: list[int],
        ks: list[int],
        fs: list[MovieFilter],
        order: str,
        options: _Options,
    ) -> list[Recommendation]:
        """Lists of the known users at ``rows`` of the batch (dense ``user_idx[rows]``), all
        ordered one way, with the users' predicted ratings."""
        if not rows:
            return []
        scorer = self.scorer
        users = user_idx[rows]
        items, scores = scorer.top_k_indices(
            users,
            max(ks[r] for r in rows),
            [fs[r] for r in rows],
            order,
            options.novelty_of(rows),
        )
        ratings = scorer.predict_indices(
            np.repeat(users, items.shape[1]), np.maximum(items, 0).reshape(-1)
        ).reshape(items.shape)
        ranked_by = scorer.ranked_by(order)
        asked = [j for j, r in enumerate(rows) if options.explain[r]]
        reasons = dict(zip(asked, scorer.histories(users[asked]))) if asked else {}
        return [
            Recommendation(
                listed(
                    self.vocab,
                    items[j],
                    scores[j],
                    ks[r],
                    ratings[j],
                    scorer.reasons(reasons[j], items[j, : ks[r]]) if j in reasons else None,
                ),
                ranked_by,
            )
            for j, r in enumerate(rows)
        ]

    def _chart(self, rows: list[int], ks: list[int], fs: list[MovieFilter]) -> list[Recommendation]:
        """The popularity chart standing in for the unknown users at ``rows`` of the batch."""
        if not rows:
            return []
        if self.popularity is None:
            return [Recommendation(user_known=False, fallback_error=NO_POPULARITY) for _ in rows]
        items, scores = self.scorer.popular_indices(
            len(rows), max(ks[r] for r in rows), [fs[r] for r in rows]
        )
        return [
            Recommendation(
                listed(self.vocab, items[j], scores[j], ks[r]),
                ranked_by="popularity",
                user_known=False,
                fallback="popular",
            )
            for j, r in enumerate(rows)
        ]

    # ------------------------------------------------------------------ new users

    def recommend_new_users(
        self,
        movie_ids: Sequence[IdArray],
        ratings: Sequence[Sequence[float] | np.ndarray],
        k: int | Sequence[int],
        filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER,
        rank_by: str | Sequence[str] = "ranking",
        predict_movie_ids: Sequence[IdArray | None] | None = None,
        novelty: Novelty = 0.0,
        explain: Explain = False,
    ) -> list[NewUserRecommendation]:
        """Top-K lists of users the model has not seen, given by the movies they rated
        (``movie_ids[b]``) and how (``ratings[b]``), folded in with one solve for the batch
        (:mod:`model.foldin`); with the ratings of ``predict_movie_ids[b]`` if not None.

        Rated movies the model does not know are left out, and reported. A user who asks for
        the rating of a movie the model does not know is refused whole: no list, and no part
        in the solve. Each list is ordered, re-ranked and explained as for :meth:`recommend`.
        """
        n = len(movie_ids)
        return newusers.recommend_new_users(
            self.scorer,
            movie_ids,
            ratings,
            each(k, n, "k"),
            each(filters, n, "filters"),
            each(rank_by, n, "rank_by"),
            [None] * n if predict_movie_ids is None else list(predict_movie_ids),
            np.asarray(each(novelty, n, "novelty"), dtype=np.float64),
            [bool(e) for e in each(explain, n, "explain")],
        )

    # ------------------------------------------------------------------ movies

    def similar(
        self,
        movie_ids: IdArray,
        k: int | Sequence[int],
        filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER,
        novelty: Novelty = 0.0,
    ) -> list[SimilarMovies]:
        """The ``k`` movies most like each of ``movie_ids``, in one pass (see
        :meth:`~model.scoring.Scorer.similar_indices` for what the scores are), re-ranked at
        ``novelty``."""
        movies = np.asarray(movie_ids, dtype=np.int64)
        ks, fs = each(k, len(movies), "k"), each(filters, len(movies), "filters")
        novelties = np.asarray(each(novelty, len(movies), "novelty"), dtype=np.float64)
        item_idx, found = self.vocab.lookup_items(movies)
        out = [SimilarMovies(None) for _ in range(len(movies))]
        rows = np.flatnonzero(found).tolist()
        if not rows:
            return out
        items, scores = self.scorer.similar_indices(
            item_idx[rows], max(ks[r] for r in rows), [fs[r] for r in rows], novelties[rows]
        )
        seeds = movies_at(self.vocab, item_idx[rows])
        for j, r in enumerate(rows):
            out[r] = SimilarMovies(seeds[j], listed(self.vocab, items[j], scores[j], ks[r]))
        return out

    # ------------------------------------------------------------------ browsing

    def chart(
        self, k: int | Sequence[int], filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER
    ) -> list[Recommendation]:
        """The best-liked movies (Bayesian-average rating, :mod:`model.popularity`), one chart
        per filter: ``k`` a number and ``filters`` a list give one chart per filter. Raises
        ``LookupError`` for a vocabulary without rating statistics."""
        n = len(filters) if isinstance(filters, (list, tuple)) else 1
        if isinstance(k, (list, tuple)):
            n = len(k)
        ks, fs = each(k, n, "k"), each(filters, n, "filters")
        items, scores = self.scorer.popular_indices(n, max(ks), fs)
        return [
            Recommendation(listed(self.vocab, items[j], scores[j], ks[j]), ranked_by="popularity")
            for j in range(n)
        ]

    def search(self, query: str, k: int) -> list[FoundMovie]:
        """Up to ``k`` movies whose titles best match ``query``, best first
        (:class:`~model.search.TitleIndex`): any case, accents, punctuation, the article in
        front, an alternative title, a year, a typo or the start of a word."""
        items, _ = self.titles.search(query, k)
        counts = self.vocab.rating_count
        return [
            FoundMovie(
                movie.movie_id,
                movie.title,
                int(self.scorer.years[i]),
                movie.genres,
                int(counts[i]) if counts is not None else 0,
            )
            for i, movie in zip(items.tolist(), movies_at(self.vocab, items))
        ]


class _Options:
    """Per-row ``novelty`` and ``explain`` of one batch of user lists."""

    def __init__(self, novelty: list[float], explain: list[bool]):
        self.novelty = np.asarray(novelty, dtype=np.float64)
        self.explain = [bool(e) for e in explain]

    def novelty_of(self, rows: list[int]) -> np.ndarray | None:
        """The novelty of ``rows``; None when none of them asks for any (nothing to do)."""
        values = self.novelty[rows]
        return values if (values > 0).any() else None
