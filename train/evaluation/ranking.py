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

from collections.abc import Callable, Sequence

import numpy as np
import torch

from train.data.interactions import Interactions
from train.data.prepared import Prepared

# Recall is also reported at this longer cutoff, the one published EASE/VAE results use.
RECALL_CUTOFFS = (10, 20)
# Held-out ratings at or above this are relevant.
THRESHOLD = 4.0


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


class ListTally:
    """The figures of :func:`ranking_metrics`, gathered from top lists batch by batch.

    Whatever made the lists (scores ranked offline, or the answers of a server), they are
    counted the same way: :meth:`add` each batch of lists with the relevant movies of their
    users, then :meth:`figures`.

    Parameters
    ----------
    num_items : int
    k : int
        Cutoff of NDCG and of the beyond-accuracy figures (and of one recall).
    recall_at : tuple of int
        Further recall cutoffs.
    genres : numpy.ndarray, shape (num_items, G), optional
        Multi-hot genres of the catalogue; without them ``diversity@k`` is left out.
    """

    def __init__(
        self,
        num_items: int,
        k: int = 10,
        recall_at: tuple[int, ...] = RECALL_CUTOFFS,
        genres: np.ndarray | None = None,
    ):
        self.cutoffs = sorted({k, *recall_at})
        if self.cutoffs[0] < 1:
            raise ValueError(f"cutoffs must be positive, got {self.cutoffs}")
        self.num_items, self.k, self.genres = num_items, k, genres
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))
        self.recalls: dict[int, list[float]] = {c: [] for c in self.cutoffs}
        self.ndcgs: list[float] = []
        self.recommended = np.zeros(num_items, dtype=np.int64)  # times each movie is listed
        self.diversity: list[np.ndarray] = []

    @property
    def depth(self) -> int:
        """How long a list must be for every cutoff (at most the catalogue)."""
        return min(self.cutoffs[-1], self.num_items)

    def add(self, top: np.ndarray, relevant: Sequence[np.ndarray]) -> None:
        """Count lists ``top`` (B, >= :attr:`depth`; dense items, best first, -1 padding a
        short list) of users whose relevant movies are ``relevant`` (one non-empty array per
        row)."""
        if len(top) != len(relevant):
            raise ValueError(f"{len(top)} lists for {len(relevant)} relevant sets")
        k, discounts = self.k, self.discounts
        listed = top[:, :k]
        self.recommended += np.bincount(listed[listed >= 0], minlength=self.num_items)
        if self.genres is not None:
            if (listed < 0).any():
                raise ValueError("genre diversity needs full lists")
            self.diversity.append(genre_diversity(listed, self.genres))
        for row, rel in zip(top, relevant):
            if not len(rel):
                raise ValueError("every counted list needs a relevant movie")
            hits = np.isin(row, rel)  # (depth,)
            for c in self.cutoffs:
                self.recalls[c].append(hits[:c].sum() / min(c, len(rel)))
            ideal = min(k, len(rel))
            self.ndcgs.append(
                (hits[:k] * discounts[: len(hits[:k])]).sum() / discounts[:ideal].sum()
            )

    def figures(self, train: Interactions) -> dict[str, float]:
        """The figures of the lists counted so far (see :func:`ranking_metrics`), popularity
        measured by ``train``'s rating counts."""
        k, recommended, num_items = self.k, self.recommended, self.num_items
        out = {f"recall@{c}": float(np.mean(self.recalls[c])) for c in self.cutoffs}
        out[f"ndcg@{k}"] = float(np.mean(self.ndcgs))
        out[f"coverage@{k}"] = float((recommended > 0).mean())
        percentile = popularity_percentile(train.item_idx, num_items)
        out[f"popularity_percentile@{k}"] = float(
            (recommended * percentile).sum() / max(recommended.sum(), 1)
        )
        entries = max(recommended.sum(), 1)
        information = self_information(train.item_idx, num_items)
        out[f"novelty@{k}"] = float((recommended * information).sum() / entries)
        tail = ~head_items(train.item_idx, num_items)
        out[f"long_tail@{k}"] = float(recommended[tail].sum() / entries)
        if self.genres is not None:
            out[f"diversity@{k}"] = (
                float(np.concatenate(self.diversity).mean()) if self.diversity else 0.0
            )
        out["users"] = len(self.ndcgs)
        return out


def relevant_rows(
    test: Interactions, threshold: float = THRESHOLD
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(users, relevant)``: the users of ``test`` with a rating >= ``threshold``, in index
    order, and each one's relevant movies (sorted)."""
    indptr, items = test.liked(threshold).user_rows()
    users = np.flatnonzero(np.diff(indptr) > 0)
    return users, [items[indptr[u] : indptr[u + 1]] for u in users]


def ranking_metrics(
    score_users: Callable[[np.ndarray], torch.Tensor],
    train: Interactions,
    test: Interactions,
    k: int = 10,
    threshold: float = THRESHOLD,
    chunk: int = 512,
    seen: Interactions | None = None,
    recall_at: tuple[int, ...] = RECALL_CUTOFFS,
    genres: np.ndarray | None = None,
) -> dict[str, float]:
    """Ranking quality of ``score_users`` over test users with at least one relevant movie.

    Parameters
    ----------
    score_users : callable
        ``score_users(user_idx)`` returns scores of shape (len(user_idx), num_items), higher
        is better, for users of ``test``; it is not modified.
    train : Interactions
        Training ratings: excluded from the candidates unless ``seen`` is given (then they
        must index ``test``'s users), and always the rating counts behind the popularity
        percentile, novelty and long tail.
    test : Interactions
        Held-out ratings; relevant are those >= ``threshold``.
    k : int
        Cutoff of NDCG, coverage and popularity percentile (and of one recall).
    chunk : int
        Users scored at once.
    seen : Interactions, optional
        Pairs of ``test``'s users excluded from the candidates instead of the training pairs,
        e.g. training and validation pairs (``train.concat(validation)``) when scoring test.
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
    seen = train if seen is None else seen
    if seen.num_users != test.num_users or train.num_items != test.num_items:
        raise ValueError(
            f"test has {test.num_users} users and {test.num_items} movies, the excluded pairs "
            f"{seen.num_users} users, training {train.num_items} movies"
        )
    tally = ListTally(test.num_items, k, recall_at, genres)
    users, relevant = relevant_rows(test, threshold)
    seen_ptr, seen_items = seen.user_rows()
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        scores = score_users(batch).clone()  # (B, N)
        counts = seen_ptr[batch + 1] - seen_ptr[batch]
        rows = np.repeat(np.arange(len(batch)), counts)
        cols = np.concatenate([seen_items[seen_ptr[u] : seen_ptr[u + 1]] for u in batch])
        scores[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = -torch.inf
        top = torch.topk(scores, tally.depth, dim=1).indices.numpy()  # (B, depth), best first
        tally.add(top, relevant[start : start + chunk])
    return tally.figures(train)


def ranking_on(
    score_users: Callable[[np.ndarray], torch.Tensor], data: Prepared, part: str
) -> dict[str, float]:
    """:func:`ranking_metrics` of ``score_users`` on ``part`` ("validation" or "test") of
    ``data``, under the reports' protocol: on validation the candidates are the movies a user
    did not rate in training; on test, those they rated in neither training nor validation
    (a served system never recommends what the user already rated)."""
    if part not in ("validation", "test"):
        raise ValueError(f"part must be 'validation' or 'test', got {part!r}")
    train = data.interactions("train")
    seen = train.concat(data.interactions("validation")) if part == "test" else None
    return ranking_metrics(
        score_users, train, data.interactions(part), seen=seen, genres=data.vocab.genres
    )


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
