"""Integration: the refit on training + validation (``python -m train --refit-split``), the
model whose test figures ``python -m train.evaluate`` reports, served by a real TorchServe
(free ports, always stopped; :func:`loadtest.scenarios.served_ratings.compare`), predicts the
split's test pairs over HTTP with the RMSE and MAE its metrics.json records. The blend whose
weights vary with the user goes through the handler as one factor model."""

from __future__ import annotations

import pytest

from loadtest.scenarios.served_ratings import compare
from loadtest.server import ServerError
from model.errors import DataError
from train import data
from train import train as train_cli
from train.data.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.integration


def _train(root, out, *extra):
    argv = [
        *("--dataset", "synthetic-ratings", "--data-dir", str(root), "--output", str(out)),
        *("--preset", "full", "--epochs", "4", "--members", "2", "--hidden-dims", "16"),
        *("--kernel-dim", "0", "--seed", "0", "--no-ranker", "--quiet", *extra),
    ]
    assert train_cli.main(argv) == 0


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(
        SyntheticConfig(num_ratings=8_000, num_users=150, num_movies=400, chunk_ratings=4_000),
        root / "synthetic-ratings",
    )
    return root


def test_served_test_ratings_give_the_recorded_rmse(root, tmp_path):
    _train(root, tmp_path / "refit", "--refit-split")
    dataset = data.load("synthetic-ratings", root)
    split = data.random_split(dataset.ratings, 0.1, 0.1, seed=0)
    try:
        served, recorded = compare(tmp_path / "refit", split)
    except ServerError as exc:
        pytest.fail(f"TorchServe did not start: {exc}")
    assert served["pairs"] == len(split.test)
    # Each served rating is rounded to 4 decimals.
    assert served["rmse"] == pytest.approx(recorded["rmse"], abs=1e-4)
    assert served["mae"] == pytest.approx(recorded["mae"], abs=1e-4)


def test_an_artifact_that_holds_the_test_part_is_refused(root, tmp_path):
    _train(root, tmp_path / "all")
    dataset = data.load("synthetic-ratings", root)
    split = data.random_split(dataset.ratings, 0.1, 0.1, seed=0)
    with pytest.raises(DataError, match="holds all ratings"):
        compare(tmp_path / "all", split)
