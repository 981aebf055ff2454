"""Keys that keep working: the key supervisor (client/keys.py) against a fake token API, the
client's re-read of a renewed key, and (integration) Locust traffic across several expiries of
1-minute keys on a real TorchServe."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client import ClientError, MovieRecClient, fresh_token
from client.keys import Supervisor, expiration, lead_seconds, token_expiration_min
from loadtest.run import failures, run_locust
from loadtest.server import key_supervisor, local_torchserve
from loadtest.traffic import ENDPOINTS, TOKEN_REFRESHED

REPO = Path(__file__).resolve().parent.parent
USERS = 10  # Locust gives each of the mix's 5 user classes a user from 10 users on


def _stamp(when: datetime) -> str:
    # As TorchServe writes it (Java's Instant.toString, nanoseconds).
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def write_keys(path: Path, keys: dict[str, str], expires: dict[str, datetime]) -> None:
    body = {kind: {"key": keys[kind], "expiration time": _stamp(expires[kind])} for kind in expires}
    path.write_text(json.dumps({**body, "API": {"key": keys["API"]}}))


class FakeTokenApi:
    """TorchServe's token API in miniature: ``POST /token?type=KIND`` with the API key draws a
    new KIND key that expires ``lifetime`` from now and rewrites the key file."""

    def __init__(self, key_file: Path, lifetime: timedelta):
        self.key_file, self.lifetime, self.drawn = key_file, lifetime, 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                keys = json.loads(fake.key_file.read_text())
                kind = self.path.partition("type=")[2]
                if self.headers["Authorization"] != f"Bearer {keys['API']['key']}" or kind not in (
                    "inference",
                    "management",
                ):
                    self.send_response(400)
                    self.end_headers()
                    return
                fake.drawn += 1
                keys[kind] = {
                    "key": f"{kind[:3]}{fake.drawn:05d}",
                    "expiration time": _stamp(datetime.now(UTC) + fake.lifetime),
                }
                fake.key_file.write_text(json.dumps(keys))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"\n")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_api(tmp_path):
    now = datetime.now(UTC)
    key_file = tmp_path / "key_file.json"
    write_keys(
        key_file,
        {"inference": "inf00000", "management": "man00000", "API": "api-key1"},
        {"inference": now + timedelta(seconds=10), "management": now + timedelta(minutes=50)},
    )
    api = FakeTokenApi(key_file, timedelta(minutes=1))
    yield api
    api.close()


def test_renewal_lead_is_half_the_lifetime_at_most_ten_minutes(tmp_path):
    assert lead_seconds(1) == 30 and lead_seconds(60) == 600 and lead_seconds(10) == 300
    config = tmp_path / "config.properties"
    config.write_text("# token_expiration_min=5\nmodel_store=x\n")
    assert token_expiration_min(config) == 60  # TorchServe's default; comments do not count
    config.write_text("token_expiration_min=1\n")
    assert token_expiration_min(config) == 1
    keys = {"inference": {"key": "k", "expiration time": "2026-11-30T05:24:54.091822672Z"}}
    assert expiration(keys, "inference") == datetime(2026, 11, 30, 5, 24, 54, 91822, UTC)
    assert expiration(keys, "API") is None


def test_supervisor_renews_only_the_keys_that_are_due_and_never_logs_one(token_api, caplog):
    caplog.set_level(logging.DEBUG)
    supervisor = Supervisor(token_api.url, token_api.key_file, lifetime_min=1)
    before = json.loads(token_api.key_file.read_text())
    wait = supervisor.step()
    after = json.loads(token_api.key_file.read_text())
    assert supervisor.renewals == {"inference": 1, "management": 0}
    assert after["inference"]["key"] != before["inference"]["key"]
    assert after["management"] == before["management"] and after["API"] == before["API"]
    # The new inference key lives 60 s and is renewed 30 s before expiry: look again in ~30 s.
    assert 25 <= wait <= 30
    assert supervisor.step() == pytest.approx(wait, abs=2) and token_api.drawn == 1
    # 50 minutes on, the management key (lead 30 s) is not due yet; 59.6 minutes on it is.
    later = datetime.now(UTC) + timedelta(minutes=59, seconds=36)
    supervisor.step(now=later)
    assert supervisor.renewals == {"inference": 2, "management": 1}
    keys = json.loads(token_api.key_file.read_text())
    logged = caplog.text
    assert "renewed the inference key" in logged and "renewed the management key" in logged
    for value in (*_all_keys(before), *_all_keys(keys)):
        assert value not in logged


def _all_keys(keys: dict) -> list[str]:
    return [entry["key"] for entry in keys.values()]


def test_supervisor_command_line_writes_its_pid_and_stops(token_api, tmp_path):
    pid_file = tmp_path / "logs" / "keys.pid"
    log_file = tmp_path / "keys.log"
    command = [
        *(sys.executable, "-m", "client.keys", "--url", token_api.url),
        *("--key-file", str(token_api.key_file), "--lifetime-min", "1"),
        *("--pid-file", str(pid_file)),
    ]
    with open(log_file, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        while token_api.drawn < 1 and process.poll() is None:
            time.sleep(0.1)
        assert int(pid_file.read_text()) == process.pid
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert second.returncode == 1 and "already runs" in second.stderr
        stop = [*command[:3], "--stop", "--pid-file", str(pid_file)]
        assert subprocess.run(stop, cwd=REPO).returncode == 0
        assert process.wait() == 0 and not pid_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
    text = log_file.read_text()
    assert "renewed the inference key" in text and "stopped after" in text
    for value in _all_keys(json.loads(token_api.key_file.read_text())):
        assert value not in text
    # No supervisor runs now: stopping again is not an error.
    assert subprocess.run(stop, cwd=REPO).returncode == 0


def test_fresh_token_waits_for_the_rewritten_key_file(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text('{"inference": {"key": "old"}}')

    def rewrite() -> None:
        time.sleep(0.3)
        key_file.write_text('{"inference": {"ke')  # TorchServe writes in place: half a file
        time.sleep(0.2)
        key_file.write_text('{"inference": {"key": "new"}}')

    writer = threading.Thread(target=rewrite)
    writer.start()
    assert fresh_token("old", key_file=key_file) == "new"
    writer.join()
    assert fresh_token("stale", key_file=key_file, timeout=0.1) == "new"
    with pytest.raises(ClientError):
        fresh_token("new", key_file=tmp_path / "missing.json", timeout=0.1)


@pytest.mark.integration
def test_traffic_keeps_flowing_across_key_expiries(tmp_path, served_mar):
    """1-minute keys, the supervisor renewing them, and the Locust mix for 170 s: past the first
    keys' expiry twice over. 10 users (the fewest that give each of the 5 user classes one) at
    3 req/s each. No request may fail; each attempt refused because the key was renewed while
    it was on its way is retried once with the new key."""
    lifetime = 1
    with local_torchserve(
        served_mar.parent,
        ["movierec"],
        home=tmp_path / "ts",
        settings={"token_expiration_min": str(lifetime)},
    ) as server:
        first = json.loads(server.key_file.read_text())
        early = MovieRecClient(server.url, key_file=server.key_file)  # holds the first key
        with key_supervisor(server) as supervisor:
            code = run_locust(
                server.url,
                server.key_file,
                served_mar,
                tmp_path / "locust" / "expiry",
                users=USERS,
                spawn_rate=USERS,
                duration="170s",
                # Latency is not judged here (a shared 2-core machine); failures are.
                extra=["--user-rps", "3", "--slo-p95-ms", "1e9", "--slo-p99-ms", "1e9"],
            )
            assert supervisor.poll() is None, "the key supervisor died"
            # The first keys are long expired; a client that still holds one recovers.
            assert datetime.now(UTC) > expiration(first, "inference") + timedelta(minutes=1)
            assert len(early.recommend(101, k=2)) == 2
            assert early.token != first["inference"]["key"]
            curl = _readme_curl(server)
        log = (server.home / "keys.log").read_text()
    stats = _stats(tmp_path / "locust" / "expiry")
    assert failures(tmp_path / "locust" / "expiry") == [], log
    assert code == 0
    renewed = log.count("renewed the inference key")
    assert renewed >= 4, log  # every 30 s over ~3 minutes
    assert log.count("renewed the management key") >= 4, log
    assert set(stats) - {"Aggregated", TOKEN_REFRESHED} == {e.name for e in ENDPOINTS}
    assert stats["Aggregated"]["Failure Count"] == "0"
    # A renewal makes each user retry once at most (its next request after it).
    refreshed = int(stats.get(TOKEN_REFRESHED, {}).get("Request Count", 0))
    assert refreshed <= USERS * (renewed + 1)
    assert curl.returncode == 0 and '"recommendations"' in curl.stdout, curl


def _stats(prefix: Path) -> dict[str, dict]:
    import csv

    with open(f"{prefix}_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def _readme_curl(server) -> subprocess.CompletedProcess:
    """The README's token function and a top-K curl line, run in the server's folder."""
    readme = (REPO / "README.md").read_text()
    (define,) = re.findall(r"^token\(\) \{.*\}$", readme, flags=re.M)
    line = (
        f"{define}\ncurl -s {server.url}/predictions/movierec "
        '-H "Authorization: Bearer $(token)" '
        "-H 'Content-Type: application/json' -d '{\"user_id\": 101, \"k\": 2}'"
    )
    return subprocess.run(
        ["bash", "-c", line], cwd=server.home, capture_output=True, text=True, timeout=30
    )
