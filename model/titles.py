"""What MovieLens titles hold besides the name: the release year, "Godfather, The (1972)".

MovieLens writes a title as ``Name (Year)``, the article moved to the end (``Godfather, The``)
and an alternative title in parentheses before the year where there is one
(``City of Lost Children, The (Cité des enfants perdus, La) (1995)``). A few titles have no
year, or a range (``(2006-2007)``, a series: the first year counts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# The last parenthesised group of a title, when it is a year or a range of years.
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$")

NO_YEAR = 0  # the year of a title that gives none


def release_year(title: str) -> int:
    """The release year written at the end of ``title``; :data:`NO_YEAR` when there is none."""
    match = _YEAR.search(title)
    return int(match.group(1)) if match else NO_YEAR


def release_years(titles: Sequence[str] | np.ndarray) -> np.ndarray:
    """:func:`release_year` of every title, as an int32 array."""
    return np.fromiter((release_year(str(t)) for t in titles), dtype=np.int32, count=len(titles))
