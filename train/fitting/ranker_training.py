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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from model.network import FactorModel
from model.ranker import LIKED, Ranker, RankerConfig, scale_rows
from train.data.interactions import Interactions
from train.data.prepared import Prepared
from train.evaluation.ranking import ranking_on
from train.fitting.discovery import Calibration
from train.fitting.loop import EpochLoop, optimizer_step
from train.fitting.settings import RankerTrainConfig
from train.peers.ease import ease_weights

log = logging.getLogger(__name__)

# Validation figures (SELECTION_METRIC among them) of a function scoring users' rows.
Validate = Callable[[Callable[[np.ndarray], torch.Tensor]], dict[str, float]]

# The validation measure every choice is made on (it rewards order inside the top-10).
SELECTION_METRIC = "ndcg@10"
# The item-item part is served dense up to this many movies (B takes N² x 4 bytes: 1.6 GB at
# 20k); above it each movie keeps its PRUNED_NEIGHBORS strongest weights (62k movies: 127 MB).
DENSE_ITEM_ITEM_LIMIT = 20_000
PRUNED_NEIGHBORS = 256


def history_matrix(ratings: Interactions, low_weight: float) -> sp.csr_matrix:
    """Rating-aware history rows of every user, (num_users, num_items) float32 CSR."""
    values = np.where(np.asarray(ratings.rating) >= LIKED, 1.0, low_weight).astype(np.float32)
    x = sp.csr_matrix(
        (values, (ratings.user_idx, ratings.item_idx)),
        shape=(ratings.num_users, ratings.num_items),
        dtype=np.float32,
    )
    x.sum_duplicates()
    x.data = np.minimum(x.data, 1.0)  # a pair given twice counts once
    return x


def split_scorer(
    data: Prepared, ranker: Ranker, rating_model: FactorModel | None
) -> Callable[[np.ndarray], torch.Tensor]:
    """The function that scores users ``u`` of ``data`` with ``ranker`` from their training
    histories (and ``rating_model``'s stars, if any), as the served Recommender does: what
    :func:`train.evaluation.ranking.ranking_on` takes to score our model beside the peers."""
    x = history_matrix(data.interactions(), ranker.config.low_weight)

    def score(u: np.ndarray) -> torch.Tensor:
        users = torch.from_numpy(u)
        stars = rating_model.score_all(users) if rating_model is not None else None
        return ranker.scores(torch.from_numpy(x[u].toarray()), stars)

    return score


def inputs_and_targets(
    train: Interactions, model_config: RankerConfig
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The history rows the deep part reads (low ratings weighing ``low_weight``) and those it
    learns to predict (``target_low_weight``), of every user of ``train``."""
    if train.num_items != model_config.num_items:
        raise ValueError(
            f"the ratings have {train.num_items} movies, the ranking model {model_config.num_items}"
        )
    return (
        history_matrix(train, model_config.low_weight),
        history_matrix(train, model_config.target_low_weight),
    )


def dense_rows(x: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Rows ``rows`` of ``x`` as a dense float tensor."""
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
) -> list[dict[str, float]]:
    """Train ``ranker.dae`` on the users of ``x`` with a multinomial likelihood.

    With ``validate`` (a validation score, higher is better) it stops after
    ``config.patience`` epochs without a gain and keeps the best epoch's weights; without it,
    it runs ``epochs`` epochs and keeps the last. Returns one row per epoch.

    It runs the rating models' epoch loop (:mod:`train.fitting.loop`): early stopping, the
    refusal of a non-finite loss, a ``checkpoint`` written after every epoch and resumed
    from when it exists, and, under ``torchrun``, DistributedDataParallel with each rank
    encoding its share of every step of ``world x batch_size`` users."""
    training = DeepPartTraining(ranker, x, targets, config, validate, progress, checkpoint)
    return training.run(epochs or config.epochs)


class DeepPartTraining(EpochLoop):
    """:func:`train_deep`'s stages: shuffled batches of users with a history, input dropout
    drawn for the whole step, validation by the caller's score."""

    label = "ranker "

    def __init__(
        self,
        ranker: Ranker,
        x: sp.csr_matrix,
        targets: sp.csr_matrix,
        config: RankerTrainConfig,
        score: Callable[[], float] | None,
        progress: bool,
        checkpoint: str | Path | None,
    ) -> None:
        super().__init__(
            ranker.dae,
            config.learning_rate,
            config.seed,
            config.patience,
            checkpoint,
            "cpu",
            progress,
            distributed=True,
        )
        self.dae, self.config, self.score = ranker.dae, config, score
        self.x, self.targets = x, targets  # (num_users, num_items) history rows and targets
        self.active = np.flatnonzero(np.diff(x.indptr) > 0)  # users with a history

    @property
    def validates(self) -> bool:
        return self.score is not None

    def objective(self, row: dict[str, float]) -> float:
        return -row[f"val_{SELECTION_METRIC}"]  # early stopping keeps the lowest figure

    def step_epoch(self, epoch: int) -> dict[str, float]:
        order = self.active[torch.randperm(len(self.active), generator=self.generator).numpy()]
        step = self.config.batch_size * self.world
        total = 0.0
        for start in self.batches(range(0, len(order), step), epoch):
            total += self.step_users(order[start : start + step], epoch)
        return {"loss": total * self.world / len(order)}

    def step_users(self, step_rows: np.ndarray, epoch: int) -> float:
        """One optimizer step on this rank's share of the users ``step_rows``; returns the
        share's summed negative log-likelihood."""
        # Every rank draws the step's dropout mask from the same generator, then keeps its
        # rows: the step matches one process stepping on all of them.
        shape = (len(step_rows), self.x.shape[1])
        keep = torch.rand(*shape, generator=self.generator) >= self.dae.dropout
        rows, keep = step_rows[self.rank :: self.world], keep[self.rank :: self.world]
        logits = self.net(dense_rows(self.x, rows), keep)
        loss = -(F.log_softmax(logits, 1) * dense_rows(self.targets, rows)).sum(1).sum()
        # Scaled so that averaged gradients match one process stepping on all users.
        optimizer_step(self.optimizer, loss * self.world / len(step_rows), f"ranker {epoch}")
        return loss.item()

    def validate(self) -> dict[str, float] | None:
        return None if self.score is None else {f"val_{SELECTION_METRIC}": self.score()}


def _all_user_scores(
    score: Callable[[np.ndarray], torch.Tensor], num_users: int, chunk: int = 1024
) -> torch.Tensor:
    """``score`` of every user, (num_users, num_items), computed ``chunk`` users at a time."""
    return torch.cat(
        [score(np.arange(s, min(s + chunk, num_users))) for s in range(0, num_users, chunk)]
    )


@dataclass(frozen=True)
class RankerFit:
    """What :func:`fit_ranker` chose on validation, the figures it chose them by, and how
    long its first two stages took."""

    chosen: dict[str, float]  # l2, deep_weight, rating_weight, epochs: what config.json records
    best_epoch: int  # of the deep part
    history: list[dict[str, float]]  # the deep part's epochs
    l2_grid: list[dict[str, float]]  # stage 1: each λ's validation figures
    weight_grid: list[dict[str, float]]  # stage 3: each pair of blend weights' figures
    novelty_percentiles: list[float]  # the validation popularity percentile of each level
    item_item_seconds: float
    deep_seconds: float


def fit_ranker(
    data: Prepared,
    rating_model: FactorModel | None,
    model_config: RankerConfig,
    config: RankerTrainConfig,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> tuple[Ranker, RankerFit]:
    """Train the ranking model on ``data.train``, choosing λ, the deep part's epochs and the
    blend weights on ``data.validation``: the three stages of the module docstring.

    Returns the ranker and what was chosen (with every grid's validation figures)."""
    x, targets = inputs_and_targets(data.interactions(), model_config)
    validate: Validate = lambda score: ranking_on(score, data, "validation")
    l2_grid: list[dict[str, float]] = []
    weight_grid: list[dict[str, float]] = []

    started = time.perf_counter()  # stage 1, the item-item part
    ranker = choose_item_item(x, model_config, config, validate, l2_grid)
    item_item_seconds = time.perf_counter() - started

    started = time.perf_counter()  # stage 2, the deep part
    score = lambda: validate(lambda u: ranker.deep_scores(dense_rows(x, u)))[SELECTION_METRIC]
    history = train_deep(
        ranker, x, targets, config, score, progress=progress, checkpoint=checkpoint
    )
    deep_seconds = time.perf_counter() - started
    scores = [row[f"val_{SELECTION_METRIC}"] for row in history]
    best_epoch = int(np.argmax(scores)) + 1  # the first of equals, as EarlyStopping

    best = choose_blend(ranker, x, rating_model, config, validate, weight_grid)
    strengths, reached = calibrate_novelty(ranker, x, rating_model, data, config.seed)
    ranker.config = dataclasses.replace(ranker.config, novelty_strengths=strengths)
    chosen = {
        "l2": ranker.config.l2,
        "deep_weight": ranker.config.deep_weight,
        "rating_weight": ranker.config.rating_weight,
        "epochs": best_epoch,
    }
    log.info("ranker chosen on validation: %s (%s %.4f)", chosen, SELECTION_METRIC, best)
    fitted = RankerFit(
        chosen, best_epoch, history, l2_grid, weight_grid, reached, item_item_seconds, deep_seconds
    )
    return ranker.eval(), fitted


def calibrate_novelty(
    ranker: Ranker,
    x: sp.csr_matrix,
    rating_model: FactorModel | None,
    data: Prepared,
    seed: int,
) -> tuple[list[float], list[float]]:
    """The ranking model's novelty strengths, calibrated on ``data``'s validation users
    (:mod:`train.fitting.discovery`), and the popularity percentile each level reaches."""

    def score(u: np.ndarray) -> torch.Tensor:
        stars = rating_model.score_all(torch.from_numpy(u)) if rating_model is not None else None
        return ranker.scores(dense_rows(x, u), stars)

    return Calibration.on_validation(score, data, seed).strengths()


def choose_item_item(
    x: sp.csr_matrix,
    model_config: RankerConfig,
    config: RankerTrainConfig,
    validate: Validate,
    grid: list[dict[str, float]],
) -> Ranker:
    """Stage 1: a new ranker (seeded by ``config.seed``) whose item-item part has the λ of
    ``config.l2_grid`` best on validation, scored as it will be served, its blend weights 0.
    Each λ's validation figures are appended to ``grid``."""
    neighbors = model_config.neighbors or (
        0 if x.shape[1] <= DENSE_ITEM_ITEM_LIMIT else PRUNED_NEIGHBORS
    )
    model_config = dataclasses.replace(
        model_config, deep_weight=0.0, rating_weight=0.0, neighbors=neighbors
    )
    torch.manual_seed(config.seed)
    ranker, tried = Ranker(model_config), []
    for l2 in config.l2_grid:
        ranker.set_item_item(*fit_item_item(x, l2))
        figures = validate(lambda u: ranker.item_item_scores(dense_rows(x, u)))
        grid.append({"l2": l2, **figures})
        log.info("ranker item-item λ=%g: %s %.4f", l2, SELECTION_METRIC, figures[SELECTION_METRIC])
        tried.append((figures[SELECTION_METRIC], l2))
    best_l2 = max(tried, key=lambda t: t[0])[1]  # the first of equals
    if best_l2 != config.l2_grid[-1]:
        ranker.set_item_item(*fit_item_item(x, best_l2))
    ranker.config = dataclasses.replace(ranker.config, l2=best_l2)
    return ranker


def choose_blend(
    ranker: Ranker,
    x: sp.csr_matrix,
    rating_model: FactorModel | None,
    config: RankerTrainConfig,
    validate: Validate,
    grid: list[dict[str, float]],
) -> float:
    """Stage 3: set ``ranker``'s blend weights to the pair of ``config.deep_weights`` x
    ``config.rating_weights`` best on validation (no rating part without ``rating_model``);
    each pair's figures are appended to ``grid``. Returns the best validation figure.

    The parts are scored once for every user, then blended (elementwise work only)."""
    num_users = x.shape[0]
    item_item = _all_user_scores(
        lambda u: scale_rows(ranker.item_item_scores(dense_rows(x, u))), num_users
    )
    deep_part = _all_user_scores(
        lambda u: scale_rows(ranker.deep_scores(dense_rows(x, u))), num_users
    )
    stars = None
    if rating_model is not None:
        stars = _all_user_scores(lambda u: rating_model.score_all(torch.from_numpy(u)), num_users)
    tried = []
    for deep_weight in config.deep_weights:
        for rating_weight in config.rating_weights if stars is not None else (0.0,):
            blend = _blend(item_item, deep_part, stars, deep_weight, rating_weight)
            figures = validate(blend)
            grid.append({"deep_weight": deep_weight, "rating_weight": rating_weight, **figures})
            tried.append((figures[SELECTION_METRIC], deep_weight, rating_weight))
    best, deep_weight, rating_weight = max(tried, key=lambda t: t[0])  # the first of equals
    ranker.config = dataclasses.replace(
        ranker.config, deep_weight=deep_weight, rating_weight=rating_weight
    )
    return best


def _blend(
    item_item: torch.Tensor,
    deep_part: torch.Tensor,
    stars: torch.Tensor | None,
    deep_weight: float,
    rating_weight: float,
) -> Callable[[np.ndarray], torch.Tensor]:
    """Scores of users ``u``: ``item_item + deep_weight x deep_part (+ rating_weight x
    stars)``, rows of the all-user (num_users, num_items) parts."""

    def blend(u: np.ndarray) -> torch.Tensor:
        out = item_item[u] + deep_weight * deep_part[u]
        return out + rating_weight * stars[u] if rating_weight and stars is not None else out

    return blend


def refit_ranker(
    train: Interactions,
    model_config: RankerConfig,
    config: RankerTrainConfig,
    epochs: int,
    progress: bool = False,
    checkpoint: str | Path | None = None,
) -> Ranker:
    """Train ``model_config`` (λ and weights already chosen) on these ratings for ``epochs``
    epochs of the deep part, with no validation: the refit of the served archive."""
    x, targets = inputs_and_targets(train, model_config)
    torch.manual_seed(config.seed)
    ranker = Ranker(model_config)
    ranker.set_item_item(*fit_item_item(x, model_config.l2))
    train_deep(ranker, x, targets, config, epochs=epochs, progress=progress, checkpoint=checkpoint)
    return ranker.eval()
