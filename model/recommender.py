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
- :meth:`Recommender.similar`: the movies most like a movie.

Per-row options (``k``, ``filters``, ``rank_by``, ``fallback``) take one value for every row,
or a list or tuple with one per row. Each call costs one tensor pass per kind of work for the
whole batch (:mod:`model.scoring`, whose dense-index methods offline code calls directly).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model import newusers
from model.errors import UnknownIdError
from model.filtering import NO_FILTER, MovieFilter
from model.listing import IdArray, each, listed, movies_at
from model.results import (
    FALLBACKS,
    RANK_BY,
    Movie,
    NewUserRecommendation,
    RatingPrediction,
    Recommendation,
    SimilarMovies,
)
from model.scoring import NO_POPULARITY, Scorer


class Recommender(Scorer):
    """Ratings, top-K lists, new users and similar movies in raw MovieLens ids.

    Build it with :meth:`from_artifact`; the constructor is :class:`~model.scoring.Scorer`'s.
    """

    @property
    def genre_names(self) -> tuple[str, ...]:
        """Every genre a filter may name, in the catalogue's order."""
        return self.vocab.genre_names

    @property
    def rating_scale(self) -> tuple[float, float]:
        """The lowest and highest rating (what new users' ratings must lie within)."""
        return self.model.config.min_rating, self.model.config.max_rating

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
        idx, found = self.vocab.lookup_items(np.array([movie_id], dtype=np.int64))
        if not found[0]:
            raise UnknownIdError("movie_id", movie_id)
        return movies_at(self.vocab, idx)[0]

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
        ratings[ok] = self.predict_indices(user_idx[ok], item_idx[ok])
        return RatingPrediction(ratings, user_known, movie_known)

    # ------------------------------------------------------------------ known users

    def recommend(
        self,
        user_ids: IdArray,
        k: int | Sequence[int],
        filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER,
        rank_by: str | Sequence[str] = "ranking",
        fallback: str | Sequence[str | None] | None = None,
    ) -> list[Recommendation]:
        """The best ``k`` movies each user has not rated, one list per user, in order.

        ``rank_by`` (see :data:`~model.results.RANK_BY`) orders each list; ``fallback``
        ``"popular"`` lets the popularity chart stand in for a user the model does not know
        (else that user gets ``user_known=False`` and no list). One scoring pass per way of
        ordering, one chart for every fallback.
        """
        users = np.asarray(user_ids, dtype=np.int64)
        n = len(users)
        ks, fs = each(k, n, "k"), each(filters, n, "filters")
        orders: list[str] = each(rank_by, n, "rank_by")
        falls: list[str | None] = each(fallback, n, "fallback")
        for value in {f for f in falls if f is not None} - set(FALLBACKS):
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {value!r}")
        for order in set(orders):
            self.ranked_by(order)  # refuses an unknown way of ordering
        user_idx, known = self.vocab.lookup_users(users)
        out = [Recommendation(user_known=False) for _ in range(n)]
        for order in RANK_BY:  # one scoring pass per way of ordering
            rows = [r for r in range(n) if known[r] and orders[r] == order]
            for r, recommendation in zip(rows, self._user_lists(user_idx, rows, ks, fs, order)):
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
    ) -> list[Recommendation]:
        """Lists of the known users at ``rows`` of the batch (dense ``user_idx[rows]``), all
        ordered one way, with the users' predicted ratings."""
        if not rows:
            return []
        users = user_idx[rows]
        items, scores = self.top_k_indices(
            users, max(ks[r] for r in rows), [fs[r] for r in rows], order
        )
        ratings = self.predict_indices(
            np.repeat(users, items.shape[1]), np.maximum(items, 0).reshape(-1)
        ).reshape(items.shape)
        ranked_by = self.ranked_by(order)
        return [
            Recommendation(listed(self.vocab, items[j], scores[j], ks[r], ratings[j]), ranked_by)
            for j, r in enumerate(rows)
        ]

    def _chart(self, rows: list[int], ks: list[int], fs: list[MovieFilter]) -> list[Recommendation]:
        """The popularity chart standing in for the unknown users at ``rows`` of the batch."""
        if not rows:
            return []
        if self.popularity is None:
            return [Recommendation(user_known=False, fallback_error=NO_POPULARITY) for _ in rows]
        items, scores = self._popular_indices(
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
    ) -> list[NewUserRecommendation]:
        """Top-K lists of users the model has not seen, given by the movies they rated
        (``movie_ids[b]``) and how (``ratings[b]``), folded in with one solve for the batch
        (:mod:`model.foldin`); with the ratings of ``predict_movie_ids[b]`` if not None.

        Rated movies the model does not know are left out, and reported. A user who asks for
        the rating of a movie the model does not know is refused whole: no list, and no part
        in the solve. Each list is ordered as for :meth:`recommend`.
        """
        return newusers.recommend_new_users(
            self, movie_ids, ratings, k, filters, rank_by, predict_movie_ids
        )

    # ------------------------------------------------------------------ movies

    def similar(
        self,
        movie_ids: IdArray,
        k: int | Sequence[int],
        filters: MovieFilter | Sequence[MovieFilter] = NO_FILTER,
    ) -> list[SimilarMovies]:
        """The ``k`` movies most like each of ``movie_ids``, in one pass (see
        :meth:`~model.scoring.Scorer.similar_indices` for what the scores are)."""
        movies = np.asarray(movie_ids, dtype=np.int64)
        ks, fs = each(k, len(movies), "k"), each(filters, len(movies), "filters")
        item_idx, found = self.vocab.lookup_items(movies)
        out = [SimilarMovies(None) for _ in range(len(movies))]
        rows = np.flatnonzero(found).tolist()
        if not rows:
            return out
        items, scores = self.similar_indices(
            item_idx[rows], max(ks[r] for r in rows), [fs[r] for r in rows]
        )
        seeds = movies_at(self.vocab, item_idx[rows])
        for j, r in enumerate(rows):
            out[r] = SimilarMovies(seeds[j], listed(self.vocab, items[j], scores[j], ks[r]))
        return out
