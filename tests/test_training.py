"""Training and baselines on synthetic data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import data
from model.baselines import BiasBaseline, GlobalMean
from model.metrics import mae, rmse
from model.network import ModelConfig, NeuralCF
from model.training import TrainConfig, encode, evaluate, fit


def test_metrics_known_values():
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(np.sqrt(2.5))
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)


def test_bias_baseline_recovers_additive_ratings():
    rng = np.random.default_rng(0)
    user_bias, item_bias = rng.normal(0, 0.5, 20), rng.normal(0, 0.5, 15)
    u, i = np.meshgrid(np.arange(20), np.arange(15), indexing="ij")
    u, i = u.ravel(), i.ravel()
    r = 3.0 + user_bias[u] + item_bias[i]
    model = BiasBaseline(20, 15, reg_user=0.0, reg_item=0.0, iterations=50).fit(u, i, r)
    assert rmse(model.predict(u, i), r) < 1e-6
    assert GlobalMean().fit(u, i, r).predict(u, i)[0] == pytest.approx(r.mean())


def _setup(ratings, vocab, seed=0):
    split = data.random_split(ratings, validation=0.15, test=0.15, seed=0)
    train, val = encode(split.train, vocab), encode(split.validation, vocab)
    config = ModelConfig(
        num_users=vocab.num_users,
        num_items=vocab.num_items,
        num_genres=3,
        embedding_dim=8,
        hidden_dims=[8],
        dropout=0.0,
        global_mean=float(train.rating.mean()),
    )
    torch.manual_seed(seed)
    return NeuralCF(config, torch.from_numpy(vocab.genres)), train, val


def test_training_lowers_validation_error_below_the_bias_baseline(ratings, vocab):
    model, train, val = _setup(ratings, vocab)
    before = evaluate(model, val)["rmse"]
    history = fit(
        model,
        train,
        val,
        TrainConfig(epochs=60, batch_size=64, learning_rate=1e-2, l2=0.01, patience=10),
        progress=False,
    )
    after = evaluate(model, val)["rmse"]
    # The restored model is the best epoch's.
    assert after == pytest.approx(min(h["val_rmse"] for h in history), abs=1e-6)
    bias = BiasBaseline(vocab.num_users, vocab.num_items).fit(
        train.user_idx.numpy(), train.item_idx.numpy(), train.rating.numpy()
    )
    bias_rmse = rmse(bias.predict(val.user_idx.numpy(), val.item_idx.numpy()), val.rating.numpy())
    # The data are rank 2 with user/item interactions, which biases alone cannot capture.
    assert after < 0.8 * before
    assert after < bias_rmse


def test_training_is_deterministic_for_a_seed(ratings, vocab):
    weights = []
    for _ in range(2):
        model, train, val = _setup(ratings, vocab, seed=5)
        fit(model, train, val, TrainConfig(epochs=2, batch_size=64, seed=5), progress=False)
        weights.append(model.user_embedding.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_diverging_training_is_refused(ratings, vocab):
    model, train, val = _setup(ratings, vocab)
    with torch.no_grad():
        model.user_embedding.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss is nan"):
        fit(model, train, val, TrainConfig(epochs=1), progress=False)
