"""Integration: the session's real TorchServe (tests/conftest.py: a .mar of a small artifact,
free ports, always stopped) called at every endpoint with the token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from client import ClientError, MovieRecClient, read_token
from loadtest.server import Server, free_ports

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def api(server: Server) -> MovieRecClient:
    return MovieRecClient(server.url, key_file=server.key_file)


def test_rating_pairs_and_top_k(api, artifact_dir):
    from model.scoring import Scorer

    scorer = Scorer.from_artifact(artifact_dir)
    users, movies = scorer.vocab.user_ids[:3].tolist(), scorer.vocab.movie_ids[:3].tolist()
    expected = scorer.predict_indices(
        scorer.vocab.user_index(users), scorer.vocab.item_index(movies)
    )
    assert api.rating(users[0], movies[0]) == pytest.approx(float(expected[0]), abs=1e-4)
    assert api.ratings(list(zip(users, movies))) == pytest.approx(expected.tolist(), abs=1e-4)
    recs = api.recommend(users[1], k=4)
    assert len(recs) == 4 and set(recs[0]) == {"movie_id", "title", "genres", "score", "rating"}
    rated = set(scorer.vocab.movie_ids[scorer.vocab.rated_by(1)].tolist())
    assert not rated & {r["movie_id"] for r in recs}
    # The served list is the ranking model's, as offline; rank_by=rating keeps the old order.
    for rank_by in ("ranking", "rating"):
        answer = api.top_k(users[1], k=4, rank_by=rank_by)
        items, _ = scorer.top_k_indices(np.array([1]), 4, rank_by=rank_by)
        assert answer["ranked_by"] == rank_by
        assert [r["movie_id"] for r in answer["recommendations"]] == [
            int(m) for m in scorer.vocab.movie_ids[items[0]]
        ]


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


def test_every_answer_names_the_model_and_version(server):
    from model import __version__

    api = MovieRecClient(server.url, key_file=server.key_file)
    for body in ({"user_id": 101, "movie_id": 11}, {"similar_to": 11, "k": 2}, {"user_id": -1}):
        _, answer = api.request("POST", "/predictions/movierec", body)
        assert answer["model"] == {"name": "movierec", "version": __version__}, body


def test_new_user_similar_popular_and_filters(server, artifact_dir):
    from model.scoring import Scorer

    api = MovieRecClient(server.url, key_file=server.key_file)
    scorer = Scorer.from_artifact(artifact_dir)
    answer = api.new_user({11: 5, 14: 1, 99999: 3}, k=3, movie_ids=[17, 20])
    assert answer["unknown_movie_ids"] == [99999]
    assert len(answer["recommendations"]) == 3
    assert not {11, 14} & {r["movie_id"] for r in answer["recommendations"]}
    vectors, biases = scorer.fold_in(
        [scorer.vocab.item_index(np.array([11, 14]))], [np.array([5.0, 1])]
    )
    expected = scorer.predict_vectors(
        vectors, biases, np.zeros(2, int), scorer.vocab.item_index([17, 20])
    )
    assert [p["rating"] for p in answer["predictions"]] == pytest.approx(
        expected.tolist(), abs=1e-4
    )

    similar = api.similar(11, k=4, genres=["Comedy"], exclude_movie_ids=[14])
    assert similar["movie"]["movie_id"] == 11
    assert all("Comedy" in r["genres"] for r in similar["recommendations"])
    assert not {11, 14} & {r["movie_id"] for r in similar["recommendations"]}

    popular = api.top_k(10**9, k=3, fallback="popular", exclude_genres=["Drama"])
    assert popular["fallback"] == "popular" and len(popular["recommendations"]) == 3
    assert all("Drama" not in r["genres"] for r in popular["recommendations"])
    with pytest.raises(ClientError) as err:
        api.recommend(10**9, k=3)
    assert (err.value.status, err.value.kind, err.value.field) == (404, "not_found", "user_id")
    with pytest.raises(ClientError) as err:
        api.new_user({11: 7})
    assert (err.value.status, err.value.field) == (400, 'ratings["11"]')
    with pytest.raises(ClientError) as err:
        api.recommend(101, genres=["Western"])
    assert err.value.field == "genres[0]" and "unknown genre" in err.value.message


def test_command_line_client(server, capsys, tmp_path):
    from client.__main__ import main

    api = MovieRecClient(server.url, key_file=server.key_file)
    where = ["--url", api.url, "--key-file", str(server.key_file)]
    outs = []
    for argv in (
        ["recommend", "--user", "101", "-k", "3", "--genre", "Action", "Drama"],
        ["rate", "--user", "101", "--movie", "11", "14"],
        ["similar", "--movie", "11", "-k", "3", "--exclude", "14"],
        ["new-user", "--ratings", "11=5", "14=1.5", "99999=3", "-k", "3", "--predict", "17"],
        ["recommend", "--user", "1000000000", "-k", "2", "--fallback", "popular"],
    ):
        assert main([*argv, *where]) == 0, argv
        outs.append(capsys.readouterr().out)
        assert "Movie " in outs[-1] and "(model movierec " in outs[-1], outs[-1]  # titles, model
    assert "unknown to the model: movie ids 99999" in outs[3] and "Predicted ratings" in outs[3]
    assert "popular movies instead" in outs[4]

    def failure(argv: list[str]) -> tuple[int, str]:
        code = main(argv)
        return code, capsys.readouterr().err

    code, err = failure(["recommend", "--user", "1000000000", *where])
    assert code == 1 and "not found [user_id]" in err and "--fallback popular" in err
    code, err = failure(["similar", "--movie", "11", "--genre", "Western", *where])
    assert code == 1 and "bad request [genres[0]]" in err
    (tmp_path / "key_file.json").write_text('{"inference": {"key": "wrong"}}')
    code, err = failure(
        [
            "recommend",
            "--user",
            "101",
            "--url",
            api.url,
            "--key-file",
            str(tmp_path / "key_file.json"),
        ]
    )
    assert code == 3 and "refused the token" in err
    (closed,) = free_ports(1)
    code, err = failure(
        [
            "recommend",
            "--user",
            "101",
            "--url",
            f"http://127.0.0.1:{closed}",
            "--key-file",
            str(server.key_file),
        ]
    )
    assert code == 3 and "cannot reach" in err and "make serve" in err
    assert failure(["new-user", "--ratings", "11:5", *where])[0] == 2


def test_python_m_client_runs(server):
    api = MovieRecClient(server.url, key_file=server.key_file)
    env = {
        **os.environ,
        "MOVIEREC_URL": api.url,
        "MOVIEREC_KEY_FILE": str(server.key_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "client", "new-user", "--ratings", "11=5", "14=4", "-k", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Top 2 for a new user from 2 ratings" in done.stdout
