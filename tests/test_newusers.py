"""The new-user evaluation: who is held out, what is given and predicted, and a tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tests.conftest import GENRES
from train.data import Dataset
from train.evaluation.newusers import (
    NewUserConfig,
    evaluate_new_users,
    format_table,
    split_users,
    summarize,
)

CONFIG = NewUserConfig(given=(3, 5), test_users=0.25, min_targets=3, preset="fast", seed=0)


def test_test_users_are_split_in_time_order(ratings):
    others, history, targets = split_users(ratings, CONFIG)
    test_users = set(history["user_id"])
    assert test_users == set(targets["user_id"])
    assert not test_users & set(others["user_id"])
    assert len(others) + len(history) + len(targets) == len(ratings)
    counts = ratings.groupby("user_id").size()
    eligible = (counts >= 5 + 3).sum()
    assert len(test_users) == round(0.25 * eligible)
    for user, given in history.groupby("user_id"):
        assert given["position"].tolist() == list(range(5))
        later = targets[targets["user_id"] == user]
        assert len(later) >= 3 and given["timestamp"].max() <= later["timestamp"].min()


def test_a_tiny_run_reports_every_figure(ratings, movies):
    dataset = Dataset("synthetic-test", ratings, movies, GENRES, (1.0, 5.0), Path("."))
    config = NewUserConfig(**{**CONFIG.__dict__, "ridges": (0.5, 2.0)})
    result = evaluate_new_users(dataset, config, epochs=2, hidden_dims=[16])
    assert [row["given"] for row in result["rows"]] == [3, 5]
    for row in result["rows"]:
        figures = [*row["fold_in_rmse"].values(), row["trained_rmse"], row["bias_baseline_rmse"]]
        assert all(math.isfinite(x) and 0 < x < 4 for x in figures)
        assert set(row["fold_in_rmse"]) == {"0.5", "2.0"}
    assert len({row["target_ratings"] for row in result["rows"]}) == 1  # same targets
    table = format_table(result)
    assert "| 3 |" in table and "fold-in RMSE (ridge 0.5)" in table
    assert np.isfinite(result["seconds"])


def test_several_seeds_are_summarized_with_their_range():
    def run(seed: int, shift: float) -> dict:
        row = {
            "given": 10,
            "test_users": 7,
            "target_ratings": 70,
            "fold_in_rmse": {"1.0": 0.9 + shift},
            "trained_rmse": 1.0 + shift,
            "bias_baseline_rmse": 0.95,
        }
        return {"dataset": "d", "preset": "fast", "seed": seed, "protocol": "p", "rows": [row]}

    table = summarize([run(0, 0.0), run(1, 0.1)])
    assert "seeds 0, 1" in table
    assert "| 10 | 7 | 0.9500 (0.9000-1.0000) | 1.0500 (1.0000-1.1000) |" in table
    assert table.endswith("| 0.9500 (0.9500-0.9500) | 1.000 |")  # fold-in / bias, of the means
    assert summarize([run(0, 0.0)]) == format_table(run(0, 0.0))


def test_without_retraining_the_trained_on_column_says_not_run(ratings, movies):
    dataset = Dataset("synthetic-test", ratings, movies, GENRES, (1.0, 5.0), Path("."))
    config = NewUserConfig(**{**CONFIG.__dict__, "retrain": False})
    result = evaluate_new_users(dataset, config, epochs=2, hidden_dims=[16])
    for row in result["rows"]:
        assert row["trained_rmse"] is None and math.isfinite(row["bias_baseline_rmse"])
    assert "| not run |" in format_table(result)
    assert "| not run |" in summarize([result, {**result, "seed": 1}])
