"""Top-K ranking quality against held-out ratings: accuracy and discovery in one pass.

For each evaluated user the relevant movies are their held-out movies rated at least
``threshold``; candidates are all movies except those the user already rated (by default in
*training*; when scoring test pass ``seen`` = training and validation, since a served system
would never recommend what the user rated in either). Recall@K is truncated
(hits / min(K, relevant)), as in Liang et al. 2018, so a perfect list scores 1 even for users
with more than K relevant movies; NDCG@K uses binary gains.

Beyond accuracy, five measures describe the top-``k`` lists themselves:

- ``coverage@k``: the share of all ``num_items`` movies that appear in at least one evaluated
  user's top-``k``;
- ``popularity_percentile@k``: the mean, over every recommended entry, of the movie's
  percentile among all movies by training rating count (0-100, ties counted half, so a chart
  of the most-rated movies scores close to 100 and a uniform pick about 50);
- ``novelty@k``: the mean self-information of the recommended movies, ``-log2`` of each
  movie's share of the training ratings (a movie without training ratings counts one), in
  bits: higher is less expected;
- ``diversity@k``: intra-list genre diversity, the mean over lists of the mean over pairs of
  listed movies of ``1 - Jaccard(genres_i, genres_j)`` (two movies without genres count as
  alike), given the catalogue's genres;
- ``long_tail@k``: the share of recommended entries outside the head, the most-rated movies
  that together hold half of the training ratings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# Recall is also reported at this longer cutoff, the one published EASE/VAE results use.
RECALL_CUTOFFS = (10, 20)


def _csr(users: np.ndarray, items: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, users))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])
    return indptr, items[order]


def popularity_percentile(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Each movie's percentile (0-100) among all ``num_items`` movies by training rating count.

    ``100 * (#movies with fewer ratings + 0.5 * #others with as many) / num_items``, the
    "mean" convention of ``scipy.stats.percentileofscore`` (ties count half), so the many
    unrated movies share one low value instead of 0.
    """
    counts = np.bincount(train_items, minlength=num_items)
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    at_most = np.searchsorted(ordered, counts, side="right")
    return 100.0 * (below + at_most) / (2.0 * num_items)


def head_items(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """(N,) bool: the most-rated movies that together hold half of the training ratings (the
    fewest such, ties broken by index): what ``long_tail@k`` counts as not the tail."""
    counts = np.bincount(train_items, minlength=num_items)
    order = np.argsort(-counts, kind="stable")
    held = np.cumsum(counts[order])
    size = int(np.searchsorted(held, held[-1] / 2.0)) + 1 if held[-1] > 0 else 0
    head = np.zeros(num_items, dtype=bool)
    head[order[:size]] = True
    return head


def self_information(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """(N,) ``-log2`` of each movie's share of the training ratings (at least one rating)."""
    counts = np.maximum(np.bincount(train_items, minlength=num_items), 1).astype(np.float64)
    return -np.log2(counts / max(len(train_items), 1))


def genre_diversity(lists: np.ndarray, genres: np.ndarray) -> np.ndarray:
    """(B,) intra-list diversity of top lists (B, k) of dense items: the mean over pairs of
    ``1 - Jaccard`` of their multi-hot ``genres`` (N, G) rows; 0 for a list of one."""
    flags = torch.from_numpy(np.asarray(genres, dtype=np.float32)[lists])  # (B, k, G)
    shared = flags @ flags.transpose(1, 2)  # (B, k, k)
    sizes = flags.sum(2)  # (B, k)
    union = sizes[:, :, None] + sizes[:, None, :] - shared
    distance = 1.0 - torch.where(union > 0, shared / union.clamp_min(1.0), torch.ones(()))
    k = lists.shape[1]
    pairs = k * (k - 1)
    if pairs == 0:
        return np.zeros(len(lists))
    return (distance.sum((1, 2)) / pairs).numpy().astype(np.float64)  # diagonal is 0


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
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    recall_at: tuple[int, ...] = RECALL_CUTOFFS,
    genres: np.ndarray | None = None,
) -> dict[str, float]:
    """Ranking quality of ``score_users`` over test users with at least one relevant movie.

    Parameters
    ----------
    score_users : callable
        ``score_users(user_idx)`` returns scores of shape (len(user_idx), num_items), higher
        is better; it is not modified.
    train_users, train_items : numpy.ndarray
        Training pairs: excluded from the candidates unless ``seen`` is given, and always the
        rating counts behind the popularity percentile.
    test_users, test_items, test_ratings : numpy.ndarray
        Held-out ratings; relevant are those >= ``threshold``.
    num_users, num_items : int
    k : int
        Cutoff of NDCG, coverage and popularity percentile (and of one recall).
    chunk : int
        Users scored at once.
    seen : tuple of numpy.ndarray, optional
        ``(users, items)`` excluded from the candidates instead of the training pairs, e.g.
        training and validation pairs concatenated when scoring test.
    recall_at : tuple of int
        Further recall cutoffs.
    genres : numpy.ndarray, shape (num_items, G), optional
        Multi-hot genres of the catalogue; without them ``diversity@k`` is left out.

    Returns
    -------
    dict
        ``recall@c`` for ``k`` and each of ``recall_at``, ``ndcg@k``, ``coverage@k``,
        ``popularity_percentile@k``, ``novelty@k``, ``long_tail@k``, ``diversity@k`` (with
        ``genres``), and ``users`` (how many were evaluated).
    """
    cutoffs = sorted({k, *recall_at})
    if cutoffs[0] < 1:
        raise ValueError(f"cutoffs must be positive, got {cutoffs}")
    depth = min(cutoffs[-1], num_items)
    seen_users, seen_items = seen if seen is not None else (train_users, train_items)
    relevant = test_ratings >= threshold
    rel_ptr, rel_items = _csr(test_users[relevant], test_items[relevant], num_users)
    seen_ptr, seen_items = _csr(seen_users, seen_items, num_users)
    percentile = popularity_percentile(train_items, num_items)
    information = self_information(train_items, num_items)
    tail = ~head_items(train_items, num_items)
    diversity: list[np.ndarray] = []
    users = np.flatnonzero(np.diff(rel_ptr) > 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls: dict[int, list[float]] = {c: [] for c in cutoffs}
    ndcgs, recommended = [], np.zeros(num_items, dtype=np.int64)
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        scores = score_users(batch).clone()  # (B, N)
        counts = seen_ptr[batch + 1] - seen_ptr[batch]
        rows = np.repeat(np.arange(len(batch)), counts)
        cols = np.concatenate([seen_items[seen_ptr[u] : seen_ptr[u + 1]] for u in batch])
        scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = -torch.inf
        top = torch.topk(scores, depth, dim=1).indices.numpy()  # (B, depth), best first
        recommended += np.bincount(top[:, :k].ravel(), minlength=num_items)
        if genres is not None:
            diversity.append(genre_diversity(top[:, :k], genres))
        for row, u in enumerate(batch):
            rel = rel_items[rel_ptr[u] : rel_ptr[u + 1]]
            hits = np.isin(top[row], rel)  # (depth,)
            for c in cutoffs:
                recalls[c].append(hits[:c].sum() / min(c, len(rel)))
            ideal = min(k, len(rel))
            ndcgs.append((hits[:k] * discounts[: len(hits[:k])]).sum() / discounts[:ideal].sum())
    out = {f"recall@{c}": float(np.mean(recalls[c])) for c in cutoffs}
    out[f"ndcg@{k}"] = float(np.mean(ndcgs))
    out[f"coverage@{k}"] = float((recommended > 0).mean())
    out[f"popularity_percentile@{k}"] = float(
        (recommended * percentile).sum() / max(recommended.sum(), 1)
    )
    entries = max(recommended.sum(), 1)
    out[f"novelty@{k}"] = float((recommended * information).sum() / entries)
    out[f"long_tail@{k}"] = float(recommended[tail].sum() / entries)
    if genres is not None:
        out[f"diversity@{k}"] = float(np.concatenate(diversity).mean()) if diversity else 0.0
    out["users"] = len(users)
    return out


def list_hits(lists: np.ndarray, relevant: list[np.ndarray], k: int = 10) -> dict[str, float | int]:
    """How many of each row's listed movies are relevant to that row's user.

    Parameters
    ----------
    lists : numpy.ndarray, shape (B, >= k)
        Dense item indices, best first; -1 pads a short list (never a hit).
    relevant : list of numpy.ndarray
        Row ``b``'s relevant movies; rows with none are left out.
    k : int
        Cutoff.

    Returns
    -------
    dict
        ``hit_rate@k`` (share of rows with at least one hit), ``precision@k`` (hits / k),
        ``recall@k`` (hits / min(k, relevant), truncated as in :func:`ranking_metrics`), each
        a mean over rows, and ``users`` (rows counted).
    """
    if len(lists) != len(relevant):
        raise ValueError(f"{len(lists)} lists for {len(relevant)} relevant sets")
    hits, sizes = [], []
    for row, rel in zip(np.asarray(lists)[:, :k], relevant):
        if len(rel):
            hits.append(int(np.isin(row[row >= 0], rel).sum()))
            sizes.append(min(k, len(rel)))
    hits_a, sizes_a = np.array(hits, dtype=np.float64), np.array(sizes, dtype=np.float64)
    if not len(hits):
        return {f"hit_rate@{k}": 0.0, f"precision@{k}": 0.0, f"recall@{k}": 0.0, "users": 0}
    return {
        f"hit_rate@{k}": float((hits_a > 0).mean()),
        f"precision@{k}": float((hits_a / k).mean()),
        f"recall@{k}": float((hits_a / sizes_a).mean()),
        "users": len(hits),
    }
