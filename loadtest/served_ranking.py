"""Top-K ranking of a split-trained archive, over HTTP, beside the offline figures.

    python -m train --split u1 --keep-split --output artifacts/u1
    python -m loadtest.served_ranking --artifact artifacts/u1 --split u1

Builds the artifact's .mar in a temporary folder, serves it with a private TorchServe on free
ports (:mod:`loadtest.server`, always stopped), asks for the top-K of every test user with a
relevant movie (held-out rating >= 4) ordered by predicted rating (``"rank_by": "rating"``:
the rating model, whatever ranking model the archive also holds), and computes Recall@K and
NDCG@K from the answers as :func:`model.ranking.ranking_metrics` does; then the offline figures
of the same rating model on the same split. Pass the split options the artifact was trained
with (they are checked against its config.json). With ``--keep-split`` the artifact holds only
the training part, so the server excludes what the offline metric excludes and the two agree;
a refit artifact holds the test ratings and is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from client import MovieRecClient
from loadtest.server import ServerError, local_torchserve
from model import artifact, data
from model.errors import DataError
from model.experiment import prepare
from model.ranking import ranking_metrics
from train import archive
from train.train import make_split

log = logging.getLogger("loadtest.served_ranking")


def http_ranking(
    api: MovieRecClient, test: pd.DataFrame, k: int = 10, threshold: float = 4.0
) -> dict[str, float]:
    """Recall@k and NDCG@k of the served top-k by predicted rating of every user of ``test``
    (raw ids) with a rating >= ``threshold``, one request per user, as
    :func:`ranking_metrics` defines them."""
    relevant = test[test["rating"] >= threshold].groupby("user_id")["movie_id"]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for user_id, movies in relevant:
        top = [r["movie_id"] for r in api.recommend(int(user_id), k=k, rank_by="rating")]
        hits = np.isin(top, movies.to_numpy())
        ideal = min(k, len(movies))
        recalls.append(hits.sum() / ideal)
        ndcgs.append((hits * discounts[: len(top)]).sum() / discounts[:ideal].sum())
    return {
        f"recall@{k}": float(np.mean(recalls)),
        f"ndcg@{k}": float(np.mean(ndcgs)),
        "users": len(recalls),
    }


def offline_ranking(
    artifact_dir: str | Path, dataset: data.Dataset, split: data.Split, k: int = 10
) -> dict[str, float]:
    """:func:`ranking_metrics` of the artifact's rating model on ``split`` (training movies
    excluded)."""
    model, vocab, _ = artifact.load(artifact_dir)
    prepared = prepare(dataset, split)
    if not np.array_equal(prepared.vocab.user_ids, vocab.user_ids):
        raise DataError(f"{artifact_dir}: its users are not those of {dataset.name}")
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
            k=k,
            # Only the top k, as the server takes it: predicted ratings tie at the top of the
            # scale, and a deeper torch.topk may order tied movies differently (same Recall@k,
            # another NDCG@k).
            recall_at=(),
        )


def compare(artifact_dir: str | Path, dataset: data.Dataset, split: data.Split, k: int = 10):
    """``(served, offline)`` ranking figures of a split-trained artifact on ``split``.

    Raises ``DataError`` when the artifact was not trained on that split's training part."""
    config = json.loads((Path(artifact_dir) / artifact.CONFIG).read_text())
    held = config["data"].get("trained_on", {})
    if held.get("ratings") != "split train part" or config["data"]["split"] != split.protocol:
        raise DataError(
            f"{artifact_dir} holds {held.get('ratings', 'unknown ratings')} of split "
            f"{config['data']['split']!r}, not the training part of {split.protocol!r}: "
            "train it with --keep-split and the same split options"
        )
    with tempfile.TemporaryDirectory(prefix="movierec-ranking-") as tmp:
        mar = archive.build(artifact_dir, Path(tmp) / "model_store")
        with local_torchserve(mar.parent, ["movierec"], home=Path(tmp) / "ts") as server:
            api = MovieRecClient(server.url, key_file=server.key_file)
            served = http_ranking(api, split.test, k)
    return served, offline_ranking(artifact_dir, dataset, split, k)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    p = argparse.ArgumentParser(
        prog="python -m loadtest.served_ranking",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--artifact", required=True, help="folder written by python -m train")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--split", default="random", choices=["random", "u1"])
    p.add_argument("--test", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--validation", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--seed", type=int, default=0, help="as given to python -m train")
    p.add_argument("-k", type=int, default=10)
    args = p.parse_args(argv)
    try:
        dataset = data.load(args.dataset, args.data_dir)
        split = make_split(dataset, args)
        served, offline = compare(args.artifact, dataset, split, args.k)
    except (DataError, ServerError) as exc:
        log.error("%s", exc)
        return 1
    key_r, key_n = f"recall@{args.k}", f"ndcg@{args.k}"
    print(f"{dataset.name}, split {split.protocol}, {served['users']} test users")
    print(f"| ranking | Recall@{args.k} | NDCG@{args.k} |\n|---|---|---|")
    for name, row in (("served over HTTP", served), ("offline (ranking_metrics)", offline)):
        print(f"| {name} | {row[key_r]:.4f} | {row[key_n]:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
