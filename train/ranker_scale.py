"""What the ranking model's training costs at a large catalogue (ML-25M's shape).

    python -m train.generate --ratings 25000000 --users 162541 --movies 59047 \
        --out data/synthetic-25m --seed 0                      # once: ML-25M's shape
    python -m train.ranker_scale --dataset synthetic-25m --batches 40

Times, on the dataset's whole ratings: building the history matrix; the item-item part's
closed form for one λ (on the DENSE_ITEM_ITEM_LIMIT most-rated movies past that size); and
``--batches`` optimizer steps of the deep part, from which one epoch's time is extrapolated
(steps per epoch x the mean step). Peak memory is the process's maximum resident set.
A full ``python -m train`` also searches λ (one closed form each) and scores validation every
epoch; those costs are the closed form's and a forward pass over the validation users.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from model import console
from model.errors import DataError
from model.ranker import Ranker, RankerConfig
from train import data
from train.data.interactions import Interactions
from train.fitting.ranker_training import (
    DENSE_ITEM_ITEM_LIMIT,
    PRUNED_NEIGHBORS,
    dense_rows,
    fit_item_item,
    history_matrix,
)
from train.fitting.settings import RankerTrainConfig

log = logging.getLogger("train.ranker_scale")


def peak_rss_gib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(dataset: data.Dataset, batches: int, l2: float = 800.0) -> dict:
    """The timings and peak memory described in the module docstring."""
    config = RankerTrainConfig()
    users = dataset.ratings["user_id"].to_numpy()
    movies = dataset.ratings["movie_id"].to_numpy()
    user_ids, user_idx = np.unique(users, return_inverse=True)
    movie_ids, item_idx = np.unique(movies, return_inverse=True)
    n_users, n_items = len(user_ids), len(movie_ids)
    started = time.perf_counter()
    model_config = RankerConfig(
        n_items, neighbors=0 if n_items <= DENSE_ITEM_ITEM_LIMIT else PRUNED_NEIGHBORS
    )
    ratings = Interactions(
        user_idx, item_idx, dataset.ratings["rating"].to_numpy(), n_users, n_items
    )
    x = history_matrix(ratings, model_config.low_weight)
    targets = history_matrix(ratings, model_config.target_low_weight)
    history_s = time.perf_counter() - started
    log.info("history matrices of %d users x %d movies in %.1f s", n_users, n_items, history_s)

    started = time.perf_counter()
    ranker = Ranker(model_config)
    ranker.set_item_item(*fit_item_item(x, l2))
    item_item_s = time.perf_counter() - started
    log.info("item-item closed form (one λ) in %.1f s", item_item_s)

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(ranker.dae.parameters(), lr=config.learning_rate)
    order = np.random.default_rng(0).permutation(n_users)
    ranker.dae.train()
    steps = []
    for b in range(batches):
        rows = order[b * config.batch_size : (b + 1) * config.batch_size]
        started = time.perf_counter()
        logits = ranker.dae(dense_rows(x, rows))
        loss = -(F.log_softmax(logits, 1) * dense_rows(targets, rows)).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append(time.perf_counter() - started)
    steps_per_epoch = -(-n_users // config.batch_size)
    step_s = float(np.mean(steps[1:] if len(steps) > 1 else steps))  # the first one warms up
    return {
        "dataset": dataset.name,
        "ratings": len(dataset.ratings),
        "users": n_users,
        "movies": n_items,
        "item_item_movies": min(n_items, DENSE_ITEM_ITEM_LIMIT),
        "neighbors": model_config.neighbors,
        "history_seconds": history_s,
        "item_item_seconds_one_l2": item_item_s,
        "deep_steps_timed": batches,
        "deep_step_seconds": step_s,
        "deep_epoch_seconds_extrapolated": step_s * steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "users_per_second": config.batch_size / step_s,
        "peak_rss_gib": peak_rss_gib(),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m train.ranker_scale", __doc__)
    p.add_argument("--dataset", default="synthetic-25m")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--batches", type=int, default=40, help="deep-part steps to time")
    p.add_argument("--l2", type=float, default=800.0, help="λ of the one closed form timed")
    args = p.parse_args(argv)
    if args.batches < 1:
        p.error("--batches must be >= 1")
    try:
        dataset = data.load(args.dataset, args.data_dir)
    except DataError as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(measure(dataset, args.batches, args.l2), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
