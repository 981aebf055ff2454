"""iALS (Hu, Koren & Volinsky 2008) through the ``implicit`` package.

Every user-item pair is a 0/1 preference with confidence ``1 + alpha * x`` (``x`` the 0/1
matrix of who rated what), fitted by alternating least squares with an L2 penalty. A new user
is folded in by the exact least-squares solve of their vector against the fixed item factors
(``recalculate_user``); similar movies are the cosine of item factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from train.data.interactions import Interactions
from train.peers.base import RankingPeer, fitted, history_matrix, interaction_matrix


class IALS(RankingPeer):
    """Implicit-feedback matrix factorization (``implicit``'s CPU ALS, conjugate gradient).

    Parameters
    ----------
    factors : int
        Size of the user and item vectors.
    regularization : float
        L2 penalty on the vectors.
    alpha : float
        Confidence slope: an observed pair weighs ``1 + alpha`` against 1 for an unobserved one.
    iterations : int
        ALS sweeps; 15 (implicit's default) is past the point where MovieLens ranking moves.
    seed : int
        ``random_state`` of the initial vectors, for reproducible fits.
    num_threads : int
        implicit's own threads; 1 keeps it from competing with other work on small machines.
    """

    def __init__(
        self,
        factors: int = 128,
        regularization: float = 1.0,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 1,
    ):
        for name, count in (("factors", factors), ("iterations", iterations)):
            if count < 1:
                raise ValueError(f"{name} must be at least 1, got {count}")
        for name, weight in (("regularization", regularization), ("alpha", alpha)):
            if weight <= 0:
                raise ValueError(f"{name} must be positive, got {weight}")
        self.factors, self.regularization, self.alpha = int(factors), regularization, alpha
        self.iterations, self.seed, self.num_threads = iterations, seed, num_threads
        self.model: AlternatingLeastSquares | None = None

    @property
    def params(self) -> dict:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha}

    def fit(self, train: Interactions) -> IALS:
        x = interaction_matrix(train, dtype=np.float32)
        # implicit warns (and runs far slower) when BLAS runs its own thread pool as well.
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                calculate_training_loss=False,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
            self.model.fit(x, show_progress=False)
        return self

    def _scores(self, user_factors: np.ndarray) -> torch.Tensor:
        items = torch.from_numpy(fitted(self.model, self).item_factors)  # (N, k)
        return torch.from_numpy(np.ascontiguousarray(user_factors)) @ items.T  # (B, N)

    def score(self, user_idx: np.ndarray) -> torch.Tensor:
        return self._scores(fitted(self.model, self).user_factors[np.asarray(user_idx)])

    def score_history(
        self, item_idx_list: Sequence[np.ndarray], ratings_list: Sequence[np.ndarray]
    ) -> torch.Tensor:
        model = fitted(self.model, self)
        x = history_matrix(
            item_idx_list, ratings_list, model.item_factors.shape[0], dtype=np.float32
        )
        with threadpool_limits(1, "blas"):
            vectors = model.recalculate_user(np.arange(x.shape[0]), x)  # (B, k)
        return self._scores(vectors)

    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        items = torch.from_numpy(fitted(self.model, self).item_factors)  # (N, k)
        unit = items / items.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit[torch.from_numpy(np.asarray(item_idx, dtype=np.int64))] @ unit.T
