"""Request parsing (handler/parsing.py): typed requests from JSON bodies, every bad field named,
limits enforced; no model and no TorchServe involved."""

from __future__ import annotations

import pytest

from handler.parsing import (
    ChartRequest,
    Limits,
    NewUserRequest,
    SearchRequest,
    SimilarRequest,
    TopKRequest,
    parse_request,
)
from model.errors import BadRequestError, TooLargeError
from tests.conftest import GENRES


def test_limits_must_be_consistent():
    with pytest.raises(ValueError, match="default_k"):
        Limits(max_k=5, default_k=10)


def test_pairs_are_parsed_into_the_ids_sent():
    """Largest 64-bit ids included (the vectorized path must not lose or wrap any)."""
    pairs = [[1, 2], [2**63 - 1, 0], [7, 7]]
    request = parse_request({"pairs": pairs}, Limits(max_pairs=4))
    assert request.user_ids.tolist() == [1, 2**63 - 1, 7]
    assert request.movie_ids.tolist() == [2, 0, 7]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"pairs": []}, "pairs"),
        ({"pairs": [[1, 2]] * 5}, "pairs"),
        ({"pairs": [[1, 2], [3]]}, "pairs[1]"),
        ({"pairs": [[1, "2"]]}, "pairs[0][1]"),
        ({"pairs": [[1, 2], [True, 3]]}, "pairs[1][0]"),
        ({"pairs": [[1, 2], [-1, 3]]}, "pairs[1][0]"),
        ({"pairs": [[1, 2**63]]}, "pairs[0][1]"),
        ({"pairs": [[1, 2**64 + 5]]}, "pairs[0][1]"),
        ({"pairs": [[1, 2.0]]}, "pairs[0][1]"),
        ({"pairs": [[1, 2], (3, 4)]}, "pairs[1]"),
        ({"pairs": "1,2"}, "pairs"),
        ({"user_id": 1, "k": 2.5}, "k"),
        ({"user_id": 1, "k": 6}, "k"),
        ({"user_id": -1, "movie_id": 2}, "user_id"),
        ({"user_id": 2**70, "movie_id": 2}, "user_id"),
        ({"user_id": 1.0, "movie_id": 2}, "user_id"),
        ({"user_id": 1, "movie_id": None}, "movie_id"),
        ({"user_id": 1, "movie_id": 2, "k": 3}, "k"),
        ({}, "body"),
        ({"movie_id": 2}, "body"),
        ({"user_id": 1, "fallback": "random"}, "fallback"),
        ({"user_id": 1, "genres": ["Action", "Horror"]}, "genres[1]"),
        ({"user_id": 1, "genres": "Action"}, "genres"),
        ({"user_id": 1, "exclude_genres": [3]}, "exclude_genres[0]"),
        ({"user_id": 1, "exclude_movie_ids": [1, "2"]}, "exclude_movie_ids[1]"),
        ({"user_id": 1, "exclude_movie_ids": list(range(7))}, "exclude_movie_ids"),
        ({"similar_to": "50"}, "similar_to"),
        ({"similar_to": 50, "user_id": 1}, "user_id"),
        ({"similar_to": 50, "movie_ids": [1]}, "movie_ids"),
        ({"ratings": {}}, "ratings"),
        ({"ratings": [[1, 5]]}, "ratings"),
        ({"ratings": {str(m): 3 for m in range(7)}}, "ratings"),
        ({"ratings": {"1": 5, "x": 4}}, 'ratings["x"]'),
        ({"ratings": {"-1": 5}}, 'ratings["-1"]'),
        ({"ratings": {"1": 5, "01": 4}}, 'ratings["01"]'),
        ({"ratings": {"1": "5"}}, 'ratings["1"]'),
        ({"ratings": {"1": True}}, 'ratings["1"]'),
        ({"ratings": {"1": 5.5}}, 'ratings["1"]'),
        ({"ratings": {"1": 0}}, 'ratings["1"]'),
        ({"ratings": {"1": 5}, "movie_ids": []}, "movie_ids"),
        ({"ratings": {"1": 5}, "movie_ids": [1] * 5}, "movie_ids"),
        ({"ratings": {"1": 5}, "fallback": "popular"}, "fallback"),
        ({"ratings": {"1": 5}, "k": 6}, "k"),
        ({"search": 3}, "search"),
        ({"search": ""}, "search"),
        ({"search": "   "}, "search"),
        ({"search": "x" * 201}, "search"),
        ({"search": "heat", "genres": ["Drama"]}, "genres"),
        ({"search": "heat", "k": 6}, "k"),
        ({"chart": "newest"}, "chart"),
        ({"chart": ["popular"]}, "chart"),
        ({"chart": "popular", "novelty": 0.5}, "novelty"),
        ({"chart": "popular", "years": [1999, 1990]}, "years"),
        ({"user_id": 1, "years": [1990]}, "years"),
        ({"user_id": 1, "years": [1990, "1999"]}, "years"),
        ({"user_id": 1, "years": [1990.0, 1999]}, "years"),
        ({"user_id": 1, "years": [True, 1999]}, "years"),
        ({"user_id": 1, "years": "1990-1999"}, "years"),
        ({"user_id": 1, "novelty": 1.5}, "novelty"),
        ({"user_id": 1, "novelty": -0.1}, "novelty"),
        ({"user_id": 1, "novelty": "high"}, "novelty"),
        ({"user_id": 1, "novelty": True}, "novelty"),
        ({"ratings": {"1": 5}, "novelty": float("nan")}, "novelty"),
        ({"ratings": {"1": 5}, "explain": "yes"}, "explain"),
        ({"ratings": {"1": 5}, "explain": 1}, "explain"),
        ({"similar_to": 1, "explain": True}, "explain"),
        ({"user_id": 1, "movie_id": 2, "novelty": 0.5}, "novelty"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(BadRequestError) as err:
        parse_request(body, Limits(max_k=5, max_pairs=4, max_ratings=6, default_k=3), GENRES)
    assert err.value.field == field


def test_limits_are_named_when_exceeded():
    limits = Limits(max_k=5, max_pairs=4, max_ratings=6, default_k=3)
    for body, name in (
        ({"user_id": 1, "k": 6}, "max_k=5"),
        ({"pairs": [[1, 2]] * 5}, "max_pairs=4"),
        ({"ratings": {str(m): 3 for m in range(7)}}, "max_ratings=6"),
    ):
        with pytest.raises(BadRequestError, match=name):
            parse_request(body, limits, GENRES)


@pytest.mark.parametrize(
    "body, field, limit",
    [
        ({"pairs": [[1, 2]] * 5}, "pairs", "max_pairs=4"),
        ({"ratings": {str(m): 3 for m in range(7)}}, "ratings", "max_ratings=6"),
        ({"ratings": {"1": 3}, "movie_ids": list(range(5))}, "movie_ids", "max_pairs=4"),
        ({"user_id": 1, "exclude_movie_ids": list(range(7))}, "exclude_movie_ids", "max_ratings=6"),
    ],
)
def test_a_request_over_a_size_limit_is_413_and_names_the_bulk_endpoint(body, field, limit):
    sized = dict(max_k=5, max_pairs=4, max_ratings=6, default_k=3)
    with pytest.raises(TooLargeError) as err:
        parse_request(body, Limits(**sized, bulk_model="movierec-bulk"), GENRES)
    assert err.value.status == 413 and err.value.field == field
    assert limit in err.value.message and "/predictions/movierec-bulk" in err.value.message
    # The largest endpoint names no other one.
    with pytest.raises(TooLargeError) as err:
        parse_request(body, Limits(**sized), GENRES)
    assert limit in err.value.message and "/predictions/" not in err.value.message
    # One under the limit is no error of size.
    at_limit = {
        "pairs": {"pairs": [[1, 2]] * 4},
        "ratings": {"ratings": {str(m): 3 for m in range(6)}},
        "movie_ids": {"ratings": {"1": 3}, "movie_ids": list(range(4))},
        "exclude_movie_ids": {"user_id": 1, "exclude_movie_ids": list(range(6))},
    }[field]
    parse_request(at_limit, Limits(**sized, bulk_model="movierec-bulk"), GENRES)


def test_a_new_user_request_is_parsed_in_request_order():
    request = parse_request(
        {"ratings": {"50": 4.5, "1": 5, "7": 1}, "movie_ids": [3, 9], "genres": ["Drama"]},
        Limits(),
        GENRES,
    )
    assert isinstance(request, NewUserRequest)
    assert request.movie_ids.tolist() == [50, 1, 7] and request.ratings.tolist() == [4.5, 5, 1]
    assert request.predict_movie_ids.tolist() == [3, 9] and request.k == 10
    assert request.filters.genres == ("Drama",)


def test_discovery_fields_are_parsed():
    limits = Limits()
    search = parse_request({"search": "Godfather", "k": 5}, limits, GENRES)
    assert isinstance(search, SearchRequest) and (search.query, search.k) == ("Godfather", 5)
    chart = parse_request({"chart": "popular", "years": [1990, 1999]}, limits, GENRES)
    assert isinstance(chart, ChartRequest) and chart.filters.years == (1990, 1999)
    assert chart.k == limits.default_k
    top = parse_request({"user_id": 3, "novelty": 0.5, "explain": True}, limits, GENRES)
    assert isinstance(top, TopKRequest) and (top.novelty, top.explain) == (0.5, True)
    plain = parse_request({"user_id": 3}, limits, GENRES)
    assert (plain.novelty, plain.explain, plain.filters.years) == (0.0, False, None)
    new = parse_request({"ratings": {"1": 5}, "novelty": 1, "explain": False}, limits, GENRES)
    assert isinstance(new, NewUserRequest) and new.novelty == 1.0
    similar = parse_request({"similar_to": 1, "novelty": 0.25, "years": [1, 1]}, limits, GENRES)
    assert isinstance(similar, SimilarRequest) and similar.novelty == 0.25
