"""One training run on one split: our model and the baselines, fitted on the same data.

Shared by ``python -m train`` (one run, saves the served artifact) and ``python -m
train.evaluate`` (several seeds and models, writes the report).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from model.autorec import AutoRecConfig, ItemAutoRec, ItemRatings
from model.baselines import BiasBaseline, GlobalMean
from model.data import Dataset, Split
from model.metrics import mae, rmse
from model.network import FactorModel, FactorModelConfig
from model.training import (
    AutoRecTrainConfig,
    Encoded,
    TrainConfig,
    encode,
    fit,
    fit_autorec,
    predict,
)
from model.vocab import Vocabulary

# Presets of our model. "full" is the accuracy preset (Sparse FC / GLocal-K sizes);
# "fast" trades a little accuracy for a run of well under a minute on ML-1M with 2 cores.
PRESETS: dict[str, dict] = {
    "full": {"hidden_dims": [500, 500], "kernel_dim": 5, "epochs": 60, "learning_rate": 3e-3},
    "fast": {
        "hidden_dims": [500],
        "kernel_dim": 0,
        "epochs": 20,
        "learning_rate": 3e-3,
        "l2": 300.0,
    },
}


@dataclass
class Prepared:
    """A split encoded against the dataset's vocabulary."""

    vocab: Vocabulary
    train: Encoded
    validation: Encoded
    test: Encoded
    rating_scale: tuple[float, float]

    @property
    def item_ratings(self) -> ItemRatings:
        t = self.train
        return ItemRatings(
            t.item_idx.numpy(),
            t.user_idx.numpy(),
            t.rating.numpy(),
            self.vocab.num_items,
            self.vocab.num_users,
        )


def prepare(dataset: Dataset, split: Split) -> Prepared:
    """Build the vocabulary from *all* ratings (so serving excludes everything a user rated)
    and encode the three parts of ``split`` with it."""
    vocab = Vocabulary.build(dataset.ratings, dataset.movies, dataset.genre_names)
    parts = (encode(f, vocab) for f in (split.train, split.validation, split.test))
    return Prepared(vocab, *parts, rating_scale=dataset.rating_scale)


@dataclass
class RunResult:
    """A fitted model, its learning curve and its scores on validation and test."""

    name: str
    model: object
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    scores: dict = field(default_factory=dict)


def _scores(predict, data: Prepared) -> dict:
    out = {}
    for part in ("validation", "test"):
        d: Encoded = getattr(data, part)
        pred = predict(d)
        out[part] = {"rmse": rmse(pred, d.rating.numpy()), "mae": mae(pred, d.rating.numpy())}
    return out


def run_baselines(data: Prepared) -> list[RunResult]:
    """Global mean and the shrunk user/movie-bias baseline."""
    lo, hi = data.rating_scale
    t = data.train
    results = []
    for name, model in (
        ("global mean", GlobalMean()),
        (
            "bias baseline",
            BiasBaseline(data.vocab.num_users, data.vocab.num_items, min_rating=lo, max_rating=hi),
        ),
    ):
        started = time.perf_counter()
        model.fit(t.user_idx.numpy(), t.item_idx.numpy(), t.rating.numpy())
        seconds = time.perf_counter() - started
        scores = _scores(lambda d, m=model: m.predict(d.user_idx.numpy(), d.item_idx.numpy()), data)
        results.append(RunResult(name, model, seconds=seconds, scores=scores))
    return results


def run_mf(
    data: Prepared, config: TrainConfig, code_dim: int = 64, progress: bool = False
) -> RunResult:
    """Plain biased matrix factorization, trained on pairs."""
    lo, hi = data.rating_scale
    torch.manual_seed(config.seed)
    model = FactorModel(
        FactorModelConfig(data.vocab.num_users, data.vocab.num_items, code_dim, lo, hi)
    )
    with torch.no_grad():
        model.offset.fill_(float(data.train.rating.mean()))
    started = time.perf_counter()
    history = fit(model, data.train, data.validation, config, progress=progress)
    seconds = time.perf_counter() - started
    return RunResult(
        "matrix factorization", model, history, seconds, _scores(lambda d: _predict(model, d), data)
    )


def autorec_configs(
    data: Prepared, preset: str = "full", seed: int = 0, **overrides
) -> tuple[AutoRecConfig, AutoRecTrainConfig]:
    """Model and training configuration of ``preset`` with ``overrides`` (None = keep)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    lo, hi = data.rating_scale
    model_fields = {"hidden_dims", "kernel_dim"}
    model_config = AutoRecConfig(
        num_users=data.vocab.num_users,
        num_items=data.vocab.num_items,
        num_genres=len(data.vocab.genre_names),
        min_rating=lo,
        max_rating=hi,
        global_mean=float(data.train.rating.mean()),
        **{k: v for k, v in values.items() if k in model_fields},
    )
    train_config = AutoRecTrainConfig(
        seed=seed, **{k: v for k, v in values.items() if k not in model_fields}
    )
    return model_config, train_config


def run_autorec(
    data: Prepared,
    model_config: AutoRecConfig,
    train_config: AutoRecTrainConfig,
    progress: bool = False,
    checkpoint: str | None = None,
    device: str = "cpu",
) -> RunResult:
    """Train our model; the result's model is the exported, served :class:`FactorModel`.

    ``checkpoint`` and ``device`` are passed to :func:`model.training.fit_autorec`."""
    torch.manual_seed(train_config.seed)
    net = ItemAutoRec(model_config, torch.from_numpy(data.vocab.genres))
    item_ratings = data.item_ratings
    started = time.perf_counter()
    history = fit_autorec(
        net,
        item_ratings,
        data.validation,
        train_config,
        progress=progress,
        checkpoint=checkpoint,
        device=device,
    )
    served = net.export(item_ratings)
    seconds = time.perf_counter() - started
    return RunResult(
        "movierec (kernel item autoencoder)",
        served,
        history,
        seconds,
        _scores(lambda d: _predict(served, d), data),
    )


def _predict(model: FactorModel, d: Encoded) -> np.ndarray:
    return predict(model, d.user_idx, d.item_idx)
