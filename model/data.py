"""MovieLens: fetch, verify, parse and split.

Fetching tries the official GroupLens zip first (verified against the ``.md5`` file GroupLens
publishes beside it). When GroupLens cannot be reached, it falls back to a copy of the data that
ships inside a PyPI wheel (pinned by sha256) and rewrites that copy into the official file
format, so there is exactly one parser per format. Everything is cached under ``data_dir`` and
written under a temporary name first, so an interrupted fetch leaves nothing half-written.

Frames returned here use raw MovieLens ids: ``user_id``, ``movie_id`` (int64), ``rating``
(float32), ``timestamp`` (int64). Dense indices are the vocabulary's business.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import DataError

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

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


@dataclass(frozen=True)
class WheelCopy:
    """A copy of a dataset inside a PyPI wheel (see shared/DATA.md)."""

    requirement: str  # pip requirement that pins the exact wheel
    sha256: str  # of the wheel file
    prefix: str  # folder inside the wheel holding the dataset's files


@dataclass(frozen=True)
class DatasetSpec:
    """Where a MovieLens release comes from and what its files are called."""

    name: str
    zip_folder: str  # top-level folder inside the official zip
    required_files: tuple[str, ...]  # files that must exist after fetching
    rating_scale: tuple[float, float]
    wheel: WheelCopy | None = None


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        name="ml-100k",
        zip_folder="ml-100k",
        required_files=("u.data", "u.item", "u1.base", "u1.test"),
        rating_scale=(1.0, 5.0),
        wheel=WheelCopy(
            requirement="recbole==1.2.1",
            sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            prefix="recbole/dataset_example/ml-100k/",
        ),
    ),
}


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
    """

    name: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    genre_names: tuple[str, ...]
    rating_scale: tuple[float, float]
    path: Path


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of dataset ``name`` or raise a :class:`DataError` listing known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# --------------------------------------------------------------------------- fetching


def fetch(name: str, data_dir: str | Path = "data", base_url: str = GROUPLENS_URL) -> Path:
    """Make sure dataset ``name`` is in ``data_dir/<name>`` and return that folder.

    Tries GroupLens, then the dataset's PyPI wheel copy; raises :class:`DataError` listing why
    each source failed when none works. A folder already complete is reused as is.
    """
    spec = get_spec(name)
    data_dir = Path(data_dir)
    target = data_dir / spec.name
    if all((target / f).is_file() for f in spec.required_files):
        return target
    data_dir.mkdir(parents=True, exist_ok=True)

    failures = []
    sources = [("GroupLens", lambda tmp: _fetch_grouplens(spec, base_url, tmp))]
    if spec.wheel is not None:
        sources.append(
            (f"PyPI wheel {spec.wheel.requirement}", lambda tmp: _fetch_wheel(spec, tmp))
        )
    for label, fetch_into in sources:
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=data_dir))
        try:
            log.info("fetching %s from %s", spec.name, label)
            fetch_into(tmp)
            missing = [f for f in spec.required_files if not (tmp / f).is_file()]
            if missing:
                raise DataError(f"{label} copy of {spec.name} lacks {', '.join(missing)}")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)  # atomic: the folder appears complete or not at all
            log.info("%s ready in %s (source: %s)", spec.name, target, label)
            return target
        except (OSError, DataError, zipfile.BadZipFile, subprocess.CalledProcessError) as exc:
            log.warning("%s unavailable from %s: %s", spec.name, label, exc)
            failures.append(f"  - {label}: {exc}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise DataError(
        f"could not get {spec.name} from any source:\n"
        + "\n".join(failures)
        + f"\nDownload {base_url}/{spec.name}.zip yourself and unzip it into {data_dir}/."
    )


def _download(url: str, timeout: float = 30.0) -> bytes:
    """Return the body at ``url``, with a progress bar for large files."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        buf = io.BytesIO()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=total < 1 << 20,
        ) as bar:
            while chunk := response.read(1 << 16):
                buf.write(chunk)
                bar.update(len(chunk))
    return buf.getvalue()


def _fetch_grouplens(spec: DatasetSpec, base_url: str, into: Path) -> None:
    url = f"{base_url}/{spec.name}.zip"
    try:
        expected_md5 = _download(url + ".md5").decode().split()[0].lower()
        blob = _download(url)
    except (urllib.error.URLError, TimeoutError) as exc:
        raise DataError(f"cannot download {url}: {exc}") from exc
    actual_md5 = hashlib.md5(blob).hexdigest()
    if actual_md5 != expected_md5:
        raise DataError(f"{url}: md5 {actual_md5} does not match published {expected_md5}")
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        prefix = spec.zip_folder + "/"
        for member in archive.infolist():
            if member.is_dir() or not member.filename.startswith(prefix):
                continue
            relative = Path(member.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise DataError(f"{url}: unsafe path {member.filename!r} in zip")
            dest = into / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(member))


def _fetch_wheel(spec: DatasetSpec, into: Path) -> None:
    wheel = spec.wheel
    assert wheel is not None  # guarded by the caller; not user input
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                wheel.requirement,
                "-d",
                download_dir,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        (path,) = Path(download_dir).glob("*.whl")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel.sha256:
            raise DataError(f"{path.name}: sha256 {digest} does not match pinned {wheel.sha256}")
        with zipfile.ZipFile(path) as archive:
            files = {
                Path(n).name: archive.read(n)
                for n in archive.namelist()
                if n.startswith(wheel.prefix)
            }
    if spec.name == "ml-100k":
        _write_ml100k_from_recbole(files, into)
    else:  # pragma: no cover - every wheel in DATASETS has a converter
        raise DataError(f"no converter for the wheel copy of {spec.name}")
    (into / "SOURCE.json").write_text(
        json.dumps({"source": wheel.requirement, "wheel_sha256": wheel.sha256}, indent=2)
    )


def _read_recbole(blob: bytes) -> pd.DataFrame:
    """Parse a recbole atomic file: tab-separated, header ``name:type``."""
    frame = pd.read_csv(io.BytesIO(blob), sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _write_ml100k_from_recbole(files: dict[str, bytes], into: Path) -> None:
    """Rewrite recbole's ml-100k copy as the official u.data, u.item, u1.base and u1.test."""
    inter = _read_recbole(files["ml-100k.inter"])
    if len(inter) != 100_000:
        raise DataError(f"ml-100k.inter in the wheel has {len(inter)} ratings, expected 100000")
    # recbole keeps u.data's row order, so the official file comes back line for line.
    lines = (
        inter["user_id"]
        + "\t"
        + inter["item_id"]
        + "\t"
        + inter["rating"]
        + "\t"
        + inter["timestamp"].str.replace(r"\.0$", "", regex=True)
    )
    u_data = "\n".join(lines) + "\n"
    (into / "u.data").write_text(u_data)
    # The canonical split u1: u1.test holds the first 20,000 lines of u.data, u1.base the rest
    # (shared/DATA.md); GroupLens sorts both by user and movie.
    for fname, part in (("u1.test", inter.iloc[:20_000]), ("u1.base", inter.iloc[20_000:])):
        part = part.assign(u=part.user_id.astype(int), i=part.item_id.astype(int))
        part = part.sort_values(["u", "i"], kind="stable")
        rows = (
            part["user_id"]
            + "\t"
            + part["item_id"]
            + "\t"
            + part["rating"]
            + "\t"
            + part["timestamp"].str.replace(r"\.0$", "", regex=True)
        )
        (into / fname).write_text("\n".join(rows) + "\n")

    items = _read_recbole(files["ml-100k.item"])
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


# --------------------------------------------------------------------------- parsing


def read_ml100k_ratings(path: str | Path) -> pd.DataFrame:
    """Parse an ml-100k ratings file (u.data, u1.base, ...): ``user \\t item \\t rating \\t ts``."""
    path = Path(path)
    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=["user_id", "movie_id", "rating", "timestamp"],
            dtype={
                "user_id": np.int64,
                "movie_id": np.int64,
                "rating": np.float32,
                "timestamp": np.int64,
            },
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not an ml-100k ratings file ({exc})") from exc
    if frame.isna().any().any():
        raise DataError(f"{path}: missing fields in {int(frame.isna().any(axis=1).sum())} rows")
    return frame


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
            dtype={"movie_id": np.int64, "title": str},
            keep_default_na=False,
        )
        flags = frame[list(ML100K_GENRES)].to_numpy(dtype=np.int8)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not an ml-100k u.item file ({exc})") from exc
    names = np.array(ML100K_GENRES, dtype=object)
    genres = ["|".join(names[row.astype(bool)]) for row in flags]
    return pd.DataFrame({"movie_id": frame["movie_id"], "title": frame["title"], "genres": genres})


def load(name: str = "ml-100k", data_dir: str | Path = "data") -> Dataset:
    """Fetch (if needed) and parse dataset ``name``."""
    spec = get_spec(name)
    folder = fetch(name, data_dir)
    ratings = read_ml100k_ratings(folder / "u.data")
    movies = read_ml100k_movies(folder / "u.item").sort_values("movie_id", ignore_index=True)
    lo, hi = spec.rating_scale
    bad = ~ratings["rating"].between(lo, hi)
    if bad.any():
        raise DataError(f"{folder / 'u.data'}: {int(bad.sum())} ratings outside [{lo}, {hi}]")
    return Dataset(name, ratings, movies, ML100K_GENRES, spec.rating_scale, folder)


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
