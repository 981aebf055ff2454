"""Training and baselines on synthetic data whose answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model.network import FactorModel, FactorModelConfig
from tests.conftest import item_ratings, tiny_autorec
from train import data
from train.data.interactions import Interactions
from train.data.prepared import encode
from train.evaluation.metrics import mae, rmse
from train.fitting.baselines import BiasBaseline, GlobalMean
from train.fitting.settings import AutoRecTrainConfig, TrainConfig
from train.fitting.training import (
    best_epoch,
    evaluate,
    fit,
    fit_autorec,
)


def test_metrics_known_values():
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(np.sqrt(2.5))
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)


def test_bias_baseline_recovers_additive_ratings():
    rng = np.random.default_rng(0)
    user_bias, item_bias = rng.normal(0, 0.5, 20), rng.normal(0, 0.5, 15)
    u, i = np.meshgrid(np.arange(20), np.arange(15), indexing="ij")
    u, i = u.ravel(), i.ravel()
    r = 3.0 + user_bias[u] + item_bias[i]
    pairs = Interactions(u, i, r, 20, 15)
    model = BiasBaseline(20, 15, reg_user=0.0, reg_item=0.0, iterations=50).fit(pairs)
    assert rmse(model.predict(u, i), r) < 1e-6
    assert GlobalMean().fit(pairs).predict(u, i)[0] == pytest.approx(r.mean())


def _split(ratings, vocab):
    split = data.random_split(ratings, validation=0.15, test=0.15, seed=0)
    return encode(split.train, vocab), encode(split.validation, vocab)


def _bias_rmse(vocab, train, val) -> float:
    bias = BiasBaseline(vocab.num_users, vocab.num_items).fit(
        train.interactions(vocab.num_users, vocab.num_items)
    )
    held = val.interactions(vocab.num_users, vocab.num_items)
    return rmse(bias.predict(held.user_idx, held.item_idx), held.rating)


def test_autoencoder_training_beats_the_bias_baseline(ratings, vocab):
    train, val = _split(ratings, vocab)
    net, items = tiny_autorec(vocab, train), item_ratings(train, vocab)
    before = evaluate(net.export(items), val)["rmse"]
    config = AutoRecTrainConfig(
        epochs=80,
        batch_size=8,
        learning_rate=1e-2,
        l2=0.1,
        kernel_l2=0.001,
        dropout=0.0,
        patience=15,
    )
    history = fit_autorec(net, items, val, config, progress=False)
    after = evaluate(net.export(items), val)["rmse"]
    # The restored model is the best epoch's.
    assert after == pytest.approx(min(h["val_rmse"] for h in history), abs=1e-6)
    # The data are rank 2 with user/item interactions, which biases alone cannot capture.
    assert after < 0.8 * before
    assert after < _bias_rmse(vocab, train, val)


def test_matrix_factorization_baseline_learns_too(ratings, vocab):
    train, val = _split(ratings, vocab)
    torch.manual_seed(0)
    model = FactorModel(FactorModelConfig(vocab.num_users, vocab.num_items, code_dim=4))
    with torch.no_grad():
        model.offset.fill_(float(train.rating.mean()))
    config = TrainConfig(epochs=80, batch_size=64, learning_rate=2e-2, l2=0.01, patience=10)
    fit(model, train, val, config, progress=False)
    assert evaluate(model, val)["rmse"] < _bias_rmse(vocab, train, val)


def test_training_is_deterministic_for_a_seed(ratings, vocab):
    train, val = _split(ratings, vocab)
    weights = []
    for _ in range(2):
        net, items = tiny_autorec(vocab, train, kernel_dim=2), item_ratings(train, vocab)
        config = AutoRecTrainConfig(epochs=2, batch_size=8, l2=70.0, dropout=0.2, seed=5)
        fit_autorec(net, items, val, config, progress=False)
        weights.append(net.export(items).item_codes.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_diverging_training_is_refused(ratings, vocab):
    train, val = _split(ratings, vocab)
    net, items = tiny_autorec(vocab, train), item_ratings(train, vocab)
    with torch.no_grad():
        net.decoder.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss is nan"):
        fit_autorec(net, items, val, AutoRecTrainConfig(epochs=1), progress=False)


def test_without_validation_training_runs_every_epoch_and_keeps_the_last(ratings, vocab):
    train, _ = _split(ratings, vocab)
    net, items = tiny_autorec(vocab, train), item_ratings(train, vocab)
    config = AutoRecTrainConfig(epochs=3, batch_size=8, l2=70.0, dropout=0.0, patience=1)
    history = fit_autorec(net, items, None, config, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert all("val_rmse" not in row for row in history)


def test_best_epoch_is_the_one_early_stopping_restores():
    rows = [0.95, 0.93, 0.929995, 0.94, 0.92, 0.925]  # epoch 3 improves by less than 1e-5
    history = [{"epoch": e, "val_rmse": v} for e, v in enumerate(rows, 1)]
    assert best_epoch(history) == 5
    assert best_epoch(history[:4]) == 2


def _trained_mf(vocab, train, val, config, checkpoint=None):
    torch.manual_seed(0)
    model = FactorModel(FactorModelConfig(vocab.num_users, vocab.num_items, code_dim=4))
    history = fit(model, train, val, config, progress=False, checkpoint=checkpoint)
    return model, history


def test_matrix_factorization_resumes_from_its_checkpoint_bit_for_bit(ratings, vocab, tmp_path):
    """fit runs the same epoch loop as fit_autorec, checkpoints included."""
    train, val = _split(ratings, vocab)
    config = TrainConfig(epochs=4, batch_size=64, learning_rate=2e-2, l2=0.01, patience=10)
    straight, history = _trained_mf(vocab, train, val, config)
    _trained_mf(vocab, train, val, dataclasses.replace(config, epochs=2), tmp_path / "mf.pt")
    resumed, resumed_history = _trained_mf(vocab, train, val, config, tmp_path / "mf.pt")
    assert [r["val_rmse"] for r in resumed_history] == [r["val_rmse"] for r in history]
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_run_that_stopped_early_resumes_to_the_same_end(ratings, vocab, tmp_path):
    train, val = _split(ratings, vocab)
    config = TrainConfig(epochs=60, batch_size=64, learning_rate=5e-2, l2=0.0, patience=1)
    stopped, history = _trained_mf(vocab, train, val, config, tmp_path / "mf.pt")
    assert len(history) < config.epochs  # it did stop early
    again, again_history = _trained_mf(vocab, train, val, config, tmp_path / "mf.pt")
    assert again_history == history  # no epoch trained after the stop
    assert len(history) - best_epoch(history) == config.patience
    for name, value in stopped.state_dict().items():  # the best weights, restored again
        assert torch.equal(value, again.state_dict()[name]), name


def test_matrix_factorization_without_validation_ends_where_early_stopping_restored(ratings, vocab):
    """The refit of MF: every epoch up to the validated run's best, the last weights kept,
    which on the same ratings are the weights early stopping restored."""
    train, val = _split(ratings, vocab)
    config = TrainConfig(epochs=60, batch_size=64, learning_rate=5e-2, l2=0.0, patience=1)
    validated, history = _trained_mf(vocab, train, val, config)
    epochs = best_epoch(history)
    assert epochs < len(history)  # early stopping did go past its best epoch
    refit, refit_history = _trained_mf(
        vocab, train, None, dataclasses.replace(config, epochs=epochs)
    )
    assert [row["epoch"] for row in refit_history] == list(range(1, epochs + 1))
    assert all("val_rmse" not in row for row in refit_history)
    for name, value in validated.state_dict().items():
        assert torch.equal(value, refit.state_dict()[name]), name
