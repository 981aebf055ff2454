"""python -m client.keys: renew TorchServe's inference and management keys before they expire.

    python -m client.keys                          # what `make serve` starts in the background
    python -m client.keys --pid-file logs/keys.pid # refuses to start beside a live supervisor
    python -m client.keys --stop --pid-file logs/keys.pid

TorchServe 0.12 writes keys with an ``expiration time`` into key_file.json (in the folder it
started from); after ``token_expiration_min`` (default 60) every call with them is refused
(400 ``InvalidKeyException``) and nothing renews them by itself. The ``API`` key in the same
file never expires: ``POST <management>/token?type=inference`` (or ``management``) with it makes
TorchServe draw a new key and rewrite key_file.json. This supervisor does that for each key
once less than ``lead`` of its life is left, where ``lead`` is half the lifetime, at most
10 minutes (60-minute keys: renewed 50 minutes after they were drawn; 1-minute keys: every
30 s). The old key stops working at once, so clients re-read key_file.json and retry once
(:class:`client.MovieRecClient` and the Locust users do).

It reads the expiration times from the file, never keeps keys longer than one request, and
never prints or logs one. It exits on SIGTERM/SIGINT, or when the server has not answered for
``--give-up`` seconds (the server was stopped without ``make stop``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from client import config_value
from model import console

log = logging.getLogger("client.keys")

KINDS = ("inference", "management")
DEFAULT_LIFETIME_MIN = 60.0  # TorchServe 0.12's token_expiration_min when none is set
MAX_LEAD_S = 600.0  # renew at most 10 minutes before expiry: enough for a slow, busy machine


def read_keys(key_file: str | Path, timeout: float = 2.0) -> dict:
    """key_file.json as a dict; retried for up to ``timeout`` seconds while TorchServe is
    rewriting it (it writes in place, so a reader can see a half-written file)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            keys = json.loads(Path(key_file).read_text())
            if all(isinstance(keys.get(k), dict) for k in (*KINDS, "API")):
                return keys
            problem: OSError | ValueError = ValueError(f"{key_file}: missing keys")
        except (OSError, ValueError) as exc:
            problem = exc
        if time.monotonic() > deadline:
            raise problem
        time.sleep(0.05)


def expiration(keys: dict, kind: str) -> datetime | None:
    """The ``expiration time`` TorchServe recorded for the ``kind`` key, or None when absent
    (older TorchServe; the API key)."""
    text = keys.get(kind, {}).get("expiration time")
    # Java's Instant.toString: 2026-11-30T05:24:54.091822672Z (fromisoformat keeps microseconds).
    return datetime.fromisoformat(text) if text else None


def lead_seconds(lifetime_min: float) -> float:
    """How long before expiry a key is renewed: half its lifetime, at most :data:`MAX_LEAD_S`."""
    return min(lifetime_min * 60.0 / 2.0, MAX_LEAD_S)


def token_expiration_min(config: str | Path) -> float:
    """``token_expiration_min`` of a config.properties (TorchServe's default when absent)."""
    return float(config_value(config, "token_expiration_min") or DEFAULT_LIFETIME_MIN)


def management_url(config: str | Path) -> str:
    """``management_address`` of a config.properties, else TorchServe's default."""
    return config_value(config, "management_address") or "http://127.0.0.1:8081"


def renew(url: str, key_file: str | Path, kind: str, timeout: float = 10.0) -> None:
    """Ask TorchServe for a new ``kind`` key (it rewrites key_file.json); raises OSError
    (URLError, HTTPError) when the server refused or did not answer."""
    api_key = read_keys(key_file)["API"]["key"]
    request = urllib.request.Request(
        f"{url.rstrip('/')}/token?type={kind}",
        method="POST",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()  # TorchServe answers an empty body; the key is only in the file


class Supervisor:
    """Renews each key in key_file.json once less than ``lead_s`` seconds of it are left.

    Parameters
    ----------
    url : str
        TorchServe's management address (the token API lives there).
    key_file : path
        The key_file.json TorchServe writes in the folder it started from.
    lifetime_min : float
        The server's ``token_expiration_min``: sets how early keys are renewed.
    give_up_s : float
        Stop after the server has failed to answer for this long.
    """

    def __init__(
        self, url: str, key_file: str | Path, lifetime_min: float, give_up_s: float = 600.0
    ):
        self.url = url
        self.key_file = Path(key_file)
        self.lead_s = lead_seconds(lifetime_min)
        self.give_up_s = give_up_s
        self.renewals = dict.fromkeys(KINDS, 0)
        self.stopped = threading.Event()

    def step(self, now: datetime | None = None) -> float:
        """Renew what is due; return the seconds to wait before the next look."""
        now = now or datetime.now(UTC)
        keys = read_keys(self.key_file)
        # Look again when the next key is due, and at least every 30 s: a restarted server
        # writes a new file with new times.
        wait = 30.0
        for kind in KINDS:
            expires = expiration(keys, kind)
            if expires is None:
                continue
            left = (expires - now).total_seconds()
            if left <= self.lead_s:
                renew(self.url, self.key_file, kind)
                self.renewals[kind] += 1
                renewed = expiration(read_keys(self.key_file), kind)
                log.info(
                    "renewed the %s key (%.0f s were left); the new one expires at %s",
                    kind,
                    left,
                    renewed.isoformat(timespec="seconds") if renewed else "?",
                )
                left = (renewed - now).total_seconds() if renewed else self.lead_s * 2
            wait = min(wait, left - self.lead_s)
        return max(wait, 1.0)

    def run(self) -> int:
        """Loop until stopped; 0 when stopped by a signal, 1 after giving up."""
        log.info(
            "renewing the keys in %s through %s %.0f s before they expire",
            self.key_file,
            self.url,
            self.lead_s,
        )
        failing_since = None
        while not self.stopped.is_set():
            try:
                wait = self.step()
                if failing_since is not None:
                    log.info("the key file and the server are there: renewing from now on")
                failing_since = None
            except (OSError, ValueError, KeyError) as exc:
                # Not started yet, restarting, or stopped: say so once, then keep trying.
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("cannot renew the keys yet (%s); retrying", _reason(exc))
                elif time.monotonic() - failing_since > self.give_up_s:
                    log.error("no answer for %.0f s: giving up (%s)", self.give_up_s, _reason(exc))
                    return 1
                wait = 2.0
            self.stopped.wait(wait)
        log.info("stopped after %s renewals", self.renewals)
        return 0


def _reason(exc: BaseException) -> str:
    # HTTPError's text and the file's name are safe to show; nothing here carries a key.
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running ``client.keys`` supervisor (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"client.keys" in cmdline


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(pid_file: str | Path, timeout: float = 10.0) -> int:
    """Stop the supervisor named in ``pid_file`` (only if it is one); 0 when none runs now."""
    pid_file = Path(pid_file)
    pid = _read_pid(pid_file)
    if pid is None or not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        log.error("key supervisor %d did not stop", pid)
        return 1
    pid_file.unlink(missing_ok=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = console.parser("python -m client.keys", __doc__)
    p.add_argument("--config", default="config.properties", help="TorchServe's config file")
    p.add_argument(
        "--url", default=None, help="management address (default: from --config, else :8081)"
    )
    p.add_argument("--key-file", default="key_file.json", help="TorchServe's key_file.json")
    p.add_argument(
        "--lifetime-min",
        type=float,
        default=None,
        help="the server's token_expiration_min (default: from --config, else 60)",
    )
    p.add_argument(
        "--give-up", type=float, default=600.0, help="seconds without an answer before exiting"
    )
    p.add_argument("--pid-file", default=None, help="write the pid here (and remove it on exit)")
    p.add_argument("--stop", action="store_true", help="stop the supervisor of --pid-file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pid_file = Path(args.pid_file) if args.pid_file else None
    if args.stop:
        if pid_file is None:
            log.error("--stop needs --pid-file")
            return 2
        return stop(pid_file)
    if pid_file is not None:
        running = _read_pid(pid_file)
        if running is not None and running != os.getpid() and _alive(running):
            log.error("a key supervisor already runs (pid %d, %s)", running, pid_file)
            return 1
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    lifetime = args.lifetime_min or token_expiration_min(args.config)
    supervisor = Supervisor(
        args.url or management_url(args.config), args.key_file, lifetime, args.give_up
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stopped.set())
    try:
        return supervisor.run()
    finally:
        if pid_file is not None and _read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
