"""Ranking metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.ranking import popularity_scorer, ranking_metrics


def _metrics(scores: np.ndarray, k: int = 2):
    # User 0 rated item 0 in training; held out: item 1 (5 stars), item 2 (4), item 3 (2).
    # User 1 has nothing relevant held out, so it is not counted.
    table = torch.from_numpy(scores.astype(np.float32))
    return ranking_metrics(
        lambda users: table[torch.from_numpy(users)],
        train_users=np.array([0]),
        train_items=np.array([0]),
        test_users=np.array([0, 0, 0, 1]),
        test_items=np.array([1, 2, 3, 0]),
        test_ratings=np.array([5.0, 4.0, 2.0, 3.0]),
        num_users=2,
        num_items=5,
        k=k,
    )


def test_perfect_ranking_scores_one():
    # The training item 0 scores highest but must be skipped.
    m = _metrics(np.array([[9, 8, 7, 1, 0], [0, 0, 0, 0, 0]]))
    assert m == {"recall@2": 1.0, "ndcg@2": 1.0, "users": 1}


def test_one_hit_in_second_place():
    m = _metrics(np.array([[9, 1, 7, 0, 8], [0, 0, 0, 0, 0]]))  # top-2: item 4, item 2
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_popularity_counts_training_ratings():
    scorer = popularity_scorer(np.array([2, 2, 0]), num_items=3)
    assert scorer(np.array([0, 1])).tolist() == [[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]]
