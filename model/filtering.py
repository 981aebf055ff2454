"""Which movies a list may hold: the one filter of every top-K kind, and the masked top-K.

A request's parser builds :class:`MovieFilter` directly (raw movie ids, genre names); the
scoring layer turns a batch of them into one mask over the catalogue, so filtering costs a
few tensor operations per batch, not a pass per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MovieFilter:
    """Which movies one top-K list may hold.

    Attributes
    ----------
    genres : tuple of str
        Keep movies with *any* of these genres; empty keeps every genre.
    exclude_genres : tuple of str
        Drop movies with any of these genres.
    exclude_movie_ids : tuple of int
        Raw movie ids to drop; ids the model does not know exclude nothing.
    years : tuple of two int, or None
        Keep movies released in these years, both ends included (the year written in the
        title, :mod:`model.titles`); a movie whose title gives no year is dropped. None keeps
        every year.
    """

    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    exclude_movie_ids: tuple[int, ...] = ()
    years: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.years is not None and (len(self.years) != 2 or self.years[0] > self.years[1]):
            raise ValueError(f"years must be (first, last) with first <= last, got {self.years}")


NO_FILTER = MovieFilter()


def filter_mask(
    filters: Sequence[MovieFilter],
    genres: torch.Tensor,
    genre_names: Sequence[str],
    years: torch.Tensor,
) -> torch.Tensor | None:
    """(B, N) mask of the movies each row's genre and year filters keep; None when no row
    filters by either (movie ids to exclude are removed by the caller).

    ``genres`` is the catalogue's (N, G) float multi-hot matrix, in the order of
    ``genre_names``; ``years`` its (N,) release years (0: none given).
    """
    keep = genre_mask(filters, genres, genre_names)
    if not any(f.years for f in filters):
        return keep
    first = torch.tensor([f.years[0] if f.years else 0 for f in filters])[:, None]  # (B, 1)
    last = torch.tensor([f.years[1] if f.years else 2**31 - 1 for f in filters])[:, None]
    in_years = (years[None, :] >= first) & (years[None, :] <= last)  # (B, N)
    return in_years if keep is None else keep & in_years


def genre_mask(
    filters: Sequence[MovieFilter], genres: torch.Tensor, genre_names: Sequence[str]
) -> torch.Tensor | None:
    """(B, N) mask of the movies each row's genre filter keeps; None when no row filters.

    ``genres`` is the catalogue's (N, G) float multi-hot matrix, in the order of
    ``genre_names``. Raises ``ValueError`` for a genre not in ``genre_names`` (the handler's
    parser refuses those first, naming the field).
    """
    if not any(f.genres or f.exclude_genres for f in filters):
        return None
    index = {name: j for j, name in enumerate(genre_names)}
    include = torch.zeros(len(filters), len(genre_names))
    exclude = torch.zeros(len(filters), len(genre_names))
    for row, f in enumerate(filters):
        for flags, names in ((include, f.genres), (exclude, f.exclude_genres)):
            unknown = [g for g in names if g not in index]
            if unknown:
                raise ValueError(f"unknown genre {unknown[0]!r}; known: {', '.join(index)}")
            flags[row, [index[g] for g in names]] = 1.0
    keep = (include @ genres.T) > 0  # (B, N): has any wanted genre
    keep |= (include.sum(1) == 0)[:, None]  # rows without a genre list keep everything
    keep &= (exclude @ genres.T) == 0  # and none of the unwanted ones
    return keep


def masked_top_k(
    scores: torch.Tensor, rows: np.ndarray, cols: np.ndarray, k: int, allowed: torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``scores`` (B, N), modified in place: entries ``(rows, cols)`` and those
    ``allowed`` (B, N) rules out are removed first.

    Returns ``(items, scores)``, both (B, k'), k' = min(k, N), best first; where a row has
    fewer than k' entries left the tail is padded with item -1 and score NaN.
    """
    if allowed is not None:
        scores = scores.masked_fill(~allowed, -torch.inf)
    rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    scores[rows_t, torch.from_numpy(np.asarray(cols, dtype=np.int64))] = -torch.inf
    k = min(k, scores.shape[1])
    top_scores, top_items = torch.topk(scores, k, dim=1)  # (B, k), sorted
    top_np, items_np = top_scores.numpy(), top_items.numpy()
    kept = np.isfinite(top_np)
    return np.where(kept, items_np, -1), np.where(kept, top_np, np.nan)
