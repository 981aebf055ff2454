"""The model server as the web app sees it: one call per page request, through the client.

Every call builds a :class:`client.MovieRecClient`, which reads the inference key from
key_file.json right then: the key supervisor (``python -m client.keys``) renews keys by
rewriting that file, so a key read at start would stop working at the first expiry. A key
refused on the way (renewed meanwhile) is re-read and the request sent once more by the client
itself. The key never leaves this process: the page only ever sees the answers. The client
also picks the endpoint: a person with more ratings than the interactive endpoint takes (250)
is sent to the bulk one (``/predictions/movierec-bulk``), everyone else to the interactive one.

What can go wrong is sorted into what the page shows (:class:`UpstreamError`'s ``state``):

- ``down``: nothing listens at the model server's address, or it left no key file: it is not
  running (the page says to start it with ``make serve``);
- ``starting``: it answers, but the model is not loaded yet (TorchServe's 404 for an unknown
  model, 503 while no worker is up);
- ``refused``: the model refused the request (400/404/413 with the handler's message and
  field);
- ``failed``: anything else (a worker died, a key that keeps being refused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from client import BULK_MODEL, ClientError, MovieRecClient, fresh_token

log = logging.getLogger(__name__)

NOT_RUNNING = "The model server is not running: start it with make serve"
STARTING = "The model server is starting; the lists will appear in a moment"


@dataclass
class UpstreamError(Exception):
    """A model-server call that gave no answer for the page (see the module docstring).

    Attributes
    ----------
    state : str
        ``down``, ``starting``, ``refused`` or ``failed``.
    status : int
        The HTTP status the web app answers with.
    message : str
        What the page shows: the model's own message for ``refused``.
    field : str or None
        The request field the model named, for ``refused``.
    """

    state: str
    status: int
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.state}: {self.message}"

    def to_json(self) -> dict:
        """The error body: ``{"error": {"status", "state", "field", "message"}}``."""
        return {
            "error": {
                "status": self.status,
                "state": self.state,
                "field": self.field,
                "message": self.message,
            }
        }


def classify(exc: ClientError) -> UpstreamError:
    """The page's view of a client error (module docstring)."""
    if exc.kind in ("unreachable", "no_key"):
        return UpstreamError("down", 503, f"{NOT_RUNNING} ({exc.message})")
    if exc.kind in ("bad_request", "not_found", "too_large") and exc.field is not None:
        # The handler's own refusal: it always names the field; TorchServe's never does.
        return UpstreamError("refused", exc.status, exc.message, exc.field)
    if exc.status in (404, 503):
        return UpstreamError("starting", 503, f"{STARTING} ({exc.message})")
    return UpstreamError("failed", 502, f"The model server failed: {exc.message}")


class Upstream:
    """Calls ``POST /predictions/<model>`` on the model server with a key read at each call,
    or ``POST /predictions/<bulk_model>`` for a request larger than ``model`` takes.

    Parameters
    ----------
    url : str
        The inference address, e.g. ``http://127.0.0.1:8080``.
    key_file : path
        TorchServe's key_file.json.
    model : str
        The model name.
    timeout : float
        Seconds to wait for one answer.
    bulk_model : str or None
        The model name of the bulk endpoint; None sends every request to ``model``.
    """

    def __init__(
        self,
        url: str,
        key_file: str | Path,
        model: str = "movierec",
        timeout: float = 10.0,
        bulk_model: str | None = BULK_MODEL,
    ):
        self.url = url.rstrip("/")
        self.key_file = Path(key_file)
        self.model = model
        self.bulk_model = bulk_model
        self.timeout = timeout

    def _client(self) -> MovieRecClient:
        """A client with the key read now (module docstring); it costs one small file read."""
        try:
            return self._new_client()
        except ClientError as exc:
            if exc.kind != "no_key" or not self.key_file.exists():
                raise
        # TorchServe rewrites key_file.json in place when a key is renewed: a read in the
        # middle sees half a file. Wait (up to 2 s) until it reads whole, then read it again.
        fresh_token(None, "inference", self.key_file)
        return self._new_client()

    def _new_client(self) -> MovieRecClient:
        return MovieRecClient(
            self.url,
            model=self.model,
            key_file=self.key_file,
            timeout=self.timeout,
            bulk_model=self.bulk_model,
        )

    def predict(self, body: dict) -> dict:
        """The model's answer to ``body``; raises :class:`UpstreamError`."""
        try:
            return self._client().predict(body)
        except ClientError as exc:
            error = classify(exc)
            if error.state != "refused":
                log.warning("model server: %s", error)
            raise error from None

    def state(self) -> UpstreamError | None:
        """None when the model answers; else why not (``down``, ``starting``, ``failed``).

        An empty body is what the handler always refuses with a 400 naming a field: such an
        answer proves that a worker has the model loaded, at no cost to it.
        """
        try:
            self._client().predict({})
        except ClientError as exc:
            error = classify(exc)
            return None if error.state == "refused" else error
        return None
