"""From dense index rows to the records of :mod:`model.results`, and per-row options.

Shared by the two halves of the raw-id seam (:mod:`model.recommender`, :mod:`model.newusers`):
a top-K row of dense indices (padded with -1) becomes a tuple of
:class:`~model.results.RecommendedMovie`, and a list option given once applies to every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

import numpy as np

from model.results import Movie, Reason, RecommendedMovie
from model.vocab import Vocabulary

T = TypeVar("T")
IdArray = Sequence[int] | np.ndarray  # raw MovieLens ids
About = tuple[int, str, tuple[str, ...]]  # raw id, title, genres


def each(value: T | Sequence[T], n: int, name: str) -> list[T]:
    """``value`` for each of ``n`` rows: a list, tuple or array gives one per row, anything
    else (a number, a string, a filter, None) is every row's."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{len(value)} values of {name} for {n} rows")
        return list(value)
    return [cast(T, value)] * n


def about(vocab: Vocabulary, item_idx: np.ndarray) -> list[About]:
    """Raw id, title and genres of the movies at dense indices ``item_idx`` (all valid)."""
    item_idx = np.asarray(item_idx, dtype=np.int64)
    names = np.array(vocab.genre_names, dtype=object)
    flags = vocab.genres[item_idx].astype(bool)  # (n, G)
    ids, titles = vocab.movie_ids[item_idx].tolist(), vocab.titles[item_idx].tolist()
    return [(m, t, tuple(names[row])) for m, t, row in zip(ids, titles, flags)]


def movies_at(vocab: Vocabulary, item_idx: np.ndarray) -> list[Movie]:
    """The movies at dense indices ``item_idx`` (all valid)."""
    return [Movie(*movie) for movie in about(vocab, item_idx)]


def listed(
    vocab: Vocabulary,
    items: np.ndarray,
    scores: np.ndarray,
    k: int,
    ratings: np.ndarray | None = None,
    reasons: list[list[tuple[int, float]]] | None = None,
) -> tuple[RecommendedMovie, ...]:
    """One top-K row's first ``k`` entries, up to the padding (item -1) that ends a row with
    fewer eligible movies; ``ratings`` (the user's predicted ones) where the list has them;
    ``reasons`` (per entry, the rated items and stars that explain it) when asked for."""
    items = items[:k]
    end = int(np.argmin(items >= 0)) if (items < 0).any() else len(items)
    rated: list[float | None] = [None] * end if ratings is None else ratings[:end].tolist()
    because: list[tuple[Reason, ...] | None] = [None] * end
    if reasons is not None:
        because = [explained(vocab, entry) for entry in reasons[:end]]
    return tuple(
        RecommendedMovie(*movie, score, rating, why)
        for movie, score, rating, why in zip(
            about(vocab, items[:end]), scores[:end].tolist(), rated, because
        )
    )


def explained(vocab: Vocabulary, reasons: list[tuple[int, float]]) -> tuple[Reason, ...]:
    """Records of an entry's reasons, given as (dense rated item, stars) pairs."""
    if not reasons:
        return ()
    items = np.array([item for item, _ in reasons], dtype=np.int64)
    ids, titles = vocab.movie_ids[items].tolist(), vocab.titles[items].tolist()
    return tuple(Reason(m, t, stars) for m, t, (_, stars) in zip(ids, titles, reasons))
