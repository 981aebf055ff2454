"""Id vocabulary: raw MovieLens ids <-> dense indices, movie metadata, who rated what, and each
movie's rating count and mean (for popularity rankings).

The index maps may cover more ratings than the rest: a model trained on a split knows every
user and movie of the dataset, but holds (and excludes from top-K as already seen) only the
ratings it was trained on.

It is saved as one ``vocab.npz`` of plain arrays (no pickle), which travels inside the .mar.
Naming: ``user_id``/``movie_id`` are raw MovieLens ids; ``user_idx``/``item_idx`` dense indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from model.errors import UnknownIdError

if TYPE_CHECKING:  # built from DataFrames at training time; a server needs no pandas
    import pandas as pd


@dataclass
class Vocabulary:
    """Dense index maps, movie metadata and each user's rated movies.

    Attributes
    ----------
    user_ids : numpy.ndarray, shape (num_users,)
        Sorted raw user ids; ``user_ids[user_idx]`` is the raw id.
    movie_ids : numpy.ndarray, shape (num_items,)
        Sorted raw movie ids; ``movie_ids[item_idx]`` is the raw id.
    titles : numpy.ndarray of str, shape (num_items,)
    genre_names : tuple of str
    genres : numpy.ndarray of uint8, shape (num_items, num_genres)
        Multi-hot genre flags.
    rated_indptr, rated_items : numpy.ndarray
        CSR rows: the items user ``u`` rated are
        ``rated_items[rated_indptr[u]:rated_indptr[u + 1]]`` (sorted).
    rating_count : numpy.ndarray of int64, shape (num_items,), or None
        How many ratings each movie has.
    rating_mean : numpy.ndarray of float32, shape (num_items,), or None
        Each movie's mean rating (0 where it has none). Both are None for a ``vocab.npz``
        written before they existed: everything else works, popularity rankings do not.
    rated_ratings : numpy.ndarray of float32, or None
        The stars of each entry of ``rated_items`` (the ranking model weighs a user's history
        by them); None in a file written before they were kept.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    titles: np.ndarray
    genre_names: tuple[str, ...]
    genres: np.ndarray
    rated_indptr: np.ndarray
    rated_items: np.ndarray
    rating_count: np.ndarray | None = None
    rating_mean: np.ndarray | None = None
    rated_ratings: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        ratings: pd.DataFrame,
        movies: pd.DataFrame,
        genre_names: tuple[str, ...],
        ids_from: pd.DataFrame | None = None,
    ) -> Vocabulary:
        """Build from the ratings it holds and the movie catalogue.

        Parameters
        ----------
        ratings : pandas.DataFrame
            Columns ``user_id``, ``movie_id``, ``rating``: the ratings the vocabulary *holds*,
            that is each user's rated set (what serving excludes from their top-K) and each
            movie's rating count and mean (popularity). For a model trained on a split, its
            training part.
        movies : pandas.DataFrame
            The catalogue: every movie gets an index, rated or not, so top-K covers it.
        genre_names : tuple of str
        ids_from : pandas.DataFrame, optional
            Ratings whose users and movies get the indices (default: ``ratings``); it must
            cover every user and movie of ``ratings``. Give the whole dataset so that indices
            are the same for every split of it and every user and movie can be asked about;
            users with no rating in ``ratings`` get empty rated sets, movies a count of 0.

        Raises
        ------
        ValueError
            ``ratings`` has a user or movie that ``ids_from`` lacks.
        """
        covered = ids_from is None  # ratings cover themselves: no need to check
        if ids_from is None:
            ids_from = ratings
        movie_ids = np.union1d(movies["movie_id"].to_numpy(), ids_from["movie_id"].to_numpy())
        user_ids = np.unique(ids_from["user_id"].to_numpy())
        meta = movies.set_index("movie_id").reindex(movie_ids)
        titles = meta["title"].fillna("").to_numpy(dtype=str)
        genre_col = meta["genres"].fillna("").to_numpy(dtype=object)
        lookup = {g: j for j, g in enumerate(genre_names)}
        genres = np.zeros((len(movie_ids), len(genre_names)), dtype=np.uint8)
        for i, joined in enumerate(genre_col):
            for g in filter(None, joined.split("|")):
                genres[i, lookup[g]] = 1
        vocab = cls(
            user_ids,
            movie_ids,
            titles,
            tuple(genre_names),
            genres,
            np.zeros(len(user_ids) + 1, dtype=np.int64),
            np.zeros(0, dtype=np.int32),
        )
        if not covered:
            vocab._check_covers(ratings)
        vocab.rated_indptr, vocab.rated_items, vocab.rated_ratings = vocab._csr(ratings)
        vocab.rating_count, vocab.rating_mean = vocab._rating_stats(ratings)
        return vocab

    def _check_covers(self, ratings: pd.DataFrame) -> None:
        """Raise ``ValueError`` naming the first user or movie of ``ratings`` without an index."""
        for kind, known in (("user", self.user_ids), ("movie", self.movie_ids)):
            ids = ratings[f"{kind}_id"].to_numpy()
            _, found = self._index(known, ids)
            if not found.all():
                raise ValueError(f"{kind} id {ids[~found][0]} of ratings is not in ids_from")

    def _rating_stats(self, ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        items = self.item_index(ratings["movie_id"].to_numpy())
        values = ratings["rating"].to_numpy(dtype=np.float64)
        count = np.bincount(items, minlength=self.num_items).astype(np.int64)
        total = np.bincount(items, weights=values, minlength=self.num_items)
        mean = np.divide(total, count, out=np.zeros(self.num_items), where=count > 0)
        return count, mean.astype(np.float32)

    def _csr(self, ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        users = self.user_index(ratings["user_id"].to_numpy())
        items = self.item_index(ratings["movie_id"].to_numpy())
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=self.num_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        stars = ratings["rating"].to_numpy(dtype=np.float32)[order]
        return indptr, items[order].astype(np.int32), stars

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.movie_ids)

    @staticmethod
    def _index(known: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense indices of ``ids`` in sorted ``known``, and a mask of which were found."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(known, ids)
        pos_clipped = np.minimum(pos, len(known) - 1)
        found = (pos < len(known)) & (known[pos_clipped] == ids)
        return pos_clipped, found

    def lookup_users(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorized: ``(user_idx, found)``; ``user_idx`` is meaningless where not found."""
        return self._index(self.user_ids, user_ids)

    def lookup_items(self, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorized: ``(item_idx, found)``; ``item_idx`` is meaningless where not found."""
        return self._index(self.movie_ids, movie_ids)

    def user_index(self, user_ids: np.ndarray, field: str = "user_id") -> np.ndarray:
        """Dense user indices; raises :class:`UnknownIdError` naming the first unknown id."""
        idx, found = self.lookup_users(user_ids)
        if not found.all():
            raise UnknownIdError(field, int(np.asarray(user_ids).ravel()[~found.ravel()][0]))
        return idx

    def item_index(self, movie_ids: np.ndarray, field: str = "movie_id") -> np.ndarray:
        """Dense movie indices; raises :class:`UnknownIdError` naming the first unknown id."""
        idx, found = self.lookup_items(movie_ids)
        if not found.all():
            raise UnknownIdError(field, int(np.asarray(movie_ids).ravel()[~found.ravel()][0]))
        return idx

    def rated_by(self, user_idx: int) -> np.ndarray:
        """Item indices user ``user_idx`` has rated."""
        return self.rated_items[self.rated_indptr[user_idx] : self.rated_indptr[user_idx + 1]]

    def rated_stars(self, positions: np.ndarray) -> np.ndarray:
        """Stars of the entries ``positions`` of ``rated_items`` (5 for a file that has none:
        an older vocabulary's histories count every rating as liked)."""
        if self.rated_ratings is None:
            return np.full(len(positions), 5.0, dtype=np.float32)
        return self.rated_ratings[positions]

    def save(self, path: str | Path) -> None:
        """Write every field to one ``.npz`` of plain arrays."""
        np.savez_compressed(
            path,
            allow_pickle=False,  # an object array would fail :meth:`load`: refuse it here
            user_ids=self.user_ids,
            movie_ids=self.movie_ids,
            titles=self.titles,
            genre_names=np.array(self.genre_names, dtype=str),
            genres=self.genres,
            rated_indptr=self.rated_indptr,
            rated_items=self.rated_items,
            **(
                {"rating_count": self.rating_count, "rating_mean": self.rating_mean}
                if self.rating_count is not None and self.rating_mean is not None
                else {}
            ),
            **({"rated_ratings": self.rated_ratings} if self.rated_ratings is not None else {}),
        )

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> Vocabulary:
        """Read a vocabulary written by :meth:`save` (no pickle involved), from a file or an
        open binary stream (e.g. the entry of a .mar).

        Files from before per-movie rating statistics load with ``rating_count`` and
        ``rating_mean`` set to None.
        """
        with np.load(path, allow_pickle=False) as z:
            stats = {
                k: z[k] for k in ("rating_count", "rating_mean", "rated_ratings") if k in z.files
            }
            return cls(
                user_ids=z["user_ids"],
                movie_ids=z["movie_ids"],
                titles=z["titles"],
                genre_names=tuple(str(g) for g in z["genre_names"]),
                genres=z["genres"],
                rated_indptr=z["rated_indptr"],
                rated_items=z["rated_items"],
                rating_count=stats.get("rating_count"),
                rating_mean=stats.get("rating_mean"),
                rated_ratings=stats.get("rated_ratings"),
            )
