"""A small HTTP client for a running movierec TorchServe; finds the server and its token itself.

from client import MovieRecClient
api = MovieRecClient()                      # server and token found as described below
api.rating(196, 242); api.recommend(196, k=10, genres=["Comedy"], explain=True)
api.new_user({1: 5, 50: 4.5}, k=10, novelty=0.5); api.similar(50, k=10, years=(1990, 1999))
api.search("star wars"); api.chart(k=20, genres=["Comedy"])
api.resolve_title("fargo")                  # one search result, or TitleError

Options a caller leaves out are left out of the request, so the server's defaults apply.

The server: ``url`` if given, else ``$MOVIEREC_URL``, else ``inference_address`` of
./config.properties, else http://127.0.0.1:8080. The token: the ``inference`` key of
./key_file.json, which TorchServe writes in the folder it starts from (``$MOVIEREC_KEY_FILE`` or
``key_file`` point elsewhere). Keys change at every start and whenever they are renewed
(``python -m client.keys``, which ``make serve`` runs): a refused token is re-read and the
request retried once.

The server has two endpoints for the same model: ``/predictions/movierec`` for the requests
people wait on, and ``/predictions/movierec-bulk`` for large ones. Each request goes to the
one its size calls for (:func:`is_bulk`): more than :data:`INTERACTIVE_MAX_PAIRS` pairs (or
``movie_ids``), or more than :data:`INTERACTIVE_MAX_RATINGS` ratings (or
``exclude_movie_ids``), go to the bulk endpoint; ``bulk_model=None`` sends everything to
``model``.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"
CHART = "popular"  # the chart :meth:`MovieRecClient.chart` asks for: the server's only one
# Results a title is resolved among: enough for every remake and sequel of one name to show up
# as a candidate, few enough to print.
RESOLVE_K = 10
# The interactive endpoint's request limits: they mirror handler/model-config.yaml's
# handler.max_pairs and handler.max_ratings (tests/test_client_discovery.py holds them equal).
# A request above either goes to the bulk endpoint, which takes larger ones.
INTERACTIVE_MAX_PAIRS = 1_000  # pairs, or movie_ids of a new user
INTERACTIVE_MAX_RATINGS = 250  # ratings of a new user, or exclude_movie_ids
MODEL = "movierec"  # the interactive endpoint: /predictions/movierec
BULK_MODEL = "movierec-bulk"  # the endpoint for larger requests (handler.bulk_model)


class ClientError(Exception):
    """The server answered an error, or could not be reached.

    Attributes
    ----------
    status : int
        The HTTP status; 0 when no answer came (unreachable, no key file).
    message : str
        The server's message (or what went wrong).
    kind : str
        ``"bad_request"`` (400), ``"not_found"`` (404), ``"too_large"`` (413: the request is
        larger than the endpoint takes), ``"token"`` (the token was refused),
        ``"unreachable"``, ``"no_key"`` (key file missing or unreadable), ``"server"``
        (any other status).
    field : str or None
        The request field the server named, for 400, 404 and 413.
    """

    def __init__(self, status: int, message: str, kind: str = "server", field: str | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.kind = kind
        self.field = field


class TitleError(ValueError):
    """A typed title that names no movie, or several (:func:`match_title`).

    Attributes
    ----------
    title : str
        The title as typed.
    candidates : list of dict
        The search results it might mean (``movie_id``, ``title``, ``year``, ...); empty when
        nothing matched.
    """

    def __init__(self, title: str, candidates: list[dict]):
        if candidates:
            message = f"{title!r} matches {len(candidates)} movies: give its id or full title"
        else:
            message = f"no movie matches {title!r}"
        super().__init__(message)
        self.title = title
        self.candidates = candidates


def config_value(config: str | Path, key: str) -> str | None:
    """The value of ``key`` in a TorchServe config.properties, or None (no file, no key)."""
    try:
        lines = Path(config).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and not name.lstrip().startswith("#") and name.strip() == key and value.strip():
            return value.strip()
    return None


def find_url(config: str | Path = "config.properties") -> str:
    """The inference URL: ``$MOVIEREC_URL``, else ``inference_address`` of ``config``, else
    the default."""
    if os.environ.get("MOVIEREC_URL"):
        return os.environ["MOVIEREC_URL"]
    return config_value(config, "inference_address") or DEFAULT_URL


def read_token(kind: str = "inference", key_file: str | Path | None = None) -> str:
    """The ``kind`` key (inference or management) from TorchServe's key_file.json.

    TorchServe writes key_file.json in the folder it was started from; ``$MOVIEREC_KEY_FILE``
    or ``key_file`` point elsewhere.
    """
    path = Path(key_file or os.environ.get("MOVIEREC_KEY_FILE", "key_file.json"))
    try:
        keys = json.loads(path.read_text())
        return keys[kind]["key"]
    except FileNotFoundError:
        raise ClientError(
            0,
            f"{path} not found: start TorchServe from this folder "
            "(make serve) or set MOVIEREC_KEY_FILE",
            "no_key",
        ) from None
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ClientError(0, f"{path}: no {kind!r} key in it ({exc})", "no_key") from None


def fresh_token(
    stale: str | None,
    kind: str = "inference",
    key_file: str | Path | None = None,
    timeout: float = 2.0,
) -> str:
    """The ``kind`` key once it differs from ``stale`` (the key just refused), waiting up to
    ``timeout`` seconds; after that, whatever the file holds.

    TorchServe switches to a new key before it has rewritten key_file.json, and rewrites it in
    place: a client refused in between reads the old key, or half a file, for a moment.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            token = read_token(kind, key_file)
            if token != stale or time.monotonic() > deadline:
                return token
        except ClientError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


# How a title may be typed besides as written: its article in front ("The Godfather" for
# MovieLens's "Godfather, The"), English only; the server's search knows more languages, and a
# title typed otherwise still resolves when it is the only result.
_MOVED_ARTICLE = re.compile(r"^(.*\S),\s*(the|a|an)$", re.IGNORECASE)
_YEAR = re.compile(r"\s*\(\d{4}\)$")


def _plain(text: str) -> str:
    """``text`` case-folded with runs of white space made one space: how titles are compared."""
    return " ".join(text.casefold().split())


def title_forms(title: str) -> set[str]:
    """The texts that name ``title`` exactly, compared as :func:`_plain` writes them: the
    title as written, without its year, and with a moved English article put back in front.

    ``"Godfather, The (1972)"`` -> ``{"godfather, the (1972)", "godfather, the",
    "the godfather (1972)", "the godfather"}``.
    """
    written = _plain(title)
    year = _YEAR.search(written)
    name = written[: year.start()] if year else written
    suffix = year.group() if year else ""
    names = {name}
    moved = _MOVED_ARTICLE.match(name)
    if moved:
        names.add(f"{moved.group(2)} {moved.group(1)}")
    return names | {n + suffix for n in names}


def match_title(title: str, results: list[dict]) -> dict:
    """The search result ``title`` names: the one whose title it spells exactly (any case,
    the year left out or not, see :func:`title_forms`), else the only result.

    Parameters
    ----------
    title : str
        The title as a person typed it.
    results : list of dict
        The search answer's ``results`` for ``title``, best first.

    Returns
    -------
    dict
        One of ``results``.

    Raises
    ------
    TitleError
        No result (``candidates`` empty), or several and not exactly one of them spelled as
        typed (``candidates``: those spelled as typed, e.g. the remakes of one name, else all).
    """
    typed = _plain(title)
    exact = [r for r in results if typed in title_forms(r["title"])]
    if len(exact) == 1:
        return exact[0]
    if not exact and len(results) == 1:
        return results[0]
    raise TitleError(title, exact or results)


def _filters(
    genres: list[str] | None,
    exclude_genres: list[str] | None,
    exclude_movie_ids: list[int] | None,
    years: tuple[int, int] | list[int] | None = None,
) -> dict:
    given = {
        "genres": genres,
        "exclude_genres": exclude_genres,
        "exclude_movie_ids": exclude_movie_ids,
        "years": years,
    }
    return {k: list(v) for k, v in given.items() if v}


def _options(novelty: float | None = None, explain: bool = False) -> dict:
    """The list options a caller gave; those left out are not sent (the server's defaults:
    no novelty, no explanations), so a plain request stays what it always was."""
    given: dict = {}
    if novelty is not None:
        given["novelty"] = novelty
    if explain:
        given["explain"] = True
    return given


def _size(body: dict, field: str) -> int:
    value = body.get(field)
    return len(value) if isinstance(value, (list, dict)) else 0


def is_bulk(body: object) -> bool:
    """Whether ``body`` is larger than the interactive endpoint takes: more than
    :data:`INTERACTIVE_MAX_PAIRS` ``pairs`` or ``movie_ids``, or more than
    :data:`INTERACTIVE_MAX_RATINGS` ``ratings`` or ``exclude_movie_ids``."""
    if not isinstance(body, dict):
        return False
    return (
        max(_size(body, "pairs"), _size(body, "movie_ids")) > INTERACTIVE_MAX_PAIRS
        or max(_size(body, "ratings"), _size(body, "exclude_movie_ids")) > INTERACTIVE_MAX_RATINGS
    )


# What each error status of a prediction is to a caller (ClientError.kind).
_KINDS = {400: "bad_request", 404: "not_found", 413: "too_large"}


def _is_token_refusal(status: int, answer: object) -> bool:
    # TorchServe 0.12 answers a missing, wrong or expired token with 400 (not 401).
    return (
        status == 400 and isinstance(answer, dict) and answer.get("type") == "InvalidKeyException"
    )


class MovieRecClient:
    """Calls ``POST /predictions/<model>`` with the bearer token, or
    ``POST /predictions/<bulk_model>`` for a request larger than ``model`` takes
    (:func:`is_bulk`); ``bulk_model=None`` sends every request to ``model``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        model: str = MODEL,
        key_file: str | Path | None = None,
        timeout: float = 10.0,
        bulk_model: str | None = BULK_MODEL,
    ):
        self.url = (url or find_url()).rstrip("/")
        self.key_file = key_file
        self._fixed_token = token is not None
        self.token = token if token is not None else read_token("inference", key_file)
        self.model = model
        self.bulk_model = bulk_model
        self.timeout = timeout

    def model_for(self, body: object) -> str:
        """The model (endpoint) :meth:`predict` sends ``body`` to: ``bulk_model`` when the body
        is larger than the interactive endpoint takes and there is one, else ``model``."""
        if self.bulk_model and is_bulk(body):
            return self.bulk_model
        return self.model

    def path_for(self, body: object) -> str:
        """``/predictions/<model>`` for ``body`` (:meth:`model_for`)."""
        return f"/predictions/{self.model_for(body)}"

    @classmethod
    def connect(
        cls, url: str | None = None, key_file: str | Path | None = None, timeout: float = 120.0
    ) -> MovieRecClient:
        """Wait for a just-started server: its key file, then a worker with the model loaded."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = cls(url, key_file=key_file)
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.wait_until_ready(max(1.0, deadline - time.monotonic()))
        return client

    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        """Send one request; returns ``(status, decoded JSON body)`` for any HTTP status.

        A refused token (expired, or renewed meanwhile) is re-read from the key file and the
        request sent once more, unless the token was given to the constructor.
        """
        status, answer = self._send(method, path, body)
        if _is_token_refusal(status, answer) and not self._fixed_token:
            token = fresh_token(self.token, "inference", self.key_file)
            if token != self.token:
                self.token = token
                status, answer = self._send(method, path, body)
        return status, answer

    def _send(self, method: str, path: str, body: object | None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(0, f"cannot reach {self.url} ({reason})", "unreachable") from None
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def predict(self, body: object) -> dict:
        """POST a body to the endpoint its size calls for (:meth:`path_for`) and return the
        answer; raises :class:`ClientError` with the server's message, its ``kind`` and the
        field it named.

        A 413 (the endpoint's limits are lower than this client's, or the body is larger than
        even the bulk endpoint takes) is raised as ``kind="too_large"`` with the server's
        message, which names the endpoint for larger requests; it is not sent again elsewhere.
        """
        status, answer = self.request("POST", self.path_for(body), body)
        # Every answer of the handler is a JSON object; a 200 with anything else is the
        # server's fault, reported below rather than handed to a caller that indexes it.
        if isinstance(answer, dict):
            if status == 200:
                return answer
            if _is_token_refusal(status, answer):
                raise ClientError(status, str(answer.get("message", "token refused")), "token")
        error = answer.get("error", answer) if isinstance(answer, dict) else answer
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        field = error.get("field") if isinstance(error, dict) else None
        kind = _KINDS.get(status, "server")
        raise ClientError(status, message, kind, field)

    def rating(self, user_id: int, movie_id: int) -> float:
        """Predicted rating of one movie by a known user."""
        return self.predict({"user_id": user_id, "movie_id": movie_id})["rating"]

    def ratings(self, pairs: list[tuple[int, int]]) -> list[float]:
        """Predicted ratings of ``(user_id, movie_id)`` pairs, in order."""
        return self.predict({"pairs": [list(p) for p in pairs]})["ratings"]

    def top_k(
        self,
        user_id: int,
        k: int = 10,
        genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
        exclude_movie_ids: list[int] | None = None,
        fallback: str | None = None,
        rank_by: str | None = None,
        novelty: float | None = None,
        explain: bool = False,
        years: tuple[int, int] | None = None,
    ) -> dict:
        """Top-``k`` movies for a known user, or with ``fallback="popular"`` the popular ones
        for an unknown user: the whole answer (``ranked_by``, ``recommendations``, and
        ``fallback`` when it was used). ``rank_by="rating"`` orders by predicted rating
        instead of the ranking model; ``novelty`` (0 to 1) trades obvious picks for less
        known ones; ``explain`` adds to each entry ``because``, the user's rated movies that
        put it there (``[{"movie_id", "title", "rating"}]``); ``years`` ``(first, last)``
        keeps movies released in those years."""
        body = {
            "user_id": user_id,
            "k": k,
            **_filters(genres, exclude_genres, exclude_movie_ids, years),
        }
        if fallback:
            body["fallback"] = fallback
        if rank_by:
            body["rank_by"] = rank_by
        return self.predict({**body, **_options(novelty, explain)})

    def recommend(self, user_id: int, k: int = 10, **options) -> list[dict]:
        """Like :meth:`top_k` (same options), but only the list of
        ``{"movie_id", "title", "genres", "score", "rating"}`` (and ``because``, if asked)."""
        return self.top_k(user_id, k, **options)["recommendations"]

    def new_user(
        self,
        ratings: dict[int, float],
        k: int = 10,
        movie_ids: list[int] | None = None,
        genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
        exclude_movie_ids: list[int] | None = None,
        rank_by: str | None = None,
        novelty: float | None = None,
        explain: bool = False,
        years: tuple[int, int] | None = None,
    ) -> dict:
        """Top-``k`` for a user given by ``{movie_id: rating}`` (and predicted ratings of
        ``movie_ids``): the whole answer, with ``ranked_by``, ``recommendations``,
        ``unknown_movie_ids`` and, if asked, ``predictions``. ``novelty``, ``explain`` and
        ``years`` as for :meth:`top_k`; the movies ``because`` cites are among ``ratings``.
        Titles become ids with :meth:`resolve_title`."""
        body = {
            "ratings": {str(m): r for m, r in ratings.items()},
            "k": k,
            **_filters(genres, exclude_genres, exclude_movie_ids, years),
        }
        if movie_ids:
            body["movie_ids"] = list(movie_ids)
        if rank_by:
            body["rank_by"] = rank_by
        return self.predict({**body, **_options(novelty, explain)})

    def similar(
        self,
        movie_id: int,
        k: int = 10,
        genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
        exclude_movie_ids: list[int] | None = None,
        novelty: float | None = None,
        years: tuple[int, int] | None = None,
    ) -> dict:
        """The ``k`` movies most similar to ``movie_id``: the whole answer, with ``movie``
        and ``recommendations`` (scores of the ranking model: what a user who liked
        ``movie_id`` would be recommended). ``novelty`` and ``years`` as for :meth:`top_k`."""
        body = {
            "similar_to": movie_id,
            "k": k,
            **_filters(genres, exclude_genres, exclude_movie_ids, years),
        }
        return self.predict({**body, **_options(novelty)})

    def chart(
        self,
        k: int = 20,
        genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
        exclude_movie_ids: list[int] | None = None,
        years: tuple[int, int] | None = None,
    ) -> list[dict]:
        """The ``k`` best-liked movies (Bayesian-average rating) among those the filters keep:
        ``[{"movie_id", "title", "genres", "score"}]``, best first; the same for everyone."""
        body = {
            "chart": CHART,
            "k": k,
            **_filters(genres, exclude_genres, exclude_movie_ids, years),
        }
        return self.predict(body)["recommendations"]

    def search(self, query: str, k: int = 10) -> list[dict]:
        """Up to ``k`` movies whose titles best match ``query`` as a person types it (any
        case, accents or not, a typo, the start of a title, a year at the end), best first:
        ``[{"movie_id", "title", "year", "genres", "ratings"}]``, ``year`` None when the title
        gives none and ``ratings`` how many ratings the model learnt from. Empty when nothing
        matches."""
        return self.predict({"search": query, "k": k})["results"]

    def resolve_title(self, title: str) -> dict:
        """The movie ``title`` names, as a search result: searched for, then taken when
        exactly one result is spelled as typed or there is only one (:func:`match_title`).

        Raises
        ------
        TitleError
            Nothing matches, or several movies do: ``candidates`` lists them.
        ClientError
            The search failed.
        """
        return match_title(title, self.search(title, RESOLVE_K))

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Poll until a worker with the model answers (any answer of the handler's own)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                status, answer = self.request("POST", f"/predictions/{self.model}", {})
                # The handler answers an empty body with its own 400 naming the field: that
                # means a worker has loaded the model.
                error = answer.get("error") if isinstance(answer, dict) else None
                if status == 200 or (isinstance(error, dict) and "field" in error):
                    return
                last = f"HTTP {status}: {answer}"
                if status == 400 and not self._fixed_token:
                    # A restarted server writes new keys: read them again.
                    self.token = read_token("inference", self.key_file)
            except ClientError as exc:
                last = exc.message
            time.sleep(0.5)
        raise ClientError(
            0, f"model {self.model} not ready after {timeout:.0f} s: {last}", "unreachable"
        )
