"""Calibrating ``novelty`` (:mod:`model.novelty`) on validation, for any scorer of users.

At each of :data:`~model.novelty.LEVELS` the strength of the popularity penalty is the one
that brings the mean popularity percentile of the validation top-10 lists from ``p0`` (no
penalty) to ``p0 - level * (p0 - FLOOR)``, found by bisection. Only the percentile is looked
at, not accuracy: the calibration says what a novelty asks for, the same for every model, and
the evaluation then shows what each model's lists cost at that popularity. The same function
calibrates the ranking peers, so their penalised curves are swept the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from model.novelty import FLOOR, LEVELS, popularity_penalty, standardise
from train.data.interactions import Interactions
from train.data.prepared import Prepared
from train.evaluation.ranking import popularity_percentile

log = logging.getLogger(__name__)

MAX_USERS = 2_000  # validation users the calibration scores (a seeded sample beyond this)
K = 10
STEPS = 30  # bisection steps: the strength to about 1e-9 of its bracket


class Calibration:
    """Standardised validation scores of a sample of users, their seen movies masked, and the
    popularity figures the percentile is measured with.

    Parameters
    ----------
    score_users : callable
        ``score_users(user_idx)`` -> (B, N) scores, as served before any penalty.
    train : Interactions
        The training pairs: what the users have seen, and the popularity counts.
    users : numpy.ndarray
        The validation users to calibrate on.
    seed : int
        Seeds the sample when there are more than :data:`MAX_USERS` users.
    """

    def __init__(
        self,
        score_users: Callable[[np.ndarray], torch.Tensor],
        train: Interactions,
        users: np.ndarray,
        seed: int = 0,
    ):
        train_users, train_items, num_items = train.user_idx, train.item_idx, train.num_items
        users = np.unique(users)
        if len(users) > MAX_USERS:
            users = np.sort(np.random.default_rng(seed).choice(users, MAX_USERS, replace=False))
        counts = np.bincount(train_items, minlength=num_items)
        self.penalty = popularity_penalty(counts)
        self.percentile = torch.from_numpy(popularity_percentile(train_items, num_items))
        rows = []
        for start in range(0, len(users), 512):
            batch = users[start : start + 512]
            with torch.no_grad():
                z = standardise(score_users(batch).float())
            seen = np.isin(train_users, batch)
            position = np.searchsorted(batch, train_users[seen])
            z[
                torch.from_numpy(position), torch.from_numpy(train_items[seen].astype(np.int64))
            ] = -torch.inf
            rows.append(z)
        self.scores = torch.cat(rows)  # (U, N)

    @classmethod
    def on_validation(
        cls, score_users: Callable[[np.ndarray], torch.Tensor], data: Prepared, seed: int = 0
    ) -> Calibration:
        """Calibrated on the users of ``data``'s validation part, against its training part."""
        users = data.interactions("validation").user_idx
        return cls(score_users, data.interactions("train"), users, seed)

    def mean_percentile(self, strength: float) -> float:
        """Mean popularity percentile of the top-10 lists under a penalty of ``strength``."""
        top = torch.topk(self.scores - strength * self.penalty, K, dim=1).indices
        return float(self.percentile[top].mean())

    def strengths(self, floor: float = FLOOR) -> tuple[list[float], list[float]]:
        """The strength at each of :data:`LEVELS`, and the percentile each reaches."""
        p0 = self.mean_percentile(0.0)
        strengths, reached = [0.0], [p0]
        for level in LEVELS[1:]:
            target = p0 - level * (p0 - floor)
            low, high = strengths[-1], max(strengths[-1], 0.5)
            while self.mean_percentile(high) > target and high < 64:
                low, high = high, high * 2
            for _ in range(STEPS):
                middle = (low + high) / 2
                if self.mean_percentile(middle) > target:
                    low = middle
                else:
                    high = middle
            strengths.append(round(high, 6))
            reached.append(self.mean_percentile(strengths[-1]))
        log.info(
            "novelty calibrated: strengths %s, validation popularity percentile %s",
            strengths,
            [round(p, 1) for p in reached],
        )
        return strengths, reached
