"""A small HTTP client for a running movierec TorchServe; finds the token itself.

from client import MovieRecClient
api = MovieRecClient()                      # 127.0.0.1:8080, token from ./key_file.json
api.rating(196, 242); api.recommend(196, k=10)
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(Exception):
    """The server answered an error, or could not be reached."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


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
        ) from None
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ClientError(0, f"{path}: no {kind!r} key in it ({exc})") from None


class MovieRecClient:
    """Calls ``POST /predictions/<model>`` with the bearer token."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        model: str = "movierec",
        key_file: str | Path | None = None,
        timeout: float = 10.0,
    ):
        self.url = url.rstrip("/")
        self.key_file = key_file
        self._fixed_token = token is not None
        self.token = token if token is not None else read_token("inference", key_file)
        self.model = model
        self.timeout = timeout

    @classmethod
    def connect(
        cls, url: str = DEFAULT_URL, key_file: str | Path | None = None, timeout: float = 120.0
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
        """Send one request; returns ``(status, decoded JSON body)`` for any HTTP status."""
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
            raise ClientError(0, f"cannot reach {self.url}: {exc}") from None
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def predict(self, body: object) -> dict:
        """POST a body to the model; raises :class:`ClientError` with the server's message."""
        status, answer = self.request("POST", f"/predictions/{self.model}", body)
        if status != 200:
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise ClientError(status, message)
        return answer

    def rating(self, user_id: int, movie_id: int) -> float:
        return self.predict({"user_id": user_id, "movie_id": movie_id})["rating"]

    def ratings(self, pairs: list[tuple[int, int]]) -> list[float]:
        return self.predict({"pairs": [list(p) for p in pairs]})["ratings"]

    def recommend(self, user_id: int, k: int = 10) -> list[dict]:
        return self.predict({"user_id": user_id, "k": k})["recommendations"]

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
        raise ClientError(0, f"model {self.model} not ready after {timeout:.0f} s: {last}")
