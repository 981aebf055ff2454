"""Who rated what, in dense indices: the one container of ratings that the ranking peers, the
metrics and the experiments take whole (as spotlight's ``Interactions``).

The arrays are kept as given (no copy, no cast): the encoded parts of a split hold ``user_idx``
and ``item_idx`` as int64 and ``rating`` as float32 (:meth:`train.data.prepared.Prepared.interactions`),
views of the tensors the rating models train on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Interactions:
    """Ratings as dense indices, with the sizes of the index spaces they are drawn from.

    Attributes
    ----------
    user_idx, item_idx : numpy.ndarray, shape (n,)
        Dense user and movie indices, in ``[0, num_users)`` and ``[0, num_items)``.
    rating : numpy.ndarray, shape (n,)
        The stars of each pair.
    num_users, num_items : int
        How many users and movies there are (a row or column may hold no rating).
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    num_users: int
    num_items: int

    def __post_init__(self) -> None:
        if not len(self.user_idx) == len(self.item_idx) == len(self.rating):
            raise ValueError(
                f"{len(self.user_idx)} users, {len(self.item_idx)} items and "
                f"{len(self.rating)} ratings: one of each per pair"
            )

    def __len__(self) -> int:
        return len(self.rating)

    def where(self, keep: np.ndarray) -> Interactions:
        """The pairs selected by ``keep`` (a boolean mask or indices), same sizes."""
        return Interactions(
            self.user_idx[keep], self.item_idx[keep], self.rating[keep], self.num_users, self.num_items
        )

    def liked(self, threshold: float) -> Interactions:
        """The pairs rated ``threshold`` or more."""
        return self.where(self.rating >= threshold)

    def concat(self, other: Interactions) -> Interactions:
        """These pairs, then ``other``'s (e.g. training and validation: what a user has seen)."""
        if (other.num_users, other.num_items) != (self.num_users, self.num_items):
            raise ValueError(
                f"cannot join {other.num_users} x {other.num_items} interactions to "
                f"{self.num_users} x {self.num_items}"
            )
        return Interactions(
            np.concatenate([self.user_idx, other.user_idx]),
            np.concatenate([self.item_idx, other.item_idx]),
            np.concatenate([self.rating, other.rating]),
            self.num_users,
            self.num_items,
        )

    def user_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, items)``: the movies of user ``u`` are ``items[indptr[u]:indptr[u + 1]]``,
        sorted (a CSR matrix's row pointers and column indices, without its values)."""
        order = np.lexsort((self.item_idx, self.user_idx))
        counts = np.bincount(self.user_idx, minlength=self.num_users)
        return np.concatenate([[0], np.cumsum(counts)]), self.item_idx[order]
