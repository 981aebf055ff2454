"""The contract every ranking peer honours, the user-item matrix they learn from, and the
simplest peer: the chart of the most-rated movies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
import torch

from train.data.interactions import Interactions

T = TypeVar("T")

# Ratings at or above this count as "liked": the relevance threshold of train.evaluation.ranking.
LIKED = 4.0


def interaction_matrix(
    ratings: Interactions, low_weight: float = 1.0, dtype: type = np.float64
) -> sp.csr_matrix:
    """Who rated what, as a (num_users, num_items) CSR matrix.

    An entry is 1 for a rating >= :data:`LIKED` and ``low_weight`` for a lower one (1.0: the
    binary matrix of who rated what). A pair given twice counts once.
    """
    if not 0.0 < low_weight <= 1.0:
        raise ValueError(f"low_weight must be in (0, 1], got {low_weight}")
    num_users, num_items = ratings.num_users, ratings.num_items
    users = np.asarray(ratings.user_idx, dtype=np.int64)
    items = np.asarray(ratings.item_idx, dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= num_users):
        raise ValueError(f"user indices must be in [0, {num_users})")
    if len(items) and (items.min() < 0 or items.max() >= num_items):
        raise ValueError(f"item indices must be in [0, {num_items})")
    _, first = np.unique(users * num_items + items, return_index=True)  # one entry per pair
    liked = np.asarray(ratings.rating)[first] >= LIKED
    values: np.ndarray = np.where(liked, 1.0, low_weight).astype(dtype)
    return sp.csr_matrix(
        (values, (users[first], items[first])), shape=(num_users, num_items), dtype=dtype
    )


def history_matrix(
    item_idx_list: Sequence[np.ndarray],
    ratings_list: Sequence[np.ndarray],
    num_items: int,
    low_weight: float = 1.0,
    dtype: type = np.float64,
) -> sp.csr_matrix:
    """:func:`interaction_matrix` of new users, one row per rating history."""
    if len(item_idx_list) != len(ratings_list):
        raise ValueError(f"{len(item_idx_list)} item lists but {len(ratings_list)} rating lists")
    lengths = [len(i) for i in item_idx_list]
    for n, r in zip(lengths, ratings_list):
        if len(r) != n:
            raise ValueError(f"a history has {n} items but {len(r)} ratings")
    users = np.repeat(np.arange(len(lengths)), lengths)
    nothing = [np.zeros(0, dtype=np.int64)]  # no history at all: empty arrays
    items = np.concatenate([np.asarray(i, dtype=np.int64) for i in item_idx_list] or nothing)
    ratings = np.concatenate([np.asarray(r, dtype=np.float64) for r in ratings_list] or nothing)
    histories = Interactions(users, items, ratings, len(lengths), num_items)
    return interaction_matrix(histories, low_weight, dtype)


class RankingPeer(ABC):
    """A top-K recommender that learns from the training part of a split.

    Every score is a float32 tensor of shape (B, num_items), higher is better. Movies the user
    already rated are *not* masked: the metric code and the caller do that.
    """

    @abstractmethod
    def fit(self, train: Interactions) -> RankingPeer:
        """Learn from training ratings (dense indices); returns ``self``."""

    @abstractmethod
    def score(self, user_idx: np.ndarray) -> torch.Tensor:
        """Scores of trained users, shape (len(user_idx), num_items)."""

    @abstractmethod
    def score_history(
        self, item_idx_list: Sequence[np.ndarray], ratings_list: Sequence[np.ndarray]
    ) -> torch.Tensor:
        """Scores of users the peer was not trained on, from their ratings (fold-in), shape
        (len(item_idx_list), num_items)."""

    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        """Item-item scores of each movie in ``item_idx`` against every movie, shape
        (len(item_idx), num_items); the movie itself is not masked."""
        raise NotImplementedError(f"{type(self).__name__} has no item-item scores")

    @property
    def params(self) -> dict:
        """The hyperparameters it was built with (what tuning chooses)."""
        return {}


def fitted(value: T | None, peer: object) -> T:
    """``value``, a peer's learned state; ``RuntimeError`` when ``fit`` has not set it yet."""
    if value is None:
        raise RuntimeError(f"{type(peer).__name__} is not fitted: call fit() first")
    return value


class MostPopular(RankingPeer):
    """Every user gets the movies with the most training ratings, whatever they rated."""

    def __init__(self):
        self.counts: torch.Tensor | None = None  # (num_items,) float32

    def fit(self, train: Interactions) -> MostPopular:
        counts = np.bincount(np.asarray(train.item_idx, dtype=np.int64), minlength=train.num_items)
        self.counts = torch.from_numpy(counts.astype(np.float32))
        return self

    def _expand(self, rows: int) -> torch.Tensor:
        counts = fitted(self.counts, self)
        return counts.expand(rows, len(counts))

    def score(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._expand(len(user_idx))

    def score_history(
        self, item_idx_list: Sequence[np.ndarray], ratings_list: Sequence[np.ndarray]
    ) -> torch.Tensor:
        return self._expand(len(item_idx_list))

    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        """The same chart for every movie: the non-personal answer to "more like this"."""
        return self._expand(len(item_idx))
