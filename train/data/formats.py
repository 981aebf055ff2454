"""Parsers of the official MovieLens file layouts: vectorized, compact dtypes, strict.

Three layouts cover every release (docs/training.md, "Datasets and splits"):

- ``ML100K``: ``u.data`` (``user \\t item \\t rating \\t timestamp``) and ``u.item``
  (``|``-separated, latin-1, 5 fields then 19 genre flags);
- ``DAT_LATIN1`` / ``DAT_UTF8`` (ml-1m / ml-10m): ``ratings.dat``
  (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat`` (``MovieID::Title::Genres``);
- ``CSV`` (ml-20m, ml-25m, ml-latest, ml-latest-small): ``ratings.csv``
  (``userId,movieId,rating,timestamp`` with a header) and ``movies.csv`` (``movieId,title,genres``,
  quoted CSV, UTF-8).

Ratings come back in file order as ``user_id`` (int32), ``movie_id`` (int32), ``rating``
(float32), ``timestamp`` (int64): 20 bytes a rating, so ML-25M fits in 500 MB. Movies come back in
file order as ``movie_id`` (int32), ``title``, ``genres`` (``|``-joined). A malformed line, a
missing column, a non-numeric field or an id that does not fit raises
:class:`~model.errors.DataError` naming the file (and the line, where it can be told).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import DataError

log = logging.getLogger(__name__)

RATING_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
# int32 ids: the largest MovieLens ids (ml-latest) are in the hundreds of thousands.
RATING_DTYPES = {
    "user_id": np.int32,
    "movie_id": np.int32,
    "rating": np.float32,
    "timestamp": np.int64,
}
CSV_RATINGS_HEADER = "userId,movieId,rating,timestamp"
CSV_MOVIES_COLUMNS = ["movieId", "title", "genres"]
_INT32_MAX = np.iinfo(np.int32).max

# The 19 genre flags of ml-100k's u.item, in file order.
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


# --------------------------------------------------------------------------- ratings


def _read_ratings_table(source: Path | io.BytesIO, path: Path, sep: str, skip: int) -> pd.DataFrame:
    """Parse four numeric columns with pandas' C parser, refusing anything but four fields."""
    with warnings.catch_warnings():
        # With index_col=False, pandas only *warns* (and drops data) when the first line has
        # more fields than names; make that an error like every other extra field.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                source,
                sep=sep,
                header=None,
                skiprows=skip,
                names=list(RATING_COLUMNS),
                dtype=RATING_DTYPES,
                index_col=False,
                engine="c",
            )
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame({c: np.zeros(0, d) for c, d in RATING_DTYPES.items()})
        except (ValueError, OverflowError, pd.errors.ParserWarning) as exc:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            where = _first_bad_line(source, sep, skip)
            raise DataError(f"{path}{where}: malformed ratings ({exc})") from exc
    if frame.empty:
        raise DataError(f"{path}: no ratings")
    missing = frame["rating"].isna().to_numpy()
    if missing.any():
        line = skip + int(np.argmax(missing)) + 1
        raise DataError(f"{path}, line {line}: empty rating ({int(missing.sum())} such lines)")
    return frame


def _first_bad_line(source: Path | io.BytesIO, sep: str, skip: int) -> str:
    """``", line N"`` of the first line whose fields are not four numbers, else ``""``.

    Only runs after a parse failed; reads in chunks so that locating the error in a 25M-line
    file stays within bounded memory.
    """
    try:
        chunks = pd.read_csv(
            source,
            sep=sep,
            header=None,
            skiprows=skip,
            dtype=str,
            keep_default_na=False,
            index_col=False,
            chunksize=1 << 20,
            on_bad_lines="error",
        )
        seen = 0
        for chunk in chunks:
            bad = np.zeros(len(chunk), dtype=bool)
            if chunk.shape[1] != 4:
                bad[:] = True  # every line of this chunk has a wrong field count
            else:
                for col in chunk.columns:
                    bad |= pd.to_numeric(chunk[col], errors="coerce").isna().to_numpy()
                ids = chunk.iloc[:, [0, 1, 3]].apply(pd.to_numeric, errors="coerce")
                bad |= (ids.abs() > _INT32_MAX).iloc[:, :2].any(axis=1).to_numpy()
                bad |= (ids % 1 != 0).any(axis=1).to_numpy()
            if bad.any():
                return f", line {skip + seen + int(np.argmax(bad)) + 1}"
            seen += len(chunk)
    except (ValueError, pd.errors.ParserError) as exc:
        # The tokenizer counts lines of the file, skipped header included.
        match = re.search(r"line (\d+)", str(exc))
        if match:
            return f", line {match.group(1)}"
    return ""


def read_ml100k_ratings(path: str | Path) -> pd.DataFrame:
    """Parse an ml-100k ratings file (u.data, u1.base, ...): ``user \\t item \\t rating \\t ts``."""
    path = Path(path)
    return _read_ratings_table(path, path, sep="\t", skip=0)


def read_dat_ratings(path: str | Path) -> pd.DataFrame:
    """Parse an ml-1m / ml-10m ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``."""
    path = Path(path)
    # pandas only parses a multi-character separator with its slow Python engine; replacing
    # "::" by a tab keeps the C parser, and a stray ":" still leaves a non-numeric field.
    blob = path.read_bytes().replace(b"::", b"\t")
    return _read_ratings_table(io.BytesIO(blob), path, sep="\t", skip=0)


def read_csv_ratings(path: str | Path) -> pd.DataFrame:
    """Parse an ml-20m/25m/latest ``ratings.csv``: header ``userId,movieId,rating,timestamp``."""
    path = Path(path)
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8", errors="replace").strip()
    if header != CSV_RATINGS_HEADER:
        raise DataError(f"{path}, line 1: header {header!r}, expected {CSV_RATINGS_HEADER!r}")
    return _read_ratings_table(path, path, sep=",", skip=1)


def check_ratings(
    ratings: pd.DataFrame,
    path: str | Path,
    rating_scale: tuple[float, float],
    rating_step: float,
    header_lines: int = 0,
) -> None:
    """Raise :class:`DataError` unless every rating is a multiple of ``rating_step`` in the scale
    and every id is positive (MovieLens ids start at 1)."""
    lo, hi = rating_scale
    r = ratings["rating"].to_numpy()
    steps = r / np.float32(rating_step)
    bad = ~((r >= lo) & (r <= hi) & (steps == np.round(steps)))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {header_lines + first + 1}: rating {r[first]:g} is not a multiple of "
            f"{rating_step:g} in [{lo:g}, {hi:g}] ({int(bad.sum())} such ratings)"
        )
    bad = (ratings["user_id"].to_numpy() < 1) | (ratings["movie_id"].to_numpy() < 1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}, line {header_lines + first + 1}: ids must be >= 1")


# --------------------------------------------------------------------------- movies


def read_ml100k_movies(path: str | Path) -> pd.DataFrame:
    """Parse ml-100k's u.item (``|``-separated, latin-1, 5 fields then 19 genre flags)."""
    path = Path(path)
    columns = ["movie_id", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
    try:
        frame = pd.read_csv(
            path,
            sep="|",
            header=None,
            names=columns,
            encoding="latin-1",
            dtype={"movie_id": np.int32, "title": str},
            keep_default_na=False,
            index_col=False,
        )
        flags = frame[list(ML100K_GENRES)].to_numpy(dtype=np.int8)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{path}: not an ml-100k u.item file ({exc})") from exc
    names = np.array(ML100K_GENRES, dtype=object)
    genres = ["|".join(names[row.astype(bool)]) for row in flags]
    return _movies_frame(path, frame["movie_id"], frame["title"], pd.Series(genres))


def read_dat_movies(path: str | Path, encodings: tuple[str, ...] = ("latin-1",)) -> pd.DataFrame:
    """Parse an ml-1m / ml-10m ``movies.dat``: ``MovieID::Title::Genres``, genres ``|``-joined.

    ``encodings`` are tried in order: ml-1m is latin-1, ml-10m UTF-8.
    """
    path = Path(path)
    raw = path.read_bytes()
    for n, encoding in enumerate(encodings):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            if n == len(encodings) - 1:
                raise DataError(f"{path}: not {' or '.join(encodings)} text ({exc})") from exc
            log.warning("%s is not %s; reading it as %s", path, encoding, encodings[n + 1])
    # split on "\n" only: str.splitlines would also cut at \x85 or \x1c, which latin-1 titles
    # may hold.
    lines = pd.Series(text.split("\n")).str.removesuffix("\r")
    lines = lines[lines != ""]
    # Greedy title: a title holding "::" still ends at the last separator.
    parts = lines.str.extract(r"^(\d{1,9})::(.*)::([^:]*)$")
    bad = parts[0].isna().to_numpy()
    if bad.any():
        line = int(lines.index[np.argmax(bad)]) + 1
        raise DataError(f"{path}, line {line}: not MovieID::Title::Genres")
    return _movies_frame(path, parts[0].astype(np.int32), parts[1], parts[2])


def read_csv_movies(path: str | Path) -> pd.DataFrame:
    """Parse a ``movies.csv`` (``movieId,title,genres``; quoted CSV, UTF-8)."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8", index_col=False
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: malformed movies file ({exc})") from exc
    if list(frame.columns) != CSV_MOVIES_COLUMNS:
        raise DataError(
            f"{path}, line 1: columns {list(frame.columns)}, expected {CSV_MOVIES_COLUMNS}"
        )
    ids = pd.to_numeric(frame["movieId"], errors="coerce")
    bad = (ids.isna() | (ids % 1 != 0) | (ids < 1) | (ids > _INT32_MAX)).to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        # Rows, not lines: a quoted title may span lines; row n is usually line n + 2.
        raise DataError(f"{path}, row {first + 1}: movieId {frame['movieId'].iloc[first]!r}")
    return _movies_frame(path, ids.astype(np.int32), frame["title"], frame["genres"])


def _movies_frame(path: Path, ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """Movies in file order; duplicate ids are refused (the vocabulary needs one row per id)."""
    movies = pd.DataFrame(
        {
            "movie_id": ids.to_numpy(dtype=np.int32),
            "title": titles.to_numpy(dtype=object),
            "genres": genres.to_numpy(dtype=object),
        }
    )
    dup = movies["movie_id"].duplicated()
    if dup.any():
        raise DataError(f"{path}: movie id {int(movies['movie_id'][dup].iloc[0])} listed twice")
    return movies


def genre_vocabulary(movies: pd.DataFrame) -> tuple[str, ...]:
    """Every genre of ``movies`` in sorted order (stable whatever the file order).

    Newer releases have ``(no genres listed)`` and ``IMAX``; they are kept as genres like any
    other, so the vocabulary matches the file.
    """
    tokens = movies["genres"].str.split("|").explode()
    return tuple(sorted(set(tokens.dropna()) - {""}))


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """The files of one MovieLens format and how to read them.

    Attributes
    ----------
    ratings_file, movies_file : str
        The file holding every rating, and the movie catalogue.
    required_files : tuple of str
        Files a complete copy must have.
    read_ratings, read_movies : callable
        Parsers taking the file's path.
    ratings_header_lines : int
        Lines before the first rating (for line numbers in errors).
    fixed_genres : tuple of str or None
        The genre vocabulary when the format fixes it (ml-100k's flag columns); ``None``: derived
        from the movies file by :func:`genre_vocabulary`.
    """

    ratings_file: str
    movies_file: str
    required_files: tuple[str, ...]
    read_ratings: Callable[[Path], pd.DataFrame] = field(repr=False)
    read_movies: Callable[[Path], pd.DataFrame] = field(repr=False)
    ratings_header_lines: int = 0
    fixed_genres: tuple[str, ...] | None = None


ML100K = Layout(
    "u.data",
    "u.item",
    ("u.data", "u.item", "u1.base", "u1.test"),
    read_ml100k_ratings,
    read_ml100k_movies,
    fixed_genres=ML100K_GENRES,
)
DAT_LATIN1 = Layout(
    "ratings.dat",
    "movies.dat",
    ("ratings.dat", "movies.dat"),
    read_dat_ratings,
    partial(read_dat_movies, encodings=("latin-1",)),
)
# ml-10m's movies.dat is UTF-8; latin-1 is the fallback should a copy be re-encoded.
DAT_UTF8 = Layout(
    "ratings.dat",
    "movies.dat",
    ("ratings.dat", "movies.dat"),
    read_dat_ratings,
    partial(read_dat_movies, encodings=("utf-8", "latin-1")),
)
CSV = Layout(
    "ratings.csv",
    "movies.csv",
    ("ratings.csv", "movies.csv"),
    read_csv_ratings,
    read_csv_movies,
    ratings_header_lines=1,
)
