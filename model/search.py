"""Title search: find a movie of the catalogue the way people type its title.

People do not know MovieLens ids; they type ``the godfather``, ``amelie``, ``heat 1995``,
``shawshank redemtion`` or, still typing, ``star w``. MovieLens writes the same movies as
``Godfather, The (1972)``, ``Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)``,
``Heat (1995)``: the article moved to the end, in several languages, an alternative title in
parentheses, the year last. :class:`TitleIndex` bridges the two:

- every title is read once, at build time, into the names a person may type: the name without
  its article and with the article in front, and the same for each alternative title; each
  name is normalised (case, accents, punctuation) as the query will be;
- a query is normalised the same way and scored against every name with rapidfuzz's
  ``fuzz.ratio`` (an edit-distance similarity, 100 for the same string), which forgives a
  typo or two; names too unlike the query to reach :data:`MIN_SCORE`, known from the letters
  they share with it, are skipped unscored; a query that is the start of a name (a person
  still typing) scores :data:`PREFIX_SCORE`, whatever the rest of the name;
- a query ending in a year (``heat 1995``) is also read as a name and a year: movies of
  another year lose :data:`YEAR_MISS`, so the year decides between remakes;
- a movie scores its best name; equal scores go to the movie with more ratings.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
from rapidfuzz import fuzz, process

from model.titles import NO_YEAR, release_year

MAX_QUERY_LENGTH = 200  # characters of a query; the handler refuses longer ones

# fuzz.ratio below this is no match: a different name that happens to share letters. The
# one-typo queries of a 4-letter name score 75-89, unrelated short names mostly below 60.
MIN_SCORE = 60.0
# A query that the start of a name spells exactly: a person still typing (``star w``). Below an
# exact name (100), so that ``godfather`` ranks "Godfather, The" above "Godfather: Part II,
# The"; above what a one-letter slip scores against a short name (``toy s`` against ``toys``,
# 89), so that the movie being typed wins.
PREFIX_SCORE = 90.0
# What a movie of another year loses when the query ends in a year: less than the gap between
# an exact name and a prefix (10), so the year picks among same-named movies but a query's name
# still outweighs its year.
YEAR_MISS = 5.0
# A query's last word is read as a year when it is four digits in this range.
FIRST_YEAR, LAST_YEAR = 1870, 2100

# Articles MovieLens moves to the end of a name ("Godfather, The", "Misérables, Les",
# "Boot, Das"), in the languages of its titles; an elided "L'" is written "L'" or "L' ".
ARTICLES = frozenset(
    {
        *("the", "a", "an"),  # English
        *("le", "la", "les", "l'", "un", "une"),  # French
        *("el", "los", "las", "una"),  # Spanish
        *("il", "lo", "gli", "i", "uno"),  # Italian
        *("der", "die", "das", "den", "ein", "eine"),  # German
        *("o", "os", "as", "um", "uma"),  # Portuguese
        *("de", "het", "een", "det", "en", "ett"),  # Dutch, Scandinavian
    }
)
_APOSTROPHES = "'’`´"
_MOVED_ARTICLE = re.compile(
    r"^(.*\S)\s*,\s*(" + "|".join(re.escape(a) for a in sorted(ARTICLES)) + r")\s*$",
    re.IGNORECASE,
)
# A name ending in a parenthesised group: the group is an alternative title.
_ALTERNATIVE = re.compile(r"^(.*\S)\s*\(([^()]*)\)\s*$")
_AKA = re.compile(r"^\s*a\.?\s*k\.?\s*a\.?\s*", re.IGNORECASE)  # "(a.k.a. Shaun of the Dead)"
# Letters that Unicode decomposition leaves whole but people type as plain Latin letters; "&"
# as typed "and"; apostrophes vanish, so that "schindler's" and "schindlers" meet.
_FOLD = str.maketrans(
    {"æ": "ae", "ø": "o", "œ": "oe", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "ı": "i"}
    | {"&": " and "}
    | dict.fromkeys(_APOSTROPHES, "")
)
_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """``text`` as the index compares it: case-folded, without accents, apostrophes or other
    punctuation, words separated by one space.

    ``"Amélie"`` -> ``"amelie"``, ``"Schindler's List"`` -> ``"schindlers list"``,
    ``"Star Wars: Episode IV - A New Hope"`` -> ``"star wars episode iv a new hope"``.
    """
    text = text.casefold()
    if not text.isascii():  # most titles and queries are: skip the slow per-letter pass
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", text.translate(_FOLD)).split())


def without_article(name: str) -> str:
    """``name`` without the article MovieLens moved to its end: ``"Godfather, The"`` ->
    ``"Godfather"``; any other name as it is."""
    moved = _MOVED_ARTICLE.match(name)
    return moved.group(1) if moved else name


def _with_and_without_article(name: str, alternative: bool) -> list[str]:
    """The ways to type one name: ``"Godfather, The"`` -> ``["Godfather", "The Godfather"]``.

    An ``alternative`` title may also have its article in front, as MovieLens leaves it there
    (``"La Vita è bella"`` -> ``["Vita è bella", "La Vita è bella"]``); a main name may not,
    as MovieLens moves its articles, so a first word that looks like one is part of the name
    ("Die Hard", "As Good as It Gets").
    """
    moved = _MOVED_ARTICLE.match(name)
    if moved:
        bare, article = moved.groups()
    elif not alternative:
        return [name]
    else:
        article, _, bare = name.partition(" ")
        if len(name) > 2 and name[0] in "lL" and name[1] in _APOSTROPHES:  # "L'Homme"
            article, bare = name[:2], name[2:].lstrip()
        if not bare or article.casefold() not in ARTICLES:
            return [name]
    glue = "" if article[-1] in _APOSTROPHES else " "  # "L'Homme", typed "lhomme"
    return [bare, f"{article}{glue}{bare}"]


def split_title(title: str) -> tuple[str, list[str]]:
    """The main name and the alternative titles of a MovieLens title, as written, without
    the year: ``"City of Lost Children, The (Cité des enfants perdus, La) (1995)"`` ->
    ``("City of Lost Children, The", ["Cité des enfants perdus, La"])``."""
    name = title.strip()
    if release_year(name) != NO_YEAR:
        name = name[: name.rfind("(")]
    alternatives = []
    while (group := _ALTERNATIVE.match(name)) is not None:
        name, alternative = group.groups()
        alternatives.append(_AKA.sub("", alternative))
    return name.strip(), alternatives[::-1]


def title_names(title: str) -> list[str]:
    """The names a person may type for one MovieLens title, normalised, main name first.

    ``"Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"`` ->
    ``["amelie", "fabuleux destin damelie poulain", "le fabuleux destin damelie poulain"]``.
    The year is not part of any name (see :func:`model.titles.release_year`).
    """
    main, alternatives = split_title(title)
    names = []
    for position, raw in enumerate([main, *alternatives]):
        for form in _with_and_without_article(raw, alternative=position > 0):
            text = normalise(form)
            if text and text not in names:
                names.append(text)
    return names


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


# Letters a normalised name is made of, each counted apart; any other letter (another script)
# in one shared count, which keeps a bound on common letters an upper bound.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 "
_BUCKET = np.full(128, len(_ALPHABET), dtype=np.int64)
_BUCKET[[ord(c) for c in _ALPHABET]] = np.arange(len(_ALPHABET))


def _buckets(text: str) -> np.ndarray:
    """The letter bucket of every character of ``text``, shape (len(text),)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(codes < 128, _BUCKET[np.minimum(codes, 127)], len(_ALPHABET))


class _Scanner:
    """Every typable name with its movie, scored against a query with ``fuzz.ratio``.

    ``fuzz.ratio`` is ``200 * lcs / (len(a) + len(b))``, ``lcs`` the length of the longest
    common subsequence, which cannot exceed the letters the two strings have in common
    (counted with repeats). That bound, computed for every name at once from per-letter
    counts, rules out most names before rapidfuzz looks at them (about 96 % for a typical
    query over 62k generated titles); the rest are scored exactly, so the answer is the same
    as scoring every name.
    """

    # Names per cdist call: rapidfuzz costs more per name past some thousands of names in one
    # call (measured: 79k names in one call took 1.5-2x as long as in calls of 2k-16k).
    CHUNK = 4_096

    def __init__(self, names: list[str], owners: np.ndarray):
        self.names = names
        self.owners = owners
        self.lengths = np.array([len(name) for name in names], dtype=np.int64)
        # counts[b, i]: how many letters of bucket b name i has, (num_buckets, num_names); in
        # bytes, a quarter of the memory to read per query than int32.
        where = np.repeat(np.arange(len(names)), self.lengths)
        buckets = _buckets("".join(names))
        size = (len(_ALPHABET) + 1) * len(names)
        flat = np.bincount(buckets * len(names) + where, minlength=size)
        self.counts = np.minimum(flat, 255).astype(np.uint8).reshape(len(_ALPHABET) + 1, -1)
        # A name that long may have more of a letter than a byte counts: always scored.
        self.unbounded = np.flatnonzero(self.lengths > 255)

    def scan(self, words: str) -> tuple[np.ndarray, np.ndarray]:
        """``(item_idx, score)`` of every name scoring at least :data:`MIN_SCORE` against
        ``words``, one row per name."""
        wanted = np.bincount(_buckets(words), minlength=len(self.counts))
        present = np.flatnonzero(wanted)
        # Letters in common, an upper bound on lcs; names that cannot reach MIN_SCORE go.
        shared = np.minimum(self.counts[present], wanted[present, None]).sum(0, dtype=np.int64)
        need = MIN_SCORE / 200 * (len(words) + self.lengths) - 1e-9  # rounding never drops one
        candidates = np.flatnonzero(shared >= need)
        if len(self.unbounded):
            candidates = np.union1d(candidates, self.unbounded)
        items, scores = [], []
        for first in range(0, len(candidates), self.CHUNK):
            chunk = candidates[first : first + self.CHUNK]
            found = process.cdist(
                [words],
                [self.names[i] for i in chunk.tolist()],
                scorer=fuzz.ratio,
                score_cutoff=MIN_SCORE,  # names below come back as 0
                dtype=np.float32,
                workers=1,  # a worker answers one request at a time; others use the cores
            )[0]
            hits = np.flatnonzero(found)
            items.append(self.owners[chunk[hits]])
            scores.append(found[hits])
        if not items:
            return _empty()
        return np.concatenate(items), np.concatenate(scores)


class TitleIndex:
    """Fuzzy search of a movie catalogue by title.

    Parameters
    ----------
    titles : sequence of str or numpy.ndarray of str, shape (num_items,)
        The catalogue's MovieLens titles in dense-index order, e.g. ``"Godfather, The (1972)"``.
    counts : numpy.ndarray, shape (num_items,), optional
        Each movie's number of training ratings: among equal scores the more-rated movie comes
        first. None counts every movie 0 (equal scores then go to the lower index).

    Raises
    ------
    ValueError
        ``counts`` does not have one entry per title.

    Examples
    --------
    >>> index = TitleIndex(["Godfather, The (1972)", "Heat (1995)"], np.array([10, 5]))
    >>> index.search("the godfahter", k=5)
    (array([0]), array([92.30769], dtype=float32))
    """

    def __init__(self, titles: Sequence[str] | np.ndarray, counts: np.ndarray | None = None):
        num_items = len(titles)
        if counts is None:
            counts = np.zeros(num_items, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (num_items,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({num_items},)")
        self.counts = counts
        self.years = np.fromiter(
            (release_year(str(t)) for t in titles), dtype=np.int32, count=num_items
        )
        names: list[str] = []  # every typable name of every movie, normalised
        owners: list[int] = []  # the item_idx of each
        for item_idx, title in enumerate(titles):
            for name in title_names(str(title)):
                names.append(name)
                owners.append(item_idx)
        owner = np.array(owners, dtype=np.int64)
        self._scanner = _Scanner(names, owner)
        # The names in alphabetical order: those starting with a query are one contiguous run.
        order = sorted(range(len(names)), key=names.__getitem__)
        self._alphabetical = [names[i] for i in order]
        self._alphabetical_owner = owner[np.array(order, dtype=np.int64)] if order else owner

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def num_names(self) -> int:
        """How many typable names the index holds over all its movies."""
        return len(self._alphabetical)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` movies whose titles best match ``query``, best first.

        Parameters
        ----------
        query : str
            What a person typed: any case, accents or not, the article in front or not, the
            main or the alternative title, a year at the end, a typo, or the start of a title.
        k : int
            How many movies at most.

        Returns
        -------
        item_idx : numpy.ndarray of int64, shape (k',)
        score : numpy.ndarray of float32, shape (k',)
            ``k' <= k``: only movies scoring at least :data:`MIN_SCORE` (100 is a name typed
            exactly; :data:`PREFIX_SCORE` the start of one). Both are empty when nothing
            matches, e.g. for a query of punctuation only.
        """
        text = normalise(query)
        if k < 1 or not text:
            return _empty()
        found = []
        rest, _, last = text.rpartition(" ")
        if rest and len(last) == 4 and last.isdigit() and FIRST_YEAR <= int(last) <= LAST_YEAR:
            # "heat 1995" is the name "heat" of 1995, unless a title says "... 1995" itself
            # ("Blade Runner 2049"): both readings are scored, each movie keeps its best.
            found += self._matches(rest, year=int(last))
        found += self._matches(text)
        items = np.concatenate([item for item, _ in found])
        scores = np.concatenate([score for _, score in found])
        if len(items) == 0:
            return _empty()
        # Each movie's best score: sorted by movie, then by score, the first of each movie.
        order = np.lexsort((-scores, items))
        items, scores = items[order], scores[order]
        first = np.concatenate([[True], items[1:] != items[:-1]])
        items, scores = items[first], scores[first]
        kept = scores >= MIN_SCORE  # a weak name of another year, less YEAR_MISS, is none
        items, scores = items[kept], scores[kept]
        ranked = np.lexsort((items, -self.counts[items], -scores))[:k]
        return items[ranked], scores[ranked].astype(np.float32)

    def _matches(self, words: str, year: int = NO_YEAR) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(item_idx, score)`` of the names close to normalised ``words`` and of every name
        that starts with it; movies of another year than ``year`` (unless it is
        :data:`NO_YEAR`) lose :data:`YEAR_MISS`."""
        start = bisect_left(self._alphabetical, words)
        stop = bisect_left(self._alphabetical, words + chr(0x10FFFF), lo=start)
        typing = self._alphabetical_owner[start:stop]
        found = [
            self._scanner.scan(words),
            (typing, np.full(len(typing), PREFIX_SCORE, np.float32)),
        ]
        if year == NO_YEAR:
            return found
        return [
            (items, np.where(self.years[items] == year, scores, scores - YEAR_MISS))
            for items, scores in found
        ]
