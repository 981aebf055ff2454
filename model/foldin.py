"""Fold-in: a new user's vector and bias from a few ratings, without retraining.

The served model predicts ``r_hat(u, i) = offset + b_u + b_i + <p_u, q_i>``. For a user the
model has never seen, the item side (``q_i``, ``b_i``, ``offset``) is fixed, so their
``w = [p_u, b_u]`` is a linear regression on the codes of the movies they rated:

    y_j = r_j - offset - b_{i_j}          x_j = [q_{i_j}, 1]          y_j ~ x_j . w

It is solved as a Bayesian linear regression (ridge) whose prior is the population of trained
users: ``w ~ N(mean, C)`` with ``mean`` and ``C`` the average and covariance of the trained
``[p_u, b_u]`` of the users with many training ratings (:func:`prior_users`), whose vectors
say what users are like rather than what the training's regularization made of a few
ratings. The posterior mean minimizes

    |y - X w|^2 + ridge * (w - mean)^T C^-1 (w - mean)

so ``ridge`` is the noise variance of a rating relative to the prior (1.0 ~ MAP with rating
noise of one squared star), with no ratings the answer is the average trained user, and the
penalty follows the directions in which trained users actually differ. A diagonal penalty
does much worse here: the autoencoder's codes are positive (sigmoid outputs), so user vectors
move along strongly correlated directions, and its user bias barely varies.

Everything is batched over users with padded rating lists: one ``torch.linalg.solve`` for the
whole batch, on the smaller of the two equivalent systems (the n x n "dual" one when users give
fewer ratings than the code size, the (k+1) x (k+1) "primal" one otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.network import FactorModel

# Share of the prior covariance replaced by its diagonal. The empirical covariance of a few
# hundred users in a 500-dimensional code space is singular; shrinking it a little towards its
# diagonal makes it invertible and changed fold-in RMSE on ML-100K by < 0.001 (0 to 0.1 tried).
COVARIANCE_SHRINKAGE = 0.1


# The prior is taken over users with at least this many training ratings (or, where fewer than
# PRIOR_MIN_USERS have that many, the PRIOR_MIN_USERS users with the most). Chosen on
# validation: ML-100K, the new-user protocol's model (train.evaluation.newusers) of seeds 0
# and 1 (full preset) and 0, 1, 2 (fast), 300 of its training users folded in from their
# first 10 / 20 training ratings in time order and scored on their validation ratings. Fold-in
# RMSE, full / fast, with the prior over users with at least
#   1 rating:     0.9947 / 0.9674,  1.0174 / 0.9917
#   100 ratings:  0.9884 / 0.9620,  1.0014 / 0.9764
#   150 ratings:  0.9879 / 0.9619,  0.9997 / 0.9748
#   200 ratings:  0.9891 / 0.9631,  0.9996 / 0.9741
#   300 ratings:  0.9937 / 0.9670,  1.0060 / 0.9778
PRIOR_MIN_RATINGS = 150
PRIOR_MIN_USERS = 100


def prior_users(counts: np.ndarray) -> np.ndarray | None:
    """Indices of the users whose trained vectors make the prior, from ``counts`` (num_users,)
    their training ratings: those with at least :data:`PRIOR_MIN_RATINGS`, or, where fewer
    than :data:`PRIOR_MIN_USERS` have that many, the :data:`PRIOR_MIN_USERS` with the most
    (ties included); never a user without ratings. None (every user) when fewer than two
    users have ratings."""
    counts = np.asarray(counts)
    rated = int(np.count_nonzero(counts))
    if rated < 2:
        return None
    kth = int(np.sort(counts)[::-1][min(PRIOR_MIN_USERS, rated) - 1])
    return np.flatnonzero(counts >= max(min(PRIOR_MIN_RATINGS, kth), 1))


@dataclass(frozen=True)
class UserPrior:
    """Mean and covariance of trained users' ``[p_u, b_u]`` (float64, size k + 1)."""

    mean: torch.Tensor  # (k + 1,)
    covariance: torch.Tensor  # (k + 1, k + 1), shrunk, positive definite
    precision: torch.Tensor  # (k + 1, k + 1), its inverse

    @classmethod
    def from_model(
        cls,
        model: FactorModel,
        user_idx: np.ndarray | None = None,
        shrinkage: float = COVARIANCE_SHRINKAGE,
    ) -> UserPrior:
        """The prior of ``model``'s users (all of them, or those in ``user_idx``: pass the
        users that had training ratings when some did not)."""
        if not 0.0 < shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        with torch.no_grad():
            w = torch.cat([model.user_vectors, model.user_bias[:, None]], 1).double()
        if user_idx is not None:
            w = w[torch.as_tensor(np.asarray(user_idx, dtype=np.int64))]
        if len(w) < 2:
            raise ValueError(f"a user prior needs at least 2 trained users, got {len(w)}")
        mean = w.mean(0)
        cov = torch.cov(w.T)
        diag = torch.diag(cov.diag())
        cov = (1 - shrinkage) * cov + shrinkage * diag
        # A coordinate on which all users agree exactly would leave the matrix singular.
        floor = 1e-9 * max(float(cov.diag().mean()), 1e-12)
        cov = cov + floor * torch.eye(len(cov), dtype=cov.dtype)
        return cls(mean, cov, torch.linalg.inv(cov))


def fold_in(
    model: FactorModel,
    prior: UserPrior,
    item_idx: list[np.ndarray],
    ratings: list[np.ndarray],
    ridge: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors and biases of new users from their ratings, in one batched solve.

    Parameters
    ----------
    model : FactorModel
        Supplies the item codes, item biases and offset.
    prior : UserPrior
        Usually ``UserPrior.from_model(model)``.
    item_idx, ratings : list of numpy.ndarray
        One entry per new user: the dense indices of the items they rated and their ratings
        (the same length; may be empty, which gives the prior mean).
    ridge : float
        Weight of the prior, > 0 (see the module docstring).

    Returns
    -------
    vectors : torch.Tensor, shape (B, k), float32
    biases : torch.Tensor, shape (B,), float32
    """
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    if len(item_idx) != len(ratings):
        raise ValueError(f"{len(item_idx)} item lists but {len(ratings)} rating lists")
    k1 = len(prior.mean)
    batch = len(item_idx)
    if batch == 0:
        return torch.zeros(0, k1 - 1), torch.zeros(0)
    if any(len(i) != len(r) for i, r in zip(item_idx, ratings)):
        raise ValueError("each user needs as many ratings as rated items")
    lengths = np.array([len(i) for i in item_idx], dtype=np.int64)
    n = max(int(lengths.max()), 1)
    # Padded design: rows past a user's own ratings stay zero (x = 0, y = 0), which adds
    # nothing to either system below.
    rows = np.repeat(np.arange(batch), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = torch.from_numpy(np.concatenate([np.asarray(i, np.int64) for i in item_idx]))
    values = torch.from_numpy(np.concatenate([np.asarray(r, np.float64) for r in ratings]))
    rows_t, cols_t = torch.from_numpy(rows), torch.from_numpy(cols)
    with torch.no_grad():
        x = torch.zeros(batch, n, k1, dtype=torch.float64)
        x[rows_t, cols_t, :-1] = model.item_codes[items].double()
        x[rows_t, cols_t, -1] = 1.0
        y = torch.zeros(batch, n, dtype=torch.float64)
        y[rows_t, cols_t] = values - model.offset.item() - model.item_bias[items].double()
        resid = y - x @ prior.mean  # (B, n); 0 on padding
        if n <= k1:
            # Dual: d = C X^T (X C X^T + ridge I)^-1 resid, an n x n system per user.
            xc = x @ prior.covariance  # (B, n, k1)
            gram = xc @ x.transpose(1, 2)  # (B, n, n)
            gram += ridge * torch.eye(n, dtype=torch.float64)
            alpha = torch.linalg.solve(gram, resid)  # (B, n)
            deviation = (xc.transpose(1, 2) @ alpha[..., None])[..., 0]  # (B, k1)
        else:
            # Primal: (X^T X + ridge C^-1) d = X^T resid, a (k+1) x (k+1) system per user.
            lhs = x.transpose(1, 2) @ x + ridge * prior.precision  # (B, k1, k1)
            rhs = (x.transpose(1, 2) @ resid[..., None])[..., 0]  # (B, k1)
            deviation = torch.linalg.solve(lhs, rhs)
        w = prior.mean + deviation  # (B, k1)
    return w[:, :-1].float(), w[:, -1].float()
