"""Integration: a split-trained archive, served by a real TorchServe (free ports, always
stopped), ranks over HTTP exactly as the offline evaluation ranks the same model.

The artifact's vocabulary holds the training part only, so the server excludes from a user's
top-10 what :func:`model.ranking.ranking_metrics` excludes (their training movies) and the
held-out movies stay candidates: Recall@10 and NDCG@10 computed from the HTTP answers equal
the offline figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from client import MovieRecClient
from loadtest.server import ServerError, local_torchserve
from model import artifact, data
from model.datasets.synthetic import SyntheticConfig, generate
from model.experiment import prepare
from model.ranking import ranking_metrics
from train import archive
from train import train as train_cli

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


def offline_ranking(dataset: data.Dataset, split: data.Split, artifact_dir: Path) -> dict:
    """``ranking_metrics`` of the saved model on the split it was trained on."""
    model, vocab, _ = artifact.load(artifact_dir)
    prepared = prepare(dataset, split)
    assert np.array_equal(prepared.vocab.user_ids, vocab.user_ids)
    assert np.array_equal(prepared.vocab.rated_items, vocab.rated_items)
    t, s = prepared.train, prepared.test
    with torch.no_grad():
        return ranking_metrics(
            lambda users: model.score_all(torch.from_numpy(users)),
            t.user_idx.numpy(),
            t.item_idx.numpy(),
            s.user_idx.numpy(),
            s.item_idx.numpy(),
            s.rating.numpy(),
            vocab.num_users,
            vocab.num_items,
            k=K,
        )


def test_served_top_10_reproduces_the_offline_recall(split_artifact, tmp_path):
    dataset, split, artifact_dir = split_artifact
    offline = offline_ranking(dataset, split, artifact_dir)
    relevant = split.test[split.test["rating"] >= 4.0].groupby("user_id")["movie_id"]
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    mar = archive.build(artifact_dir, tmp_path / "model_store")
    recalls, ndcgs = [], []
    try:
        with local_torchserve(mar.parent, ["movierec"], home=tmp_path / "ts") as server:
            api = MovieRecClient(server.url, key_file=server.key_file)
            for user_id, movies in relevant:
                wanted = set(movies.tolist())
                top = [r["movie_id"] for r in api.recommend(int(user_id), k=K)]
                hits = np.isin(top, list(wanted))
                ideal = min(K, len(wanted))
                recalls.append(hits.sum() / ideal)
                ndcgs.append((hits * discounts[: len(top)]).sum() / discounts[:ideal].sum())
    except ServerError as exc:
        pytest.fail(f"TorchServe did not start: {exc}")
    assert len(recalls) == offline["users"] > 50
    assert np.mean(recalls) == pytest.approx(offline[f"recall@{K}"], abs=1e-9)
    assert np.mean(ndcgs) == pytest.approx(offline[f"ndcg@{K}"], abs=1e-9)
    assert offline[f"recall@{K}"] > 0  # held-out movies are candidates, not excluded
