"""Training loops with early stopping on validation RMSE.

- :func:`fit_autorec` trains our :class:`~train.fitting.autorec.ItemAutoRec` on item batches.
- :func:`fit` trains a :class:`~model.network.FactorModel` directly on rating pairs: the plain
  matrix-factorization baseline.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.network import FactorModel
from train.evaluation.metrics import mae, rmse
from train.fitting.autorec import ItemAutoRec, ItemRatings
from train.fitting.settings import AutoRecTrainConfig, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """A split part as dense tensors: ``user_idx``, ``item_idx`` (int64), ``rating`` (float32)."""

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    rating: torch.Tensor

    def __len__(self) -> int:
        return len(self.rating)


# Smallest fall of validation RMSE that counts as an improvement (early stopping).
MIN_IMPROVEMENT = 1e-5


class EarlyStopping:
    """Keeps the best-on-validation weights and says when ``patience`` epochs brought none.

    Its fields (``best_rmse``, ``best_state``, ``stale``) are part of a training checkpoint.
    """

    def __init__(self, model: torch.nn.Module, patience: int):
        self.patience = patience
        self.best_rmse = math.inf
        self.best_state = copy.deepcopy(model.state_dict())
        self.stale = 0

    def update(self, model: torch.nn.Module, val_rmse: float) -> bool:
        """Record an epoch's validation RMSE; returns whether it improved on the best."""
        if val_rmse < self.best_rmse - MIN_IMPROVEMENT:
            self.best_rmse, self.best_state, self.stale = (
                val_rmse,
                copy.deepcopy(model.state_dict()),
                0,
            )
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


def best_epoch(history: list[dict]) -> int:
    """The epoch (1-based) whose weights early stopping restored: the last one that improved
    validation RMSE by more than :data:`MIN_IMPROVEMENT`."""
    best, best_rmse = 0, math.inf
    for row in history:
        if row["val_rmse"] < best_rmse - MIN_IMPROVEMENT:
            best, best_rmse = row["epoch"], row["val_rmse"]
    if best == 0:
        raise ValueError("the history has no epoch with a finite validation RMSE")
    return best


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, where: str) -> None:
    """One optimizer step; refuses a non-finite loss instead of training a broken model."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at {where}; lower --lr or raise --l2")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _log_epoch(row: dict, improved: bool) -> None:
    """One line per epoch: errors, time, throughput when known, a star on improvement."""
    speed = f" ({row['samples_per_second']:.0f} ratings/s)" if "samples_per_second" in row else ""
    val = (
        f"  val rmse {row['val_rmse']:.4f}  val mae {row['val_mae']:.4f}"
        if "val_rmse" in row
        else ""
    )
    log.info(
        "epoch %2d  train rmse %.4f%s  %.1fs%s%s",
        row["epoch"],
        row["train_rmse"],
        val,
        row["seconds"],
        speed,
        "  *" if improved else "",
    )


def predict(
    model: FactorModel, user_idx: torch.Tensor, item_idx: torch.Tensor, batch_size: int = 65536
) -> np.ndarray:
    """Predicted ratings in evaluation mode, in chunks to bound memory."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(user_idx), batch_size):
            stop = start + batch_size
            out.append(model(user_idx[start:stop], item_idx[start:stop]))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def evaluate(model: FactorModel, data: Encoded) -> dict[str, float]:
    """RMSE and MAE of ``model`` on ``data``."""
    pred = predict(model, data.user_idx, data.item_idx)
    actual = data.rating.numpy()
    return {"rmse": rmse(pred, actual), "mae": mae(pred, actual)}


def fit(
    model: FactorModel,
    train: Encoded,
    validation: Encoded,
    config: TrainConfig,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place and restore its best-on-validation weights.

    Returns the history: one dict per epoch with ``train_rmse`` (on the epoch's batches, in
    training mode), ``val_rmse``, ``val_mae`` and ``seconds``. Raises ``FloatingPointError``
    when the loss stops being finite, instead of carrying on with a broken model.
    """
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict] = []
    stopping = EarlyStopping(model, config.patience)
    n_batches = math.ceil(len(train) / config.batch_size)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        squared_error = 0.0
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", leave=False, disable=not progress)
        for b in bar:
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            u, i, r = train.user_idx[idx], train.item_idx[idx], train.rating[idx]
            pred = model(u, i)
            mse = torch.mean((pred - r) ** 2)
            loss = mse + config.l2 * model.regularization(u, i)
            _step(optimizer, loss, f"epoch {epoch}, batch {b}")
            squared_error += mse.item() * len(idx)
        scores = evaluate(model, validation)
        row = {
            "epoch": epoch,
            "train_rmse": math.sqrt(squared_error / len(train)),
            "val_rmse": scores["rmse"],
            "val_mae": scores["mae"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        _log_epoch(row, stopping.update(model, row["val_rmse"]))
        if stopping.should_stop:
            log.info("early stop: no validation gain for %d epochs", config.patience)
            break
    model.load_state_dict(stopping.best_state)
    model.eval()
    return history


def encode(frame, vocab) -> Encoded:
    """Turn a ratings frame with raw ids into dense tensors using ``vocab``."""
    return Encoded(
        user_idx=torch.from_numpy(vocab.user_index(frame["user_id"].to_numpy())),
        item_idx=torch.from_numpy(vocab.item_index(frame["movie_id"].to_numpy())),
        rating=torch.from_numpy(frame["rating"].to_numpy(dtype=np.float32, copy=True)),
    )


def _world() -> tuple[int, int]:
    """(rank, world size) of a torchrun/DistributedDataParallel run, (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash mid-write leaves the previous checkpoint intact


def fit_autorec(
    model: ItemAutoRec,
    train: ItemRatings,
    validation: Encoded | None,
    config: AutoRecTrainConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
) -> list[dict]:
    """Train ``model`` in place on item batches and restore its best-on-validation weights.

    The objective is the full-data one, ``sum of squared errors + l2/2 (|W'|^2 + |G|^2) +
    kernel_l2/2 |K|^2``, with the penalty spread over the batches of an epoch. Returns the
    per-epoch history (``train_rmse`` on the epoch's batches, ``val_rmse``, ``val_mae``,
    ``seconds``).

    ``validation`` None (a refit on all ratings, with nothing held out): exactly
    ``config.epochs`` epochs, no early stopping, the last epoch's weights kept, and no
    validation figures in the history.

    ``checkpoint``: after every epoch the whole training state (weights, optimizer, random
    generators, history, best weights) is written there; if the file exists when training
    starts, training resumes from it and ends exactly where an uninterrupted run would.

    Under ``torchrun`` (an initialized process group), every step takes ``world x
    batch_size`` items, each rank encodes its share and DistributedDataParallel averages the
    gradients; the loss is scaled by the world size so the result matches one process with
    ``world x batch_size`` items per step.
    """
    from tqdm import tqdm

    rank, world = _world()
    model.to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    num_items = model.config.num_items
    weights = torch.tensor([config.l2 / 2, config.kernel_l2 / 2, config.l2 / 2], device=device)
    history: list[dict] = []
    stopping, first_epoch = EarlyStopping(model, config.patience), 1
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history, stopping.best_state = state["history"], state["best_state"]
        stopping.best_rmse, stopping.stale = state["best_rmse"], state["stale"]
        first_epoch = len(history) + 1
        log.info("resuming from %s after epoch %d", checkpoint, len(history))
        if stopping.should_stop:
            first_epoch = config.epochs + 1  # it had already stopped early
    step = config.batch_size * world
    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(num_items, generator=generator).numpy()
        squared_error, count = 0.0, 0
        batches = range(0, num_items, step)
        for start in tqdm(
            batches, desc=f"epoch {epoch}", leave=False, disable=not progress or rank > 0
        ):
            # Every rank draws the same random numbers, then keeps its share of the step.
            idx = order[start : start + step]
            if config.dropout > 0:
                n_entries = int(train.indptr[idx + 1].sum() - train.indptr[idx].sum())
                keep_all = torch.rand(n_entries, generator=generator) >= config.dropout
            mine = np.arange(len(idx)) % world == rank
            inputs, rows, users, values = train.batch(idx[mine])
            if config.dropout > 0:
                # Entries come item by item, so this rank's are a subsequence of the step's.
                entries = np.repeat(mine, train.indptr[idx + 1] - train.indptr[idx])
                keep = keep_all[torch.from_numpy(entries)]
                inputs = torch.sparse_coo_tensor(
                    inputs.indices()[:, keep],
                    values[keep] / (1 - config.dropout),
                    inputs.shape,
                    is_coalesced=True,
                    check_invariants=False,
                )
            pred, penalty = net(
                inputs.to(device),
                torch.from_numpy(idx[mine]).to(device),
                rows.to(device),
                users.to(device),
            )
            sse = ((pred - values.to(device)) ** 2).sum()
            loss = (sse + (penalty * weights).sum() * len(idx) / num_items / world) * world
            _step(optimizer, loss, f"epoch {epoch}")
            squared_error += sse.item()
            count += len(values)
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, "train_rmse": math.sqrt(squared_error / max(count, 1))}
        if validation is not None:
            scores = evaluate(model.export(train), validation)
            row |= {"val_rmse": scores["rmse"], "val_mae": scores["mae"]}
        row |= {
            "seconds": time.perf_counter() - started,
            # Ratings seen per second of this process's optimization steps (no evaluation).
            "samples_per_second": count / train_seconds,
        }
        history.append(row)
        improved = validation is not None and stopping.update(model, row["val_rmse"])
        _log_epoch(row, improved)
        if checkpoint is not None and rank == 0:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "history": history,
                    "best_state": stopping.best_state,
                    "best_rmse": stopping.best_rmse,
                    "stale": stopping.stale,
                },
                checkpoint,
            )
        if stopping.should_stop:
            log.info("early stop: no validation gain for %d epochs", config.patience)
            break
    if validation is not None:
        model.load_state_dict(stopping.best_state)
    model.eval()
    return history
