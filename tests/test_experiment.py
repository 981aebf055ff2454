"""Which ratings a trained model holds: the split-trained vocabulary holds the training part
only, the refit holds every rating and repeats what the selection run chose; the blend with
matrix factorization is what is served, scored and refit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from model import artifact
from tests.conftest import GENRES
from train import data
from train import train as train_cli
from train.data.prepared import prepare, prepare_all, prepare_refit
from train.data.synthetic import SyntheticConfig, generate
from train.evaluation.metrics import rmse
from train.fitting.experiment import (
    ChosenBlend,
    RepeatedBlend,
    autorec_configs,
    refit_autorec,
    refit_mf,
    run_autorec,
    run_mf,
)
from train.fitting.settings import TrainConfig
from train.fitting.training import best_epoch

# Small and quick: one hidden layer of 8 units, two members, a few epochs.
TINY = {"hidden_dims": [8], "epochs": 4, "batch_size": 8, "l2": 1.0, "dropout": 0.1}


@pytest.fixture(scope="module")
def dataset(ratings, movies, tmp_path_factory) -> data.Dataset:
    return data.Dataset(
        "synthetic-test", ratings, movies, GENRES, (1.0, 5.0), tmp_path_factory.mktemp("d")
    )


@pytest.fixture(scope="module")
def split(dataset) -> data.Split:
    """A random split in which user 101 has every rating held out (none in training)."""
    parts = data.random_split(dataset.ratings, validation=0.15, test=0.15, seed=0)
    moved = parts.train[parts.train.user_id == 101]
    return data.Split(
        parts.train[parts.train.user_id != 101].reset_index(drop=True),
        parts.validation,
        pd.concat([parts.test, moved], ignore_index=True),
        "test split",
    )


def rated_sets(vocab) -> dict[int, list[int]]:
    return {
        int(user_id): sorted(vocab.movie_ids[vocab.rated_by(u)].tolist())
        for u, user_id in enumerate(vocab.user_ids)
    }


def expected_sets(ratings: pd.DataFrame, user_ids) -> dict[int, list[int]]:
    groups = ratings.groupby("user_id")["movie_id"]
    found = {int(u): sorted(g.tolist()) for u, g in groups}
    return {int(u): found.get(int(u), []) for u in user_ids}


def test_a_split_vocabulary_holds_exactly_the_training_part(dataset, split, movies):
    prepared = prepare(dataset, split)
    vocab = prepared.vocab
    # Indices: every user and movie of the dataset, so ids are stable and all can be asked.
    assert vocab.user_ids.tolist() == sorted(dataset.ratings["user_id"].unique().tolist())
    assert vocab.movie_ids.tolist() == sorted(movies["movie_id"].tolist())
    # Rated sets, counts and means: the training part's and nothing else.
    assert rated_sets(vocab) == expected_sets(split.train, vocab.user_ids)
    assert rated_sets(vocab)[101] == []  # all of 101's ratings are held out
    stats = split.train.groupby("movie_id")["rating"].agg(["count", "mean"])
    stats = stats.reindex(vocab.movie_ids, fill_value=0)
    assert vocab.rating_count.tolist() == stats["count"].tolist()
    assert np.allclose(vocab.rating_mean, stats["mean"].to_numpy())
    assert prepared.holdings() == {
        "ratings": "split train part",
        "count": len(split.train),
        "users": dataset.ratings["user_id"].nunique() - 1,
        "movies": split.train["movie_id"].nunique(),
        "not_held": {"validation": len(split.validation), "test": len(split.test)},
    }


def test_all_ratings_keep_the_same_indices_and_hold_everything(dataset, split):
    prepared, everything = prepare(dataset, split), prepare_all(dataset)
    assert np.array_equal(everything.vocab.user_ids, prepared.vocab.user_ids)
    assert np.array_equal(everything.vocab.movie_ids, prepared.vocab.movie_ids)
    assert rated_sets(everything.vocab) == expected_sets(dataset.ratings, prepared.vocab.user_ids)
    assert everything.validation is None and everything.test is None
    held = everything.holdings()
    assert (held["ratings"], held["count"], held["not_held"]) == (
        "all ratings",
        len(dataset.ratings),
        {},
    )


def test_the_refit_split_holds_training_and_validation_and_keeps_test(dataset, split):
    prepared, refit = prepare(dataset, split), prepare_refit(dataset, split)
    assert np.array_equal(refit.vocab.user_ids, prepared.vocab.user_ids)
    assert np.array_equal(refit.vocab.movie_ids, prepared.vocab.movie_ids)
    both = pd.concat([split.train, split.validation])
    assert rated_sets(refit.vocab) == expected_sets(both, prepared.vocab.user_ids)
    assert refit.validation is None
    assert torch.equal(refit.test.item_idx, prepared.test.item_idx)
    assert torch.equal(refit.test.user_idx, prepared.test.user_idx)
    assert refit.holdings()["ratings"] == "split train and validation parts"
    assert refit.holdings()["not_held"] == {"test": len(split.test)}


def test_the_mf_refit_trains_its_chosen_epochs_and_scores_test_only(dataset, split):
    config = TrainConfig(seed=0, epochs=8, patience=2, batch_size=64)
    selection = run_mf(prepare(dataset, split), config)
    refit = refit_mf(prepare_refit(dataset, split), config, selection)
    assert len(refit.history) == best_epoch(selection.history)
    assert set(refit.scores) == {"test"}
    assert refit.scores["test"]["rmse"] != selection.scores["test"]["rmse"]


def _selection(prepared, tolerance=None, **overrides):
    configs = autorec_configs(prepared, "fast", 3, **(TINY | {"members": 2} | overrides))
    configs.training.patience = 2
    if configs.mf is not None:
        configs.mf = dataclasses.replace(configs.mf, epochs=6, patience=2, batch_size=64)
    return run_autorec(prepared, configs, serve_tolerance=tolerance), configs


@pytest.mark.parametrize("blend_mf", [False, True])
def test_a_refit_on_the_same_ratings_reproduces_the_selected_model(dataset, split, blend_mf):
    """Same seeds, same options, each member (and MF) for its best epoch count, no early
    stopping, the same blend weights: on the selection run's own training part that is
    exactly the model early stopping kept."""
    prepared = prepare(dataset, split)
    selection, configs = _selection(prepared, blend_mf=blend_mf)
    refit = refit_autorec(prepared, configs, selection)
    assert [len(h) for h in refit.member_histories] == [
        best_epoch(h) for h in selection.member_histories
    ]
    assert all("val_rmse" not in row for row in refit.history)
    if blend_mf:
        assert isinstance(refit.blend, RepeatedBlend) and isinstance(selection.blend, ChosenBlend)
        assert refit.blend.mf_epochs == selection.blend.mf.best_epoch
        assert refit.blend.weights == selection.blend.weights
    for name, tensor in selection.model.state_dict().items():
        assert torch.equal(refit.model.state_dict()[name], tensor), name


def test_the_blend_is_the_served_and_scored_model(dataset, split):
    """The average and MF, blended with weights chosen on validation: the run records them,
    and its scores are those of the served model's predictions."""
    prepared = prepare(dataset, split)
    selection, configs = _selection(prepared, blend_mf=True)
    assert isinstance(selection.blend, ChosenBlend)
    blend = selection.blend.to_dict()
    assert selection.name == "movierec (item autoencoder, 2 averaged, blended with MF)"
    assert blend["components"] == ["item autoencoders (2 averaged)", "matrix factorization"]
    assert len(blend["weights"]) == 2 and blend["mf"]["best_epoch"] >= 1
    assert blend["mf"]["training"] == configs.mf.to_dict()
    code_dim = selection.model.config.code_dim
    # Not projected; one more dimension per component: the weights vary with the user.
    assert code_dim == 2 * TINY["hidden_dims"][0] + blend["mf"]["code_dim"] + 2
    assert len(blend["slopes"]) == 2 and set(blend["user_covariate"]) >= {"mean", "std"}
    t = prepared.test
    served = selection.model(t.user_idx, t.item_idx).detach().numpy()
    assert selection.scores["test"]["rmse"] == pytest.approx(rmse(served, t.rating.numpy()))
    assert set(blend["component_scores"]) == set(blend["components"])


def test_a_refit_on_all_ratings_keeps_the_chosen_served_size(dataset, split):
    prepared = prepare(dataset, split)
    # Two members of 16 units: 32 dimensions, of which 16 keep validation RMSE within 1.0.
    selection, configs = _selection(prepared, 1.0, hidden_dims=[16])
    chosen = selection.projection
    assert chosen is not None and chosen.served_dim < chosen.code_dim
    refit = refit_autorec(prepare_all(dataset), configs, selection)
    assert refit.model.config.code_dim == chosen.served_dim
    assert refit.projection is not None and refit.projection.served_dim == chosen.served_dim
    assert refit.scores == {}  # nothing is held out to score it on
    # On training + validation, the refit is scored on the test part it does not hold.
    on_split = refit_autorec(prepare_refit(dataset, split), configs, selection)
    assert set(on_split.scores) == {"test"}
    assert on_split.model.config.code_dim == chosen.served_dim


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(
        SyntheticConfig(num_ratings=3_000, num_users=60, num_movies=150, chunk_ratings=1_000),
        root / "synthetic-refit",
    )
    return root


def _train(root, out, *extra) -> dict:
    argv = [
        *("--dataset", "synthetic-refit", "--data-dir", str(root), "--output", str(out)),
        *("--preset", "fast", "--epochs", "3", "--members", "2", "--hidden-dims", "8"),
        *("--quiet", *extra),
    ]
    assert train_cli.main(argv) == 0
    return json.loads((out / artifact.METRICS).read_text())


def test_python_m_train_saves_the_refit_by_default(synthetic_root, tmp_path):
    metrics = _train(synthetic_root, tmp_path / "a")
    ds = data.load("synthetic-refit", synthetic_root)
    _, vocab, config = artifact.load(tmp_path / "a")
    assert metrics["trained_on"]["ratings"] == "all ratings"
    assert metrics["trained_on"]["count"] == len(ds.ratings)
    assert config["data"]["trained_on"] == metrics["trained_on"]
    assert rated_sets(vocab) == expected_sets(ds.ratings, vocab.user_ids)
    selection = metrics["selection_run"]
    assert selection["trained_on"]["ratings"] == "split train part"
    assert set(selection["results"]) >= {"bias baseline", "movierec (item autoencoder, 2 averaged)"}
    assert metrics["refit"]["member_epochs"] == selection["member_best_epochs"]
    assert config["refit"] == {
        "member_epochs": selection["member_best_epochs"],
        "early_stopping": False,
    }


def test_python_m_train_keep_split_saves_the_split_model(synthetic_root, tmp_path):
    metrics = _train(synthetic_root, tmp_path / "a", "--keep-split", "--seed", "1")
    ds = data.load("synthetic-refit", synthetic_root)
    split = data.random_split(ds.ratings, 0.1, 0.1, seed=1)
    _, vocab, config = artifact.load(tmp_path / "a")
    assert "refit" not in metrics and config["refit"] is None
    assert metrics["trained_on"]["ratings"] == "split train part"
    assert metrics["trained_on"]["count"] == len(split.train)
    assert rated_sets(vocab) == expected_sets(split.train, vocab.user_ids)


def test_python_m_train_records_the_blend_it_serves(synthetic_root, tmp_path):
    """config.json and metrics.json say how the served blend was made; the saved model's
    predictions on the test part are the figures reported."""
    metrics = _train(synthetic_root, tmp_path / "a", "--blend-mf", "--keep-split")
    model, vocab, config = artifact.load(tmp_path / "a")
    blend = config["blend"]
    assert blend["components"] == ["item autoencoders (2 averaged)", "matrix factorization"]
    assert blend["weights"] == metrics["blend"]["weights"] and len(blend["weights"]) == 2
    assert blend["intercept"] == metrics["blend"]["intercept"]
    assert blend["mf_training"] == TrainConfig(seed=0).to_dict()
    ds = data.load("synthetic-refit", synthetic_root)
    test = data.random_split(ds.ratings, 0.1, 0.1, seed=0).test
    users = torch.from_numpy(vocab.user_index(test["user_id"].to_numpy()))
    items = torch.from_numpy(vocab.item_index(test["movie_id"].to_numpy()))
    served = model(users, items).detach().numpy()
    reported = metrics["results"]["movierec (item autoencoder, 2 averaged, blended with MF)"]
    assert rmse(served, test["rating"].to_numpy()) == pytest.approx(reported["test"]["rmse"])

    refit = _train(synthetic_root, tmp_path / "b", "--blend-mf")
    _, _, config = artifact.load(tmp_path / "b")
    chosen = refit["selection_run"]["blend"]
    assert refit["refit"]["blend"]["weights"] == chosen["weights"]
    assert config["refit"]["mf_epochs"] == chosen["mf"]["best_epoch"]


def test_python_m_train_refit_split_saves_the_refit_that_test_scores(synthetic_root, tmp_path):
    """--refit-split: the refit on training + validation, the model train.evaluate scores
    on test; the saved model's test predictions give the figures its metrics.json records."""
    metrics = _train(synthetic_root, tmp_path / "a", "--blend-mf", "--refit-split")
    ds = data.load("synthetic-refit", synthetic_root)
    split = data.random_split(ds.ratings, 0.1, 0.1, seed=0)
    model, vocab, config = artifact.load(tmp_path / "a")
    assert metrics["trained_on"]["ratings"] == "split train and validation parts"
    assert metrics["trained_on"]["count"] == len(split.train) + len(split.validation)
    assert rated_sets(vocab) == expected_sets(
        pd.concat([split.train, split.validation]), vocab.user_ids
    )
    assert metrics["refit"]["member_epochs"] == metrics["selection_run"]["member_best_epochs"]
    users = torch.from_numpy(vocab.user_index(split.test["user_id"].to_numpy()))
    items = torch.from_numpy(vocab.item_index(split.test["movie_id"].to_numpy()))
    served = model(users, items).detach().numpy()
    reported = metrics["refit"]["scores"]["test"]["rmse"]
    assert rmse(served, split.test["rating"].to_numpy()) == pytest.approx(reported)
    assert config["refit"]["early_stopping"] is False


def test_python_m_train_refuses_keep_split_with_refit_split(synthetic_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _train(synthetic_root, tmp_path / "a", "--keep-split", "--refit-split")
    assert "choose one" in capsys.readouterr().err
