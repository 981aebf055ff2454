"""The dense-index layer that :class:`model.recommender.Recommender` holds, vectorized over batches.

Everything takes dense indices (``user_idx``, ``item_idx``) for many rows at once, so a serving
batch costs one tensor call per kind of work, not one per request:

- ratings of known users (:meth:`Scorer.predict_indices`),
- top-K for known users (:meth:`Scorer.top_k_indices`),
- new users from their ratings (:meth:`Scorer.fold_in`, then :meth:`Scorer.top_k_vectors`
  and :meth:`Scorer.predict_vectors`; :mod:`model.newusers` runs the steps one by one),
- movies similar to a movie (:meth:`Scorer.similar_indices`),
- a popularity ranking for users the model does not know (:meth:`Scorer.popular_indices`).

Every top-K kind scores the catalogue, re-ranks at the asked novelty (:meth:`Scorer.rerank`),
then drops rated and filtered movies and keeps the best (:meth:`Scorer.top_k`), with one
:class:`~model.filtering.MovieFilter` per row. Serving goes through the Recommender (raw ids
in, answers out), which holds a Scorer; offline evaluation and benchmarks build one with
:meth:`Scorer.from_artifact` and call these methods directly.

When the artifact has a ranking model (:mod:`model.ranker`), top-K lists of known and new users
are ordered by it (``rank_by="ranking"``, the default) and similar movies come from it; the
predicted rating of every listed movie comes from the rating model either way.
``rank_by="rating"`` orders by predicted rating instead, as every list was before the ranker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch

from model import artifact
from model.filtering import MovieFilter, filter_mask, masked_top_k
from model.foldin import UserPrior, fold_in, prior_users
from model.network import FactorModel
from model.novelty import DEFAULT_STRENGTHS, penalise, popularity_penalty
from model.popularity import bayesian_average
from model.ranker import LIKED, Ranker
from model.results import RANK_BY
from model.titles import release_years
from model.vocab import Vocabulary

# Up to this many rated movies explain one entry of a list.
REASONS = 3

# Why the popular fallback cannot be served by an artifact from before rating statistics.
NO_POPULARITY = (
    "this model's vocabulary has no per-movie rating statistics (it was built "
    "before they were added): retrain it to serve popularity rankings"
)


class Scorer:
    """Rating prediction and top-K lists over dense indices, with a :class:`FactorModel` and
    its vocabulary.

    Parameters
    ----------
    model : FactorModel
    vocab : Vocabulary
    config : dict, optional
        The artifact's config.json.
    ridge : float
        Weight of the prior when folding in new users (see :mod:`model.foldin`).
    ranker : Ranker, optional
        The ranking model; without one every list is ordered by predicted rating.
    """

    def __init__(
        self,
        model: FactorModel,
        vocab: Vocabulary,
        config: dict | None = None,
        ridge: float = 1.0,
        ranker: Ranker | None = None,
    ):
        if ridge <= 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        if ranker is not None and ranker.config.num_items != vocab.num_items:
            raise ValueError(
                f"the ranking model has {ranker.config.num_items} movies, the vocabulary "
                f"{vocab.num_items}"
            )
        self.model = model.eval()
        self.ranker = ranker.eval() if ranker is not None else None
        self.vocab = vocab
        self.config = config or {}
        self.ridge = ridge
        self._genres = torch.from_numpy(vocab.genres.astype(np.float32))  # (N, G)
        self.years = release_years(vocab.titles)  # (N,) int32, 0 where the title gives none
        self._years = torch.from_numpy(self.years)
        self.prior = UserPrior.from_model(model, prior_users(np.diff(vocab.rated_indptr)))
        # Numpy views of the weights (shared memory): rating a few pairs costs a few numpy
        # calls instead of a torch forward pass (~90 µs of dispatch for a lone pair).
        self._p, self._q, self._bu, self._bi = (
            t.detach().numpy()
            for t in (model.user_vectors, model.item_codes, model.user_bias, model.item_bias)
        )
        self._offset = float(model.offset.detach())
        with torch.no_grad():
            # The codes are sigmoid outputs, all positive: raw cosines are all near 1. Centred
            # on the catalogue's mean code they spread over [-1, 1]. Only the mean and the
            # centred norms are kept, not a centred copy of the codes (N x k).
            self._code_mean = model.item_codes.mean(0)  # (k,)
            self._code_norms = (model.item_codes - self._code_mean).norm(dim=1)  # (N,)
        self.popularity: torch.Tensor | None = None
        if vocab.rating_count is not None and vocab.rating_mean is not None:
            scores = bayesian_average(vocab.rating_count, vocab.rating_mean)
            self.popularity = torch.from_numpy(scores)  # (N,)
        # What less obvious lists are penalised by (model.novelty), and how hard at each level.
        counts = vocab.rating_count if vocab.rating_count is not None else np.zeros(vocab.num_items)
        self._penalty = popularity_penalty(counts)
        self.novelty_strengths = tuple(
            ranker.config.novelty_strengths if ranker is not None else DEFAULT_STRENGTHS
        )

    @classmethod
    def from_artifact(cls, directory: str | Path, ridge: float = 1.0) -> Self:
        """Load an artifact folder (see :mod:`model.artifact`), with its ranking model."""
        model, vocab, config = artifact.load(directory)
        return cls(model, vocab, config, ridge, artifact.load_ranker(directory, config))

    def _ranking_model(self, rank_by: str) -> Ranker | None:
        """The ranking model when it orders a list asked to be ordered by ``rank_by``."""
        if rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
        return self.ranker if rank_by == "ranking" else None

    def ranked_by(self, rank_by: str) -> str:
        """What a list asked to be ordered by ``rank_by`` is ordered by: ``"rating"`` for a
        model without a ranking model, whatever is asked."""
        return "rating" if self._ranking_model(rank_by) is None else "ranking"

    # ------------------------------------------------------------------ known users

    def predict_indices(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Ratings for dense index pairs, :meth:`FactorModel.forward` in numpy: (P,), (P,) ->
        (P,) float32, clamped to the rating scale."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        raw = np.einsum("pk,pk->p", self._p[users], self._q[items])
        raw += self._bu[users] + self._bi[items] + np.float32(self._offset)
        cfg = self.model.config
        return np.clip(raw, cfg.min_rating, cfg.max_rating).astype(np.float32, copy=False)

    def _rated(self, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every rated item of the users at once, CSR rows flattened: (rows into
        ``user_idx``, item indices, positions in ``vocab.rated_items``)."""
        starts, stops = self.vocab.rated_indptr[user_idx], self.vocab.rated_indptr[user_idx + 1]
        counts = stops - starts
        flat = np.repeat(starts, counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        return np.repeat(np.arange(len(user_idx)), counts), self.vocab.rated_items[flat], flat

    @torch.no_grad()
    def score_users(self, user_idx: np.ndarray, rank_by: str = "ranking") -> torch.Tensor:
        """What known users' lists are ordered by, for every movie: (B,) -> (B, N). The
        ranking model's scores (``rank_by="ranking"`` and a ranker) or predicted ratings."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        scores = self.model.score_all(torch.from_numpy(user_idx))  # (B, N)
        ranker = self._ranking_model(rank_by)
        if ranker is not None:
            rows, rated, flat = self._rated(user_idx)
            stars = self.vocab.rated_stars(flat)
            history = ranker.history_rows(rows, rated, stars, len(user_idx))
            scores = ranker.scores(history, scores)
        return scores

    @torch.no_grad()
    def top_k_indices(
        self,
        user_idx: np.ndarray,
        k: int,
        filters: Sequence[MovieFilter] | None = None,
        rank_by: str = "ranking",
        novelty: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` unrated items per known user, in one scoring pass over the catalogue.

        Returns ``(items, scores)``, both (B, k'), k' = min(k, num_items), best first; where a
        user has fewer than k' eligible items the tail is padded with item -1 and score NaN.
        Scores are :meth:`score_users`', re-ranked at ``novelty`` (B,) where given
        (:mod:`model.novelty`); :meth:`predict_indices` gives the listed movies' ratings.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        rows, rated, _ = self._rated(user_idx)
        scores = self.score_users(user_idx, rank_by)
        return self.top_k(self.rerank(scores, novelty), rows, rated, k, filters)

    def histories(self, user_idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each known user's rated items (dense) and the stars given: what explains a list."""
        out = []
        for u in np.asarray(user_idx, dtype=np.int64):
            start, stop = self.vocab.rated_indptr[u], self.vocab.rated_indptr[u + 1]
            positions = np.arange(start, stop)
            out.append((self.vocab.rated_items[positions], self.vocab.rated_stars(positions)))
        return out

    def reasons(
        self, history: tuple[np.ndarray, np.ndarray], items: np.ndarray
    ) -> list[list[tuple[int, float]]]:
        """For each listed item (dense, -1 padding gets none) of one user given by ``history``
        (rated items, stars), up to :data:`REASONS` ``(rated item, stars)``: the rated movies
        whose terms ``x_j B_ji`` add most to the entry's item-item score, largest first,
        positive terms only. Empty lists without a ranking model."""
        listed = np.asarray(items, dtype=np.int64)
        out: list[list[tuple[int, float]]] = [[] for _ in listed]
        rated, stars = history
        valid = np.flatnonzero(listed >= 0)
        if self.ranker is None or not len(rated) or not len(valid):
            return out
        values = np.where(stars >= LIKED, 1.0, self.ranker.config.low_weight)
        terms = self.ranker.contributions(rated, values, listed[valid])  # (h, k)
        best = np.argsort(-terms, axis=0, kind="stable")[:REASONS]  # (<=3, k)
        for col, entry in enumerate(valid):
            out[entry] = [
                (int(rated[j]), float(stars[j])) for j in best[:, col] if terms[j, col] > 0
            ]
        return out

    # ------------------------------------------------------------------ new users

    def fold_in(
        self, item_idx: list[np.ndarray], ratings: list[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors (B, k) and biases (B,) of new users from their ratings, in one solve."""
        return fold_in(self.model, self.prior, item_idx, ratings, self.ridge)

    @torch.no_grad()
    def predict_vectors(
        self, vectors: torch.Tensor, biases: torch.Tensor, rows: np.ndarray, item_idx: np.ndarray
    ) -> np.ndarray:
        """Ratings of (user row, item) pairs for users given by vectors: (P,), (P,) -> (P,)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        items_t = torch.from_numpy(np.asarray(item_idx, dtype=np.int64))
        return self.model.predict_vectors(vectors, biases, rows_t, items_t).numpy()

    @torch.no_grad()
    def score_vectors(
        self,
        vectors: torch.Tensor,
        biases: torch.Tensor,
        rated: list[np.ndarray],
        stars: list[np.ndarray] | None = None,
        rank_by: str = "ranking",
    ) -> torch.Tensor:
        """What the lists of users given by a vector and bias are ordered by, for every movie:
        (B, k), (B,) -> (B, N). The ranking model (``rank_by="ranking"``, a ranker, and
        ``stars`` given) scores each user from their ratings at request time, without
        retraining: ``rated[b]`` (dense item indices) rated ``stars[b]``; else predicted
        ratings."""
        scores = self.model.score_vectors(vectors, biases)  # (B, N)
        rows, cols = rated_pairs(rated)
        ranker = self._ranking_model(rank_by)
        if stars is not None and ranker is not None:
            history = ranker.history_rows(rows, cols, np.concatenate(stars), len(rated))
            scores = ranker.scores(history, scores)
        return scores

    @torch.no_grad()
    def top_k_vectors(
        self,
        vectors: torch.Tensor,
        biases: torch.Tensor,
        rated: list[np.ndarray],
        k: int,
        filters: Sequence[MovieFilter] | None = None,
        stars: list[np.ndarray] | None = None,
        rank_by: str = "ranking",
        novelty: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` items per user given by a vector and bias, skipping ``rated[b]`` (dense
        item indices) for row ``b``, which the user gave ``stars[b]``; returns like
        :meth:`top_k_indices`, scored by :meth:`score_vectors`."""
        scores = self.score_vectors(vectors, biases, rated, stars, rank_by)
        rows, cols = rated_pairs(rated)
        return self.top_k(self.rerank(scores, novelty), rows, cols, k, filters)

    # ------------------------------------------------------------------ movies

    @torch.no_grad()
    def similar_indices(
        self,
        item_idx: np.ndarray,
        k: int,
        filters: Sequence[MovieFilter] | None = None,
        novelty: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most like each of ``item_idx``, the item itself excluded; returns
        like :meth:`top_k_indices`. With a ranking model: the list of a user who liked only that
        movie (scores rank, they are not ratings); without: the closest item codes (cosine of
        centred codes, in [-1, 1])."""
        item_idx = np.asarray(item_idx, dtype=np.int64)
        if self.ranker is not None:
            scores = self.ranker.similar(item_idx)
            return self.top_k(
                self.rerank(scores, novelty), np.arange(len(item_idx)), item_idx, k, filters
            )
        items = torch.from_numpy(item_idx)
        centred = self.model.item_codes[items] - self._code_mean  # (B, k)
        # (c_b . (q_j - m)) = c_b . q_j - c_b . m, so the catalogue is used as it is.
        shift = (centred @ self._code_mean)[:, None]  # (B, 1)
        dots = centred @ self.model.codes_by_column() - shift  # (B, N)
        norms = self._code_norms[items][:, None] * self._code_norms[None, :]  # (B, N)
        scores = dots / norms.clamp_min(1e-12)
        return self.top_k(
            self.rerank(scores, novelty), np.arange(len(item_idx)), item_idx, k, filters
        )

    @torch.no_grad()
    def popular_indices(
        self, batch: int, k: int, filters: Sequence[MovieFilter] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items of highest Bayesian-average rating, for ``batch`` rows (each with
        its own filter); returns like :meth:`top_k_indices`. Raises ``LookupError`` when the
        vocabulary has no rating statistics (an older file)."""
        if self.popularity is None:
            raise LookupError(NO_POPULARITY)
        scores = self.popularity[None, :].repeat(batch, 1)  # (B, N)
        empty = np.zeros(0, dtype=np.int64)
        return self.top_k(scores, empty, empty, k, filters)

    # ------------------------------------------------------------------ shared

    @torch.no_grad()
    def rerank(self, scores: torch.Tensor, novelty: np.ndarray | None) -> torch.Tensor:
        """Scores (B, N) re-ranked at ``novelty`` (B,) with this model's calibrated strengths
        (:func:`model.novelty.penalise`; rows at 0 untouched; all of them when ``novelty`` is
        None): what every list kind does before it removes rated and filtered movies."""
        if novelty is None:
            return scores
        return penalise(scores, novelty, self._penalty, self.novelty_strengths)

    @torch.no_grad()
    def top_k(
        self,
        scores: torch.Tensor,
        rows: np.ndarray,
        cols: np.ndarray,
        k: int,
        filters: Sequence[MovieFilter] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of ``scores`` (B, N) after removing entries ``(rows, cols)`` (what the
        users rated, or the movie itself) and what ``filters`` (one per row) rule out; pads
        with item -1 / score NaN where too few remain (see
        :func:`~model.filtering.masked_top_k`)."""
        allowed = None
        if filters:
            if len(filters) != scores.shape[0]:
                raise ValueError(f"{len(filters)} filters for {scores.shape[0]} rows")
            dropped = []
            for row, f in enumerate(filters):
                # Excluding a movie the model does not know excludes nothing: not an error.
                idx, found = self.vocab.lookup_items(np.asarray(f.exclude_movie_ids, np.int64))
                if found.any():
                    dropped.append((row, idx[found]))
            if dropped:
                rows = np.concatenate([rows, *(np.full(len(c), r) for r, c in dropped)])
                cols = np.concatenate([cols, *(c for _, c in dropped)])
            allowed = filter_mask(filters, self._genres, self.vocab.genre_names, self._years)
        return masked_top_k(scores, rows, cols, k, allowed)


def rated_pairs(rated: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Users' rated items, one array of dense indices per row, flattened: (rows, items)."""
    rows = np.repeat(np.arange(len(rated)), [len(r) for r in rated])
    cols = np.concatenate([np.asarray(r, np.int64) for r in rated]) if rated else rows
    return rows, cols
