"""What :class:`model.recommender.Recommender` answers with: small frozen records in raw ids.

Everything here speaks the client's terms (MovieLens ids, titles, genre names) and holds
everything an HTTP answer needs, so the handler only shapes JSON. Lists are best first.

- :class:`RatingPrediction`: predicted ratings of (user, movie) pairs, arrays in pair order;
- :class:`Recommendation`: a user's top-K list, or the popularity chart standing in for a
  user the model does not know;
- :class:`NewUserRecommendation`: the top-K list of a user given by ratings;
- :class:`SimilarMovies`: the movies most like one movie;
- :class:`FoundMovie`: a movie found by its title.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANK_BY = ("ranking", "rating")  # what a top-K list may be asked to be ordered by
FALLBACKS = ("popular",)  # what may stand in for a user the model does not know


@dataclass(frozen=True)
class Movie:
    """One movie of the catalogue."""

    movie_id: int
    title: str
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Reason:
    """A movie the person rated that helped put an entry on their list, and the stars they
    gave it."""

    movie_id: int
    title: str
    rating: float


@dataclass(frozen=True)
class RecommendedMovie:
    """One entry of a list.

    ``score`` is what ordered the list: the ranking model's score (it ranks, it is not a
    rating), the predicted rating, a Bayesian-average rating (the popularity chart) or a
    similarity. ``rating`` is the user's predicted rating of the movie, in user lists only.
    ``because``: the rated movies that added most to the entry's ranking score, when an
    explanation was asked for (None otherwise).
    """

    movie_id: int
    title: str
    genres: tuple[str, ...]
    score: float
    rating: float | None = None
    because: tuple[Reason, ...] | None = None


@dataclass(frozen=True)
class FoundMovie:
    """A movie found by its title: ``year`` is 0 when the title gives none, ``ratings`` its
    number of ratings in what the model was trained on."""

    movie_id: int
    title: str
    year: int
    genres: tuple[str, ...]
    ratings: int


@dataclass(frozen=True)
class MovieRating:
    """A predicted rating of one movie, with the movie's title and genres."""

    movie_id: int
    title: str
    genres: tuple[str, ...]
    rating: float


# eq=False: the fields are arrays, which == compares element-wise, not as a whole.
@dataclass(frozen=True, eq=False)
class RatingPrediction:
    """Predicted ratings of (user, movie) pairs, in the order asked.

    Attributes
    ----------
    ratings : numpy.ndarray of float32, shape (P,)
        Clamped to the rating scale; NaN where the user or the movie is unknown.
    user_known, movie_known : numpy.ndarray of bool, shape (P,)
        Whether the model knows each pair's user, and its movie.
    """

    ratings: np.ndarray
    user_known: np.ndarray
    movie_known: np.ndarray

    @property
    def known(self) -> np.ndarray:
        """(P,) bool: pairs whose user and movie are both known (the rated ones)."""
        return self.user_known & self.movie_known


@dataclass(frozen=True)
class Recommendation:
    """A known user's top-K list, the popularity chart standing in for an unknown one, or
    neither.

    Attributes
    ----------
    movies : tuple of RecommendedMovie
        At most k, fewer when filters and rated movies leave fewer; empty when
        ``user_known`` is False and no fallback stood in.
    ranked_by : str
        ``"ranking"`` (the ranking model), ``"rating"`` (predicted rating) or
        ``"popularity"`` (the chart of the fallback).
    user_known : bool
        Whether the model knows the user.
    fallback : str or None
        ``"popular"`` when the chart stood in for an unknown user.
    fallback_error : str or None
        Why an asked fallback could not stand in (the model has no rating statistics).
    """

    movies: tuple[RecommendedMovie, ...] = ()
    ranked_by: str = "rating"
    user_known: bool = True
    fallback: str | None = None
    fallback_error: str | None = None


@dataclass(frozen=True)
class NewUserRecommendation:
    """The top-K list of a user given by ratings, and the predicted ratings they asked for.

    Attributes
    ----------
    movies : tuple of RecommendedMovie
        Never a movie they rated; empty when the request was refused (below).
    ranked_by : str
        ``"ranking"`` or ``"rating"``, as for :class:`Recommendation`.
    unknown_movie_ids : tuple of int
        Rated movies the model does not know, in the order given: they were left out.
    predictions : tuple of MovieRating, or None
        The ratings asked for, in the order asked; None when none were asked.
    unknown_predicted_ids : tuple of int
        Movies asked for that the model does not know, in the order asked. When any, the
        user got neither a list nor predictions (nor took part in the batch's solve).
    """

    movies: tuple[RecommendedMovie, ...] = ()
    ranked_by: str = "rating"
    unknown_movie_ids: tuple[int, ...] = ()
    predictions: tuple[MovieRating, ...] | None = None
    unknown_predicted_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SimilarMovies:
    """The movies most like ``movie`` (never ``movie`` itself); ``movie`` is None, and the
    list empty, when the model does not know the movie asked about."""

    movie: Movie | None
    movies: tuple[RecommendedMovie, ...] = ()
