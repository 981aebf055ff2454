"""Integration: a split-trained archive, served by a real TorchServe (free ports, always
stopped; :func:`loadtest.scenarios.served_ranking.compare`), ranks over HTTP exactly as the offline
evaluation ranks the same model: the ranking model's lists under the reports' protocol
(training and validation movies excluded, the latter by the request's exclude_movie_ids), and
the lists by predicted rating (``rank_by`` "rating", training movies excluded), and the ranking
model's lists at a novelty above 0.

The artifact's vocabulary holds the training part only, so the server excludes from a user's
top-10 what :func:`train.evaluation.ranking.ranking_metrics` excludes and the held-out movies stay
candidates: Recall@10 and NDCG@10 computed from the HTTP answers equal the offline figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.scenarios.served_ranking import compare
from loadtest.server import ServerError
from train import data
from train import train as train_cli
from train.data.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.integration

K = 10


@pytest.fixture(scope="module")
def split_artifact(tmp_path_factory) -> tuple[data.Dataset, data.Split, Path]:
    """A one-member model trained for a few epochs on a random 80/10/10 split of small
    MovieLens-shaped data, saved with ``--keep-split``."""
    root = tmp_path_factory.mktemp("data")
    generate(
        SyntheticConfig(num_ratings=8_000, num_users=150, num_movies=400, chunk_ratings=4_000),
        root / "synthetic-served",
    )
    out = tmp_path_factory.mktemp("artifact") / "split"
    argv = [
        *("--dataset", "synthetic-served", "--data-dir", str(root), "--output", str(out)),
        *("--preset", "fast", "--epochs", "4", "--members", "1", "--hidden-dims", "32"),
        *("--seed", "0", "--keep-split", "--quiet"),
    ]
    assert train_cli.main(argv) == 0
    dataset = data.load("synthetic-served", root)
    return dataset, data.random_split(dataset.ratings, 0.1, 0.1, seed=0), out


def test_served_top_10_reproduces_the_offline_recall(split_artifact):
    dataset, split, artifact_dir = split_artifact
    try:
        results = compare(artifact_dir, dataset, split, K, novelties=(0.0, 0.75))
    except ServerError as exc:
        pytest.fail(f"TorchServe did not start: {exc}")
    assert set(results) == {"rating", "ranking", "ranking, novelty 0.75"}
    # Less obvious lists are other lists: the check below is not of one list twice.
    assert results["ranking, novelty 0.75"][1] != results["ranking"][1]
    for served, offline in results.values():
        assert served["users"] == offline["users"] > 50
        assert served[f"recall@{K}"] == pytest.approx(offline[f"recall@{K}"], abs=1e-9)
        assert served[f"ndcg@{K}"] == pytest.approx(offline[f"ndcg@{K}"], abs=1e-9)
        assert offline[f"recall@{K}"] > 0  # held-out movies are candidates, not excluded
