"""Choosing a peer's hyperparameters on validation ranking, then scoring it once on test.

The protocol of every ranking row in the report: fit on the training part; on validation the
candidates are the movies a user did not rate in training; on test, those they rated in
neither training nor validation (a served system never recommends what the user already
rated). Relevant: held-out ratings >= 4. Metrics: :func:`train.evaluation.ranking.ranking_on`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from train.data.prepared import Prepared
from train.evaluation.ranking import ranking_on
from train.peers.base import MostPopular, RankingPeer
from train.peers.ease import EASE
from train.peers.ials import IALS

log = logging.getLogger(__name__)

# Validation measure that picks hyperparameters (NDCG rewards the order inside the top-10,
# so it separates settings that tie on Recall@10).
SELECTION_METRIC = "ndcg@10"

# Grids, each fit a few seconds on ML-1M (3.9k movies, 6k users) on one core.
EASE_L2 = (100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)
# Rating-aware EASE: weights of a rating below 4, crossed with binary EASE's chosen λ and its
# two neighbours (the weight moves the best λ little, and a full cross costs 18 inverses).
LOW_WEIGHTS = (0.4, 0.6, 0.8)
# iALS in two stages, as a full cross (factors x regularization x alpha, fits of up to 15 s at
# 256 factors) is not affordable: first regularization x alpha at 64 factors, then the number
# of factors at the chosen pair. Probed on ML-1M validation (seed 0, NDCG@10): regularization
# 1 (0.164) and alpha 40 (0.12 at best) were well behind the best region (regularization 30,
# alpha 1-3: 0.175), and 256 factors brought nothing over 128 (regularization 100, alpha 3)
# at twice the time, so the grid leaves them out.
IALS_FIRST = {"factors": (64,), "regularization": (10.0, 30.0, 100.0), "alpha": (1.0, 3.0, 10.0)}
IALS_FACTORS = (32, 64, 128)


def grid(**axes: Sequence) -> list[dict]:
    """Every combination of the values of ``axes``: ``grid(a=(1, 2), b=(3,))`` is
    ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def fit_peer(peer: RankingPeer, data: Prepared) -> float:
    """Fit ``peer`` on ``data``'s training part; returns the seconds it took."""
    started = time.perf_counter()
    peer.fit(data.interactions())
    return time.perf_counter() - started


@dataclass(frozen=True)
class Trial:
    """One setting tried by :func:`tune`: its validation figures and how long it took to fit."""

    params: dict[str, float]
    validation: dict[str, float]
    fit_seconds: float


@dataclass
class Tuning:
    """The outcome of :func:`tune`: the chosen setting, fitted, and every setting's figures."""

    params: dict[str, float]
    peer: RankingPeer
    table: list[Trial] = field(default_factory=list)  # every setting tried, in order

    @property
    def best(self) -> Trial:
        """The chosen setting's trial."""
        return next(trial for trial in self.table if trial.params == self.params)


def tune(
    peer_factory: Callable[..., RankingPeer],
    settings: Iterable[dict],
    data: Prepared,
    metric: str = SELECTION_METRIC,
    previous: Tuning | None = None,
) -> Tuning:
    """Fit ``peer_factory(**setting)`` for each setting on training, score validation, and
    keep the best by ``metric`` (the first one on ties). Test is not looked at.

    ``previous`` (an earlier stage of the same search) competes too, and settings already in
    its table are not fitted again."""
    best: tuple[float, dict[str, float], RankingPeer] | None = None
    table: list[Trial] = []
    if previous is not None:
        table = list(previous.table)
        best = (previous.best.validation[metric], previous.params, previous.peer)
    done = [trial.params for trial in table]
    for setting in settings:
        if dict(setting) in done:
            continue
        peer = peer_factory(**setting)
        seconds = fit_peer(peer, data)
        validation = ranking_on(peer.score, data, "validation")
        table.append(Trial(dict(setting), validation, seconds))
        log.info(
            "  %s %s: %s %.4f (%.1fs)",
            peer_factory.__name__,
            setting,
            metric,
            validation[metric],
            seconds,
        )
        if best is None or validation[metric] > best[0]:
            best = (validation[metric], dict(setting), peer)
    if best is None:
        raise ValueError("no settings to tune over")
    return Tuning(best[1], best[2], table)


def peer_row(tuning: Tuning, data: Prepared) -> dict:
    """The report's row of a tuned peer: the chosen setting's validation and test figures,
    its fit time, and every setting's (``grid``)."""
    best = tuning.best
    return {
        "params": tuning.params,
        "validation": best.validation,
        "test": ranking_on(tuning.peer.score, data, "test"),
        "fit_seconds": best.fit_seconds,
        "tuning_seconds": sum(t.fit_seconds for t in tuning.table),
        "grid": [
            {"params": t.params, "fit_seconds": t.fit_seconds, **t.validation} for t in tuning.table
        ],
    }


def tune_peers(data: Prepared, seed: int = 0, metric: str = SELECTION_METRIC) -> dict[str, Tuning]:
    """Most popular, EASE, rating-aware EASE and iALS, each tuned on validation (test is not
    looked at); keyed by the model name the reports show."""
    tuned = {"most popular": tune(MostPopular, [{}], data, metric)}
    tuned["EASE"] = ease = tune(EASE, grid(l2=EASE_L2), data, metric)
    l2 = ease.params["l2"]
    tuned["EASE (rating-aware)"] = tune(
        EASE, grid(l2=(l2 / 2, l2, l2 * 2), low_weight=LOW_WEIGHTS), data, metric
    )

    def ials(**params) -> IALS:
        return IALS(seed=seed, **params)

    first = tune(ials, grid(**IALS_FIRST), data, metric)
    chosen = {k: v for k, v in first.params.items() if k != "factors"}
    tuned["iALS"] = tune(
        ials,
        grid(factors=IALS_FACTORS, **{k: (v,) for k, v in chosen.items()}),
        data,
        metric,
        previous=first,
    )
    return tuned


def run_peers(data: Prepared, seed: int = 0, metric: str = SELECTION_METRIC) -> dict[str, dict]:
    """:func:`tune_peers`, each then scored once on test; keyed by the model name the report
    shows."""
    return {name: peer_row(tuning, data) for name, tuning in tune_peers(data, seed, metric).items()}
