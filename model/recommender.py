"""Recommendation logic over a trained model and its vocabulary, vectorized over batches.

Everything takes arrays of raw ids or dense indices for many requests at once, so a serving
batch costs one tensor call per kind of work, not one per request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model import artifact
from model.network import FactorModel
from model.vocab import Vocabulary


class Recommender:
    """Rating prediction and top-K recommendation with a :class:`FactorModel` and its vocabulary."""

    def __init__(self, model: FactorModel, vocab: Vocabulary, config: dict | None = None):
        self.model = model.eval()
        self.vocab = vocab
        self.config = config or {}
        self._genre_names = np.array(vocab.genre_names, dtype=object)

    @classmethod
    def from_artifact(cls, directory: str | Path) -> Recommender:
        """Load an artifact folder (see :mod:`model.artifact`)."""
        return cls(*artifact.load(directory))

    @torch.no_grad()
    def predict_indices(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Ratings for dense index pairs, in one forward pass: (P,), (P,) -> (P,) float32."""
        if len(user_idx) == 0:
            return np.zeros(0, dtype=np.float32)
        users = torch.from_numpy(np.asarray(user_idx, dtype=np.int64))
        items = torch.from_numpy(np.asarray(item_idx, dtype=np.int64))
        return self.model(users, items).numpy()

    @torch.no_grad()
    def top_k_indices(self, user_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` unrated items per user, in one scoring pass over the catalogue.

        Returns ``(items, scores)``, both (B, k'), k' = min(k, num_items), best first; where a
        user has fewer than k' unrated items the tail is padded with item -1 and score NaN.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        scores = self.model.score_all(torch.from_numpy(user_idx))  # (B, N)
        # Mask every rated item at once: CSR rows of the batch's users, flattened.
        starts, stops = self.vocab.rated_indptr[user_idx], self.vocab.rated_indptr[user_idx + 1]
        counts = stops - starts
        rows = np.repeat(np.arange(len(user_idx)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        cols = self.vocab.rated_items[np.repeat(starts, counts) + offsets]
        scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = -torch.inf
        k = min(k, scores.shape[1])
        top_scores, top_items = torch.topk(scores, k, dim=1)  # (B, k), sorted
        top_scores, top_items = top_scores.numpy(), top_items.numpy()
        unrated = np.isfinite(top_scores)
        return np.where(unrated, top_items, -1), np.where(unrated, top_scores, np.nan)

    def movie(self, item_idx: int) -> dict:
        """Raw id, title and genres of one item."""
        return {
            "movie_id": int(self.vocab.movie_ids[item_idx]),
            "title": str(self.vocab.titles[item_idx]),
            "genres": list(self._genre_names[self.vocab.genres[item_idx].astype(bool)]),
        }
