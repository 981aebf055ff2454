"""Integration: build a .mar from a small artifact, start a real TorchServe on free ports, call
every endpoint with the token, and always stop the server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from client import ClientError, MovieRecClient, read_token
from train import archive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
TORCHSERVE = Path(sys.executable).parent / "torchserve"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def read_config(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifact_dir):
    """TorchServe started from a copy of config.properties with free ports, in its own folder."""
    if not shutil.which("java"):
        pytest.fail("java is not on PATH: TorchServe needs Java 11+ (see README)")
    home = tmp_path_factory.mktemp("torchserve")
    archive.build(artifact_dir, home / "model_store")
    http, mgmt, metrics, grpc, grpc_mgmt, worker = free_ports(6)
    config = read_config(REPO / "config.properties")
    config.update(
        {
            "inference_address": f"http://127.0.0.1:{http}",
            "management_address": f"http://127.0.0.1:{mgmt}",
            "metrics_address": f"http://127.0.0.1:{metrics}",
            "grpc_inference_port": str(grpc),
            "grpc_management_port": str(grpc_mgmt),
            # Workers talk to the frontend over /tmp/.ts.sock.<port>: keep clear of other servers.
            "initial_worker_port": str(worker),
            "model_store": str(home / "model_store"),
        }
    )
    (home / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in config.items()))
    # TMPDIR isolates TorchServe's pid file, so a developer's own server is left alone.
    env = {**os.environ, "TMPDIR": str(home)}
    log = open(home / "torchserve.out", "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [str(TORCHSERVE), "--start", "--foreground", "--ts-config", "config.properties", "--ncs"],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            api = MovieRecClient.connect(f"http://127.0.0.1:{http}", home / "key_file.json")
        except ClientError as exc:
            log_text = (home / "torchserve.out").read_text()
            pytest.fail(f"TorchServe did not start ({exc}):\n{log_text}")
        yield {"api": api, "home": home, "mgmt": mgmt, "metrics": metrics, "config": config}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_rating_pairs_and_top_k(server, artifact_dir):
    from model.recommender import Recommender

    api: MovieRecClient = server["api"]
    rec = Recommender.from_artifact(artifact_dir)
    users, movies = rec.vocab.user_ids[:3].tolist(), rec.vocab.movie_ids[:3].tolist()
    expected = rec.predict_indices(rec.vocab.user_index(users), rec.vocab.item_index(movies))
    assert api.rating(users[0], movies[0]) == pytest.approx(float(expected[0]), abs=1e-4)
    assert api.ratings(list(zip(users, movies))) == pytest.approx(expected.tolist(), abs=1e-4)
    recs = api.recommend(users[1], k=4)
    assert len(recs) == 4 and set(recs[0]) == {"movie_id", "title", "genres", "score"}
    rated = set(rec.vocab.movie_ids[rec.vocab.rated_by(1)].tolist())
    assert not rated & {r["movie_id"] for r in recs}


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    api: MovieRecClient = server["api"]
    cases = [
        ({"user_id": 10**9, "k": 3}, 404, "user_id"),
        ({"pairs": [[101, 11], [101, 7]]}, 404, "pairs[1][1]"),
        ({"user_id": 101, "k": 0}, 400, "k"),
        ({"user_id": "x", "movie_id": 11}, 400, "user_id"),
        ([1, 2, 3], 400, "body"),
    ]
    for body, status, field in cases:
        got_status, answer = api.request("POST", "/predictions/movierec", body)
        assert (got_status, answer["error"]["field"]) == (status, field), body
    with pytest.raises(ClientError) as err:
        api.recommend(10**9)
    assert err.value.status == 404 and "unknown user id" in err.value.message
    assert len(api.recommend(101, k=2)) == 2


def test_requests_without_a_valid_token_are_refused(server):
    api: MovieRecClient = server["api"]
    for token in ("", "wrong"):
        status, _ = MovieRecClient(api.url, token=token).request(
            "POST", "/predictions/movierec", {"user_id": 101, "k": 2}
        )
        assert status == 400  # TorchServe 0.12 answers a bad token with 400, not 401
    assert MovieRecClient(api.url, token="").request("GET", "/ping")[0] == 400
    assert api.request("GET", "/ping") == (200, {"status": "Healthy"})


def test_model_registration_over_http_is_refused(server):
    key = read_token("management", server["home"] / "key_file.json")
    mgmt = MovieRecClient(f"http://127.0.0.1:{server['mgmt']}", token=key)
    status, answer = mgmt.request("POST", "/models?url=https://example.com/evil.mar")
    assert status == 405, answer
    status, answer = mgmt.request("GET", "/models/movierec")
    assert status == 200 and answer[0]["batchSize"] == 16


def test_servers_bind_to_loopback_only(server):
    assert all(
        server["config"][k].startswith("http://127.0.0.1:")
        for k in ("inference_address", "management_address", "metrics_address")
    )
    assert server["config"]["grpc_inference_address"] == "127.0.0.1"
    assert server["config"]["enable_model_api"] == "false"
    status, text = MovieRecClient(f"http://127.0.0.1:{server['metrics']}", token="").request(
        "GET", "/metrics"
    )
    assert status == 200 and "ts_inference_requests_total" in text


def test_nothing_listens_beyond_loopback(server):
    import psutil

    external = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    ports = [
        int(server["config"][k].rsplit(":", 1)[1])
        for k in ("inference_address", "management_address", "metrics_address")
    ]
    ports += [int(server["config"][k]) for k in ("grpc_inference_port", "grpc_management_port")]
    for address in external:
        for port in ports:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, f"{address}:{port} accepts connections"
    for port in ports:  # and each one does listen on loopback
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 0, port


def test_oversized_requests_are_refused(server):
    import http.client

    api: MovieRecClient = server["api"]
    limit = int(server["config"]["max_request_size"])
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        # Announce a body one byte over the limit; the server must refuse it before reading.
        conn.putrequest("POST", "/predictions/movierec")
        for name, value in (
            ("Authorization", f"Bearer {api.token}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(limit + 1)),
            ("Expect", "100-continue"),
        ):
            conn.putheader(name, value)
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert len(api.recommend(101, k=1)) == 1
