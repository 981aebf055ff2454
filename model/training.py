"""Training loops with early stopping on validation RMSE.

- :func:`fit_autorec` trains our :class:`~model.autorec.ItemAutoRec` on item batches.
- :func:`fit` trains a :class:`~model.network.FactorModel` directly on rating pairs: the plain
  matrix-factorization baseline.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.autorec import ItemAutoRec, ItemRatings
from model.metrics import mae, rmse
from model.network import FactorModel

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimization of the matrix-factorization baseline (pairs, Adam, per-sample L2)."""

    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 1024  # large batches keep 2 CPU cores busy; 256-4096 give similar RMSE
    learning_rate: float = 3e-3  # Adam
    l2: float = 0.05  # weight of the per-sample L2 on vectors and biases
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 0  # drives initialization and shuffling: same seed, same model

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    """A split part as dense tensors: ``user_idx``, ``item_idx`` (int64), ``rating`` (float32)."""

    user_idx: torch.Tensor
    item_idx: torch.Tensor
    rating: torch.Tensor

    def __len__(self) -> int:
        return len(self.rating)


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
    best_rmse, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
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
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch}, batch {b}; lower --lr or raise --l2"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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
        improved = row["val_rmse"] < best_rmse - 1e-5
        log.info(
            "epoch %2d  train rmse %.4f  val rmse %.4f  val mae %.4f  %.1fs%s",
            epoch,
            row["train_rmse"],
            row["val_rmse"],
            row["val_mae"],
            row["seconds"],
            "  *" if improved else "",
        )
        if improved:
            best_rmse, best_state, stale = row["val_rmse"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop: no validation gain for %d epochs", config.patience)
                break
    model.load_state_dict(best_state)
    model.eval()
    return history


def encode(frame, vocab) -> Encoded:
    """Turn a ratings frame with raw ids into dense tensors using ``vocab``."""
    return Encoded(
        user_idx=torch.from_numpy(vocab.user_index(frame["user_id"].to_numpy())),
        item_idx=torch.from_numpy(vocab.item_index(frame["movie_id"].to_numpy())),
        rating=torch.from_numpy(frame["rating"].to_numpy(dtype=np.float32, copy=True)),
    )


@dataclass
class AutoRecTrainConfig:
    """Optimization of :class:`~model.autorec.ItemAutoRec` (item batches, Adam)."""

    epochs: int = 60  # upper bound; early stopping on validation RMSE ends sooner
    batch_size: int = 64  # items per step; small batches = many steps per epoch
    learning_rate: float = 1e-3  # Adam
    l2: float = 70.0  # L2 on the kernel-masked weights (as Sparse FC / GLocal-K use)
    kernel_l2: float = 0.013  # L2 on the kernel values: pushes them towards sparsity
    dropout: float = 0.0  # share of input ratings hidden in each step (denoising)
    patience: int = 5  # epochs without validation improvement before stopping
    seed: int = 0  # drives initialization and shuffling: same seed, same model

    def to_dict(self) -> dict:
        return asdict(self)


def fit_autorec(
    model: ItemAutoRec,
    train: ItemRatings,
    validation: Encoded,
    config: AutoRecTrainConfig,
    progress: bool = True,
) -> list[dict]:
    """Train ``model`` in place on item batches and restore its best-on-validation weights.

    The objective is the full-data one, ``sum of squared errors + l2/2 |W'|^2 +
    kernel_l2/2 |K|^2``, with the penalty spread over the batches of an epoch. Returns the
    per-epoch history (``train_rmse`` on the epoch's batches, ``val_rmse``, ``val_mae``,
    ``seconds``).
    """
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    num_items = model.config.num_items
    weights = torch.tensor([config.l2 / 2, config.kernel_l2 / 2])
    history: list[dict] = []
    best_rmse, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(num_items, generator=generator).numpy()
        batches = range(0, num_items, config.batch_size)
        squared_error, count = 0.0, 0
        for start in tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress):
            idx = order[start : start + config.batch_size]
            inputs, rows, users, values = train.batch(idx)
            if config.dropout > 0:
                keep = torch.rand(len(values), generator=generator) >= config.dropout
                inputs = torch.sparse_coo_tensor(
                    inputs.indices()[:, keep],
                    values[keep] / (1 - config.dropout),
                    inputs.shape,
                    is_coalesced=True,
                    check_invariants=False,
                )
            codes, penalties = model.encode(inputs, torch.from_numpy(idx))
            pred, decoder_penalty = model.decode_at(codes, rows, users)
            sse = ((pred - values) ** 2).sum()
            penalty = (torch.stack([*penalties, decoder_penalty]).sum(0) * weights).sum()
            penalty = penalty + config.l2 / 2 * model.genre_weight.pow(2).sum()
            loss = sse + penalty * len(idx) / num_items
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch}; lower --lr or raise --l2"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            squared_error += sse.item()
            count += len(values)
        scores = evaluate(model.export(train), validation)
        row = {
            "epoch": epoch,
            "train_rmse": math.sqrt(squared_error / max(count, 1)),
            "val_rmse": scores["rmse"],
            "val_mae": scores["mae"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        improved = row["val_rmse"] < best_rmse - 1e-5
        log.info(
            "epoch %2d  train rmse %.4f  val rmse %.4f  val mae %.4f  %.1fs%s",
            epoch,
            row["train_rmse"],
            row["val_rmse"],
            row["val_mae"],
            row["seconds"],
            "  *" if improved else "",
        )
        if improved:
            best_rmse, best_state, stale = row["val_rmse"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stop: no validation gain for %d epochs", config.patience)
                break
    model.load_state_dict(best_state)
    model.eval()
    return history
