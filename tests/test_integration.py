"""Integration: the session's real TorchServe (tests/conftest.py: a .mar of a small artifact,
free ports, always stopped) called at every endpoint with the token."""

from __future__ import annotations

import socket

import pytest

from client import ClientError, MovieRecClient, read_token
from loadtest.server import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(server: Server) -> MovieRecClient:
    return MovieRecClient(server.url, key_file=server.key_file)


def test_rating_pairs_and_top_k(api, artifact_dir):
    from model.recommender import Recommender

    rec = Recommender.from_artifact(artifact_dir)
    users, movies = rec.vocab.user_ids[:3].tolist(), rec.vocab.movie_ids[:3].tolist()
    expected = rec.predict_indices(rec.vocab.user_index(users), rec.vocab.item_index(movies))
    assert api.rating(users[0], movies[0]) == pytest.approx(float(expected[0]), abs=1e-4)
    assert api.ratings(list(zip(users, movies))) == pytest.approx(expected.tolist(), abs=1e-4)
    recs = api.recommend(users[1], k=4)
    assert len(recs) == 4 and set(recs[0]) == {"movie_id", "title", "genres", "score"}
    rated = set(rec.vocab.movie_ids[rec.vocab.rated_by(1)].tolist())
    assert not rated & {r["movie_id"] for r in recs}


def test_bad_requests_get_4xx_and_the_server_keeps_serving(api):
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


def test_requests_without_a_valid_token_are_refused(api):
    for token in ("", "wrong"):
        status, _ = MovieRecClient(api.url, token=token).request(
            "POST", "/predictions/movierec", {"user_id": 101, "k": 2}
        )
        assert status == 400  # TorchServe 0.12 answers a bad token with 400, not 401
    assert MovieRecClient(api.url, token="").request("GET", "/ping")[0] == 400
    assert api.request("GET", "/ping") == (200, {"status": "Healthy"})


def test_model_registration_over_http_is_refused(server):
    key = read_token("management", server.key_file)
    mgmt = MovieRecClient(server.management_url, token=key)
    status, answer = mgmt.request("POST", "/models?url=https://example.com/evil.mar")
    assert status == 405, answer
    status, answer = mgmt.request("GET", "/models/movierec")
    assert status == 200 and answer[0]["batchSize"] == 16


def test_servers_bind_to_loopback_only(server):
    assert all(
        server.config[k].startswith("http://127.0.0.1:")
        for k in ("inference_address", "management_address", "metrics_address")
    )
    assert server.config["grpc_inference_address"] == "127.0.0.1"
    assert server.config["enable_model_api"] == "false"
    status, text = MovieRecClient(server.metrics_url, token="").request("GET", "/metrics")
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
        int(server.config[k].rsplit(":", 1)[1])
        for k in ("inference_address", "management_address", "metrics_address")
    ]
    ports += [int(server.config[k]) for k in ("grpc_inference_port", "grpc_management_port")]
    for address in external:
        for port in ports:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, f"{address}:{port} accepts connections"
    for port in ports:  # and each one does listen on loopback
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 0, port


def test_oversized_requests_are_refused(server, api):
    import http.client

    limit = int(server.config["max_request_size"])
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
