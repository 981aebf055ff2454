"""The epoch loop every trainer shares: prepare, then per epoch (step over the batches,
validate, checkpoint), then finish with the best weights.

A model's trainer subclasses :class:`EpochLoop` and writes only what is its own: the data it
prepares (its ``__init__``), how an epoch steps over its batches (:meth:`EpochLoop.step_epoch`)
and how it is validated (:meth:`EpochLoop.validate`). The loop brings the rest, the same for
the matrix-factorization baseline, the item autoencoder (:mod:`train.fitting.training`) and the
ranking model's deep part (:mod:`train.fitting.ranker_training`):

- seeding: the global generator (initialization) and the loop's own (shuffling, dropout);
- early stopping on a validation figure, the best weights restored at the end;
- the refusal of a non-finite loss (:func:`optimizer_step`);
- a checkpoint written atomically after every epoch, random generator included, from which a
  new process resumes and ends exactly where an uninterrupted run would;
- under ``torchrun``, a DistributedDataParallel wrapper and this process's rank and world size
  (the trainer takes this rank's share of every step).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

# Smallest fall of the validation figure that counts as an improvement (early stopping).
MIN_IMPROVEMENT = 1e-5


class EarlyStopping:
    """Keeps the weights of the lowest validation figure and says when ``patience`` epochs
    brought no fall of more than :data:`MIN_IMPROVEMENT`. Its state is part of a checkpoint."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_state = copy.deepcopy(model.state_dict())
        self.stale = 0

    def update(self, model: nn.Module, figure: float) -> bool:
        """Record an epoch's validation figure; returns whether it improved on the best."""
        if figure < self.best - MIN_IMPROVEMENT:
            self.best, self.best_state, self.stale = figure, copy.deepcopy(model.state_dict()), 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_state": self.best_state, "best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Rating-model checkpoints written before the shared loop call the figure best_rmse.
        self.best = state["best"] if "best" in state else state["best_rmse"]
        self.best_state, self.stale = state["best_state"], state["stale"]


def world() -> tuple[int, int]:
    """(rank, world size) of a torchrun/DistributedDataParallel run, (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file: a crash mid-write leaves the previous intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, where: str) -> None:
    """One optimizer step; refuses a non-finite loss instead of training a broken model."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()} at {where}; lower --lr or raise --l2")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class EpochLoop(ABC):
    """Training of one model, epoch by epoch; see the module docstring.

    The base prepares what every model needs (optimizer, generators, early stopping); a
    subclass prepares its data in its own ``__init__`` and implements :meth:`step_epoch`,
    :meth:`validate` and :attr:`validates`. :meth:`run` then resumes from ``checkpoint`` when
    it exists, runs the epochs and restores the best weights.

    ``distributed``: under torchrun, wrap ``model`` in DistributedDataParallel (``self.net``,
    what the steps call) and note ``self.rank`` and ``self.world``; otherwise ``self.net`` is
    ``model`` and the world is (0, 1)."""

    label = ""  # prefix of this trainer's log lines and progress bars ("ranker ")

    def __init__(
        self,
        model: nn.Module,
        learning_rate: float,
        seed: int,
        patience: int,
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        progress: bool = True,
        distributed: bool = False,
    ) -> None:
        self.rank, self.world = world() if distributed else (0, 1)
        self.model = model
        self.net: nn.Module = (
            nn.parallel.DistributedDataParallel(model) if self.world > 1 else model
        )
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        self.stopping = EarlyStopping(model, patience)
        self.history: list[dict[str, float]] = []
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.device, self.progress = device, progress
        self.log = logging.getLogger(type(self).__module__)

    @property
    @abstractmethod
    def validates(self) -> bool:
        """Whether epochs are validated: early stopping and the best weights restored, or
        every epoch run and the last weights kept."""

    @abstractmethod
    def step_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training data in optimizer steps; returns the epoch's training
        figures (e.g. ``train_rmse``). The model is in training mode."""

    @abstractmethod
    def validate(self) -> dict[str, float] | None:
        """The validation figures of the model as it is now (None: nothing to validate on)."""

    def objective(self, row: dict[str, float]) -> float:
        """The figure of an epoch's row that early stopping minimizes."""
        return row["val_rmse"]

    def run(self, epochs: int) -> list[dict[str, float]]:
        """Train up to epoch ``epochs`` (from where a checkpoint left off), then
        :meth:`finish`; returns the history, one row of figures per epoch."""
        if self.checkpoint is not None and self.checkpoint.exists():
            self.resume(self.checkpoint)
        # A resumed run may have stopped early already (without validation nothing stops it).
        stopped = self.validates and self.stopping.should_stop
        epoch = len(self.history)
        while not stopped and epoch < epochs:
            epoch += 1
            stopped = self.run_epoch(epoch)
        self.finish()
        return self.history

    def run_epoch(self, epoch: int) -> bool:
        """Step, validate, record and log the epoch, write the checkpoint; returns whether
        early stopping ends training."""
        started = time.perf_counter()
        self.model.train()
        row: dict[str, float] = {"epoch": epoch, **self.step_epoch(epoch)}
        figures = self.validate()
        improved = False
        if figures is not None:
            row |= figures
            improved = self.stopping.update(self.model, self.objective(row))
        row["seconds"] = time.perf_counter() - started
        self.history.append(row)
        self.log_epoch(row, improved)
        self.save_checkpoint()
        if figures is not None and self.stopping.should_stop:
            self.log.info(
                "%searly stop: no validation gain for %d epochs", self.label, self.stopping.patience
            )
            return True
        return False

    def batches(self, starts: range, epoch: int) -> Iterable[int]:
        """``starts`` (of an epoch's steps) with a progress bar on rank 0 unless it is off."""
        bar: Iterable[int] = tqdm(
            starts,
            desc=f"{self.label}epoch {epoch}",
            leave=False,
            disable=not self.progress or self.rank > 0,
        )
        return bar

    def log_epoch(self, row: dict[str, float], improved: bool) -> None:
        """One line per epoch: its figures, time, throughput when known, a star on a gain."""
        skip = ("epoch", "seconds", "samples_per_second")
        figures = "  ".join(
            f"{k.replace('_', ' ')} {v:.4f}" for k, v in row.items() if k not in skip
        )
        speed = row.get("samples_per_second")
        self.log.info(
            "%sepoch %2d  %s  %.1fs%s%s",
            self.label,
            row["epoch"],
            figures,
            row["seconds"],
            f" ({speed:.0f} samples/s)" if speed is not None else "",
            "  *" if improved else "",
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly: weights, optimizer, random
        generator, history and early stopping."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "history": self.history,
            **self.stopping.state_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.checkpoint is not None and self.rank == 0:
            save_atomic(self.state_dict(), self.checkpoint)

    def resume(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())  # a CPU generator, whatever device
        self.history = state["history"]
        self.stopping.load_state_dict(state)
        self.log.info(
            "%sresuming from %s after epoch %d", self.label, checkpoint, len(self.history)
        )

    def finish(self) -> None:
        """Restore the best-on-validation weights (when validated); evaluation mode."""
        if self.validates:
            self.model.load_state_dict(self.stopping.best_state)
        self.model.eval()
