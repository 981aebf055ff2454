"""The dense-index layer (model.scoring.Scorer): top-K over the catalogue excluding what the
user rated, new users' vectors, similar movies; and through the Recommender that holds it,
popularity and filters (tests/test_seam.py has more of the raw-id seam the handler calls)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from model import artifact
from model.filtering import NO_FILTER, MovieFilter
from model.popularity import bayesian_average
from model.recommender import Recommender
from model.scoring import Scorer
from model.vocab import Vocabulary


def test_top_k_is_the_best_unrated_items(artifact_dir):
    scorer = Scorer.from_artifact(artifact_dir)
    users = np.arange(scorer.vocab.num_users)
    items, scores = scorer.top_k_indices(users, 5, rank_by="rating")
    all_scores = scorer.model.score_all(torch.from_numpy(users)).numpy()
    for u in users:
        rated = set(scorer.vocab.rated_by(u).tolist())
        unrated = [i for i in range(scorer.vocab.num_items) if i not in rated]
        expected = sorted(unrated, key=lambda i: -all_scores[u, i])[:5]
        assert items[u].tolist()[: len(expected)] == expected
        assert not rated & set(items[u].tolist())
        assert np.all(np.diff(scores[u][np.isfinite(scores[u])]) <= 0)


def test_top_k_pads_when_the_user_rated_almost_everything(artifact_dir, movies):
    scorer = Scorer.from_artifact(artifact_dir)
    # A user who rated every movie but two: only those two can come back.
    ratings = pd.DataFrame({"user_id": 1, "movie_id": movies.movie_id[2:], "rating": 4.0})
    scorer.vocab = Vocabulary.build(
        pd.concat([ratings, pd.DataFrame({"user_id": [2], "movie_id": [11], "rating": [3.0]})]),
        movies,
        scorer.vocab.genre_names,
    )
    scorer.model.user_vectors.data = scorer.model.user_vectors.data[:2]
    items, scores = scorer.top_k_indices(np.array([0]), 5)
    assert sorted(items[0, :2].tolist()) == [0, 1]
    assert items[0, 2:].tolist() == [-1, -1, -1] and np.isnan(scores[0, 2:]).all()


def test_top_k_ranks_by_the_ranking_model_from_the_users_rated_history(artifact_dir):
    scorer = Scorer.from_artifact(artifact_dir)
    assert scorer.ranker is not None
    users = np.arange(scorer.vocab.num_users)
    items, scores = scorer.top_k_indices(users, 5)
    histories = scorer.ranker.histories(
        [scorer.vocab.rated_by(u) for u in users],
        [scorer.vocab.rated_stars(np.arange(*scorer.vocab.rated_indptr[u : u + 2])) for u in users],
    )
    expected = scorer.ranker.scores(histories, scorer.model.score_all(torch.from_numpy(users)))
    for u in users:
        rated = scorer.vocab.rated_by(u)
        row = expected[u].clone()
        row[torch.from_numpy(rated.astype(np.int64))] = -torch.inf
        assert items[u].tolist() == torch.topk(row, 5).indices.tolist()
        assert np.allclose(scores[u], torch.topk(row, 5).values.numpy())
        assert not set(rated.tolist()) & set(items[u].tolist())


def test_a_model_without_ranker_orders_by_rating_whatever_is_asked(artifact_dir):
    scorer = Scorer.from_artifact(artifact_dir)
    scorer.ranker = None
    users = np.arange(4)
    assert np.array_equal(
        scorer.top_k_indices(users, 5)[0], scorer.top_k_indices(users, 5, rank_by="rating")[0]
    )
    with pytest.raises(ValueError, match="rank_by"):
        scorer.top_k_indices(users, 5, rank_by="stars")


def test_predict_matches_the_model(artifact_dir):
    scorer = Scorer.from_artifact(artifact_dir)
    users, items = np.array([0, 1, 2]), np.array([3, 4, 5])
    expected = scorer.model(torch.from_numpy(users), torch.from_numpy(items)).detach().numpy()
    assert np.allclose(scorer.predict_indices(users, items), expected)
    assert scorer.predict_indices(np.array([], int), np.array([], int)).shape == (0,)


def test_top_k_of_a_users_own_vector_matches_top_k_of_the_user(artifact_dir):
    scorer = Scorer.from_artifact(artifact_dir)
    users = np.array([0, 3, 5])
    vectors, biases = (
        scorer.model.user_vectors[users].detach(),
        scorer.model.user_bias[users].detach(),
    )
    rated = [scorer.vocab.rated_by(u) for u in users]
    stars = [
        scorer.vocab.rated_stars(np.arange(*scorer.vocab.rated_indptr[u : u + 2])) for u in users
    ]
    for rank_by in ("ranking", "rating"):
        items, scores = scorer.top_k_vectors(
            vectors, biases, rated, 4, stars=stars, rank_by=rank_by
        )
        expected_items, expected_scores = scorer.top_k_indices(users, 4, rank_by=rank_by)
        assert np.array_equal(items, expected_items)
        assert np.allclose(scores, expected_scores, equal_nan=True)
    pairs = scorer.predict_vectors(vectors, biases, np.array([0, 2]), np.array([7, 8]))
    assert np.allclose(pairs, scorer.predict_indices(np.array([0, 5]), np.array([7, 8])))


def test_similar_movies_find_a_planted_duplicate(artifact_dir):
    model, vocab, config = artifact.load(artifact_dir)
    with torch.no_grad():
        model.item_codes[17] = model.item_codes[4]
    scorer = Scorer(model, vocab, config)
    items, scores = scorer.similar_indices(np.array([4, 17, 9]), 3)
    assert items[0, 0] == 17 and items[1, 0] == 4
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert 9 not in items[2].tolist()  # never the movie itself
    assert np.all(np.diff(scores, axis=1) <= 0) and np.all(scores <= 1 + 1e-6)


def test_bayesian_average_prefers_many_good_ratings_over_one_perfect_one():
    count = np.array([1, 100, 100, 0, 20])
    mean = np.array([5.0, 4.5, 2.0, 0.0, 4.5])
    scores = bayesian_average(count, mean, prior_count=10)
    global_mean = (5 + 450 + 200 + 90) / 221
    assert np.argsort(-scores).tolist() == [1, 4, 0, 3, 2]
    assert scores[3] == pytest.approx(global_mean)  # no ratings: the catalogue's mean
    assert scores[0] == pytest.approx((10 * global_mean + 5) / 11)
    # The default prior weight is the median count of rated movies (here 60).
    assert bayesian_average(count, mean)[0] == pytest.approx((60 * global_mean + 5) / 61)


def test_popular_ranks_by_bayesian_average(artifact_dir):
    rec = Recommender.from_artifact(artifact_dir)
    first, second = rec.recommend([10**9, 10**9 + 1], 5, fallback="popular")
    expected = bayesian_average(rec.vocab.rating_count, rec.vocab.rating_mean)
    scores = np.array([m.score for m in first.movies])
    items = rec.vocab.item_index(np.array([m.movie_id for m in first.movies]))
    # Scores, not items: movies with equal counts and means tie.
    assert np.allclose(scores, np.sort(expected)[::-1][:5])
    assert np.allclose(expected[items], scores)
    assert first == second and first.fallback == "popular" and not first.user_known
    assert all(m.rating is None for m in first.movies)  # a chart has no user to rate for
    rec.scorer.popularity = None  # as with a vocabulary saved before rating statistics
    (refused,) = rec.recommend([10**9], 5, fallback="popular")
    assert refused.movies == () and refused.fallback is None and "retrain" in refused.fallback_error


def test_filters_keep_and_drop_genres_and_movies(artifact_dir):
    rec = Recommender.from_artifact(artifact_dir)
    genres = rec.vocab.genres.astype(bool)  # (N, 3): Action, Comedy, Drama
    ids = rec.vocab.movie_ids
    filters = [
        MovieFilter(genres=("Action", "Drama")),
        MovieFilter(exclude_genres=("Comedy",)),
        # Raw ids; one the model does not know excludes nothing.
        MovieFilter(("Action",), ("Drama",), (int(ids[1]), int(ids[3]), 99999)),
        NO_FILTER,
    ]
    keep = [
        genres[:, 0] | genres[:, 2],
        ~genres[:, 1],
        genres[:, 0] & ~genres[:, 2] & ~np.isin(np.arange(rec.vocab.num_items), [1, 3]),
        np.ones(rec.vocab.num_items, bool),
    ]
    users = np.array([0, 1, 2, 3])
    items, scores = rec.scorer.top_k_indices(users, rec.vocab.num_items, filters, rank_by="rating")
    all_scores = rec.scorer.model.score_all(torch.from_numpy(users)).numpy()
    for row, u in enumerate(users):
        eligible = keep[row] & ~np.isin(np.arange(rec.vocab.num_items), rec.vocab.rated_by(u))
        got = items[row][items[row] >= 0]
        assert set(got.tolist()) == set(np.flatnonzero(eligible).tolist())
        assert np.allclose(scores[row][: len(got)], all_scores[u, got])
    (popular,) = rec.recommend([10**9], 30, MovieFilter(genres=("Comedy",)), fallback="popular")
    got = rec.vocab.item_index(np.array([m.movie_id for m in popular.movies]))
    assert set(got.tolist()) == set(np.flatnonzero(genres[:, 1]).tolist())
    with pytest.raises(ValueError, match="Western"):
        rec.scorer.top_k_indices(users[:1], 5, [MovieFilter(genres=("Western",))])
