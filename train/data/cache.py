"""A cache of parsed ratings: an uncompressed ``.npz`` of the four columns beside the source.

Parsing ML-25M's 25M-line ratings.csv takes seconds; reading its parsed columns back takes a
fraction of that. The cache ``<file>.npz`` (``ratings.csv.npz``) records the source's size and
modification time, the parser version and the checks it passed; any difference makes it stale,
and it is rebuilt. It is written under a temporary name and renamed, so a crash never leaves a
half-written cache, and a read-only data folder only costs the speed-up.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from train.data.formats import RATING_COLUMNS, RATING_DTYPES

log = logging.getLogger(__name__)

# Bump when parsing or the cached columns change, so old caches are rebuilt.
CACHE_VERSION = 1


def cache_path(source: Path) -> Path:
    """Where the cache of ``source`` lives: ``ratings.csv`` -> ``ratings.csv.npz``."""
    return source.with_name(source.name + ".npz")


def _stamp(source: Path, checks: str) -> dict:
    stat = source.stat()
    return {
        "version": CACHE_VERSION,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "checks": checks,
    }


def cached_ratings(
    source: Path, parse: Callable[[Path], pd.DataFrame], checks: str = ""
) -> pd.DataFrame:
    """Ratings of ``source`` from its cache when fresh, else ``parse(source)``, then cached.

    Parameters
    ----------
    source : pathlib.Path
        The ratings file.
    parse : callable
        Parses (and validates) ``source`` into the four rating columns; only called on a miss.
    checks : str
        Describes the validation ``parse`` applies (e.g. the rating scale): a cache written
        under other checks is stale.
    """
    cache = cache_path(source)
    # Stamp before parsing: should the file change meanwhile, the cache is stale next time.
    stamp = _stamp(source, checks)
    frame = _read(cache, stamp)
    if frame is not None:
        log.info("%s: read from cache %s", source, cache.name)
        return frame
    frame = parse(source)
    _write(cache, frame, stamp, mode=source.stat().st_mode & 0o666)
    return frame


def _read(cache: Path, stamp: dict) -> pd.DataFrame | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if json.loads(str(z["stamp"])) != stamp:
                log.info("%s is stale; parsing the source again", cache)
                return None
            columns = {c: z[c].astype(RATING_DTYPES[c], copy=False) for c in RATING_COLUMNS}
        # copy=False: one block per column, no consolidating copy (it would double the peak).
        return pd.DataFrame(columns, copy=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable cache %s: %s", cache, exc)
        return None


def _write(cache: Path, frame: pd.DataFrame, stamp: dict, mode: int) -> None:
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=cache.parent, prefix=f".{cache.name}-", suffix=".tmp", delete=False
        ) as f:
            tmp = Path(f.name)
            # Uncompressed: zlib would cost more time than parsing the CSV.
            np.savez(
                f,
                stamp=np.array(json.dumps(stamp)),
                **{c: frame[c].to_numpy() for c in RATING_COLUMNS},
            )
        os.chmod(tmp, mode)  # whoever may read the source may read its cache (mkstemp: 0600)
        os.replace(tmp, cache)  # atomic on POSIX: readers see the old cache or the new one
        tmp = None
    except OSError as exc:
        log.warning("could not write cache %s (%s); parsing again next time", cache, exc)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
