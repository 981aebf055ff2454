"""The web app without a browser or TorchServe: what each route accepts and asks the model
server (a fake one, tests/web_fakes.py), its errors, headers and states, the catalogue it
reads from an artifact, and its command line. The real-browser journeys against a real
TorchServe are in tests/test_web_browser.py."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import ClientError
from loadtest.server import free_ports
from tests.conftest import GENRES
from tests.web_fakes import BULK, INTERACTIVE, FakeModelServer, fake_model_server, web_app
from web import __main__ as cli
from web import validation
from web.app import CSP
from web.catalogue import Catalogue
from web.upstream import NOT_RUNNING, Upstream, classify
from web.validation import RequestError

REPO = Path(__file__).resolve().parent.parent
STATIC = REPO / "web" / "static"
CATALOGUE = Catalogue(genres=("Action", "Comedy", "Drama"), decades=(1970, 1990))


def post(
    url: str,
    path: str,
    body: object = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, dict]:
    """``(status, JSON body, headers)`` of one POST; ``raw`` is sent as it is."""
    data = raw if raw is not None else json.dumps(body).encode()
    return request(url, "POST", path, data, {"Content-Type": "application/json", **(headers or {})})


def request(
    url: str, method: str, path: str, data: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        body = json.loads(raw) if kind.startswith("application/json") else {"text": raw.decode()}
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Iterator[FakeModelServer]:
    with fake_model_server(tmp_path_factory.mktemp("fake")) as server:
        yield server


@pytest.fixture(scope="module")
def url(fake) -> Iterator[str]:
    with web_app(Upstream(fake.url, fake.key_file), CATALOGUE) as address:
        yield address


@pytest.fixture(autouse=True)
def ready(fake) -> None:
    fake.mode = "ready"
    fake.bodies.clear()
    fake.paths.clear()


# --------------------------------------------------------------------------- what routes accept


@pytest.mark.parametrize(
    ("route", "body", "sent"),
    [
        ("/api/search", {"query": "  godf "}, {"search": "godf", "k": 8}),
        ("/api/chart", {}, {"chart": "popular", "k": 20}),
        (
            "/api/chart",
            {"genres": ["Comedy"], "years": [1990, 1999]},
            {"chart": "popular", "k": 20, "genres": ["Comedy"], "years": [1990, 1999]},
        ),
        (
            "/api/recommend",
            {"ratings": {"50": 5, "1": 3}, "novelty": 0.5, "genres": []},
            {"ratings": {"50": 5.0, "1": 3.0}, "k": 12, "explain": True, "novelty": 0.5},
        ),
        (
            "/api/similar",
            {"movie_id": 50, "years": [1970, 1979], "novelty": 1},
            {"similar_to": 50, "k": 8, "years": [1970, 1979], "novelty": 1.0},
        ),
    ],
)
def test_each_route_asks_the_model_server_for_what_the_page_shows(route, body, sent):
    assert validation.ROUTES[route](body, CATALOGUE) == sent


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/api/search", {"query": "a"}, "query"),
        ("/api/search", {"query": "x" * 101}, "query"),
        ("/api/search", {"query": 12}, "query"),
        ("/api/search", {"query": "star", "k": 50}, "k"),
        ("/api/search", {}, "query"),
        ("/api/search", [], "body"),
        ("/api/chart", {"genres": "Comedy"}, "genres"),
        ("/api/chart", {"genres": [1]}, "genres[0]"),
        ("/api/chart", {"genres": ["x"] * 41}, "genres"),
        ("/api/chart", {"years": [1999, 1990]}, "years"),
        ("/api/chart", {"years": [1990]}, "years"),
        ("/api/chart", {"years": [1990, True]}, "years"),
        ("/api/chart", {"novelty": 0.5}, "novelty"),
        ("/api/recommend", {}, "ratings"),
        ("/api/recommend", {"ratings": {}}, "ratings"),
        ("/api/recommend", {"ratings": []}, "ratings"),
        ("/api/recommend", {"ratings": {"x": 3}}, 'ratings["x"]'),
        ("/api/recommend", {"ratings": {"-1": 3}}, 'ratings["-1"]'),
        ("/api/recommend", {"ratings": {"1": 4.5}}, 'ratings["1"]'),  # whole stars here
        ("/api/recommend", {"ratings": {"1": 6}}, 'ratings["1"]'),
        ("/api/recommend", {"ratings": {"1": "5"}}, 'ratings["1"]'),
        ("/api/recommend", {"ratings": {"1": True}}, 'ratings["1"]'),
        ("/api/recommend", {"ratings": {str(i): 3 for i in range(1001)}}, "ratings"),
        ("/api/recommend", {"ratings": {"1": 3}, "novelty": 2}, "novelty"),
        ("/api/recommend", {"ratings": {"1": 3}, "novelty": "high"}, "novelty"),
        ("/api/recommend", {"ratings": {"1": 3}, "k": 5}, "k"),
        ("/api/recommend", {"ratings": {"1": 3}, "explain": False}, "explain"),
        ("/api/similar", {"movie_id": "50"}, "movie_id"),
        ("/api/similar", {"movie_id": -1}, "movie_id"),
        ("/api/similar", {"movie_id": 2**63}, "movie_id"),
        ("/api/similar", {"movie_id": False}, "movie_id"),
        ("/api/similar", {"similar_to": 50}, "similar_to"),
    ],
)
def test_anything_else_is_refused_naming_the_field(route, body, field):
    with pytest.raises(RequestError) as refused:
        validation.ROUTES[route](body, CATALOGUE)
    assert (refused.value.status, refused.value.field) == (400, field)
    assert refused.value.message


def test_half_stars_where_the_scale_has_them():
    half = Catalogue(rating_min=0.5, rating_max=5.0, rating_step=0.5)
    assert validation.recommend({"ratings": {"1": 4.5, "2": 0.5}}, half)["ratings"] == {
        "1": 4.5,
        "2": 0.5,
    }
    with pytest.raises(RequestError):
        validation.recommend({"ratings": {"1": 4.25}}, half)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b'{"query": NaN}', b"[" * 50_000 + b"]" * 50_000, b"Infinity"]
)
def test_bodies_that_are_not_json_are_refused(raw):
    with pytest.raises(RequestError) as refused:
        validation.decode_json(raw)
    assert refused.value.status == 400 and refused.value.field == "body"


# --------------------------------------------------------------------------- the catalogue


def test_catalogue_from_an_artifact(artifact_dir):
    catalogue = Catalogue.from_artifact(artifact_dir)
    assert catalogue.genres == GENRES
    assert catalogue.decades == (1990,)  # every test title is "Movie N (1995)"
    assert (catalogue.rating_min, catalogue.rating_max, catalogue.rating_step) == (1, 5, 1)
    assert Catalogue.from_artifact(artifact_dir, rating_step=0.5).rating_step == 0.5


def test_half_star_datasets_get_half_stars(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"min_rating": 0.5}}))
    titles = np.array(["Heat (1995)", "Metropolis (1927)", "Untitled", "Show (2006-2007)"])
    np.savez(tmp_path / "vocab.npz", genre_names=np.array(["Drama"]), titles=titles)
    catalogue = Catalogue.from_artifact(tmp_path)
    assert catalogue.rating_step == 0.5 and catalogue.rating_min == 0.5
    assert catalogue.decades == (1920, 1990, 2000)
    assert catalogue.to_json()["rating"] == {"min": 0.5, "max": 5.0, "step": 0.5}


def test_without_an_artifact_whole_stars_and_no_filters(tmp_path):
    catalogue = Catalogue.from_artifact(tmp_path / "missing")
    assert catalogue.to_json() == {
        "genres": [],
        "decades": [],
        "rating": {"min": 1.0, "max": 5.0, "step": 1.0},
    }
    with pytest.raises(ValueError, match="step"):
        Catalogue(rating_step=0.3)


# --------------------------------------------------------------------------- the app over HTTP


def test_routes_answer_with_the_model_servers_answers(url, fake):
    status, answer, _ = post(url, "/api/search", {"query": "godfahter"})
    assert status == 200 and answer["results"][0]["movie_id"] == 127
    status, answer, _ = post(url, "/api/recommend", {"ratings": {"50": 5}, "novelty": 0.25})
    assert status == 200 and answer["recommendations"][0]["because"][0]["movie_id"] == 50
    assert fake.bodies[-1] == {"ratings": {"50": 5.0}, "k": 12, "explain": True, "novelty": 0.25}
    status, answer, _ = post(url, "/api/similar", {"movie_id": 50})
    assert status == 200 and answer["movie"]["title"] == "Star Wars (1977)"
    status, answer, _ = post(url, "/api/chart", {"years": [1970, 1979]})
    assert status == 200 and [r["movie_id"] for r in answer["recommendations"]] == [50, 127]
    status, config, _ = request(url, "GET", "/api/config")
    assert status == 200 and config == CATALOGUE.to_json()


def test_a_person_with_many_ratings_is_sent_to_the_bulk_endpoint(url, fake):
    many = {str(movie_id): 4 for movie_id in range(1, 301)}  # above the interactive 250
    status, answer, _ = post(url, "/api/recommend", {"ratings": many})
    assert status == 200 and answer["recommendations"]
    few = {"1": 5, "50": 4, "9": 3, "127": 5, "100": 2}
    status, answer, _ = post(url, "/api/recommend", {"ratings": few})
    assert status == 200 and answer["recommendations"]
    assert [len(body["ratings"]) for body in fake.bodies] == [300, 5]
    assert fake.paths == [BULK, INTERACTIVE]


def test_every_answer_carries_the_security_headers(url):
    for method, path in [
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/static/app.css"),
        ("GET", "/api/config"),
        ("GET", "/api/health"),
        ("GET", "/nothing-here"),
        ("GET", "/api/search"),
        ("POST", "/api/nothing"),
    ]:
        status, _, headers = request(url, method, path)
        assert headers["content-security-policy"] == CSP, path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "server" not in headers, path
        if path.startswith("/api/"):
            assert headers["cache-control"] == "no-store", path
    assert request(url, "GET", "/nothing-here")[0] == 404
    status, body, _ = request(url, "GET", "/api/search")
    assert status == 405 and body["error"]["message"]


def test_the_csp_allows_no_inline_script_and_the_page_has_none():
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    html = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html) and "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"https?://", html)  # nothing fetched from elsewhere
    script = (STATIC / "app.js").read_text()
    unsafe = r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function"
    assert not re.search(unsafe, script)


def test_other_hosts_are_refused(url):
    status, _, _ = request(url, "GET", "/api/config", headers={"Host": "evil.example"})
    assert status == 400
    assert request(url, "GET", "/api/config", headers={"Host": "localhost"})[0] == 200


@pytest.mark.parametrize(
    ("raw", "headers", "status", "field"),
    [
        (b'{"query": "star"', {}, 400, "body"),
        (b'{"query": NaN}', {}, 400, "body"),
        (b"\xff\xfe", {}, 400, "body"),
        (b"[1, 2]", {}, 400, "body"),
        (b'{"query": "star", "extra": 1}', {}, 400, "extra"),
        (b'{"query": ["star"]}', {}, 400, "query"),
        (b'{"query": "star"}', {"Content-Type": "text/plain"}, 415, "content-type"),
        (b'{"query": "star"}', {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
        (b" " * (validation.MAX_BODY_BYTES + 1), {}, 413, "body"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_clear_message(url, fake, raw, headers, status, field):
    got, body, _ = post(url, "/api/search", raw=raw, headers=headers)
    assert got == status, body
    assert body["error"]["message"] and body["error"]["status"] == status
    if field:
        assert body["error"]["field"] == field
    assert fake.bodies == []  # nothing reached the model server


def test_a_huge_body_without_a_length_is_cut_off(url):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b'{"ratings": {' + b'"1": 3, ' * 4096 for _ in range(4))
    conn.request(
        "POST", "/api/recommend", body=chunks, headers={"Content-Type": "application/json"}
    )
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["field"] == "body"
    conn.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["query", "ratings", "genres", "years", "novelty", "movie_id", "k"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(sorted(validation.ROUTES)),
    body=JSON | st.dictionaries(FIELDS, JSON, max_size=4),
)
def test_no_body_ever_gets_a_5xx(url, route, body):
    status, answer, _ = post(url, route, body)
    assert status in (200, 400, 404), (status, answer)
    if status != 200:
        assert answer["error"]["message"]


def test_model_server_refusals_carry_its_message_and_field(url):
    status, body, _ = post(url, "/api/chart", {"genres": ["Western"]})
    assert status == 400
    assert body["error"] == {
        "status": 400,
        "state": "refused",
        "field": "genres[0]",
        "message": "unknown genre",
    }
    status, body, _ = post(url, "/api/similar", {"movie_id": 99999})
    assert status == 404 and body["error"]["field"] == "similar_to"


def test_a_starting_model_server_is_told_apart(url, fake):
    fake.mode = "starting"
    status, body, _ = post(url, "/api/chart", {})
    assert status == 503 and body["error"]["state"] == "starting"
    assert request(url, "GET", "/api/health")[1]["state"] == "starting"
    fake.mode = "ready"
    assert request(url, "GET", "/api/health")[1]["state"] == "ready"


def test_each_call_reads_the_key_file_again(url, fake):
    assert post(url, "/api/chart", {})[0] == 200
    fake.rotate_key("key-renewed")  # as the key supervisor does
    assert post(url, "/api/chart", {})[0] == 200
    status, body, _ = request(url, "GET", "/")
    assert status == 200 and "key-renewed" not in body["text"]


def test_a_key_file_read_while_it_is_rewritten_is_read_again(url, fake):
    """TorchServe rewrites key_file.json in place: a call that reads half of it waits for the
    whole file instead of telling the page that the model server is down."""
    whole = fake.key_file.read_text()
    fake.rotate_key("key-next")
    fake.key_file.write_text(fake.key_file.read_text()[:10])  # half written
    timer = threading.Timer(0.3, fake.rotate_key, args=("key-next",))
    timer.start()
    try:
        status, body, _ = post(url, "/api/chart", {})
    finally:
        timer.join()
    assert status == 200, body
    assert whole != fake.key_file.read_text()


def test_a_stopped_model_server_says_how_to_start_it(tmp_path):
    with fake_model_server(tmp_path) as fake:
        upstream = Upstream(fake.url, fake.key_file)
    with web_app(upstream, CATALOGUE) as url:
        status, body, _ = post(url, "/api/chart", {})
        assert status == 503 and body["error"]["state"] == "down"
        assert "start it with make serve" in body["error"]["message"]
        health = request(url, "GET", "/api/health")[1]
        assert health["state"] == "down" and NOT_RUNNING in health["message"]
        # No key file at all: TorchServe was never started from that folder.
        (tmp_path / "key_file.json").unlink()
        status, body, _ = post(url, "/api/chart", {})
        assert status == 503 and "make serve" in body["error"]["message"]


@pytest.mark.parametrize(
    ("error", "state", "status"),
    [
        (ClientError(0, "cannot reach", "unreachable"), "down", 503),
        (ClientError(0, "no key file", "no_key"), "down", 503),
        (ClientError(400, "bad genre", "bad_request", "genres[0]"), "refused", 400),
        (ClientError(404, "unknown movie", "not_found", "similar_to"), "refused", 404),
        (ClientError(413, "1001 ratings exceed", "too_large", "ratings"), "refused", 413),
        (ClientError(404, "Model not found: movierec", "not_found"), "starting", 503),
        (ClientError(503, "no worker", "server"), "starting", 503),
        (ClientError(500, "Worker died.", "server"), "failed", 502),
        (ClientError(400, "token refused", "token"), "failed", 502),
    ],
)
def test_client_errors_become_what_the_page_shows(error, state, status):
    shown = classify(error)
    assert (shown.state, shown.status) == (state, status)


# --------------------------------------------------------------------------- the command line


def test_command_line_port_pid_file_wait_and_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("WEB_PORT", "8123")
    assert cli.parse_args([]).port == 8123
    assert cli.parse_args(["--port", "9000"]).port == 9000
    assert cli.parse_args([]).host == "127.0.0.1"
    assert cli.stop(tmp_path / "none.pid") == 0
    (tmp_path / "stale.pid").write_text(f"{os.getpid()}\n")  # a pid, not a web app
    assert cli.stop(tmp_path / "stale.pid") == 0 and not (tmp_path / "stale.pid").exists()
    (port,) = free_ports(1)
    assert cli.main(["--wait", "0.3", "--port", str(port)]) == 1


def test_python_m_web_serves_writes_its_pid_and_stops(tmp_path, fake):
    (port,) = free_ports(1)
    pid_file = tmp_path / "web.pid"
    common = ["--port", str(port), "--pid-file", str(pid_file)]
    process = subprocess.Popen(
        [sys.executable, "-m", "web", *common, "--url", fake.url, "--key-file", str(fake.key_file)],
        cwd=REPO,
    )
    try:
        waited = subprocess.run(
            [sys.executable, "-m", "web", "--wait", "60", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert waited.returncode == 0 and f"http://127.0.0.1:{port}/" in waited.stdout
        assert int(pid_file.read_text()) == process.pid
        again = subprocess.run(
            [sys.executable, "-m", "web", *common], cwd=REPO, capture_output=True, text=True
        )
        assert again.returncode == 1 and "already runs" in again.stderr
        stopped = subprocess.run(
            [sys.executable, "-m", "web", "--stop", "--pid-file", str(pid_file)], cwd=REPO
        )
        assert stopped.returncode == 0
        assert process.wait(timeout=30) == 0 and not pid_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
