"""Test RMSE of a split-trained archive, over HTTP, beside the figures it was reported with.

    python -m train --split u1 --refit-split --output artifacts/u1-refit
    python -m loadtest.scenarios.served_ratings --artifact artifacts/u1-refit --split u1

Builds the artifact's .mar in a temporary folder, serves it with a private TorchServe on free
ports (:mod:`loadtest.server`, always stopped), asks for the predicted rating of every test pair
of the split (``{"pairs": ...}`` requests of up to 10,000 pairs, the handler's limit) and
computes RMSE and MAE from the answers; then the figures the artifact's metrics.json records
for the same test part: those of the refit on the training and validation parts
(``--refit-split``: the model whose test figures ``python -m train.evaluate`` reports) or of
the model trained on the training part (``--keep-split``). The server rounds each rating to 4
decimals, which moves RMSE by well under 1e-4.

Pass the split options the artifact was trained with (they are checked against its
config.json); an artifact refit on all ratings holds the test part and is refused.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from client import MovieRecClient
from loadtest.server import ServerError, endpoints, local_torchserve
from model import artifact, console
from model.errors import DataError
from train import archive, data
from train.evaluation.metrics import mae, rmse
from train.train import make_split

log = logging.getLogger("loadtest.scenarios.served_ratings")

# What a split artifact holds (config.json's data.trained_on.ratings): the test part is not in it.
SPLIT_HOLDINGS = ("split train part", "split train and validation parts")
BATCH = 10_000  # pairs per request: the handler's default max_pairs


def http_ratings(api: MovieRecClient, test: pd.DataFrame, batch: int = BATCH) -> np.ndarray:
    """The served predictions of every ``(user_id, movie_id)`` of ``test``, in order."""
    pairs = test[["user_id", "movie_id"]].to_numpy().tolist()
    out: list[float] = []
    for start in range(0, len(pairs), batch):
        out += api.ratings([tuple(p) for p in pairs[start : start + batch]])
    return np.asarray(out, dtype=np.float64)


def reported(metrics: dict) -> dict:
    """The test figures metrics.json records for the saved model: its own for a refit on the
    training and validation parts, the selection run's model's for a --keep-split one."""
    refit = metrics.get("refit")
    if refit is not None:
        return refit["scores"]["test"]
    ours = [name for name in metrics["results"] if name.startswith("movierec")]
    return metrics["results"][ours[0]]["test"]


def compare(artifact_dir: str | Path, split: data.Split) -> tuple[dict, dict]:
    """``(served, reported)``: RMSE and MAE of the served predictions of ``split``'s test part,
    and those metrics.json records. Raises ``DataError`` when the artifact holds the test part
    or was trained on another split."""
    folder = Path(artifact_dir)
    config = json.loads((folder / artifact.CONFIG).read_text())
    held = config["data"].get("trained_on", {}).get("ratings", "unknown ratings")
    if held not in SPLIT_HOLDINGS or config["data"]["split"] != split.protocol:
        raise DataError(
            f"{artifact_dir} holds {held} of split {config['data']['split']!r}, which is not "
            f"a model of {split.protocol!r} without its test part: train it with --refit-split "
            "(or --keep-split) and the same split options"
        )
    metrics = json.loads((folder / artifact.METRICS).read_text())
    with tempfile.TemporaryDirectory(prefix="movierec-ratings-") as tmp:
        mar, _ = archive.build_endpoints(folder, Path(tmp) / "model_store")
        with local_torchserve(mar.parent, *endpoints(mar), home=Path(tmp) / "ts") as server:
            api = MovieRecClient(server.url, key_file=server.key_file)
            predicted = http_ratings(api, split.test)
    actual = split.test["rating"].to_numpy(np.float64)
    served = {"rmse": rmse(predicted, actual), "mae": mae(predicted, actual), "pairs": len(actual)}
    return served, reported(metrics)


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.served_ratings", __doc__)
    p.add_argument("--artifact", required=True, help="folder written by python -m train")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--split", default="random", choices=["random", "u1"])
    p.add_argument("--test", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--validation", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--seed", type=int, default=0, help="as given to python -m train")
    args = p.parse_args(argv)
    try:
        dataset = data.load(args.dataset, args.data_dir)
        served, recorded = compare(args.artifact, make_split(dataset, args))
    except (DataError, ServerError) as exc:
        log.error("%s", exc)
        return 1
    print(f"{dataset.name}, split {args.split} (seed {args.seed}), {served['pairs']} test pairs")
    print("| figures | test RMSE | test MAE |\n|---|---|---|")
    print(f"| served over HTTP | {served['rmse']:.6f} | {served['mae']:.6f} |")
    print(f"| metrics.json of the artifact | {recorded['rmse']:.6f} | {recorded['mae']:.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
