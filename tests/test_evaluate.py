"""The evaluation report: the peers tuned on a tiny synthetic split, our ranking row, and the
full preset's row, the served blend, with its weights per seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.artifact import provenance
from tests.conftest import GENRES, synthetic_movies, synthetic_ratings
from train.data import Dataset
from train.evaluate import RANKING_METRICS, aggregate, curves_note, markdown, run_seed
from train.fitting.settings import PRESETS, preset_with

PEER_NAMES = ("most popular", "EASE", "EASE (rating-aware)", "iALS")


def _report(dataset, per_seed, seeds, command):
    meta = {
        "dataset": dataset.name,
        "protocol": per_seed[0]["protocol"],
        "seeds": seeds,
        "command": command,
        "cpu": "test",
        "provenance": provenance(),
        "seconds": 1.0,
    }
    return {"meta": meta, "aggregate": aggregate(per_seed), "per_seed": per_seed}


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

    report = _report(dataset, per_seed, [0, 1], "python -m train.evaluate --models peers")
    agg = report["aggregate"]
    assert set(agg["ranking"]) == set(PEER_NAMES)
    assert set(agg["ranking"]["EASE"]) >= {*RANKING_METRICS, "params", "fit_seconds"}
    assert len(agg["ranking"]["EASE"]["params"]) == 2  # one chosen setting per seed
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
    report = _report(dataset, per_seed, [0], "python -m train.evaluate --models fast ranker")
    json.dumps(report)
    assert "| movierec | " in markdown(report)


def test_the_full_preset_row_is_the_blend_with_the_mf_row_and_gives_its_weights(monkeypatch):
    # The full preset, made small: two members of 8 units, 3 epochs; the blend as it is.
    monkeypatch.setitem(PRESETS, "full", preset_with("full", members=2, hidden_dims=[8], epochs=3))
    dataset = Dataset(
        "synthetic-blend",
        synthetic_ratings(num_users=60, density=0.6),
        synthetic_movies(),
        GENRES,
        (1.0, 5.0),
        Path("unused"),
    )
    per_seed = [run_seed(dataset, 1, ["mf", "full"])]
    for run in per_seed:
        blend = run["blends"]["movierec (full preset)"]
        assert blend["components"] == ["item autoencoders (2 averaged)", "matrix factorization"]
        # The blended MF is the MF row's first fit: its settings and seed, the same split (to
        # float noise: MF training on more than one thread is not bit-reproducible).
        mf = run["models"]["matrix factorization"]
        alone = blend["component_scores"]["matrix factorization"]
        assert alone["validation"]["rmse"] == pytest.approx(mf["validation"]["rmse"], rel=1e-4)
        assert alone["test"]["rmse"] == pytest.approx(mf["selection_test"]["rmse"], rel=1e-4)
        # Test scores the refit on training + validation, not the first fit.
        for row in run["models"].values():
            assert row["test"]["rmse"] != row["selection_test"]["rmse"]
    report = _report(dataset, per_seed, [1], "python -m train.evaluate --models mf full --seeds 1")
    json.dumps(report)
    text = markdown(report)
    assert "**movierec (full preset)** serves a blend" in text
    assert "trained on the training part: test RMSE" in text
    assert "| matrix factorization |" in text and "| movierec (full preset) |" in text
    for seed, run in zip([1], per_seed):
        blend = run["blends"]["movierec (full preset)"]
        w_ae, w_mf = blend["weights"]
        assert f"| {seed} | {w_ae:.3f} | {w_mf:.3f} | {blend['intercept']:+.3f} |" in text


def test_the_curves_note_says_when_the_presets_train_different_networks():
    # ML-1M: fast is full's first member trained for fewer epochs; ML-100K: values chosen
    # there give each preset its own network and regularization.
    assert "fewer epochs" in curves_note("ml-1m")
    assert "different networks" in curves_note("ml-100k")
