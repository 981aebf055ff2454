"""Training the ranking model (:mod:`model.ranker`), every choice made on validation ranking.

1. The item-item part in closed form for each λ of a small grid; the best on validation
   NDCG@10 is kept.
2. The deep part (Mult-DAE), epoch by epoch, with early stopping on its validation NDCG@10.
3. The weights that blend the item-item part, the deep part and the rating model's predicted
   stars, from a grid, on validation NDCG@10.

:func:`refit_ranker` then trains the chosen setting on other ratings (all of them, for the
served archive) without a validation part: the λ, the number of epochs and the weights are
taken as chosen.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.network import FactorModel
from model.ranker import LIKED, Ranker, RankerConfig, _z
from train.fitting.settings import RankerTrainConfig
from train.fitting.training import EarlyStopping, _save_atomic, _step, _world
from train.peers.ease import ease_weights

log = logging.getLogger(__name__)

# The validation measure every choice is made on (it rewards order inside the top-10).
SELECTION_METRIC = "ndcg@10"
# The item-item part is served dense up to this many movies (B takes N² x 4 bytes: 1.6 GB at
# 20k); above it each movie keeps its PRUNED_NEIGHBORS strongest weights (62k movies: 127 MB).
DENSE_ITEM_ITEM_LIMIT = 20_000
PRUNED_NEIGHBORS = 256


def history_matrix(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    num_users: int,
    num_items: int,
    low_weight: float,
) -> sp.csr_matrix:
    """Rating-aware history rows of every user, (num_users, num_items) float32 CSR."""
    values = np.where(np.asarray(ratings) >= LIKED, 1.0, low_weight).astype(np.float32)
    x = sp.csr_matrix((values, (users, items)), shape=(num_users, num_items), dtype=np.float32)
    x.sum_duplicates()
    x.data = np.minimum(x.data, 1.0)  # a pair given twice counts once
    return x


def _dense(x: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x[rows].toarray())


def fit_item_item(
    x: sp.csr_matrix, l2: float, max_items: int = DENSE_ITEM_ITEM_LIMIT
) -> tuple[torch.Tensor, np.ndarray | None]:
    """The item-item matrix B float32 of history matrix ``x`` (see train.peers.ease), and the
    movies it is between: all N (None), or, past ``max_items`` movies, the ``max_items`` most
    rated ones (the closed form inverts an M x M matrix: 8 M² bytes, 3.2 GB at 20k)."""
    if x.shape[1] <= max_items:
        return torch.from_numpy(ease_weights(x, l2).astype(np.float32)), None
    counts = np.diff(x.tocsc().indptr)
    items = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    return torch.from_numpy(ease_weights(x[:, items], l2).astype(np.float32)), items


def train_deep(
    ranker: Ranker,
    x: sp.csr_matrix,
    targets: sp.csr_matrix,
    config: RankerTrainConfig,
    validate: Callable[[], float] | None = None,
    epochs: int | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> list[dict]:
    """Train ``ranker.dae`` on the users of ``x`` with a multinomial likelihood.

    With ``validate`` (a validation score, higher is better) it stops after
    ``config.patience`` epochs without a gain and keeps the best epoch's weights; without it,
    it runs ``epochs`` epochs and keeps the last. Returns one row per epoch.

    It shares the rating model's machinery (:mod:`train.fitting.training`): early stopping,
    the refusal of a non-finite loss, a ``checkpoint`` written after every epoch and resumed
    from when it exists, and, under ``torchrun``, DistributedDataParallel with each rank
    encoding its share of every step of ``world x batch_size`` users."""
    rank, world = _world()
    dae = ranker.dae
    net = torch.nn.parallel.DistributedDataParallel(dae) if world > 1 else dae
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(dae.parameters(), lr=config.learning_rate)
    active = np.flatnonzero(np.diff(x.indptr) > 0)  # users with a history
    # EarlyStopping keeps the lowest figure: it is given the negated validation score.
    stopping, history, first_epoch = EarlyStopping(dae, config.patience), [], 1
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        dae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history, stopping.best_state = state["history"], state["best_state"]
        stopping.best_rmse, stopping.stale = state["best"], state["stale"]
        first_epoch = len(history) + 1
        log.info("ranker: resuming from %s after epoch %d", checkpoint, len(history))
        if validate is not None and stopping.should_stop:
            first_epoch = (epochs or config.epochs) + 1  # it had already stopped early
    step = config.batch_size * world
    for epoch in range(first_epoch, (epochs or config.epochs) + 1):
        started = time.perf_counter()
        dae.train()
        order = active[torch.randperm(len(active), generator=generator).numpy()]
        total = 0.0
        batches = range(0, len(order), step)
        for start in tqdm(
            batches, desc=f"ranker epoch {epoch}", disable=not progress or rank > 0, leave=False
        ):
            # Every rank draws the step's dropout mask from the same generator, then keeps its
            # rows: the step matches one process stepping on all of them.
            step_rows = order[start : start + step]
            keep = torch.rand(len(step_rows), x.shape[1], generator=generator) >= dae.dropout
            rows, keep = step_rows[rank::world], keep[rank::world]
            logits = net(_dense(x, rows), keep)
            loss = -(F.log_softmax(logits, 1) * _dense(targets, rows)).sum(1).sum()
            # Scaled so that averaged gradients match one process stepping on all users.
            _step(optimizer, loss * world / len(order[start : start + step]), f"ranker {epoch}")
            total += loss.item()
        row = {"epoch": epoch, "loss": total * world / len(order)}
        improved = False
        if validate is not None:
            row[f"val_{SELECTION_METRIC}"] = score = validate()
            improved = stopping.update(dae, -score)
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        measured = f"  val {SELECTION_METRIC} {score:.4f}" if validate is not None else ""
        log.info(
            "ranker epoch %2d  loss %.2f%s  %.1fs%s",
            epoch,
            row["loss"],
            measured,
            row["seconds"],
            "  *" if improved else "",
        )
        if checkpoint is not None and rank == 0:
            _save_atomic(
                {
                    "model": dae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "history": history,
                    "best_state": stopping.best_state,
                    "best": stopping.best_rmse,
                    "stale": stopping.stale,
                },
                checkpoint,
            )
        if validate is not None and stopping.should_stop:
            log.info("ranker: early stop, no validation gain for %d epochs", config.patience)
            break
    if validate is not None:
        dae.load_state_dict(stopping.best_state)
    dae.eval()
    return history


def _all_user_scores(
    score: Callable[[np.ndarray], torch.Tensor], num_users: int, chunk: int = 1024
) -> torch.Tensor:
    return torch.cat(
        [score(np.arange(s, min(s + chunk, num_users))) for s in range(0, num_users, chunk)]
    )


def fit_ranker(
    data,
    rating_model: FactorModel | None,
    model_config: RankerConfig,
    config: RankerTrainConfig,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> tuple[Ranker, dict]:
    """Train the ranking model on ``data.train`` (a :class:`train.fitting.experiment.Prepared`),
    choosing λ, the deep part's epochs and the blend weights on ``data.validation``.

    Returns the ranker and what was chosen (with every grid's validation figures)."""
    from train.peers.tuning import ranking_on  # offline-only import (evaluation code)

    t = data.train
    n_users, n_items = data.vocab.num_users, data.vocab.num_items
    args = (t.user_idx.numpy(), t.item_idx.numpy(), t.rating.numpy(), n_users, n_items)
    x = history_matrix(*args, model_config.low_weight)
    targets = history_matrix(*args, model_config.target_low_weight)
    validate = lambda score: ranking_on(score, data, "validation")
    info: dict = {"l2_grid": [], "weight_grid": []}

    started = time.perf_counter()
    neighbors = model_config.neighbors or (
        0 if n_items <= DENSE_ITEM_ITEM_LIMIT else PRUNED_NEIGHBORS
    )
    model_config = dataclasses.replace(
        model_config, deep_weight=0.0, rating_weight=0.0, neighbors=neighbors
    )
    torch.manual_seed(config.seed)
    ranker, best = Ranker(model_config), None
    for l2 in config.l2_grid:
        ranker.set_item_item(*fit_item_item(x, l2))  # scored as it will be served
        figures = validate(lambda u: ranker.item_item_scores(_dense(x, u)))
        info["l2_grid"].append({"l2": l2, **figures})
        log.info("ranker item-item λ=%g: %s %.4f", l2, SELECTION_METRIC, figures[SELECTION_METRIC])
        if best is None or figures[SELECTION_METRIC] > best[0]:
            best = (figures[SELECTION_METRIC], l2)
    if best[1] != config.l2_grid[-1]:
        ranker.set_item_item(*fit_item_item(x, best[1]))
    ranker.config = dataclasses.replace(ranker.config, l2=best[1])
    info["item_item_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    deep = lambda u: ranker.deep_scores(_dense(x, u))
    info["history"] = train_deep(
        ranker,
        x,
        targets,
        config,
        lambda: validate(deep)[SELECTION_METRIC],
        progress=progress,
        checkpoint=checkpoint,
    )
    info["deep_seconds"] = time.perf_counter() - started
    scores = [row[f"val_{SELECTION_METRIC}"] for row in info["history"]]
    info["best_epoch"] = int(np.argmax(scores)) + 1  # the first of equals, as EarlyStopping

    # The parts once for every user, then every blend of them (elementwise work only).
    item_item = _all_user_scores(lambda u: _z(ranker.item_item_scores(_dense(x, u))), n_users)
    deep_part = _all_user_scores(lambda u: _z(deep(u)), n_users)
    stars = None
    if rating_model is not None:
        stars = _all_user_scores(lambda u: rating_model.score_all(torch.from_numpy(u)), n_users)
    best = None
    rating_weights = config.rating_weights if stars is not None else (0.0,)
    for deep_weight in config.deep_weights:
        for rating_weight in rating_weights:

            def blend(u, a=deep_weight, b=rating_weight):
                out = item_item[u] + a * deep_part[u]
                return out + b * stars[u] if b else out

            figures = validate(blend)
            info["weight_grid"].append(
                {"deep_weight": deep_weight, "rating_weight": rating_weight, **figures}
            )
            if best is None or figures[SELECTION_METRIC] > best[0]:
                best = (figures[SELECTION_METRIC], deep_weight, rating_weight)
    ranker.config = dataclasses.replace(ranker.config, deep_weight=best[1], rating_weight=best[2])
    info["chosen"] = {
        "l2": ranker.config.l2,
        "deep_weight": best[1],
        "rating_weight": best[2],
        "epochs": info["best_epoch"],
    }
    log.info("ranker chosen on validation: %s (%s %.4f)", info["chosen"], SELECTION_METRIC, best[0])
    return ranker.eval(), info


def refit_ranker(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    num_users: int,
    model_config: RankerConfig,
    config: RankerTrainConfig,
    epochs: int,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> Ranker:
    """Train ``model_config`` (λ and weights already chosen) on these ratings for ``epochs``
    epochs of the deep part, with no validation: the refit of the served archive."""
    args = (users, items, ratings, num_users, model_config.num_items)
    x = history_matrix(*args, model_config.low_weight)
    targets = history_matrix(*args, model_config.target_low_weight)
    torch.manual_seed(config.seed)
    ranker = Ranker(model_config)
    ranker.set_item_item(*fit_item_item(x, model_config.l2))
    train_deep(ranker, x, targets, config, epochs=epochs, progress=progress, checkpoint=checkpoint)
    return ranker.eval()
