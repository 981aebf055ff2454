"""Top-K ranking quality: Recall@K and NDCG@K against held-out ratings.

For each test user the relevant movies are their held-out movies rated at least
``threshold``; candidates are all movies except those the user rated in *training*.
Recall@K is truncated (hits / min(K, relevant)), as in Liang et al. 2018, so a perfect list
scores 1 even for users with more than K relevant movies; NDCG@K uses binary gains.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def _csr(users: np.ndarray, items: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, users))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])
    return indptr, items[order]


def ranking_metrics(
    score_users: Callable[[np.ndarray], torch.Tensor],
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    num_users: int,
    num_items: int,
    k: int = 10,
    threshold: float = 4.0,
    chunk: int = 512,
) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over test users with at least one relevant movie.

    ``score_users(user_idx)`` returns scores of shape (len(user_idx), num_items).
    """
    relevant = test_ratings >= threshold
    rel_ptr, rel_items = _csr(test_users[relevant], test_items[relevant], num_users)
    seen_ptr, seen_items = _csr(train_users, train_items, num_users)
    users = np.flatnonzero(np.diff(rel_ptr) > 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        scores = score_users(batch).clone()  # (B, N)
        counts = seen_ptr[batch + 1] - seen_ptr[batch]
        rows = np.repeat(np.arange(len(batch)), counts)
        cols = np.concatenate([seen_items[seen_ptr[u] : seen_ptr[u + 1]] for u in batch])
        scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = -torch.inf
        top = torch.topk(scores, k, dim=1).indices.numpy()  # (B, k)
        for row, u in enumerate(batch):
            rel = rel_items[rel_ptr[u] : rel_ptr[u + 1]]
            hits = np.isin(top[row], rel)
            ideal = min(k, len(rel))
            recalls.append(hits.sum() / ideal)
            ndcgs.append((hits * discounts).sum() / discounts[:ideal].sum())
    return {
        f"recall@{k}": float(np.mean(recalls)),
        f"ndcg@{k}": float(np.mean(ndcgs)),
        "users": len(users),
    }


def popularity_scorer(train_items: np.ndarray, num_items: int) -> Callable:
    """Scores every movie by its number of training ratings, the same for every user."""
    popularity = torch.from_numpy(np.bincount(train_items, minlength=num_items).astype(np.float32))
    return lambda users: popularity.expand(len(users), num_items)
