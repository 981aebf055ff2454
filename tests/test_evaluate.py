"""The evaluation report's ranking rows: the peers tuned on a tiny synthetic split."""

from __future__ import annotations

import json
from pathlib import Path

from model.artifact import provenance
from tests.conftest import GENRES, synthetic_movies, synthetic_ratings
from train.data import Dataset
from train.evaluate import RANKING_METRICS, aggregate, markdown, run_seed

PEER_NAMES = ("most popular", "EASE", "EASE (rating-aware)", "iALS")


def test_peers_only_run_reports_every_peer_with_its_chosen_setting():
    dataset = Dataset(
        "synthetic-peers",
        synthetic_ratings(num_users=60, density=0.6),
        synthetic_movies(),
        GENRES,
        (1.0, 5.0),
        Path("unused"),
    )
    per_seed = [run_seed(dataset, seed, ["peers"]) for seed in (0, 1)]
    assert per_seed[0]["models"] == {}  # no rating model was trained
    assert tuple(per_seed[0]["ranking"]) == PEER_NAMES
    row = per_seed[0]["ranking"]["EASE (rating-aware)"]
    assert set(row["params"]) == {"l2", "low_weight"}
    assert set(per_seed[0]["ranking"]["iALS"]["params"]) == {"factors", "regularization", "alpha"}
    assert all(0.0 <= row[m] <= 100.0 for m in RANKING_METRICS)
    assert row["validation"]["ndcg@10"] == max(g["ndcg@10"] for g in row["grid"])

    agg = aggregate(per_seed)
    assert set(agg["ranking"]) == set(PEER_NAMES)
    assert set(agg["ranking"]["EASE"]) >= {*RANKING_METRICS, "params", "fit_seconds"}
    assert len(agg["ranking"]["EASE"]["params"]) == 2  # one chosen setting per seed
    meta = {
        "dataset": dataset.name,
        "protocol": per_seed[0]["protocol"],
        "seeds": [0, 1],
        "command": "python -m train.evaluate --models peers",
        "cpu": "test",
        "provenance": provenance(),
        "seconds": 1.0,
    }
    report = {"meta": meta, "aggregate": agg, "per_seed": per_seed}
    json.dumps(report)  # the .json is written from this
    text = markdown(report)
    for name in PEER_NAMES:
        assert f"| {name} |" in text
    assert "| model | test RMSE" not in text and "learning curves" not in text
    assert "Recall@20" in text and "coverage@10" in text


def test_our_ranker_is_a_ranking_row_beside_the_order_by_predicted_rating():
    dataset = Dataset(
        "synthetic-ranker",
        synthetic_ratings(num_users=60, density=0.6),
        synthetic_movies(),
        GENRES,
        (1.0, 5.0),
        Path("unused"),
    )
    per_seed = [run_seed(dataset, 0, ["fast", "ranker"])]
    rows = per_seed[0]["ranking"]
    assert tuple(rows) == ("movierec", "movierec, by predicted rating", "most popular")
    ours = rows["movierec"]
    assert set(ours["params"]) == {"l2", "deep_weight", "rating_weight", "epochs"}
    assert 1 <= ours["params"]["epochs"] <= len(ours["history"])
    assert all(0.0 <= ours[m] <= 100.0 for m in RANKING_METRICS)
    # The chosen blend is the best of its grid on validation.
    assert ours["validation"]["ndcg@10"] == max(g["ndcg@10"] for g in ours["grid"]["weights"])
    report = {
        "meta": {
            "dataset": dataset.name,
            "protocol": per_seed[0]["protocol"],
            "seeds": [0],
            "command": "python -m train.evaluate --models fast ranker",
            "cpu": "test",
            "provenance": provenance(),
            "seconds": 1.0,
        },
        "aggregate": aggregate(per_seed),
        "per_seed": per_seed,
    }
    json.dumps(report)
    assert "| movierec | " in markdown(report)
