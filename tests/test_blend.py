"""Blends of factor models: one factor model whose raw prediction is the weighted sum of its
components', clamped once; the average as the blend with equal weights; weights chosen by
least squares on validation ratings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.network import FactorModel, FactorModelConfig
from train.data.interactions import Interactions
from train.fitting.blend import (
    UserCovariate,
    average_factor_models,
    blend_factor_models,
    blend_weights,
    least_squares_weights,
    raw_predictions,
    varying_blend_weights,
)

NUM_USERS, NUM_ITEMS = 9, 11
USERS = torch.arange(NUM_USERS).repeat_interleave(NUM_ITEMS)  # every pair
ITEMS = torch.arange(NUM_ITEMS).repeat(NUM_USERS)


def pairs(ratings: torch.Tensor) -> Interactions:
    """Every (user, item) pair with ``ratings``."""
    return Interactions(USERS.numpy(), ITEMS.numpy(), ratings.numpy(), NUM_USERS, NUM_ITEMS)


def random_model(seed: int, code_dim: int = 4, scale: float = 1.0) -> FactorModel:
    """A factor model with every parameter random (biases and offset too); ``scale`` 2 puts
    many raw predictions outside the 1-5 scale."""
    g = torch.Generator().manual_seed(seed)
    model = FactorModel(FactorModelConfig(NUM_USERS, NUM_ITEMS, code_dim))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        model.offset.add_(3.0)
    return model.eval()


def test_a_blend_predicts_the_weighted_sum_of_raw_predictions_clamped_once():
    models = [random_model(0, 4, 2.0), random_model(1, 6, 2.0), random_model(2, 3, 2.0)]
    weights, intercept = [0.7, 0.45, -0.2], -0.3
    blend = blend_factor_models(models, weights, intercept)
    assert blend.config.code_dim == 13 and not blend.training
    expected = intercept + sum(w * m.raw(USERS, ITEMS) for m, w in zip(models, weights))
    assert torch.allclose(blend.raw(USERS, ITEMS), expected, atol=1e-5)
    clamped = expected.clamp(1.0, 5.0)
    assert torch.allclose(blend(USERS, ITEMS), clamped, atol=1e-5)
    assert torch.allclose(blend.score_all(torch.arange(NUM_USERS)).flatten(), clamped, atol=1e-5)
    # Once, at the end: clamping each component first would give other predictions.
    each = intercept + sum(w * m(USERS, ITEMS) for m, w in zip(models, weights))
    assert (expected < 1.0).any() and (expected > 5.0).any()
    assert not torch.allclose(each.clamp(1.0, 5.0), clamped, atol=1e-2)


def test_weights_that_vary_with_the_user_are_one_factor_model_too():
    models = [random_model(0, 4, 2.0), random_model(1, 6, 2.0)]
    weights, intercept, slopes, intercept_slope = [0.7, 0.4], -0.3, [0.05, -0.08], 0.02
    z = np.linspace(-2.0, 2.0, NUM_USERS)
    blend = blend_factor_models(models, weights, intercept, slopes, intercept_slope, z)
    assert blend.config.code_dim == 4 + 6 + 2  # one more dimension per component
    zu = torch.from_numpy(z)[USERS]
    expected = intercept + intercept_slope * zu
    for m, w, s in zip(models, weights, slopes):
        expected = expected + (w + s * zu) * m.raw(USERS, ITEMS).double()
    assert torch.allclose(blend.raw(USERS, ITEMS).double(), expected, atol=1e-4)
    assert torch.allclose(blend(USERS, ITEMS).double(), expected.clamp(1.0, 5.0), atol=1e-4)
    with pytest.raises(ValueError, match="one value per user"):
        blend_factor_models(models, weights, intercept, slopes, intercept_slope, z[:3])
    with pytest.raises(ValueError, match="slopes for"):
        blend_factor_models(models, weights, intercept, [0.1], intercept_slope, z)


def test_varying_weights_are_recovered_by_least_squares_and_the_covariate_rescales():
    models = [random_model(3), random_model(4)]
    counts = np.arange(1, NUM_USERS + 1) * 3
    covariate = UserCovariate.fit(counts, USERS.numpy())
    z = covariate.values(counts)
    assert np.average(z[USERS.numpy()]) == pytest.approx(0.0, abs=1e-12)
    # A refit on twice the ratings puts every user where they were.
    assert np.allclose(covariate.values(counts * 2), z)
    truth = blend_factor_models(models, [0.6, 0.5], 0.2, [0.1, -0.05], 0.03, z)
    data = pairs(truth.raw(USERS, ITEMS).detach())
    weights, intercept, slopes, intercept_slope = varying_blend_weights(models, data, z)
    assert np.allclose(weights, [0.6, 0.5], atol=1e-4)
    assert np.allclose(slopes, [0.1, -0.05], atol=1e-4)
    assert (intercept, intercept_slope) == pytest.approx((0.2, 0.03), abs=1e-3)


def test_the_average_is_the_blend_with_equal_weights_and_the_float32_mean_bit_for_bit():
    for count in (1, 2, 3, 5, 8):
        models = [random_model(seed, 3 + seed % 2) for seed in range(count)]
        average = average_factor_models(models)
        # What averaging has always computed: vectors concatenated and divided, biases the mean.
        assert torch.equal(
            average.user_vectors, torch.cat([m.user_vectors for m in models], 1) / count
        )
        assert torch.equal(average.item_codes, torch.cat([m.item_codes for m in models], 1))
        for name in ("user_bias", "item_bias", "offset"):
            mean = torch.stack([getattr(m, name) for m in models]).mean(0)
            assert torch.equal(getattr(average, name), mean), (count, name)
        blend = blend_factor_models(models, [1 / count] * count, 0.0)
        for name, tensor in average.state_dict().items():
            assert torch.equal(blend.state_dict()[name], tensor)
        mean_raw = torch.stack([m.raw(USERS, ITEMS) for m in models]).mean(0)
        assert torch.allclose(average.raw(USERS, ITEMS), mean_raw, atol=1e-5)


def test_blends_refuse_what_is_not_one_model():
    a = random_model(0)
    with pytest.raises(ValueError, match="at least one model"):
        blend_factor_models([], [])
    with pytest.raises(ValueError, match="2 weights for 1 models"):
        blend_factor_models([a], [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        blend_factor_models([a], [float("nan")])
    other = FactorModel(FactorModelConfig(NUM_USERS, NUM_ITEMS + 1, 4))
    with pytest.raises(ValueError, match="share users, items and rating scale"):
        blend_factor_models([a, other], [0.5, 0.5])


def test_least_squares_recovers_known_weights():
    rng = np.random.default_rng(0)
    predictions = rng.normal(3.5, 1.0, size=(400, 3))
    truth, intercept = np.array([0.727, 0.308, -0.05]), -0.119
    ratings = intercept + predictions @ truth
    weights, fitted = least_squares_weights(predictions, ratings)
    assert np.allclose(weights, truth, atol=1e-10) and abs(fitted - intercept) < 1e-10
    noisy = ratings + rng.normal(0, 0.05, size=len(ratings))
    weights, fitted = least_squares_weights(predictions, noisy)
    assert np.allclose(weights, truth, atol=0.02) and abs(fitted - intercept) < 0.1


def test_blend_weights_are_chosen_on_unclamped_predictions():
    """Ratings made from the components' raw predictions, many outside the rating scale:
    the weights are recovered only because the fit reads raw, not clamped, predictions."""
    models = [random_model(3, scale=2.0), random_model(4, scale=2.0)]
    truth, intercept = [0.6, 0.5], 0.25
    ratings = intercept + sum(w * m.raw(USERS, ITEMS) for m, w in zip(models, truth))
    data = pairs(ratings.detach().float())
    assert np.allclose(raw_predictions(models[0], data), models[0].raw(USERS, ITEMS).detach())
    weights, fitted = blend_weights(models, data)
    assert np.allclose(weights, truth, atol=1e-5) and abs(fitted - intercept) < 1e-4


def test_least_squares_refuses_weights_that_are_not_unique():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(50, 1))
    with pytest.raises(ValueError, match="collinear"):
        least_squares_weights(np.column_stack([p, 2 * p]), rng.normal(size=50))
    with pytest.raises(ValueError, match="collinear"):  # a constant component
        least_squares_weights(np.column_stack([p, np.full((50, 1), 3.0)]), rng.normal(size=50))
    with pytest.raises(ValueError, match="2 ratings cannot determine 2 weights"):
        least_squares_weights(rng.normal(size=(2, 2)), rng.normal(size=2))
    with pytest.raises(ValueError, match=r"\(n, M\)"):
        least_squares_weights(rng.normal(size=5), rng.normal(size=5))
