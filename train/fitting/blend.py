"""Blends of factor models, themselves one factor model, and their weights chosen on
validation data.

A blend's raw prediction is ``intercept + sum_m w_m * raw_m``, where ``raw_m`` is component
``m``'s unclamped prediction (:meth:`model.network.FactorModel.raw`); only the sum is clamped
to the rating scale. Because each raw prediction is ``o_m + b_um + b_im + p_um . q_im``,

    intercept + sum_m w_m raw_m = (intercept + sum_m w_m o_m) + sum_m w_m b_um
                                  + sum_m w_m b_im + [w_1 p_u1 .. w_M p_uM] . [q_i1 .. q_iM]

is one factor model: vectors concatenated, the user side scaled by the weights, biases and
offsets combined (:func:`blend_factor_models`). Serving, top-K, projection and new-user fold-in
work on it as on a single model. The average of ``M`` models is the blend with weights ``1/M``
and no intercept (:func:`average_factor_models`).

The weights may also vary with the user: ``w_m(u) = w_m + s_m z_u`` and ``intercept(u) = c +
s_0 z_u``, with ``z_u`` a number known of every user (:class:`UserCovariate`: how many training
ratings they have, on a log scale; models with more data about a user deserve more weight
there). That is one factor model too, with ``M`` more dimensions: the user side carries
``w_m(u) p_um`` and ``w_m(u)``, the item side ``q_im`` and ``b_im``, and the user bias
``intercept(u) + sum_m w_m(u) (o_m + b_um)``.

:func:`blend_weights` chooses the weights and intercept (and the slopes) by least squares of
validation ratings on the components' unclamped predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.network import FactorModel
from train.data.interactions import Interactions


@dataclass(frozen=True)
class UserCovariate:
    """``z_u = (log(1 + n_u * reference / total) - mean) / std``: user ``u``'s number of
    training ratings ``n_u``, rescaled to the size (``reference`` ratings) of the training part
    on which the blend's weights were chosen, so that a refit on more ratings (``total``)
    puts each user where they were; ``mean`` and ``std`` standardize it over that part's
    ratings."""

    mean: float
    std: float
    reference: int

    @classmethod
    def fit(cls, counts: np.ndarray, rated_by: np.ndarray) -> UserCovariate:
        """Standardized over the training ratings: ``counts`` (num_users,) training ratings
        per user, ``rated_by`` (n,) the user of each training rating."""
        logs = np.log1p(np.asarray(counts, np.float64))[np.asarray(rated_by)]
        if len(logs) < 2 or not logs.std() > 0:
            raise ValueError("a user covariate needs users with different numbers of ratings")
        return cls(float(logs.mean()), float(logs.std()), int(np.sum(counts)))

    def values(self, counts: np.ndarray) -> np.ndarray:
        """``z`` of every user, from ``counts`` (num_users,) of a training part."""
        counts = np.asarray(counts, np.float64)
        scaled = counts * (self.reference / max(counts.sum(), 1.0))
        return (np.log1p(scaled) - self.mean) / self.std

    def to_dict(self) -> dict:
        return {
            "z": "(log(1 + training ratings of the user x reference / training ratings) - "
            "mean) / std",
            **dataclasses.asdict(self),
        }


@dataclass(frozen=True)
class BlendWeights:
    """The weights of a blend as chosen on validation (:func:`blend_weights`,
    :func:`varying_blend_weights`): one per named component and an intercept; when they vary
    with the user, a slope each, the intercept's slope and the user covariate."""

    components: list[str]
    weights: list[float]
    intercept: float
    slopes: list[float] | None = None
    intercept_slope: float = 0.0
    user_covariate: UserCovariate | None = None

    def __post_init__(self) -> None:
        if (self.slopes is None) != (self.user_covariate is None):
            raise ValueError("weights that vary with the user need both slopes and a covariate")

    def blend(self, models: Sequence[FactorModel], user_counts: np.ndarray) -> FactorModel:
        """:func:`blend_factor_models` of ``models`` with these weights, the covariate (if
        any) of users with ``user_counts`` (num_users,) training ratings."""
        if self.slopes is None or self.user_covariate is None:
            return blend_factor_models(models, self.weights, self.intercept)
        z = self.user_covariate.values(user_counts)
        return blend_factor_models(
            models, self.weights, self.intercept, self.slopes, self.intercept_slope, z
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "components": list(self.components),
            "weights": list(self.weights),
            "intercept": self.intercept,
        }
        if self.slopes is not None and self.user_covariate is not None:
            out |= {
                "slopes": list(self.slopes),
                "intercept_slope": self.intercept_slope,
                "user_covariate": self.user_covariate.to_dict(),
            }
        return out


def blend_factor_models(
    models: Sequence[FactorModel],
    weights: Sequence[float],
    intercept: float = 0.0,
    slopes: Sequence[float] | None = None,
    intercept_slope: float = 0.0,
    user_z: np.ndarray | None = None,
) -> FactorModel:
    """One factor model whose raw prediction is ``intercept + sum_m weights[m] * raw_m`` of
    ``models`` (see the module docstring), in evaluation mode: its predictions are clamped to
    the rating scale once, after the sum. With ``slopes`` (one per model) and ``user_z`` (one
    per user), weight ``m`` is ``weights[m] + slopes[m] * user_z[u]`` and the intercept
    ``intercept + intercept_slope * user_z[u]``.

    Raises ``ValueError`` when there is no model, the weights do not match the models, or the
    models differ in users, items or rating scale."""
    if not models:
        raise ValueError("a blend needs at least one model")
    if len(weights) != len(models):
        raise ValueError(f"{len(weights)} weights for {len(models)} models")
    if not all(np.isfinite([*weights, intercept])):
        raise ValueError(f"weights and intercept must be finite, got {list(weights)}, {intercept}")
    first = models[0].config
    for m in models[1:]:
        c = m.config
        if (c.num_users, c.num_items, c.min_rating, c.max_rating) != (
            first.num_users,
            first.num_items,
            first.min_rating,
            first.max_rating,
        ):
            raise ValueError(
                f"blended models must share users, items and rating scale: {first} and {c} differ"
            )
    if slopes is not None:
        return _varying_blend(models, weights, intercept, slopes, intercept_slope, user_z)
    # Each weighted sum is taken as scale * sum_m (w_m / scale) x_m, with scale the largest
    # |w_m|: equal weights (an average) then sum first and scale once, the float32 arithmetic
    # of a mean, so an average is exactly what averaging always gave.
    scale = max(abs(float(w)) for w in weights) or 1.0
    relative = [float(w) / scale for w in weights]

    def weighted_sum(name: str) -> torch.Tensor:
        terms = torch.stack([getattr(m, name).detach() * r for m, r in zip(models, relative)])
        return _scaled(terms.sum(0), scale)

    config = dataclasses.replace(first, code_dim=sum(m.config.code_dim for m in models))
    out = FactorModel(config)
    with torch.no_grad():
        user = torch.cat([m.user_vectors.detach() * r for m, r in zip(models, relative)], 1)
        out.user_vectors.copy_(_scaled(user, scale))
        out.item_codes.copy_(torch.cat([m.item_codes.detach() for m in models], 1))
        out.user_bias.copy_(weighted_sum("user_bias"))
        out.item_bias.copy_(weighted_sum("item_bias"))
        offset = weighted_sum("offset")
        out.offset.copy_((offset.double() + intercept).to(offset.dtype))
    return out.eval()


def _varying_blend(
    models: Sequence[FactorModel],
    weights: Sequence[float],
    intercept: float,
    slopes: Sequence[float],
    intercept_slope: float,
    user_z: np.ndarray | None,
) -> FactorModel:
    """The blend whose weights vary with the user (the module docstring's second form)."""
    num_users = models[0].config.num_users
    if len(slopes) != len(models):
        raise ValueError(f"{len(slopes)} slopes for {len(models)} models")
    if user_z is None or np.shape(user_z) != (num_users,):
        raise ValueError(f"user_z must hold one value per user ({num_users})")
    if not all(np.isfinite([*slopes, intercept_slope])) or not np.isfinite(user_z).all():
        raise ValueError("slopes and user_z must be finite")
    z = torch.as_tensor(np.asarray(user_z, np.float64))
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    per_user = w + z[:, None] * torch.tensor([float(x) for x in slopes], dtype=torch.float64)
    code_dim = sum(m.config.code_dim for m in models) + len(models)
    out = FactorModel(dataclasses.replace(models[0].config, code_dim=code_dim))
    with torch.no_grad():
        user = [
            m.user_vectors.detach().double() * per_user[:, j, None] for j, m in enumerate(models)
        ]
        out.user_vectors.copy_(torch.cat([*user, per_user], 1).float())
        item = [m.item_codes.detach() for m in models]
        biases = torch.stack([m.item_bias.detach() for m in models], 1)
        out.item_codes.copy_(torch.cat([*item, biases], 1))
        own = torch.stack([m.user_bias.detach().double() + m.offset.double() for m in models], 1)
        out.user_bias.copy_(((own * per_user).sum(1) + intercept + intercept_slope * z).float())
        out.item_bias.zero_()
        out.offset.zero_()
    return out.eval()


def _scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x * scale`` rounded once to ``x``'s dtype (so ``x * (1/M)`` is exactly ``x / M``)."""
    return (x.double() * scale).to(x.dtype)


def average_factor_models(models: Sequence[FactorModel]) -> FactorModel:
    """One factor model whose predictions are the average of ``models``' raw predictions:
    the blend with weights ``1/M`` and no intercept (:func:`blend_factor_models`)."""
    return blend_factor_models(models, [1.0 / len(models)] * len(models) if models else [])


def raw_predictions(model: FactorModel, data: Interactions, batch_size: int = 65536) -> np.ndarray:
    """``model``'s unclamped predictions for the pairs of ``data``: (n,) float64."""
    users, items = torch.from_numpy(data.user_idx), torch.from_numpy(data.item_idx)
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            stop = start + batch_size
            out.append(model.raw(users[start:stop], items[start:stop]))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def least_squares_weights(predictions: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and intercept minimizing ``|ratings - intercept - predictions @ weights|^2``:
    ``predictions`` (n, M) one column per component, ``ratings`` (n,) -> ((M,), float).

    Raises ``ValueError`` when they are not unique: fewer ratings than unknowns, or columns
    that are collinear with each other or with the intercept (e.g. a constant component)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    ratings = np.asarray(ratings, dtype=np.float64)
    if predictions.ndim != 2 or ratings.shape != (len(predictions),):
        raise ValueError(
            f"predictions must be (n, M) and ratings (n,), got {predictions.shape}, {ratings.shape}"
        )
    n, m = predictions.shape
    if n < m + 1:
        raise ValueError(f"{n} ratings cannot determine {m} weights and an intercept")
    if not (np.isfinite(predictions).all() and np.isfinite(ratings).all()):
        raise ValueError("predictions and ratings must be finite")
    design = np.column_stack([predictions, np.ones(n)])  # (n, M + 1)
    solution, _, rank, _ = np.linalg.lstsq(design, ratings, rcond=None)
    if rank < m + 1:
        raise ValueError(
            f"the components' predictions are collinear (rank {rank} of {m + 1} with the "
            "intercept): the weights are not unique"
        )
    return solution[:m], float(solution[m])


def blend_weights(models: Sequence[FactorModel], data: Interactions) -> tuple[list[float], float]:
    """Weights and intercept of :func:`blend_factor_models` chosen on ``data`` (validation
    ratings): least squares of its ratings on the models' unclamped predictions."""
    predictions = np.column_stack([raw_predictions(m, data) for m in models])
    weights, intercept = least_squares_weights(predictions, data.rating)
    return [float(w) for w in weights], intercept


def varying_blend_weights(
    models: Sequence[FactorModel], data: Interactions, user_z: np.ndarray
) -> tuple[list[float], float, list[float], float]:
    """Weights, intercept, slopes and intercept slope of :func:`blend_factor_models` with
    weights that vary with ``user_z`` (one value per user), chosen on ``data`` (validation
    ratings) by least squares: the design holds each component's prediction, the same times
    the rating's ``z_u``, and ``z_u`` itself beside the intercept."""
    predictions = np.column_stack([raw_predictions(m, data) for m in models])
    z = np.asarray(user_z, np.float64)[data.user_idx]
    design = np.column_stack([predictions, predictions * z[:, None], z])
    solution, intercept = least_squares_weights(design, data.rating)
    m = len(models)
    weights, slopes = solution[:m], solution[m : 2 * m]
    return [float(w) for w in weights], intercept, [float(s) for s in slopes], float(solution[-1])
