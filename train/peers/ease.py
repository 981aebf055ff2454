"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

An item-item linear model with a zero diagonal, in closed form:

    G = XᵀX + λI,    P = G⁻¹,    B = I − P / diag(P)   (column j divided by P_jj)

so ``B_jj = 0`` and a user with row ``x`` scores ``x B``. ``X`` is who rated what: 0/1, or,
rating-aware, 1 for ratings >= 4 and ``low_weight`` for lower ones (a low rating is still
evidence of interest, but weaker evidence of the liking that relevance means here).

The inverse is taken in float64 through a Cholesky factorization (G is symmetric positive
definite), which costs about half a general inverse; B is kept in float32 for scoring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import lapack

from train.data.interactions import Interactions
from train.peers.base import RankingPeer, fitted, history_matrix, interaction_matrix


def ease_weights(x: sp.spmatrix | np.ndarray, l2: float) -> np.ndarray:
    """The EASE matrix B (float64, shape (N, N), zero diagonal) of user-item matrix ``x``."""
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    gram = x.T @ x
    gram = gram.toarray() if sp.issparse(gram) else np.array(gram, dtype=np.float64)
    gram = gram.astype(np.float64, copy=False)
    gram[np.diag_indices_from(gram)] += l2
    factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"XᵀX + λI is not positive definite (dpotrf info {info})")
    precision, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverting XᵀX + λI failed (dpotri info {info})")
    precision = np.triu(precision) + np.triu(precision, 1).T  # dpotri fills one triangle
    weights = -precision / np.diag(precision)  # (N, N): column j over P_jj
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


class EASE(RankingPeer):
    """EASE on the 0/1 matrix (``low_weight`` 1.0) or rating-aware (``low_weight`` < 1).

    Parameters
    ----------
    l2 : float
        λ, the ridge on B; larger values pull scores towards popularity. On MovieLens the best
        values lie in the hundreds to low thousands (tuned on validation).
    low_weight : float
        Entry of X for a rating below 4 (1.0: binary EASE).
    """

    def __init__(self, l2: float = 800.0, low_weight: float = 1.0):
        if l2 <= 0:
            raise ValueError(f"l2 must be positive, got {l2}")
        if not 0.0 < low_weight <= 1.0:
            raise ValueError(f"low_weight must be in (0, 1], got {low_weight}")
        self.l2 = float(l2)
        self.low_weight = float(low_weight)
        self.x: sp.csr_matrix | None = None  # (num_users, N) float32, the training rows
        self.weights: np.ndarray | None = None  # (N, N) float32, B

    @property
    def params(self) -> dict:
        out = {"l2": self.l2}
        if self.low_weight != 1.0:
            out["low_weight"] = self.low_weight
        return out

    def fit(self, train: Interactions) -> EASE:
        x = interaction_matrix(train, self.low_weight)
        self.weights = ease_weights(x, self.l2).astype(np.float32)
        self.x = x.astype(np.float32)
        return self

    def _scores(self, x: sp.csr_matrix) -> torch.Tensor:
        weights = fitted(self.weights, self)
        return torch.from_numpy(np.asarray(x @ weights, dtype=np.float32))  # (B, N)

    def score(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._scores(fitted(self.x, self)[np.asarray(user_idx)])

    def score_history(
        self, item_idx_list: Sequence[np.ndarray], ratings_list: Sequence[np.ndarray]
    ) -> torch.Tensor:
        num_items = fitted(self.weights, self).shape[0]
        x = history_matrix(item_idx_list, ratings_list, num_items, self.low_weight, np.float32)
        return self._scores(x)

    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        """Row ``i`` of B: how much having rated movie ``i`` adds to every movie's score."""
        return torch.from_numpy(fitted(self.weights, self)[np.asarray(item_idx)])
