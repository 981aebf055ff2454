"""Item co-occurrence cosine: the textbook "people who rated this also rated" similarity.

Two movies are as similar as the cosine between their columns of the 0/1 matrix ``X`` of who
rated what: ``S_ij = (XᵀX)_ij / sqrt(n_i n_j)``, with ``n_i`` the number of users who rated
movie ``i`` (a movie nobody rated is similar to nothing: its row is 0). It has no
hyperparameter, so nothing is tuned; it only answers "more like this movie".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from train.data.interactions import Interactions
from train.peers.base import fitted, interaction_matrix


class CooccurrenceCosine:
    """Cosine between item columns of the binary training matrix; ``similar`` like a peer's."""

    def __init__(self):
        self.x: sp.csc_matrix | None = None  # (num_users, N) float32, 0/1
        self.norms: np.ndarray | None = None  # (N,) float32, sqrt of each movie's raters

    def fit(self, train: Interactions) -> CooccurrenceCosine:
        """Learn from training ratings (dense indices); returns ``self``."""
        x = interaction_matrix(train, dtype=np.float32)
        self.x = x.tocsc()
        self.norms = np.sqrt(np.asarray(x.sum(0), dtype=np.float32).ravel())
        return self

    def similar(self, item_idx: np.ndarray) -> torch.Tensor:
        """Cosine of each movie in ``item_idx`` against every movie, shape
        (len(item_idx), N); the movie itself (1, when it has raters) is not masked."""
        x, norms = fitted(self.x, self), fitted(self.norms, self)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        together = np.asarray((x[:, item_idx].T @ x).todense(), dtype=np.float32)  # (B, N)
        scale = norms[item_idx][:, None] * norms[None, :]
        cosine = np.divide(together, scale, out=np.zeros_like(together), where=scale > 0)
        return torch.from_numpy(cosine)
