"""Discovery on the served core: the years filter, the chart, explanations, novelty and search
through the Recommender, and their JSON through the handler, on the tiny trained artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handler.answering import answer_batch
from handler.parsing import Limits
from model import artifact
from model.filtering import MovieFilter
from model.novelty import LEVELS, penalise, popularity_penalty, standardise, strength
from model.ranker import Ranker, RankerConfig
from model.recommender import Recommender
from model.scoring import Scorer


@pytest.fixture(scope="module")
def rec(artifact_dir) -> Recommender:
    """The tiny artifact with titles of several decades (movie n: year 1950 + 3n)."""
    model, vocab, config = artifact.load(artifact_dir)
    vocab.titles = np.array(
        [f"Film {m}, The ({1950 + 3 * n})" for n, m in enumerate(vocab.movie_ids)]
    )
    return Recommender(
        Scorer(model, vocab, config, ranker=artifact.load_ranker(artifact_dir, config))
    )


def _ids(movies) -> list[int]:
    return [m.movie_id for m in movies]


def test_the_years_filter_keeps_movies_of_those_years_on_every_list_kind(rec):
    years = dict(zip(rec.vocab.movie_ids.tolist(), rec.scorer.years.tolist()))
    only = MovieFilter(years=(1960, 1980))
    user = int(rec.vocab.user_ids[0])
    lists = [
        rec.recommend([user], 30, only)[0].movies,
        rec.recommend_new_users([[int(rec.vocab.movie_ids[0])]], [[5.0]], 30, only)[0].movies,
        rec.similar([int(rec.vocab.movie_ids[0])], 30, only)[0].movies,
        rec.chart(30, only)[0].movies,
    ]
    for movies in lists:
        assert movies and all(1960 <= years[m] <= 1980 for m in _ids(movies))
    # Everything of those years that the user did not rate is there.
    expected = {m for m, y in years.items() if 1960 <= y <= 1980}
    assert set(_ids(lists[3])) == expected
    with pytest.raises(ValueError, match="first <= last"):
        MovieFilter(years=(1980, 1960))


def test_the_chart_is_the_popular_fallback_without_a_user(rec):
    drama = MovieFilter(genres=("Drama",))
    (fallback,) = rec.recommend([10**9], 5, drama, fallback="popular")
    charts = rec.chart([5, 3], [drama, MovieFilter()])
    assert charts[0].movies == fallback.movies
    assert len(charts[1].movies) == 3 and charts[1].ranked_by == "popularity"


def test_novelty_zero_changes_nothing_and_more_novelty_lists_less_popular_movies(rec):
    scorer, users = rec.scorer, np.arange(rec.vocab.num_users)
    plain = scorer.top_k_indices(users, 5)
    zero = scorer.top_k_indices(users, 5, novelty=np.zeros(len(users)))
    assert np.array_equal(plain[0], zero[0]) and np.array_equal(plain[1], zero[1], equal_nan=True)
    counts = rec.vocab.rating_count
    means = []
    for level in LEVELS:
        items, _ = scorer.top_k_indices(users, 5, novelty=np.full(len(users), level))
        means.append(counts[items].mean())
    assert means[-1] < means[0]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(means, means[1:]))


def test_penalise_standardises_and_subtracts_the_interpolated_penalty():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    penalty = popularity_penalty(np.array([100, 1, 10]))
    out = penalise(scores, np.array([0.0, 0.5]), penalty, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert torch.equal(out[0], scores[0])  # novelty 0: untouched
    assert torch.allclose(out[1], standardise(scores[1:])[0] - 2.0 * penalty)
    assert strength(np.array([0.125]), [0.0, 1.0, 2.0, 3.0, 4.0]).tolist() == [0.5]
    # The most-rated movie has the largest penalty; equal counts give none.
    assert penalty.argmax() == 0 and popularity_penalty(np.array([5, 5])).abs().sum() == 0


def test_explanations_are_the_largest_item_item_terms_of_the_users_history(rec):
    user = int(rec.vocab.user_ids[2])
    (listed,) = rec.recommend([user], 4, explain=True)
    (plain,) = rec.recommend([user], 4)
    assert _ids(listed.movies) == _ids(plain.movies) and plain.movies[0].because is None
    u = int(rec.vocab.user_index(np.array([user]))[0])
    rated, stars = rec.scorer.histories(np.array([u]))[0]
    ranker = rec.scorer.ranker
    weights = ranker.neighbor_weights.numpy()
    values = np.where(stars >= 4, 1.0, ranker.config.low_weight)
    for movie in listed.movies:
        i = int(rec.vocab.item_index(np.array([movie.movie_id]))[0])
        terms = values * weights[rated, i]
        expected = [int(rec.vocab.movie_ids[rated[j]]) for j in np.argsort(-terms) if terms[j] > 0]
        assert [r.movie_id for r in movie.because] == expected[:3]
        for reason in movie.because:
            position = list(rec.vocab.movie_ids[rated]).index(reason.movie_id)
            assert reason.rating == stars[position]
            assert reason.title == rec.movie(reason.movie_id).title


def test_a_new_users_explanations_cite_only_their_own_ratings(rec):
    given = [int(m) for m in rec.vocab.movie_ids[:4]]
    (found,) = rec.recommend_new_users([given], [[5, 4, 2, 5]], 5, explain=True)
    cited = {r.movie_id for m in found.movies for r in m.because}
    assert cited and cited <= set(given)
    assert all(r.rating in (5, 4, 2) for m in found.movies for r in m.because)


def test_pruned_item_item_terms_equal_the_dense_ones():
    torch.manual_seed(0)
    n = 12
    dense_weights = torch.randn(n, n)
    dense = Ranker(RankerConfig(n), dense_weights)
    pruned = Ranker(RankerConfig(n, neighbors=4), dense_weights)
    history, values, entries = np.array([1, 5, 7]), np.array([1.0, 0.6, 1.0]), np.array([0, 3, 9])
    kept = torch.zeros(n, n)
    top = dense_weights.abs().topk(4, dim=1).indices
    kept.scatter_(1, top, dense_weights.gather(1, top))
    expected = kept[history][:, entries].numpy() * values[:, None]
    assert np.allclose(pruned.contributions(history, values, entries), expected)
    assert np.allclose(
        dense.contributions(history, values, entries),
        dense_weights[history][:, entries].numpy() * values[:, None],
    )


def test_search_finds_a_title_and_gives_its_year_and_rating_count(rec):
    movie_id = int(rec.vocab.movie_ids[4])
    found = rec.search(f"the film {movie_id}", 3)
    assert found[0].movie_id == movie_id and found[0].year == 1962
    assert found[0].ratings == int(rec.vocab.rating_count[4])


def test_the_handler_answers_the_discovery_kinds(rec):
    user, movie = int(rec.vocab.user_ids[0]), int(rec.vocab.movie_ids[4])
    rows = [
        {"body": {"search": f"film {movie}", "k": 2}},
        {"body": {"chart": "popular", "k": 2, "years": [1950, 1960]}},
        {"body": {"user_id": user, "k": 2, "explain": True, "novelty": 0.5}},
        {"body": {"ratings": {str(movie): 5}, "k": 2, "explain": True}},
        {"body": {"similar_to": movie, "k": 2, "novelty": 1}},
        {"body": {"chart": "popular", "novelty": 1}},
    ]
    answers = answer_batch(rec, rows, Limits()).answers
    assert [status for status, _ in answers] == [200, 200, 200, 200, 200, 400]
    search, chart, top, new, similar, bad = (body for _, body in answers)
    assert search["results"][0] == {
        "movie_id": movie,
        "title": rec.movie(movie).title,
        "year": 1962,
        "genres": list(rec.movie(movie).genres),
        "ratings": int(rec.vocab.rating_count[4]),
    }
    assert chart["chart"] == "popular" and len(chart["recommendations"]) == 2
    for entry in top["recommendations"] + new["recommendations"]:
        assert set(entry) == {"movie_id", "title", "genres", "score", "rating", "because"}
        assert all(set(r) == {"movie_id", "title", "rating"} for r in entry["because"])
    assert all("because" not in e for e in similar["recommendations"])
    assert bad["error"]["field"] == "novelty"
