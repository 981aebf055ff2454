"""The TorchServe handler through a real ts.context.Context, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ts.context import Context, RequestProcessor

from handler.movierec_handler import MovieRecHandler
from handler.protocol import Limits, parse_request
from model.errors import BadRequestError


def make_context(model_dir, yaml_config=None) -> Context:
    return Context(
        "movierec",
        str(model_dir),
        {"model": {"modelName": "movierec"}},
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

    expected = rec.predict_indices(
        rec.vocab.user_index(np.array([user, user, other])),
        rec.vocab.item_index(np.array([movie, movie2, movie])),
    )
    assert answers[0][1] == {
        "user_id": user,
        "movie_id": movie,
        "rating": round(float(expected[0]), 4),
    }
    assert answers[4][1]["ratings"] == [round(float(x), 4) for x in expected[1:]]

    top = answers[5][1]
    assert top["user_id"] == other and len(top["recommendations"]) == 2
    first = top["recommendations"][0]
    assert set(first) == {"movie_id", "title", "genres", "score"}
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


def test_a_batch_costs_one_rating_call_and_one_top_k_call(handler, monkeypatch):
    rec = handler.recommender
    calls = {"predict": 0, "top_k": 0}
    predict, top_k = rec.predict_indices, rec.top_k_indices

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)

        return wrapper

    monkeypatch.setattr(rec, "predict_indices", counted("predict", predict))
    monkeypatch.setattr(rec, "top_k_indices", counted("top_k", top_k))
    users, movies = rec.vocab.user_ids[:4].tolist(), rec.vocab.movie_ids[:4].tolist()
    rows = [{"body": {"user_id": u, "movie_id": m}} for u, m in zip(users, movies)]
    rows += [{"body": {"user_id": u, "k": k}} for u, k in zip(users, (1, 3, 5, 2))]
    answers = run_batch(handler, rows)
    assert all(s == 200 for s, _ in answers)
    assert calls == {"predict": 1, "top_k": 1}
    assert [len(a["recommendations"]) for _, a in answers[4:]] == [1, 3, 5, 2]


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
    assert alone == crowd


def test_limits_must_be_consistent():
    with pytest.raises(ValueError, match="default_k"):
        Limits(max_k=5, default_k=10)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"pairs": []}, "pairs"),
        ({"pairs": [[1, 2]] * 5}, "pairs"),
        ({"pairs": [[1, 2], [3]]}, "pairs[1]"),
        ({"pairs": [[1, "2"]]}, "pairs[0][1]"),
        ({"pairs": "1,2"}, "pairs"),
        ({"user_id": 1, "k": 2.5}, "k"),
        ({"user_id": 1, "k": 6}, "k"),
        ({"user_id": -1, "movie_id": 2}, "user_id"),
        ({"user_id": 2**70, "movie_id": 2}, "user_id"),
        ({"user_id": 1.0, "movie_id": 2}, "user_id"),
        ({"user_id": 1, "movie_id": None}, "movie_id"),
        ({"user_id": 1, "movie_id": 2, "k": 3}, "body"),
        ({}, "body"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(BadRequestError) as err:
        parse_request(body, Limits(max_k=5, max_pairs=4, default_k=3))
    assert err.value.field == field
