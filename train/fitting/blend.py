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

:func:`blend_weights` chooses the weights and intercept by least squares of validation ratings
on the components' unclamped predictions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from model.network import FactorModel
from train.fitting.training import Encoded


def blend_factor_models(
    models: Sequence[FactorModel], weights: Sequence[float], intercept: float = 0.0
) -> FactorModel:
    """One factor model whose raw prediction is ``intercept + sum_m weights[m] * raw_m`` of
    ``models`` (see the module docstring), in evaluation mode: its predictions are clamped to
    the rating scale once, after the sum.

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


def _scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x * scale`` rounded once to ``x``'s dtype (so ``x * (1/M)`` is exactly ``x / M``)."""
    return (x.double() * scale).to(x.dtype)


def average_factor_models(models: Sequence[FactorModel]) -> FactorModel:
    """One factor model whose predictions are the average of ``models``' raw predictions:
    the blend with weights ``1/M`` and no intercept (:func:`blend_factor_models`)."""
    return blend_factor_models(models, [1.0 / len(models)] * len(models) if models else [])


def raw_predictions(model: FactorModel, data: Encoded, batch_size: int = 65536) -> np.ndarray:
    """``model``'s unclamped predictions for the pairs of ``data``: (n,) float64."""
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            stop = start + batch_size
            out.append(model.raw(data.user_idx[start:stop], data.item_idx[start:stop]))
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


def blend_weights(models: Sequence[FactorModel], data: Encoded) -> tuple[list[float], float]:
    """Weights and intercept of :func:`blend_factor_models` chosen on ``data`` (validation
    ratings): least squares of its ratings on the models' unclamped predictions."""
    predictions = np.column_stack([raw_predictions(m, data) for m in models])
    weights, intercept = least_squares_weights(predictions, data.rating.numpy())
    return [float(w) for w in weights], intercept
