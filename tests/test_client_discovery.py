"""The client's discovery requests (search, chart, explanations, novelty, years), the endpoint
each request goes to (interactive or bulk) and the command line's titles, against a stub model
server that records every body it is sent and the path it came on; one integration test
against the session's real TorchServe."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import client
from client import ClientError, MovieRecClient, TitleError, match_title, title_forms
from client.__main__ import DEMO_BODIES, main, parse_args

HANDLER = Path(__file__).resolve().parent.parent / "handler"
TOKEN = "inference-key"
INTERACTIVE, BULK = "/predictions/movierec", "/predictions/movierec-bulk"
MODEL = {"name": "movierec", "version": "0.1.0"}
# movie_id, title, genres, number of ratings. Chosen for the resolution cases: "star wars"
# spells one of two results exactly, "the godfather" one of two with its article in front,
# "godfather part ii" finds only one, "hamlet" spells two remakes, "star" none of three.
MOVIES = [
    (50, "Star Wars (1977)", ["Action", "Sci-Fi"], 583),
    (1701, "Star Wars: The Clone Wars (2008)", ["Animation", "Sci-Fi"], 12),
    (222, "Star Trek: First Contact (1996)", ["Action", "Sci-Fi"], 365),
    (100, "Fargo (1996)", ["Crime", "Drama"], 508),
    (127, "Godfather, The (1972)", ["Crime", "Drama"], 413),
    (187, "Godfather: Part II, The (1974)", ["Crime", "Drama"], 209),
    (693, "Hamlet (1990)", ["Drama"], 31),
    (694, "Hamlet (1996)", ["Drama"], 90),
    (1536, "Aiqing wansui (1994)", ["Drama"], 1),
]
TITLES = {movie_id: title for movie_id, title, _, _ in MOVIES}


def _words(text: str) -> set[str]:
    return set(re.sub(r"[^0-9a-z]+", " ", text.casefold()).split())


KNOWN_USER_RATINGS = {"50": 5, "100": 4}  # what a known user's explanations cite


def _result(movie: tuple) -> dict:
    movie_id, title, genres, count = movie
    year = int(title[-5:-1])
    return {"movie_id": movie_id, "title": title, "year": year, "genres": genres, "ratings": count}


def _recommendation(movie_id: int, body: dict) -> dict:
    entry = {"movie_id": movie_id, "title": TITLES[movie_id], "genres": ["Drama"], "score": 4.5}
    if body.get("explain"):
        rated = body.get("ratings", KNOWN_USER_RATINGS)
        entry["because"] = [
            {"movie_id": int(m), "title": TITLES[int(m)], "rating": stars}
            for m, stars in list(rated.items())[:2]
        ]
    return entry


def answer(body: dict) -> dict:
    """What the stub answers a body with: the handler's shapes, over :data:`MOVIES`."""
    if "pairs" in body:
        return {"ratings": [3.5] * len(body["pairs"])}
    if "movie_id" in body:
        return {"user_id": body["user_id"], "movie_id": body["movie_id"], "rating": 3.5}
    if "search" in body:
        # Every word typed in the title: enough for the cases above, and never a typo.
        typed = _words(body["search"])
        found = [_result(m) for m in MOVIES if typed <= _words(m[1])]
        return {"query": body["search"], "results": found[: body.get("k", 10)]}
    recs = [_recommendation(m, body) for m in (127, 694)]
    if "chart" in body:
        return {"chart": body["chart"], "recommendations": recs}
    if "similar_to" in body:
        movie = {"movie_id": 50, "title": TITLES[50], "genres": ["Action", "Sci-Fi"]}
        return {"movie": movie, "recommendations": recs}
    if "ratings" in body:
        recs = [{**r, "rating": 4.0} for r in recs]
        return {"ranked_by": "ranking", "recommendations": recs, "unknown_movie_ids": []}
    recs = [{**r, "rating": 4.0} for r in recs]
    return {"user_id": body["user_id"], "ranked_by": "ranking", "recommendations": recs}


class StubModelServer:
    """``POST /predictions/movierec`` and ``POST /predictions/movierec-bulk`` answered alike
    by :func:`answer`, with the bearer key :data:`TOKEN`; ``sent`` holds each body exactly as
    it arrived and ``paths`` the path of each. ``too_large``, when set, is the 413 answer every
    request gets, as from an endpoint whose limits are lower than the client's."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.paths: list[str] = []
        self.too_large: dict | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stub.sent.append(raw)
                stub.paths.append(self.path)
                if self.path not in (INTERACTIVE, BULK):
                    status, reply = 404, {"code": 404, "type": "ModelNotFoundException"}
                elif self.headers["Authorization"] != f"Bearer {TOKEN}":
                    status, reply = 400, {"type": "InvalidKeyException", "message": "bad key"}
                elif stub.too_large is not None:
                    status, reply = 413, {**stub.too_large, "model": MODEL}
                elif raw == b"{}":  # the handler names a field for an empty body
                    error = {"status": 400, "field": "body", "message": "empty request"}
                    status, reply = 400, {"error": error, "model": MODEL}
                else:
                    status, reply = 200, {**answer(json.loads(raw)), "model": MODEL}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll, so that shutdown() at each test's end returns at once (default: 0.5 s).
        serve = {"poll_interval": 0.01}
        threading.Thread(target=self.httpd.serve_forever, kwargs=serve, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(raw) for raw in self.sent]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[StubModelServer]:
    server = StubModelServer()
    yield server
    server.close()


@pytest.fixture
def api(stub) -> MovieRecClient:
    return MovieRecClient(stub.url, token=TOKEN)


@pytest.fixture
def where(stub, tmp_path) -> list[str]:
    """The command line's options that point it at the stub."""
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": TOKEN}}))
    return ["--url", stub.url, "--key-file", str(key_file)]


# --------------------------------------------------------------------------- title resolution


def test_title_forms_drop_the_year_and_put_a_moved_article_in_front():
    assert title_forms("Godfather, The (1972)") == {
        "godfather, the (1972)",
        "godfather, the",
        "the godfather (1972)",
        "the godfather",
    }
    assert title_forms("Fargo (1996)") == {"fargo (1996)", "fargo"}
    assert title_forms("Untitled") == {"untitled"}


@pytest.mark.parametrize(
    "typed, movie_id",
    [
        ("Star Wars (1977)", 50),  # the title as written
        ("star   WARS", 50),  # any case and spacing, without the year; the Clone Wars also found
        ("the godfather", 127),  # the article in front; Part II also found
        ("Godfather, The", 127),
        ("godfather part ii", 187),  # not spelled as written, but the only result
    ],
)
def test_a_title_spelled_as_typed_or_the_only_result_is_taken(api, typed, movie_id):
    assert api.resolve_title(typed)["movie_id"] == movie_id


def test_an_ambiguous_title_lists_its_candidates(api):
    with pytest.raises(TitleError) as err:
        api.resolve_title("star")
    assert [c["movie_id"] for c in err.value.candidates] == [50, 1701, 222]
    assert err.value.title == "star" and "matches 3 movies" in str(err.value)
    # Two remakes spelled as typed: the candidates are those two, not every result.
    with pytest.raises(TitleError) as err:
        match_title("hamlet", [_result(m) for m in MOVIES if m[0] in (694, 693, 50)])
    assert [c["movie_id"] for c in err.value.candidates] == [693, 694]


def test_a_title_without_a_result_is_an_error_naming_it(api, stub):
    with pytest.raises(TitleError) as err:
        api.resolve_title("Zardoz")
    assert err.value.candidates == [] and "no movie matches 'Zardoz'" in str(err.value)
    assert stub.bodies() == [{"search": "Zardoz", "k": 10}]


# --------------------------------------------------------------------------- requests


def test_default_requests_carry_no_new_fields(api, stub):
    api.top_k(196, 5)
    api.recommend(196, genres=["Comedy"], exclude_movie_ids=[169])
    api.new_user({1: 5, 50: 4.5}, k=3, movie_ids=[96])
    api.similar(50, k=3, exclude_genres=["Drama"])
    # Byte for byte what these calls sent before the discovery options existed.
    assert stub.sent == [
        b'{"user_id": 196, "k": 5}',
        b'{"user_id": 196, "k": 10, "genres": ["Comedy"], "exclude_movie_ids": [169]}',
        b'{"ratings": {"1": 5, "50": 4.5}, "k": 3, "movie_ids": [96]}',
        b'{"similar_to": 50, "k": 3, "exclude_genres": ["Drama"]}',
    ]


def test_options_are_sent_when_given(api, stub):
    recs = api.recommend(196, k=2, novelty=0.5, explain=True, years=(1990, 1999))
    assert recs[0]["because"][0] == {"movie_id": 50, "title": "Star Wars (1977)", "rating": 5}
    api.top_k(196, novelty=0.0, explain=False)  # novelty 0 is given; explain=False is the default
    api.new_user({50: 5}, k=2, novelty=1, explain=True, years=(1970, 1979))
    api.similar(50, k=2, novelty=0.25, years=(1990, 1999))
    assert stub.bodies() == [
        {"user_id": 196, "k": 2, "years": [1990, 1999], "novelty": 0.5, "explain": True},
        {"user_id": 196, "k": 10, "novelty": 0.0},
        {"ratings": {"50": 5}, "k": 2, "years": [1970, 1979], "novelty": 1, "explain": True},
        {"similar_to": 50, "k": 2, "years": [1990, 1999], "novelty": 0.25},
    ]


def test_search_and_chart_return_their_lists(api, stub):
    found = api.search("fargo", k=5)
    assert found == [_result(MOVIES[3])]
    assert found[0]["title"] == "Fargo (1996)" and found[0]["ratings"] == 508
    chart = api.chart(genres=["Drama"], years=(1970, 1999))
    assert [r["movie_id"] for r in chart] == [127, 694]
    api.chart()
    assert stub.bodies() == [
        {"search": "fargo", "k": 5},
        {"chart": "popular", "k": 20, "genres": ["Drama"], "years": [1970, 1999]},
        {"chart": "popular", "k": 20},
    ]


# --------------------------------------------------------------------------- endpoints


def test_the_clients_limits_are_the_interactive_endpoints():
    interactive = yaml.safe_load((HANDLER / "model-config.yaml").read_text())["handler"]
    assert interactive["max_pairs"] == client.INTERACTIVE_MAX_PAIRS
    assert interactive["max_ratings"] == client.INTERACTIVE_MAX_RATINGS
    assert interactive["bulk_model"] == client.BULK_MODEL == MovieRecClient("x", "t").bulk_model
    # The bulk endpoint takes more, and names no endpoint beyond itself.
    bulk = yaml.safe_load((HANDLER / "model-config-bulk.yaml").read_text())["handler"]
    assert bulk["max_pairs"] > client.INTERACTIVE_MAX_PAIRS
    assert bulk["max_ratings"] > client.INTERACTIVE_MAX_RATINGS
    assert not bulk.get("bulk_model")


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(196, m) for m in range(1, n + 1)]


def _ratings(n: int) -> dict[int, float]:
    return {m: 4.0 for m in range(1, n + 1)}


def test_each_request_goes_to_the_endpoint_its_size_calls_for(api, stub):
    assert api.ratings(_pairs(1000)) == [3.5] * 1000
    assert api.ratings(_pairs(1001)) == [3.5] * 1001
    api.new_user(_ratings(250), k=2)
    api.new_user(_ratings(251), k=2)
    api.new_user(_ratings(5), k=2, movie_ids=list(range(1, 1001)))
    api.new_user(_ratings(5), k=2, movie_ids=list(range(1, 1002)))
    api.recommend(196, exclude_movie_ids=list(range(1, 251)))
    api.recommend(196, exclude_movie_ids=list(range(1, 252)))
    api.rating(196, 242)
    api.search("fargo")
    assert stub.paths == [INTERACTIVE, BULK] * 4 + [INTERACTIVE, INTERACTIVE]
    assert api.path_for({"pairs": _pairs(1001)}) == BULK
    assert api.path_for({"user_id": 196, "k": 10}) == INTERACTIVE


def test_without_a_bulk_model_every_request_is_interactive(stub):
    api = MovieRecClient(stub.url, token=TOKEN, bulk_model=None)
    api.ratings(_pairs(1001))
    api.new_user(_ratings(251), k=2)
    assert stub.paths == [INTERACTIVE, INTERACTIVE]


def test_a_413_is_a_too_large_error_with_the_servers_message(api, stub, where, capsys):
    message = (
        "1500 pairs exceed max_pairs=1000 of this endpoint; "
        "send requests this large to /predictions/movierec-bulk"
    )
    stub.too_large = {"error": {"status": 413, "field": "pairs", "message": message}}
    with pytest.raises(ClientError) as err:
        api.ratings(_pairs(10))
    assert (err.value.status, err.value.kind, err.value.field) == (413, "too_large", "pairs")
    assert err.value.message == message
    assert stub.paths == [INTERACTIVE]  # not sent again anywhere
    # The command line says so and exits 1, as for any request the server refused.
    assert main(["rate", "--user", "196", "--movie", "242", *where]) == 1
    assert f"error: too large [pairs]: {message}" in capsys.readouterr().err


def test_the_demo_prints_the_path_each_body_went_to(stub, where, capsys):
    assert main(["demo", *where]) == 0
    out = capsys.readouterr().out
    # Every example is small: each went, and says it went, to the interactive endpoint (after
    # the empty body that found the model ready).
    assert out.count("POST /predictions/movierec {") == len(DEMO_BODIES)
    assert stub.paths == [INTERACTIVE] * (1 + len(DEMO_BODIES))


# --------------------------------------------------------------------------- command line


def test_new_flags_parse():
    args = parse_args(
        ["recommend", "--user", "196", "--explain", "--novelty", "0.5", "--years", "1990", "1999"]
    )
    assert (args.explain, args.novelty, args.years) == (True, 0.5, [1990, 1999])
    plain = parse_args(["recommend", "--user", "196"])
    assert (plain.explain, plain.novelty, plain.years, plain.k) == (False, None, None, 10)
    similar = parse_args(["similar", "--movie", "50", "--novelty", "1", "--years", "1977", "1977"])
    assert (similar.novelty, similar.years) == (1.0, [1977, 1977])
    chart = parse_args(["chart", "--genre", "Comedy", "--years", "1990", "1999"])
    assert (chart.k, chart.genre, chart.years) == (20, ["Comedy"], [1990, 1999])
    search = parse_args(["search", "star wars"])
    assert (search.query, search.k) == ("star wars", 10)
    new = parse_args(
        ["new-user", "--rate", "Star Wars (1977)=5", "--rate", "a=b=4.5", "--ratings", "1=3"]
    )
    assert new.rate == [("Star Wars (1977)", 5.0), ("a=b", 4.5)]  # split at the last "="
    assert new.ratings == [(1, 3.0)] and not new.explain
    assert parse_args(["new-user", "--ratings", "1=5", "50=4.5"]).rate == []


@pytest.mark.parametrize(
    "argv",
    [
        ["recommend", "--user", "196", "--novelty", "1.5"],
        ["recommend", "--user", "196", "--novelty", "nan"],
        ["recommend", "--user", "196", "--years", "1990"],
        ["similar", "--movie", "50", "--explain"],  # similar lists have no explanations
        ["chart", "--novelty", "0.5"],
        ["search"],
        ["new-user", "--rate", "Fargo (1996)"],  # no stars
        ["new-user", "--rate", "=5"],  # no title
        ["new-user", "-k", "3"],  # no ratings at all
    ],
)
def test_bad_command_lines_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_new_user_by_title_says_what_each_title_was_taken_for(stub, where, capsys):
    argv = ["new-user", "--rate", "star wars=5", "--rate", "the godfather=4"]
    assert main([*argv, "--ratings", "1536=2", "--explain", "-k", "2", *where]) == 0
    out = capsys.readouterr().out
    assert "'star wars' -> 50 Star Wars (1977) (5★)" in out
    assert "'the godfather' -> 127 Godfather, The (1972) (4★)" in out
    sent = stub.bodies()[-1]
    assert sent == {"ratings": {"1536": 2.0, "50": 5.0, "127": 4.0}, "k": 2, "explain": True}
    # Each explanation under its own entry, naming the rated movies and their stars.
    lines = out.splitlines()
    row = next(n for n, line in enumerate(lines) if line.split()[:2] == ["1", "127"])
    assert lines[row + 1].strip() == (
        "because you rated Aiqing wansui (1994) (2★), Star Wars (1977) (5★)"
    )


def test_new_user_json_keeps_stdout_one_document(stub, where, capsys):
    assert main(["new-user", "--rate", "fargo=4", "--json", *where]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ranked_by"] == "ranking"
    assert "'fargo' -> 100 Fargo (1996) (4★)" in captured.err


def test_an_ambiguous_title_stops_new_user_with_its_candidates(stub, where, capsys):
    assert main(["new-user", "--rate", "hamlet=5", "--rate", "fargo=4", *where]) == 2
    captured = capsys.readouterr()
    assert "'hamlet' matches 2 movies" in captured.err
    rows = [line.split() for line in captured.err.splitlines()]
    assert ["693", "Hamlet", "(1990)", "1990"] in rows and [
        "694",
        "Hamlet",
        "(1996)",
        "1996",
    ] in rows
    assert "--ratings MOVIE_ID=STARS" in captured.err
    assert all("ratings" not in body for body in stub.bodies())  # no recommendation asked


def test_an_unknown_or_repeated_title_stops_new_user(stub, where, capsys):
    assert main(["new-user", "--rate", "Zardoz=3", *where]) == 2
    assert "no movie matches 'Zardoz'" in capsys.readouterr().err
    assert main(["new-user", "--ratings", "100=3", "--rate", "fargo=4", *where]) == 2
    assert "'fargo' is movie 100 (Fargo (1996)), rated already" in capsys.readouterr().err


def test_search_and_chart_print_tables(stub, where, capsys):
    assert main(["search", "star", "-k", "2", *where]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Movies matching 'star'"
    assert out[1].split() == ["movie_id", "title", "year", "genres", "ratings"]
    assert out[3].split() == ["50", "Star", "Wars", "(1977)", "1977", "Action|Sci-Fi", "583"]
    assert len(out) == 5  # k=2 rows
    assert main(["search", "Zardoz", *where]) == 0
    assert capsys.readouterr().out.strip() == "(no movie matches 'Zardoz')"
    assert main(["chart", "--genre", "Drama", "--years", "1970", "1999", *where]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Top 20 popular movies") and "Hamlet (1996)" in out
    assert stub.bodies()[-1] == {
        "chart": "popular",
        "k": 20,
        "genres": ["Drama"],
        "years": [1970, 1999],
    }


def test_recommend_and_similar_pass_the_new_flags(stub, where, capsys):
    flags = ["--novelty", "0.5", "--years", "1990", "1999", "-k", "2", *where]
    assert main(["recommend", "--user", "196", "--explain", *flags]) == 0
    assert "because you rated Star Wars (1977) (5★), Fargo (1996) (4★)" in capsys.readouterr().out
    assert main(["similar", "--movie", "50", *flags]) == 0
    assert "because" not in capsys.readouterr().out
    assert main(["recommend", "--user", "196", *where]) == 0
    assert stub.bodies() == [
        {"user_id": 196, "k": 2, "years": [1990, 1999], "novelty": 0.5, "explain": True},
        {"similar_to": 50, "k": 2, "years": [1990, 1999], "novelty": 0.5},
        {"user_id": 196, "k": 10},
    ]


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_search_and_new_user_by_title_on_torchserve(server, capsys):
    # The session's catalogue is titled "Movie <id> (1995)" (tests/conftest.py).
    api = MovieRecClient(server.url, key_file=server.key_file)
    found = api.search("movie 11", k=5)
    assert found[0] == {
        "movie_id": 11,
        "title": "Movie 11 (1995)",
        "year": 1995,
        "genres": [],
        "ratings": found[0]["ratings"],
    }
    assert found[0]["ratings"] > 0
    where = ["--url", api.url, "--key-file", str(server.key_file)]
    argv = ["new-user", "--rate", "Movie 14 (1995)=5", "--rate", "movie 17=4", "--explain"]
    assert main([*argv, "-k", "3", *where]) == 0
    out = capsys.readouterr().out
    assert "'Movie 14 (1995)' -> 14 Movie 14 (1995) (5★)" in out
    assert "'movie 17' -> 17 Movie 17 (1995) (4★)" in out
    assert "Top 3 for a new user from 2 ratings" in out and "because you rated Movie 1" in out
    # "movie 1" begins several titles and spells none of them.
    assert main(["new-user", "--rate", "movie 1=5", *where]) == 2
    err = capsys.readouterr().err
    assert "'movie 1' matches" in err and "Movie 11 (1995)" in err
