"""What the load tests send and how they judge the answers, without Locust.

Ids come from the archive's own vocabulary (``vocab.npz`` inside the ``.mar``), weighted the
way real traffic is: a user by how many movies they rated, a movie by how many users rated it.
Each endpoint kind is a small class with a request ``body`` and a ``check`` of the answer that
returns what is wrong (``None`` when the answer is right), and its ``share`` of the mix;
:mod:`loadtest.locustfile` turns each into a Locust user class of that weight. Adding an
endpoint (say ``{"similar_to": 50, "k": 10}``) means one class here, listed in
:data:`ENDPOINTS`. Nothing here imports Locust (importing it monkey-patches the process with
gevent).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.artifact import CONFIG, VOCAB
from model.vocab import Vocabulary


@dataclass
class Catalogue:
    """Popularity-weighted raw ids of one archive, the rating scale, and who rated what."""

    vocab: Vocabulary
    min_rating: float
    max_rating: float
    _user_cdf: np.ndarray = field(init=False, repr=False)
    _movie_cdf: np.ndarray = field(init=False, repr=False)
    _rated: dict[int, frozenset[int]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        activity = np.diff(self.vocab.rated_indptr).astype(np.float64)  # ratings per user
        popularity = np.bincount(self.vocab.rated_items, minlength=self.vocab.num_items)
        if activity.sum() == 0 or popularity.sum() == 0:
            raise ValueError("the vocabulary records no ratings: nothing to weight ids by")
        self._user_cdf = np.cumsum(activity) / activity.sum()
        self._movie_cdf = np.cumsum(popularity) / popularity.sum()

    @classmethod
    def from_mar(cls, path: str | Path) -> Catalogue:
        """Read ``vocab.npz`` and ``config.json`` out of a movierec ``.mar`` (a zip)."""
        with zipfile.ZipFile(path) as mar:
            vocab = Vocabulary.load(io.BytesIO(mar.read(VOCAB)))
            model = json.loads(mar.read(CONFIG))["model"]
        return cls(vocab, float(model["min_rating"]), float(model["max_rating"]))

    def user(self, rng: np.random.Generator) -> int:
        """One raw user id, drawn in proportion to the user's number of ratings."""
        return int(self.vocab.user_ids[np.searchsorted(self._user_cdf, rng.random())])

    def movies(self, rng: np.random.Generator, n: int) -> list[int]:
        """``n`` raw movie ids (repeats allowed), drawn in proportion to their popularity."""
        return self.vocab.movie_ids[np.searchsorted(self._movie_cdf, rng.random(n))].tolist()

    def distinct_movies(self, rng: np.random.Generator, n: int) -> list[int]:
        """``n`` distinct raw movie ids (all of them when the catalogue has fewer), drawn
        without replacement in proportion to their popularity."""
        weights = np.diff(np.concatenate([[0.0], self._movie_cdf]))
        n = min(n, int((weights > 0).sum()))
        picked = rng.choice(len(weights), size=n, replace=False, p=weights / weights.sum())
        return self.vocab.movie_ids[picked].tolist()

    def rated(self, user_id: int) -> frozenset[int]:
        """Raw ids of the movies ``user_id`` rated (what top-K must never recommend)."""
        if user_id not in self._rated:
            (user_idx,) = self.vocab.user_index(np.array([user_id]))
            self._rated[user_id] = frozenset(
                self.vocab.movie_ids[self.vocab.rated_by(int(user_idx))].tolist()
            )
        return self._rated[user_id]

    def is_rating(self, value: object) -> bool:
        """A finite JSON number inside the model's rating scale."""
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and self.min_rating <= value <= self.max_rating
        )


class Endpoint:
    """One kind of request: its name in the reports, its share of the mix, a body, and a check
    of the answer."""

    name: str = ""
    share: int = 0  # relative to the other endpoints' (Locust's weight of its user class)
    model: str = "movierec"  # the registration that takes it: /predictions/<model>
    pool: int = 0  # > 0: the user draws this many bodies once and sends them in turn

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue

    def body(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def check(self, body: dict, answer: object) -> str | None:
        """What is wrong with a 200 answer to ``body``; ``None`` when it is right."""
        raise NotImplementedError


class SingleRating(Endpoint):
    """``{"user_id", "movie_id"}`` -> ``{"user_id", "movie_id", "rating"}``."""

    name = "rating"
    share = 45

    def body(self, rng: np.random.Generator) -> dict:
        return {"user_id": self.catalogue.user(rng), "movie_id": self.catalogue.movies(rng, 1)[0]}

    def check(self, body: dict, answer: object) -> str | None:
        if not isinstance(answer, dict) or not {"user_id", "movie_id", "rating"} <= set(answer):
            return f"expected user_id, movie_id, rating; got {str(answer)[:80]}"
        if (answer["user_id"], answer["movie_id"]) != (body["user_id"], body["movie_id"]):
            return f"answer is about another pair: {answer}"
        if not self.catalogue.is_rating(answer["rating"]):
            return f"rating {answer['rating']!r} outside the rating scale"
        return None


class RatingPairs(Endpoint):
    """``{"pairs": [[u, m], ...]}`` -> ``{"ratings": [...]}``: one user's candidate movies,
    as a re-ranking step would send them."""

    name = "pairs"
    share = 10
    size = 100  # candidates per request: a typical re-ranking list

    def body(self, rng: np.random.Generator) -> dict:
        user = self.catalogue.user(rng)
        return {"pairs": [[user, m] for m in self.catalogue.movies(rng, self.size)]}

    def check(self, body: dict, answer: object) -> str | None:
        if not isinstance(answer, dict) or "ratings" not in answer:
            return f"expected ratings; got {str(answer)[:80]}"
        ratings = answer["ratings"]
        if not isinstance(ratings, list) or len(ratings) != len(body["pairs"]):
            return f"expected {len(body['pairs'])} ratings, got {str(ratings)[:80]}"
        # One array check, not a Python call per rating: the load generator shares the CPU.
        values = np.array(ratings)
        if values.dtype.kind not in "fi":
            return f"ratings are not all numbers: {str(ratings)[:80]}"
        lo, hi = self.catalogue.min_rating, self.catalogue.max_rating
        if not (np.isfinite(values).all() and values.min() >= lo and values.max() <= hi):
            return "a rating is outside the rating scale"
        return None


class TopK(Endpoint):
    """``{"user_id", "k"}`` -> ``{"user_id", "ranked_by", "recommendations": [{movie_id,
    title, genres, score, rating}, ...]}``: k distinct unrated movies, best first, each with a
    predicted rating on the scale (the score is the ranking model's, or the rating itself)."""

    name = "top_k"
    share = 35
    k = 10  # a typical home-page row

    def body(self, rng: np.random.Generator) -> dict:
        return {"user_id": self.catalogue.user(rng), "k": self.k}

    def check(self, body: dict, answer: object) -> str | None:
        if not isinstance(answer, dict) or not {"user_id", "recommendations"} <= set(answer):
            return f"expected user_id, recommendations; got {str(answer)[:80]}"
        if answer["user_id"] != body["user_id"]:
            return f"answer is about user {answer['user_id']}, not {body['user_id']}"
        recs = answer["recommendations"]
        rated = self.catalogue.rated(body["user_id"])
        expected = min(body["k"], self.catalogue.vocab.num_items - len(rated))
        if not isinstance(recs, list) or len(recs) != expected:
            return f"expected {expected} recommendations, got {str(recs)[:80]}"
        if answer.get("ranked_by") not in ("ranking", "rating"):
            return f"ranked_by is {answer.get('ranked_by')!r}, not ranking or rating"
        fields = {"movie_id", "title", "genres", "score", "rating"}
        for rec in recs:
            if not isinstance(rec, dict) or set(rec) != fields:
                return f"malformed recommendation {str(rec)[:80]}"
            if rec["movie_id"] in rated:
                return f"recommends movie {rec['movie_id']}, which the user has rated"
            if not isinstance(rec["title"], str) or not isinstance(rec["genres"], list):
                return f"malformed title or genres in {str(rec)[:80]}"
            if not self.catalogue.is_rating(rec["rating"]):
                return f"rating {rec['rating']!r} outside the rating scale"
            if not isinstance(rec["score"], (int, float)):
                return f"score {rec['score']!r} is not a number"
        return _check_order(recs)


def _check_order(recs: list[dict]) -> str | None:
    """Well-formed recommendations must name each movie once, best score first."""
    scores = [r["score"] for r in recs]
    if len({r["movie_id"] for r in recs}) != len(recs):
        return "a movie is recommended twice"
    if any(a < b for a, b in zip(scores, scores[1:])):
        return "recommendations are not sorted best first"
    return None


def _check_recommendations(
    catalogue: Catalogue, recs: object, k: int, excluded: frozenset[int]
) -> str | None:
    """A list of at most ``k`` distinct well-formed recommendations, none in ``excluded``,
    best first."""
    if not isinstance(recs, list) or not 0 < len(recs) <= k:
        return f"expected 1..{k} recommendations, got {str(recs)[:80]}"
    for rec in recs:
        if not isinstance(rec, dict) or not {"movie_id", "title", "genres", "score"} <= set(rec):
            return f"malformed recommendation {str(rec)[:80]}"
        if rec["movie_id"] in excluded:
            return f"recommends movie {rec['movie_id']}, which it must exclude"
    return _check_order(recs)


class NewUser(Endpoint):
    """``{"ratings": {movie_id: stars, ...}, "k"}`` -> top-K for a user the model never saw,
    fitted on the fly from 10 popularity-sampled ratings."""

    name = "new_user"
    share = 5
    k = 10

    def body(self, rng: np.random.Generator) -> dict:
        movies = dict.fromkeys(self.catalogue.movies(rng, 10))  # distinct, popularity order
        stars = rng.integers(
            int(self.catalogue.min_rating), int(self.catalogue.max_rating) + 1, len(movies)
        )
        return {"ratings": {str(m): int(s) for m, s in zip(movies, stars)}, "k": self.k}

    def check(self, body: dict, answer: object) -> str | None:
        if not isinstance(answer, dict) or "recommendations" not in answer:
            return f"expected recommendations; got {str(answer)[:80]}"
        rated = frozenset(int(m) for m in body["ratings"])
        return _check_recommendations(self.catalogue, answer["recommendations"], body["k"], rated)


class Similar(Endpoint):
    """``{"similar_to": movie_id, "k"}`` -> the nearest movies, the movie itself excluded."""

    name = "similar"
    share = 5
    k = 10

    def body(self, rng: np.random.Generator) -> dict:
        return {"similar_to": self.catalogue.movies(rng, 1)[0], "k": self.k}

    def check(self, body: dict, answer: object) -> str | None:
        if not isinstance(answer, dict) or "recommendations" not in answer:
            return f"expected recommendations; got {str(answer)[:80]}"
        return _check_recommendations(
            self.catalogue, answer["recommendations"], body["k"], frozenset([body["similar_to"]])
        )


class BulkPairs(RatingPairs):
    """10,000 pairs of one user, sent to the bulk endpoint: a partner scoring a catalogue."""

    name = "bulk pairs"
    model = "movierec-bulk"
    size = 10_000
    pool = 8  # drawn once: building 10,000 pairs costs the load generator more than sending


class BulkNewUser(NewUser):
    """A new user with 1,000 ratings, sent to the bulk endpoint: a batch job folding in a
    whole rating history."""

    name = "bulk new_user"
    model = "movierec-bulk"
    size = 1_000
    pool = 8

    def body(self, rng: np.random.Generator) -> dict:
        # At most half the catalogue, so that movies are left to recommend.
        size = min(self.size, self.catalogue.vocab.num_items // 2)
        movies = self.catalogue.distinct_movies(rng, size)
        stars = rng.integers(
            int(self.catalogue.min_rating), int(self.catalogue.max_rating) + 1, len(movies)
        )
        return {"ratings": {str(m): int(s) for m, s in zip(movies, stars)}, "k": self.k}


# The endpoints the load tests exercise; the locustfile has one user class per entry. The mix
# (their shares): top-K rows on every home page, single ratings on movie pages, now and then a
# re-ranking of 100 candidates, a sign-up (new user) or a "more like this" row.
ENDPOINTS: tuple[type[Endpoint], ...] = (SingleRating, RatingPairs, TopK, NewUser, Similar)
# Bulk clients (the isolation scenario): not in the mix, run only when named on Locust's
# command line (loadtest/bulk.py).
BULK_ENDPOINTS: tuple[type[Endpoint], ...] = (BulkPairs, BulkNewUser)
# Locust's name for an attempt refused for its token (expired, or renewed while on its way) and
# sent again with the key file's new key: recorded as a success, apart from the endpoints.
TOKEN_REFRESHED = "token refreshed (retried)"


def check_echo(body: dict, answer: object) -> str | None:
    """The benchmark's echo handler must answer the request body itself."""
    return None if answer == body else f"not an echo of the request: {str(answer)[:80]}"
