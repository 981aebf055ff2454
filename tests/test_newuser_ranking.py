"""The new-user ranking evaluation: who is held out, what is given, the co-occurrence cosine,
the list metric, and a tiny end-to-end run of the report path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import GENRES, synthetic_movies, synthetic_ratings
from train import newusers
from train.data import Dataset
from train.data.interactions import Interactions
from train.evaluation.newuser_ranking import (
    BY_RATING,
    OURS,
    RankingConfig,
    evaluate_ranking,
    hold_out_users,
    list_scores,
    sample_given,
)
from train.evaluation.ranking import list_hits
from train.fitting.settings import RankerTrainConfig
from train.peers import CooccurrenceCosine


def test_held_out_users_are_disjoint_seeded_and_eligible(ratings):
    counts = ratings.groupby("user_id").size()
    others, held = hold_out_users(ratings, 0.25, 12, seed=3)
    assert len(others) + len(held) == len(ratings)
    assert not set(others["user_id"]) & set(held["user_id"])
    assert held["user_id"].nunique() == round(0.25 * (counts >= 12).sum())
    assert (counts[held["user_id"].unique()] >= 12).all()
    again, held_again = hold_out_users(ratings, 0.25, 12, seed=3)
    assert held_again.equals(held) and again.equals(others)
    _, other_seed = hold_out_users(ratings, 0.25, 12, seed=4)
    assert set(other_seed["user_id"]) != set(held["user_id"])
    with pytest.raises(ValueError, match="no users held out"):
        hold_out_users(ratings, 0.25, 10_000, seed=0)


def test_given_ratings_are_a_seeded_sample_of_each_user(ratings):
    given, rest = sample_given(ratings, np.random.default_rng(0), count=5)
    assert (given.groupby("user_id").size() == 5).all()
    assert len(given) + len(rest) == len(ratings)
    pairs = lambda f: set(zip(f["user_id"], f["movie_id"]))
    assert pairs(given) | pairs(rest) == pairs(ratings) and not pairs(given) & pairs(rest)
    again, _ = sample_given(ratings, np.random.default_rng(0), count=5)
    assert again.equals(given)
    other, _ = sample_given(ratings, np.random.default_rng(1), count=5)
    assert pairs(other) != pairs(given)
    # Not the first ratings in time or file order: a random sample.
    first = ratings.sort_values(["user_id", "timestamp"]).groupby("user_id").head(5)
    assert pairs(given) != pairs(first)


def test_a_share_is_rounded_and_every_user_keeps_one_on_each_side():
    frame = pd.DataFrame(
        {"user_id": [1] * 10 + [2] * 3 + [3] * 2, "movie_id": range(15), "rating": 4.0}
    )
    given, rest = sample_given(frame, np.random.default_rng(0), share=0.8)
    assert given.groupby("user_id").size().to_dict() == {1: 8, 2: 2, 3: 1}
    assert rest.groupby("user_id").size().to_dict() == {1: 2, 2: 1, 3: 1}
    with pytest.raises(ValueError, match="exactly one"):
        sample_given(frame, np.random.default_rng(0), count=2, share=0.5)


def test_cooccurrence_cosine_on_a_hand_checked_matrix():
    # Users x movies, 0/1:  u0: 0 1 .   u1: 0 1 2   u2: . . 2   (movie 3 nobody rated)
    users = np.array([0, 0, 1, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2, 2])
    stars = np.array([5.0, 1.0, 3.0, 4.0, 2.0, 5.0])  # ignored: co-occurrence is 0/1
    cosine = CooccurrenceCosine().fit(Interactions(users, items, stars, 3, 4))
    s = cosine.similar(np.array([0, 2, 3])).numpy()
    r = 1 / np.sqrt(2 * 2)
    expected = [[1.0, 1.0, r, 0.0], [r, r, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    np.testing.assert_allclose(s, expected, rtol=1e-6)


def test_list_hits_counts_hits_against_each_users_relevant_movies():
    lists = np.array([[1, 2, 3], [4, 5, -1], [1, 2, 3]])
    relevant = [np.array([2, 3, 9, 8]), np.array([7]), np.array([], dtype=np.int64)]
    out = list_hits(lists, relevant, k=3)
    assert out["users"] == 2  # the third has nothing relevant
    assert out["hit_rate@3"] == pytest.approx(0.5)
    assert out["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["recall@3"] == pytest.approx((2 / 3 + 0 / 1) / 2)


def test_list_scores_rank_the_list_first_in_its_order():
    scores = list_scores(np.array([[2, 0, -1]]), 4)
    assert torch.topk(scores, 2).indices.tolist() == [[2, 0]]
    assert torch.isinf(scores[0, [1, 3]]).all()


def test_a_tiny_run_writes_the_ranking_report(tmp_path, monkeypatch, capsys):
    dataset = Dataset(
        "synthetic-newusers",
        synthetic_ratings(num_users=60, density=0.6),
        synthetic_movies(),
        GENRES,
        (1.0, 5.0),
        Path("unused"),
    )
    monkeypatch.setattr(newusers.data, "load", lambda name, data_dir: dataset)
    config = RankingConfig(given=4, min_targets=6, test_users=0.2, validation=0.1, seed=0)
    result = evaluate_ranking(
        dataset,
        config,
        RankerTrainConfig(epochs=2, batch_size=16, l2_grid=(10.0,)),
        epochs=2,
        hidden_dims=[16],
    )
    assert result["held_out_users"] == 12
    assert list(result["settings"]) == ["4 given", "80% given"]
    for setting in result["settings"].values():
        assert list(setting["ranking"])[:2] == [OURS, BY_RATING]
        assert {"EASE", "EASE (rating-aware)", "iALS", "most popular"} <= set(setting["ranking"])
        for row in setting["ranking"].values():
            assert 0.0 <= row["recall@10"] <= 1.0 and 0.0 <= row["ndcg@10"] <= 1.0
            assert row["users"] > 0
        assert "item co-occurrence cosine" in setting["similar"]
        for row in setting["similar"].values():
            assert 0.0 <= row["precision@10"] <= row["hit_rate@10"] <= 1.0
    assert set(result["chosen"][OURS]) == {"l2", "deep_weight", "rating_weight", "epochs"}

    # The command-line path, ranking part only: Markdown on stdout and the figures as .json.
    out = tmp_path / "newusers.json"
    args = ["--dataset", "ml-100k", "--parts", "ranking", "--epochs", "2", "--json", str(out)]
    args += ["--ranking-given", "4", "--min-targets", "6", "--test-users", "0.2"]
    assert newusers.main(args) == 0
    report = json.loads(out.read_text())
    assert report["runs"] == [] and len(report["ranking"]["runs"]) == 1
    assert set(report["ranking"]["aggregate"]) == {"4 given", "80% given"}
    # Both say how they were made: the command, commit, machine and date.
    made = report["provenance"]
    assert report["command"].startswith("python -m train.newusers --dataset ml-100k")
    assert {"git_commit", "git_dirty", "machine", "created", "torch"} <= set(made) and report["cpu"]
    printed = capsys.readouterr().out
    assert "## How it was made" in printed and f"- date: {made['created']}" in printed
    assert f"- command: `{report['command']}`" in printed
