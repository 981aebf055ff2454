"""The rating models' training, with early stopping on validation RMSE.

- :func:`fit_autorec` trains our :class:`~train.fitting.autorec.ItemAutoRec` on item batches
  (:class:`AutoRecTraining`).
- :func:`fit` trains a :class:`~model.network.FactorModel` directly on rating pairs: the plain
  matrix-factorization baseline (:class:`FactorModelTraining`).

Both run the shared epoch loop of :mod:`train.fitting.loop` (early stopping, refusal of a
non-finite loss, checkpoints with the random generator's state, DistributedDataParallel); what
is here is what differs: the data each prepares, the optimizer steps of an epoch, validation.
Their settings are in :mod:`train.fitting.settings`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.network import FactorModel
from train.data.prepared import Encoded
from train.evaluation.metrics import mae, rmse
from train.fitting.autorec import ItemAutoRec, ItemRatings
from train.fitting.loop import MIN_IMPROVEMENT, EpochLoop, optimizer_step
from train.fitting.settings import AutoRecTrainConfig, TrainConfig


def best_epoch(history: list[dict[str, Any]]) -> int:
    """The epoch (1-based) whose weights early stopping restored: the last one that improved
    validation RMSE by more than :data:`~train.fitting.loop.MIN_IMPROVEMENT`."""
    best, best_rmse = 0, math.inf
    for row in history:
        if row["val_rmse"] < best_rmse - MIN_IMPROVEMENT:
            best, best_rmse = row["epoch"], row["val_rmse"]
    if best == 0:
        raise ValueError("the history has no epoch with a finite validation RMSE")
    return best


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
    validation: Encoded | None,
    config: TrainConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place and restore its best-on-validation weights.

    Returns the history: one dict per epoch with ``train_rmse`` (on the epoch's batches, in
    training mode), ``val_rmse``, ``val_mae`` and ``seconds``. Raises ``FloatingPointError``
    when the loss stops being finite, instead of carrying on with a broken model.
    ``validation`` None (a refit on all ratings): exactly ``config.epochs`` epochs, the last
    kept, as :func:`fit_autorec`. ``checkpoint``: as :func:`fit_autorec`'s."""
    return FactorModelTraining(model, train, validation, config, progress, checkpoint).run(
        config.epochs
    )


class FactorModelTraining(EpochLoop):
    """:func:`fit`'s stages: rating pairs in shuffled batches, MSE plus per-sample L2."""

    def __init__(
        self,
        model: FactorModel,
        train: Encoded,
        validation: Encoded | None,
        config: TrainConfig,
        progress: bool,
        checkpoint: str | Path | None,
    ) -> None:
        super().__init__(
            model, config.learning_rate, config.seed, config.patience, checkpoint, "cpu", progress
        )
        self.factors, self.train, self.validation, self.config = model, train, validation, config

    @property
    def validates(self) -> bool:
        return self.validation is not None

    def step_epoch(self, epoch: int) -> dict[str, float]:
        size = self.config.batch_size
        order = torch.randperm(len(self.train), generator=self.generator)
        squared_error = 0.0
        for b in self.batches(range(math.ceil(len(self.train) / size)), epoch):
            idx = order[b * size : (b + 1) * size]
            squared_error += self.step_pairs(idx, f"epoch {epoch}, batch {b}") * len(idx)
        return {"train_rmse": math.sqrt(squared_error / len(self.train))}

    def step_pairs(self, idx: torch.Tensor, where: str) -> float:
        """One optimizer step on the training pairs ``idx``; returns their mean squared error."""
        u, i, r = self.train.user_idx[idx], self.train.item_idx[idx], self.train.rating[idx]
        mse = torch.mean((self.factors(u, i) - r) ** 2)
        optimizer_step(
            self.optimizer, mse + self.config.l2 * self.factors.regularization(u, i), where
        )
        return mse.item()

    def validate(self) -> dict[str, float] | None:
        if self.validation is None:
            return None
        scores = evaluate(self.factors, self.validation)
        return {"val_rmse": scores["rmse"], "val_mae": scores["mae"]}


def fit_autorec(
    model: ItemAutoRec,
    train: ItemRatings,
    validation: Encoded | None,
    config: AutoRecTrainConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
) -> list[dict[str, float]]:
    """Train ``model`` in place on item batches and restore its best-on-validation weights.

    The objective is the full-data one, ``sum of squared errors + l2/2 (|W'|^2 + |G|^2) +
    kernel_l2/2 |K|^2``, with the penalty spread over the batches of an epoch. Returns the
    per-epoch history (``train_rmse`` on the epoch's batches, ``samples_per_second``,
    ``val_rmse``, ``val_mae``, ``seconds``).

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
    training = AutoRecTraining(model, train, validation, config, progress, checkpoint, device)
    return training.run(config.epochs)


class AutoRecTraining(EpochLoop):
    """:func:`fit_autorec`'s stages: shuffled item batches, each rank encoding its share of
    every step, denoising dropout of input ratings, validation of the exported model."""

    def __init__(
        self,
        model: ItemAutoRec,
        train: ItemRatings,
        validation: Encoded | None,
        config: AutoRecTrainConfig,
        progress: bool,
        checkpoint: str | Path | None,
        device: str,
    ) -> None:
        model.to(device)
        super().__init__(
            model,
            config.learning_rate,
            config.seed,
            config.patience,
            checkpoint,
            device,
            progress,
            distributed=True,
        )
        self.autorec, self.train, self.validation, self.config = model, train, validation, config
        # Weights of the penalty terms (|W'|^2, |K|^2, |G|^2) in the objective.
        weights = [config.l2 / 2, config.kernel_l2 / 2, config.l2 / 2]
        self.penalty_weights = torch.tensor(weights, device=device)

    @property
    def validates(self) -> bool:
        return self.validation is not None

    def step_epoch(self, epoch: int) -> dict[str, float]:
        started = time.perf_counter()
        num_items = self.autorec.config.num_items
        order = torch.randperm(num_items, generator=self.generator).numpy()
        step = self.config.batch_size * self.world
        squared_error, count = 0.0, 0
        for start in self.batches(range(0, num_items, step), epoch):
            sse, ratings = self.step_items(order[start : start + step], epoch)
            squared_error += sse
            count += ratings
        return {
            "train_rmse": math.sqrt(squared_error / max(count, 1)),
            # Ratings seen per second of this process's optimization steps (no evaluation).
            "samples_per_second": count / (time.perf_counter() - started),
        }

    def step_items(self, idx: np.ndarray, epoch: int) -> tuple[float, int]:
        """One optimizer step on the step's items ``idx``, this rank's share of them; returns
        the share's sum of squared errors and number of ratings."""
        inputs, mine, rows, users, values = self.share_of_step(idx)
        device = self.device
        pred, penalty = self.net(
            inputs.to(device), torch.from_numpy(mine).to(device), rows.to(device), users.to(device)
        )
        sse = ((pred - values.to(device)) ** 2).sum()
        # The penalty is the whole network's: each step carries its items' share of it. Scaled
        # by the world size, the averaged gradients are those of one process on all the items.
        num_items, world = self.autorec.config.num_items, self.world
        loss = (sse + (penalty * self.penalty_weights).sum() * len(idx) / num_items / world) * world
        optimizer_step(self.optimizer, loss, f"epoch {epoch}")
        return sse.item(), len(values)

    def share_of_step(
        self, idx: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's items of the step ``idx`` and their batch (see
        :meth:`~train.fitting.autorec.ItemRatings.batch`), input dropout applied.

        Every rank draws the step's dropout mask from the same generator, then keeps its
        share: together the ranks take the step that one process would."""
        dropout, train = self.config.dropout, self.train
        keep_all = None
        if dropout > 0:
            n_entries = int(train.indptr[idx + 1].sum() - train.indptr[idx].sum())
            keep_all = torch.rand(n_entries, generator=self.generator) >= dropout
        mine = np.arange(len(idx)) % self.world == self.rank
        inputs, rows, users, values = train.batch(idx[mine])
        if keep_all is not None:
            # Entries come item by item, so this rank's are a subsequence of the step's.
            entries = np.repeat(mine, train.indptr[idx + 1] - train.indptr[idx])
            inputs = hide_ratings(inputs, values, keep_all[torch.from_numpy(entries)], dropout)
        return inputs, idx[mine], rows, users, values

    def validate(self) -> dict[str, float] | None:
        if self.validation is None:
            return None
        scores = evaluate(self.autorec.export(self.train), self.validation)
        return {"val_rmse": scores["rmse"], "val_mae": scores["mae"]}


def hide_ratings(
    inputs: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, dropout: float
) -> torch.Tensor:
    """Denoising input: the sparse (B, num_users) ``inputs`` with only the entries in ``keep``
    (E,), whose ratings ``values`` (E,) are scaled by ``1 / (1 - dropout)`` to keep the
    expected input."""
    return torch.sparse_coo_tensor(
        inputs.indices()[:, keep],
        values[keep] / (1 - dropout),
        inputs.shape,
        is_coalesced=True,
        check_invariants=False,
    )
