"""Recommender: top-K over the catalogue, excluding what the user rated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from model.recommender import Recommender
from model.vocab import Vocabulary


def test_top_k_is_the_best_unrated_items(artifact_dir):
    rec = Recommender.from_artifact(artifact_dir)
    users = np.arange(rec.vocab.num_users)
    items, scores = rec.top_k_indices(users, 5)
    all_scores = rec.model.score_all(torch.from_numpy(users)).numpy()
    for u in users:
        rated = set(rec.vocab.rated_by(u).tolist())
        unrated = [i for i in range(rec.vocab.num_items) if i not in rated]
        expected = sorted(unrated, key=lambda i: -all_scores[u, i])[:5]
        assert items[u].tolist()[: len(expected)] == expected
        assert not rated & set(items[u].tolist())
        assert np.all(np.diff(scores[u][np.isfinite(scores[u])]) <= 0)


def test_top_k_pads_when_the_user_rated_almost_everything(artifact_dir, movies):
    rec = Recommender.from_artifact(artifact_dir)
    # A user who rated every movie but two: only those two can come back.
    ratings = pd.DataFrame({"user_id": 1, "movie_id": movies.movie_id[2:], "rating": 4.0})
    rec.vocab = Vocabulary.build(
        pd.concat([ratings, pd.DataFrame({"user_id": [2], "movie_id": [11], "rating": [3.0]})]),
        movies,
        rec.vocab.genre_names,
    )
    rec.model.user_vectors.data = rec.model.user_vectors.data[:2]
    items, scores = rec.top_k_indices(np.array([0]), 5)
    assert sorted(items[0, :2].tolist()) == [0, 1]
    assert items[0, 2:].tolist() == [-1, -1, -1] and np.isnan(scores[0, 2:]).all()


def test_predict_matches_the_model(artifact_dir):
    rec = Recommender.from_artifact(artifact_dir)
    users, items = np.array([0, 1, 2]), np.array([3, 4, 5])
    expected = rec.model(torch.from_numpy(users), torch.from_numpy(items)).detach().numpy()
    assert np.allclose(rec.predict_indices(users, items), expected)
    assert rec.predict_indices(np.array([], int), np.array([], int)).shape == (0,)
