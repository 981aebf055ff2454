"""Error hierarchy shared by data loading, the recommender and the serving handler.

The handler maps these to HTTP statuses per request: :class:`BadRequestError` -> 400,
:class:`TooLargeError` -> 413, :class:`UnknownIdError` -> 404. Everything names the field or
file that is wrong.
"""

from __future__ import annotations


class MovieRecError(Exception):
    """Base class of every error movierec raises on purpose."""


class DataError(MovieRecError):
    """A dataset could not be fetched, verified or parsed; the message names the file."""


class BadRequestError(MovieRecError):
    """A request is malformed or out of range (HTTP 400).

    Parameters
    ----------
    field : str
        The JSON field at fault, e.g. ``"k"`` or ``"pairs[3][1]"``.
    message : str
        What is wrong with it.
    """

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TooLargeError(BadRequestError):
    """A request is larger than the endpoint takes (HTTP 413): more pairs, ratings or ids
    than its limit. The message names the limit and, where one exists, the endpoint that
    takes requests this large."""

    status = 413


class UnknownIdError(MovieRecError):
    """A request names a user or movie the model does not know (HTTP 404)."""

    status = 404

    def __init__(self, field: str, value: int):
        kind = "user" if "user" in field else "movie"
        self.message = f"unknown {kind} id {value}"
        super().__init__(f"{field}: {self.message}")
        self.field = field
        self.value = value
