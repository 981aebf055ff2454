"""Shared fixtures: tiny synthetic MovieLens-shaped data with a known structure, a small
trained artifact built from it, and (for integration tests) one TorchServe serving it.
Everything is offline and takes seconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from loadtest.server import Server, ServerError, endpoints, local_torchserve
from model import artifact
from model.ranker import RankerConfig
from model.vocab import Vocabulary
from train import archive
from train.data.prepared import encode
from train.fitting.autorec import AutoRecConfig, ItemAutoRec, ItemRatings
from train.fitting.ranker_training import refit_ranker
from train.fitting.settings import AutoRecTrainConfig, RankerTrainConfig
from train.fitting.training import fit_autorec

GENRES = ("Action", "Comedy", "Drama")


def synthetic_ratings(
    num_users: int = 40, num_items: int = 30, density: float = 0.5, seed: int = 0
) -> pd.DataFrame:
    """Ratings from a rank-2 model plus noise, rounded to 1..5 stars, with raw ids that are
    not dense (users 101, 103, ...; movies 11, 14, ...) to exercise the vocabulary."""
    rng = np.random.default_rng(seed)
    user_f, item_f = rng.normal(size=(num_users, 2)), rng.normal(size=(num_items, 2))
    mask = rng.random((num_users, num_items)) < density
    u, i = np.nonzero(mask)
    raw = 3.0 + 1.2 * (user_f[u] * item_f[i]).sum(1) + rng.normal(0, 0.3, len(u))
    return pd.DataFrame(
        {
            "user_id": (101 + 2 * u).astype(np.int64),
            "movie_id": (11 + 3 * i).astype(np.int64),
            "rating": np.clip(np.round(raw), 1, 5).astype(np.float32),
            "timestamp": (880_000_000 + rng.integers(0, 10**7, len(u))).astype(np.int64),
        }
    )


def synthetic_movies(num_items: int = 30) -> pd.DataFrame:
    ids = 11 + 3 * np.arange(num_items)
    genres = ["|".join(g for j, g in enumerate(GENRES) if (n >> j) & 1) for n in range(num_items)]
    return pd.DataFrame(
        {"movie_id": ids, "title": [f"Movie {m} (1995)" for m in ids], "genres": genres}
    )


@pytest.fixture(scope="session")
def ratings() -> pd.DataFrame:
    return synthetic_ratings()


@pytest.fixture(scope="session")
def movies() -> pd.DataFrame:
    return synthetic_movies()


@pytest.fixture(scope="session")
def vocab(ratings, movies) -> Vocabulary:
    return Vocabulary.build(ratings, movies, GENRES)


def item_ratings(data, vocab) -> ItemRatings:
    return ItemRatings(data.interactions(vocab.num_users, vocab.num_items))


def tiny_autorec(vocab, data, **overrides) -> ItemAutoRec:
    config = AutoRecConfig(
        num_users=vocab.num_users,
        num_items=vocab.num_items,
        num_genres=len(GENRES),
        global_mean=float(data.rating.mean()),
        **{"hidden_dims": [16], "kernel_dim": 3, **overrides},
    )
    torch.manual_seed(0)
    return ItemAutoRec(config, torch.from_numpy(vocab.genres))


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory, ratings, vocab) -> Path:
    """A small autoencoder trained for a few epochs on the synthetic data, exported and saved
    as an artifact (the served form), with a small ranking model beside it."""
    data = encode(ratings, vocab)
    net = tiny_autorec(vocab, data)
    train = item_ratings(data, vocab)
    config = AutoRecTrainConfig(epochs=3, batch_size=8, l2=1.0, dropout=0.0)
    fit_autorec(net, train, data, config, progress=False)
    ranker = tiny_ranker(vocab, data)
    out = tmp_path_factory.mktemp("artifact") / "tiny"
    artifact.save(
        out,
        net.export(train),
        vocab,
        {"training": {"note": "test fixture"}},
        {"results": {}},
        ranker=ranker,
    )
    return out


def tiny_ranker(vocab, data):
    """A ranking model of the synthetic data: all three parts weigh in."""
    config = RankerConfig(
        vocab.num_items, hidden_dim=8, latent_dim=4, l2=10.0, deep_weight=0.3, rating_weight=0.2
    )
    return refit_ranker(
        data.interactions(vocab.num_users, vocab.num_items),
        config,
        RankerTrainConfig(batch_size=8),
        epochs=3,
    )


@pytest.fixture(scope="session")
def served_mar(tmp_path_factory, artifact_dir) -> Path:
    """The tiny artifact archived as `make archive` does: model_store/movierec.mar (returned)
    and movierec-bulk.mar beside it."""
    mar, _ = archive.build_endpoints(artifact_dir, tmp_path_factory.mktemp("model_store"))
    return mar


@pytest.fixture(scope="session")
def server(tmp_path_factory, served_mar) -> Iterator[Server]:
    """One real TorchServe for the whole session, serving ``served_mar`` on free ports, with
    its own folder and pid file (see :mod:`loadtest.server`); always stopped at the end."""
    with ExitStack() as stack:
        try:
            running = stack.enter_context(
                local_torchserve(
                    served_mar.parent,
                    *endpoints(served_mar),
                    home=tmp_path_factory.mktemp("torchserve"),
                )
            )
        except ServerError as exc:
            pytest.fail(f"TorchServe did not start: {exc}")
        yield running
