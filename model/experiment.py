"""One training run on one split: our model and the baselines, fitted on the same data.

Shared by ``python -m train`` (one run, saves the served artifact) and ``python -m
train.evaluate`` (several seeds and models, writes the report).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from model.autorec import AutoRecConfig, ItemAutoRec, ItemRatings
from model.baselines import BiasBaseline, GlobalMean
from model.data import Dataset, Split
from model.metrics import mae, rmse
from model.network import FactorModel, FactorModelConfig, principal_directions, project
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

# Largest increase of validation RMSE allowed when projecting the served vectors to fewer
# dimensions (see smallest_projection): a tenth of the noise between seeds.
SERVE_TOLERANCE = 1e-4

# Presets of our model; command-line options override single fields. Local kernels
# (kernel_dim > 0, two layers as in Sparse FC / GLocal-K) are available but cost several times
# more per epoch on 2 cores for no gain we could measure in the time we had.
PRESETS: dict[str, dict] = {
    # One dense layer (I-AutoRec) with denoising input dropout: ~0.845 on ML-1M in 10 epochs.
    "fast": {
        "hidden_dims": [500],
        "kernel_dim": 0,
        "epochs": 12,
        "learning_rate": 1e-3,
        "batch_size": 256,
        "l2": 256.0,
        "dropout": 0.2,
    },
    # The same network trained to convergence, eight times: the served model averages them.
    # Chosen on ML-1M validation RMSE (seed 0) of the average of the first M members:
    # 1: 0.8359, 2: 0.8318, 3: 0.8308, 4: 0.8300, 6: 0.8297, 8: 0.8294 (366 s in all).
    "full": {
        "hidden_dims": [500],
        "kernel_dim": 0,
        "epochs": 60,
        "learning_rate": 1e-3,
        "batch_size": 256,
        "l2": 256.0,
        "dropout": 0.2,
        "members": 8,
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
    member_histories: list = field(default_factory=list)
    projection: dict | None = None  # the served model's projection (smallest_projection)


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
) -> tuple[AutoRecConfig, AutoRecTrainConfig, int]:
    """Model config, training config and number of averaged members of ``preset``, with
    ``overrides`` (None = keep the preset's value)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    lo, hi = data.rating_scale
    model_fields = {"hidden_dims", "kernel_dim"}
    members = int(values.pop("members", 1))
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
    return model_config, train_config, members


def run_autorec(
    data: Prepared,
    model_config: AutoRecConfig,
    train_config: AutoRecTrainConfig,
    progress: bool = False,
    checkpoint: str | None = None,
    device: str = "cpu",
    members: int = 1,
    serve_tolerance: float | None = SERVE_TOLERANCE,
) -> RunResult:
    """Train our model; the result's model is the exported, served :class:`FactorModel`.

    ``members`` > 1 trains that many autoencoders (seeds ``seed``, ``seed + 1000``, ...) and
    serves their average, itself one factor model (:func:`average_factor_models`).
    ``checkpoint`` (one file per member) and ``device`` go to
    :func:`model.training.fit_autorec`. The history is the first member's.

    The served model is then made as small as the validation data allows
    (:func:`smallest_projection`, within ``serve_tolerance`` of the full model's validation
    RMSE; None serves the full vectors); ``result.projection`` says what was chosen."""
    item_ratings = data.item_ratings
    started = time.perf_counter()
    served, histories = [], []
    for member in range(members):
        config = dataclasses.replace(train_config, seed=train_config.seed + 1000 * member)
        torch.manual_seed(config.seed)
        net = ItemAutoRec(model_config, torch.from_numpy(data.vocab.genres))
        path = f"{checkpoint}.{member}" if checkpoint and members > 1 else checkpoint
        histories.append(
            fit_autorec(
                net,
                item_ratings,
                data.validation,
                config,
                progress=progress,
                checkpoint=path,
                device=device,
            )
        )
        served.append(net.export(item_ratings))
    model = average_factor_models(served)
    projection = None
    if serve_tolerance is not None:
        model, projection = smallest_projection(model, data, serve_tolerance)
    seconds = time.perf_counter() - started
    name = "movierec (item autoencoder" + (f", {members} averaged)" if members > 1 else ")")
    result = RunResult(
        name, model, histories[0], seconds, _scores(lambda d: _predict(model, d), data)
    )
    result.member_histories = histories
    result.projection = projection
    return result


def smallest_projection(
    model: FactorModel, data: Prepared, tolerance: float = SERVE_TOLERANCE
) -> tuple[FactorModel, dict]:
    """The smallest :func:`model.network.project` of ``model`` (sizes 16, 32, 64, ...) whose
    validation RMSE is within ``tolerance`` of the full model's; chosen on validation only."""

    def score(m: FactorModel) -> float:
        return rmse(_predict(m, data.validation), data.validation.rating.numpy())

    full = chosen_score = score(model)
    chosen, directions, rank = model, principal_directions(model), 16
    while rank < model.config.code_dim:
        candidate = project(model, rank, directions)
        if (candidate_score := score(candidate)) <= full + tolerance:
            chosen, chosen_score = candidate, candidate_score
            break
        rank *= 2
    info = {
        "code_dim": model.config.code_dim,
        "served_dim": chosen.config.code_dim,
        "validation_rmse_full": full,
        "validation_rmse_served": chosen_score,
        "tolerance": tolerance,
    }
    return chosen.eval(), info


def average_factor_models(models: list[FactorModel]) -> FactorModel:
    """One factor model whose predictions are the average of ``models``' raw predictions.

    ``mean_m(o_m + b_um + b_im + p_um . q_im) = mean(o) + mean(b_u) + mean(b_i) +
    [p_u1 .. p_uM] / M . [q_i1 .. q_iM]``: vectors are concatenated, so serving, top-K and
    new-user fold-in work on the average exactly as on a single model."""
    if len(models) == 1:
        return models[0]
    first = models[0].config
    config = dataclasses.replace(first, code_dim=sum(m.config.code_dim for m in models))
    out = FactorModel(config)
    with torch.no_grad():
        out.user_vectors.copy_(torch.cat([m.user_vectors for m in models], 1) / len(models))
        out.item_codes.copy_(torch.cat([m.item_codes for m in models], 1))
        for name in ("user_bias", "item_bias", "offset"):
            getattr(out, name).copy_(torch.stack([getattr(m, name) for m in models]).mean(0))
    return out.eval()


def _predict(model: FactorModel, d: Encoded) -> np.ndarray:
    return predict(model, d.user_idx, d.item_idx)
