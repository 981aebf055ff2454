"""Simple baselines every model is reported beside.

Both take dense indices, like the network, so they are scored on exactly the same split.
"""

from __future__ import annotations

import numpy as np

from train.data.interactions import Interactions


class GlobalMean:
    """Predicts the mean training rating for everything."""

    def fit(self, train: Interactions) -> GlobalMean:
        self.mean_ = float(np.mean(train.rating))
        return self

    def predict(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return np.full(len(user_idx), self.mean_, dtype=np.float64)


class BiasBaseline:
    """``r = mu + b_u + b_i`` with L2-shrunk biases, fitted by alternating least squares.

    Parameters
    ----------
    num_users, num_items : int
    reg_user, reg_item : float
        Shrinkage: a bias estimated from n ratings is divided by ``n + reg`` instead of ``n``,
        so users and movies with few ratings stay near the mean (Koren, 2008).
    iterations : int
    min_rating, max_rating : float
        Predictions are clipped to this range.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        iterations: int = 10,
        min_rating: float = 1.0,
        max_rating: float = 5.0,
    ):
        self.num_users, self.num_items = num_users, num_items
        self.reg_user, self.reg_item = reg_user, reg_item
        self.iterations = iterations
        self.min_rating, self.max_rating = min_rating, max_rating

    def fit(self, train: Interactions) -> BiasBaseline:
        user_idx, item_idx = train.user_idx, train.item_idx
        r = np.asarray(train.rating, dtype=np.float64)
        self.mean_ = float(r.mean())
        self.user_bias_ = np.zeros(self.num_users)
        self.item_bias_ = np.zeros(self.num_items)
        n_user = np.bincount(user_idx, minlength=self.num_users)
        n_item = np.bincount(item_idx, minlength=self.num_items)
        for _ in range(self.iterations):
            resid = r - self.mean_ - self.user_bias_[user_idx]
            self.item_bias_ = np.bincount(item_idx, resid, self.num_items) / (
                n_item + self.reg_item
            )
            resid = r - self.mean_ - self.item_bias_[item_idx]
            self.user_bias_ = np.bincount(user_idx, resid, self.num_users) / (
                n_user + self.reg_user
            )
        return self

    def predict(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        pred = self.mean_ + self.user_bias_[user_idx] + self.item_bias_[item_idx]
        return np.clip(pred, self.min_rating, self.max_rating)
