"""The TorchServe handler through a real ts.context.Context, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ts.context import Context, RequestProcessor

from handler.movierec_handler import MovieRecHandler

MODEL = {"name": "movierec", "version": "1.2.3"}


def make_context(model_dir, yaml_config=None) -> Context:
    return Context(
        "movierec",
        str(model_dir),
        {"model": {"modelName": "movierec", "modelVersion": "1.2.3"}},
        8,
        None,
        "0.12.0",
        model_yaml_config=yaml_config or {},
    )


@pytest.fixture(scope="module")
def handler(artifact_dir):
    h = MovieRecHandler()
    h.initialize(
        make_context(artifact_dir, {"handler": {"max_k": 5, "max_pairs": 4, "default_k": 3}})
    )
    return h


def movie_json(rec, movie_id: int) -> dict:
    """What an answer says about a movie, from the Recommender's own record of it."""
    movie = rec.movie(movie_id)
    return {"movie_id": movie.movie_id, "title": movie.title, "genres": list(movie.genres)}


def run_batch(handler, rows):
    """Call handle() like TorchServe does; return [(status, decoded body)] per row."""
    ctx = make_context(handler.context.system_properties["model_dir"])
    ctx.request_processor = [RequestProcessor({}) for _ in rows]
    out = handler.handle(rows, ctx)
    assert len(out) == len(rows) and all(isinstance(o, str) for o in out)
    return [(ctx.get_response_status(i)[0], json.loads(o)) for i, o in enumerate(out)]


def test_mixed_batch_answers_each_request_on_its_own(handler):
    rec = handler.recommender
    user, other = int(rec.vocab.user_ids[0]), int(rec.vocab.user_ids[1])
    movie, movie2 = int(rec.vocab.movie_ids[0]), int(rec.vocab.movie_ids[1])
    rows = [
        {"body": {"user_id": user, "movie_id": movie}},
        {"body": {"user_id": 999999, "k": 3}},
        {"body": {"pairs": [[user, movie], [other, 12345]]}},
        {"body": b'{"user_id": 1, "k": '},
        {"body": {"pairs": [[user, movie2], [other, movie]]}},
        {"data": json.dumps({"user_id": other, "k": 2}).encode()},
        {"body": {"user_id": user, "k": 0}},
        {"body": b"\xff\xfe not utf-8"},
        {"body": {"user_id": user}},
        {"body": [1, 2]},
        {"body": {"user_id": True, "movie_id": movie}},
        {"body": {"user_id": user, "movie": movie}},
        {},
    ]
    answers = run_batch(handler, rows)
    statuses = [s for s, _ in answers]
    assert statuses == [200, 404, 404, 400, 200, 200, 400, 400, 200, 400, 400, 400, 400]

    expected = rec.scorer.predict_indices(
        rec.vocab.user_index(np.array([user, user, other])),
        rec.vocab.item_index(np.array([movie, movie2, movie])),
    )
    assert answers[0][1] == {
        "user_id": user,
        **movie_json(rec, movie),
        "rating": round(float(expected[0]), 4),
        "model": MODEL,
    }
    assert answers[4][1]["ratings"] == [round(float(x), 4) for x in expected[1:]]

    top = answers[5][1]
    assert top["user_id"] == other and len(top["recommendations"]) == 2
    first = top["recommendations"][0]
    assert set(first) == {"movie_id", "title", "genres", "score", "rating"}
    assert top["ranked_by"] == "ranking"  # the fixture's artifact has a ranking model
    listed = rec.vocab.item_index(np.array([r["movie_id"] for r in top["recommendations"]]))
    stars = rec.scorer.predict_indices(rec.vocab.user_index(np.array([other, other])), listed)
    assert [r["rating"] for r in top["recommendations"]] == [round(float(x), 4) for x in stars]
    rated = set(rec.vocab.movie_ids[rec.vocab.rated_by(1)].tolist())
    assert not rated & {r["movie_id"] for r in top["recommendations"]}
    assert len(answers[8][1]["recommendations"]) == 3  # default_k

    errors = {i: body["error"] for i, (s, body) in enumerate(answers) if s != 200}
    assert errors[1]["field"] == "user_id" and "999999" in errors[1]["message"]
    assert errors[2]["field"] == "pairs[1][1]" and "12345" in errors[2]["message"]
    assert errors[3]["field"] == "body" and "invalid JSON" in errors[3]["message"]
    assert errors[6]["field"] == "k" and "max_k=5" in errors[6]["message"]
    assert errors[7]["field"] == "body" and "UTF-8" in errors[7]["message"]
    assert errors[9]["field"] == "body" and "JSON object" in errors[9]["message"]
    assert errors[10]["field"] == "user_id" and "integer" in errors[10]["message"]
    assert errors[11]["field"] == "movie" and "unknown field" in errors[11]["message"]
    assert errors[12]["field"] == "body" and "Content-Type" in errors[12]["message"]
    assert all(error["status"] == answers[i][0] for i, error in errors.items())
    assert all(body["model"] == MODEL for _, body in answers)  # errors included


def test_a_batch_costs_one_call_per_kind_of_work(handler, monkeypatch):
    rec = handler.recommender
    seam = ("predict", "recommend", "recommend_new_users", "similar")
    index_layer = (
        "predict_indices",
        "top_k_indices",
        "fold_in",
        "score_vectors",
        "predict_vectors",
        "similar_indices",
        "popular_indices",
    )
    names = (*seam, *index_layer)
    calls = dict.fromkeys(names, 0)

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in seam:
        monkeypatch.setattr(rec, name, counted(name, getattr(rec, name)))
    for name in index_layer:
        monkeypatch.setattr(rec.scorer, name, counted(name, getattr(rec.scorer, name)))
    users, movies = rec.vocab.user_ids[:4].tolist(), rec.vocab.movie_ids[:4].tolist()
    rows = [{"body": {"user_id": u, "movie_id": m}} for u, m in zip(users, movies)]
    rows += [{"body": {"user_id": u, "k": k}} for u, k in zip(users, (1, 3, 5, 2))]
    rows += [{"body": {"ratings": {str(m): 4}, "k": 2, "movie_ids": movies}} for m in movies]
    rows += [{"body": {"similar_to": m, "k": 2, "genres": ["Drama"]}} for m in movies]
    rows += [{"body": {"user_id": 10**9 + n, "fallback": "popular"}} for n in range(3)]
    answers = run_batch(handler, rows)
    assert all(s == 200 for s, _ in answers)
    # Ratings are predicted twice per batch: once for the rating requests (or the new users'
    # asked movies), once for the movies the top-K lists hold.
    assert calls == {**dict.fromkeys(names, 1), "predict_indices": 2, "predict_vectors": 2}
    assert [len(a["recommendations"]) for _, a in answers[4:8]] == [1, 3, 5, 2]


def test_answers_do_not_depend_on_batch_company(handler):
    rec = handler.recommender
    body = {"user_id": int(rec.vocab.user_ids[2]), "k": 4}
    alone = run_batch(handler, [{"body": body}])[0]
    crowd = run_batch(
        handler,
        [
            {"body": {"user_id": int(rec.vocab.user_ids[3]), "k": 5}},
            {"body": body},
            {"body": b"junk"},
        ],
    )[1]
    # The same answer; its figures equal up to float rounding, which a 4-decimal answer can
    # show in its last digit: BLAS splits a (B, k) x (k, N) product differently for different
    # B, so the sums' last bits are not batch-invariant (not at 62,000 movies before
    # TransposedCopy either).
    assert alone[0] == crowd[0] == 200
    (a, c) = (alone[1], crowd[1])
    assert {**a, "recommendations": None} == {**c, "recommendations": None}
    assert [r["movie_id"] for r in a["recommendations"]] == [
        r["movie_id"] for r in c["recommendations"]
    ]
    for x, y in zip(a["recommendations"], c["recommendations"]):
        assert {**x, "score": 0, "rating": 0} == {**y, "score": 0, "rating": 0}
        assert x["score"] == pytest.approx(y["score"], abs=1.5e-4)
        assert x["rating"] == pytest.approx(y["rating"], abs=1.5e-4)


def _known_user(rec, u: int = 0) -> tuple[int, dict]:
    """A trained user's raw id and their ratings, as a new-user request would send them."""
    ratings = rec.vocab.rated_by(u)
    stars = {str(int(rec.vocab.movie_ids[i])): 1 + (int(i) * 7) % 5 for i in ratings}
    return int(rec.vocab.user_ids[u]), stars


def test_new_user_from_ratings(handler):
    rec = handler.recommender
    _, stars = _known_user(rec)
    rated = [int(m) for m in stars]
    ask = [int(m) for m in rec.vocab.movie_ids[:3]]
    body = {"ratings": {**stars, "99999": 4}, "k": 4, "movie_ids": ask}
    (status, answer), (bad_status, bad) = run_batch(
        handler, [{"body": body}, {"body": {**body, "movie_ids": [ask[0], 12345]}}]
    )
    assert status == 200 and answer["unknown_movie_ids"] == [99999]
    recs = answer["recommendations"]
    assert len(recs) == 4 and not {r["movie_id"] for r in recs} & set(rated)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)

    idx = rec.vocab.item_index(np.array(rated))
    scorer = rec.scorer
    vectors, biases = scorer.fold_in([idx], [np.array([float(v) for v in stars.values()])])
    expected = scorer.predict_vectors(vectors, biases, np.zeros(3, int), rec.vocab.item_index(ask))
    assert answer["predictions"] == [
        {**movie_json(rec, m), "rating": round(float(r), 4)} for m, r in zip(ask, expected)
    ]
    assert bad_status == 404 and bad["error"]["field"] == "movie_ids[1]"
    assert "12345" in bad["error"]["message"]


def test_new_user_with_only_unknown_movies_gets_the_average_user(handler):
    (status, answer), (_, other) = run_batch(
        handler,
        [{"body": {"ratings": {"99999": 5}, "k": 3}}, {"body": {"ratings": {"99998": 1}, "k": 3}}],
    )
    assert status == 200 and answer["unknown_movie_ids"] == [99999]
    assert answer["recommendations"] == other["recommendations"]
    assert "predictions" not in answer


def test_unknown_user_gets_popular_movies_only_when_asked(handler):
    rec = handler.recommender
    known = int(rec.vocab.user_ids[0])
    answers = run_batch(
        handler,
        [
            {"body": {"user_id": 10**9, "k": 5, "fallback": "popular"}},
            {"body": {"user_id": 10**9, "k": 5, "fallback": "popular", "genres": ["Comedy"]}},
            {"body": {"user_id": 10**9, "k": 5}},
            {"body": {"user_id": known, "k": 5, "fallback": "popular"}},
        ],
    )
    (s0, popular), (s1, comedy), (s2, missing), (s3, personal) = answers
    assert (s0, s1, s2, s3) == (200, 200, 404, 200)
    assert popular["fallback"] == "popular" and popular["user_id"] == 10**9
    (chart,) = rec.recommend([10**9], 5, fallback="popular")
    assert chart.fallback == "popular" and len(chart.movies) == 5
    assert [r["movie_id"] for r in popular["recommendations"]] == [m.movie_id for m in chart.movies]
    assert [r["score"] for r in popular["recommendations"]] == [
        round(m.score, 4) for m in chart.movies
    ]
    assert all("Comedy" in r["genres"] for r in comedy["recommendations"])
    assert missing["error"]["field"] == "user_id"
    assert "fallback" not in personal
    assert (
        personal["recommendations"]
        == run_batch(handler, [{"body": {"user_id": known, "k": 5}}])[0][1]["recommendations"]
    )


def test_popular_fallback_needs_rating_statistics(handler, monkeypatch):
    monkeypatch.setattr(handler.recommender.scorer, "popularity", None)
    status, answer = run_batch(handler, [{"body": {"user_id": 10**9, "fallback": "popular"}}])[0]
    assert status == 400 and answer["error"]["field"] == "fallback"
    assert "retrain" in answer["error"]["message"]


def test_similar_movies(handler):
    rec = handler.recommender
    movie = int(rec.vocab.movie_ids[4])
    (status, answer), (missing_status, missing) = run_batch(
        handler, [{"body": {"similar_to": movie, "k": 5}}, {"body": {"similar_to": 12345}}]
    )
    assert status == 200 and answer["movie"] == movie_json(rec, movie)
    recs = answer["recommendations"]
    items, _ = rec.scorer.similar_indices(np.array([4]), 5)
    assert [r["movie_id"] for r in recs] == [int(rec.vocab.movie_ids[i]) for i in items[0]]
    assert movie not in {r["movie_id"] for r in recs}
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)  # the ranking model's, best first
    assert missing_status == 404 and missing["error"]["field"] == "similar_to"


def test_filters_apply_to_every_top_k_kind(handler):
    rec = handler.recommender
    user, stars = _known_user(rec, 1)
    movies = [int(m) for m in rec.vocab.movie_ids]
    filters = {
        "genres": ["Action", "Drama"],
        "exclude_genres": ["Comedy"],
        "exclude_movie_ids": [*movies[::2], 99999],
    }
    bodies = [
        {"user_id": user, "k": 5, **filters},
        {"ratings": stars, "k": 5, **filters},
        {"similar_to": movies[1], "k": 5, **filters},
        {"user_id": 10**9, "k": 5, "fallback": "popular", **filters},
        {"user_id": user, "k": 5, "genres": ["Western"]},
    ]
    answers = run_batch(handler, [{"body": b} for b in bodies])
    for status, answer in answers[:4]:
        assert status == 200 and answer["recommendations"]
        for r in answer["recommendations"]:
            assert {"Action", "Drama"} & set(r["genres"]) and "Comedy" not in r["genres"]
            assert r["movie_id"] not in movies[::2]
    status, answer = answers[4]
    assert status == 400 and answer["error"]["field"] == "genres[0]"
    assert "Western" in answer["error"]["message"] and "Action" in answer["error"]["message"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = st.sampled_from(
    [
        "user_id",
        "movie_id",
        "pairs",
        "k",
        "ratings",
        "movie_ids",
        "similar_to",
        "fallback",
        "genres",
        "exclude_genres",
        "exclude_movie_ids",
    ]
)
_VALUES = _JSON | st.sampled_from([101, 11, 14, "popular", ["Action"], {"11": 5}, {"14": 2.5}])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_FIELDS, _VALUES, max_size=4) | _JSON, min_size=1, max_size=4))
def test_no_body_makes_the_handler_fail(handler, bodies):
    """Whatever a client sends, each request gets 200, 400 or 404 with a JSON body; the batch
    never fails as a whole."""
    answers = run_batch(handler, [{"body": b} for b in bodies])
    for status, answer in answers:
        assert status in (200, 400, 404)
        assert status == 200 or answer["error"]["status"] == status


def test_deeply_nested_json_is_a_bad_request(handler):
    nested = b"[" * 200_000 + b"]" * 200_000
    (status, answer), (ok, _) = run_batch(
        handler, [{"body": nested}, {"body": {"similar_to": 11, "k": 1}}]
    )
    assert (status, answer["error"]["field"], ok) == (400, "body", 200)
    assert "nested too deeply" in answer["error"]["message"]
