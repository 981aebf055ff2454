"""One training run on one split: our model and the baselines, fitted on the same data; and
the refit of our model with the settings that run chose, on the split's training and validation
parts (what test is scored on, :func:`~train.data.prepared.prepare_refit`) or on all ratings
(what is served).

Our model is the average of a preset's autoencoders, blended, when the preset says so, with
matrix factorization trained on the same split (weights chosen on validation,
:mod:`train.fitting.blend`): :func:`autorec_configs` reads the preset, :func:`run_autorec`
trains and scores what is served, :func:`refit_autorec` repeats it on more ratings.

Shared by ``python -m train`` (one run, saves the served artifact) and ``python -m
train.evaluate`` (several seeds and models, writes the report).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from model.network import FactorModel, FactorModelConfig, principal_directions, project
from train.data.interactions import Interactions
from train.data.prepared import PARTS, Encoded, Prepared
from train.evaluation.metrics import mae, rmse
from train.fitting.autorec import AutoRecConfig, ItemAutoRec, ItemRatings
from train.fitting.baselines import BiasBaseline, GlobalMean
from train.fitting.blend import (
    BlendWeights,
    UserCovariate,
    average_factor_models,
    blend_weights,
    varying_blend_weights,
)
from train.fitting.settings import (
    DEFAULT_PRESET,
    AutoRecTrainConfig,
    TrainConfig,
    preset_with,
)
from train.fitting.training import best_epoch, fit, fit_autorec, predict

# Largest increase of validation RMSE allowed when projecting the served vectors to fewer
# dimensions (see smallest_projection): a tenth of the noise between seeds.
SERVE_TOLERANCE = 1e-4
MF_CODE_DIM = 64  # vector size of the matrix-factorization baseline (and of the blend's MF)


@dataclass(frozen=True)
class Projection:
    """The served model's vectors, projected from ``code_dim`` to ``served_dim`` dimensions
    (:func:`model.network.project`; the same size: not projected)."""

    code_dim: int
    served_dim: int

    def to_dict(self) -> dict[str, Any]:
        """What metrics.json records."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ChosenProjection(Projection):
    """The size :func:`smallest_projection` chose on validation, and the RMSE it kept."""

    validation_rmse_full: float
    validation_rmse_served: float
    tolerance: float


@dataclass(frozen=True)
class RepeatedProjection(Projection):
    """A refit's size: the one its selection run chose."""

    chosen_on: str = "validation RMSE of the selection run"


@dataclass(frozen=True)
class MFTraining:
    """How the matrix factorization of a blend was trained in the selection run."""

    training: TrainConfig
    code_dim: int
    best_epoch: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "training": self.training.to_dict(),
            "code_dim": self.code_dim,
            "best_epoch": self.best_epoch,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Blend:
    """How a served blend was made: its weights and what they were chosen on."""

    weights: BlendWeights
    chosen_on: str

    def to_dict(self) -> dict[str, Any]:
        """What config.json and metrics.json record."""
        return {**self.weights.to_dict(), "chosen_on": self.chosen_on}


@dataclass(frozen=True)
class ChosenBlend(Blend):
    """A selection run's blend (:func:`run_autorec`): the weights chosen on validation, how
    its matrix factorization was trained, and each component's own scores."""

    mf: MFTraining
    component_scores: dict[str, dict[str, dict[str, float]]]

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "mf": self.mf.to_dict(),
            "component_scores": self.component_scores,
        }


@dataclass(frozen=True)
class RepeatedBlend(Blend):
    """A refit's blend (:func:`refit_autorec`): the selection run's weights, on matrix
    factorization trained for ``mf_epochs`` epochs."""

    mf_epochs: int

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "mf_epochs": self.mf_epochs}


@dataclass
class RunResult:
    """A fitted model, its learning curve and its scores on validation and test."""

    name: str
    model: Any  # a FactorModel, or a baseline (GlobalMean, BiasBaseline)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    member_histories: list[list[dict[str, float]]] = field(default_factory=list)
    projection: Projection | None = None  # the served model's size (smallest_projection)
    blend: Blend | None = None  # how the served blend was made (run_autorec, refit_autorec)


def _scores(
    predict: Callable[[Interactions], np.ndarray], data: Prepared
) -> dict[str, dict[str, float]]:
    """RMSE and MAE of ``predict`` on each held-out part of ``data`` (validation, test)."""
    out = {}
    for part in PARTS[1:]:
        if getattr(data, part) is None:
            continue
        d = data.interactions(part)
        pred = predict(d)
        out[part] = {"rmse": rmse(pred, d.rating), "mae": mae(pred, d.rating)}
    return out


def run_baselines(data: Prepared) -> list[RunResult]:
    """Global mean and the shrunk user/movie-bias baseline."""
    lo, hi = data.rating_scale
    train = data.interactions()
    results = []
    for name, model in (
        ("global mean", GlobalMean()),
        (
            "bias baseline",
            BiasBaseline(data.vocab.num_users, data.vocab.num_items, min_rating=lo, max_rating=hi),
        ),
    ):
        started = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - started
        scores = _scores(functools.partial(_baseline_predict, model), data)
        results.append(RunResult(name, model, seconds=seconds, scores=scores))
    return results


def run_mf(
    data: Prepared, config: TrainConfig, code_dim: int = MF_CODE_DIM, progress: bool = False
) -> RunResult:
    """Plain biased matrix factorization, trained on pairs."""
    started = time.perf_counter()
    model, history = _fit_mf(data, config, code_dim, data.validation, progress)
    seconds = time.perf_counter() - started
    return RunResult(
        "matrix factorization", model, history, seconds, _scores(lambda d: _predict(model, d), data)
    )


def _fit_mf(
    data: Prepared,
    config: TrainConfig,
    code_dim: int,
    validation: Encoded | None,
    progress: bool,
) -> tuple[FactorModel, list[dict]]:
    """Matrix factorization trained on ``data.train`` (early stopping on ``validation``
    unless None) from the global mean; returns the model and its history."""
    lo, hi = data.rating_scale
    torch.manual_seed(config.seed)
    model = FactorModel(
        FactorModelConfig(data.vocab.num_users, data.vocab.num_items, code_dim, lo, hi)
    )
    with torch.no_grad():
        model.offset.fill_(float(data.train.rating.mean()))
    return model, fit(model, data.train, validation, config, progress=progress)


def refit_mf(data: Prepared, config: TrainConfig, selection: RunResult) -> RunResult:
    """Matrix factorization trained again on ``data``
    (:func:`~train.data.prepared.prepare_refit` or :func:`~train.data.prepared.prepare_all`)
    for the number of epochs that was best in ``selection`` (:func:`run_mf` with the same
    ``config``), without early stopping; scored on whatever ``data`` holds out."""
    refit_config = dataclasses.replace(config, epochs=best_epoch(selection.history))
    started = time.perf_counter()
    model, history = _fit_mf(data, refit_config, MF_CODE_DIM, None, False)
    seconds = time.perf_counter() - started
    scores = _scores(lambda d: _predict(model, d), data)
    return RunResult(selection.name, model, history, seconds, scores)


@dataclass
class RatingConfigs:
    """How the rating model is trained on one dataset: what :func:`autorec_configs` makes of
    a preset."""

    autorec: AutoRecConfig  # every member's network
    training: AutoRecTrainConfig  # member m's optimization, with seed training.seed + 1000 m
    members: int  # autoencoders averaged
    mf: TrainConfig | None = None  # matrix factorization blended with the average; None: none
    blend_by_user: bool = False  # the blend's weights vary with the user (UserCovariate)

    def member_configs(self) -> list[AutoRecTrainConfig]:
        """Each member's optimization: seeds ``seed``, ``seed + 1000``, ..."""
        return [
            dataclasses.replace(self.training, seed=self.training.seed + 1000 * member)
            for member in range(self.members)
        ]

    @property
    def name(self) -> str:
        """What the result is called in tables and metrics.json."""
        averaged = f", {self.members} averaged" if self.members > 1 else ""
        return f"movierec (item autoencoder{averaged}{', blended with MF' if self.mf else ''})"


def autorec_configs(
    data: Prepared, preset: str = DEFAULT_PRESET, seed: int | None = None, **overrides: Any
) -> RatingConfigs:
    """The configs of ``preset`` (see :data:`train.fitting.settings.PRESETS`) for ``data``:
    with the values chosen on ``data``'s dataset (:data:`~train.fitting.settings.CHOSEN_ON`),
    then ``overrides`` (fields by name; None keeps the value) and ``seed`` (None keeps the
    preset's)."""
    chosen = preset_with(preset, data.dataset_name, **overrides)
    lo, hi = data.rating_scale
    model_config = AutoRecConfig(
        num_users=data.vocab.num_users,
        num_items=data.vocab.num_items,
        num_genres=len(data.vocab.genre_names),
        hidden_dims=list(chosen.hidden_dims),
        kernel_dim=chosen.kernel_dim,
        min_rating=lo,
        max_rating=hi,
        global_mean=float(data.train.rating.mean()),
    )
    training = chosen.training if seed is None else dataclasses.replace(chosen.training, seed=seed)
    # The baseline's own settings and seed: the blend adds the very model the MF row scores.
    mf = TrainConfig(seed=training.seed) if chosen.blend_mf else None
    return RatingConfigs(model_config, training, chosen.members, mf, chosen.blend_by_user)


def run_autorec(
    data: Prepared,
    configs: RatingConfigs,
    progress: bool = False,
    checkpoint: str | None = None,
    device: str = "cpu",
    serve_tolerance: float | None = SERVE_TOLERANCE,
) -> RunResult:
    """Train our model; the result's model is the exported, served :class:`FactorModel`.

    ``configs.members`` autoencoders (seeds ``seed``, ``seed + 1000``, ...) are trained and
    averaged, itself one factor model (:func:`average_factor_models`). With ``configs.mf``,
    matrix factorization is trained on the same split and the served model is the blend of
    the average and MF (:func:`~train.fitting.blend.blend_factor_models`), weights and
    intercept chosen by least squares on validation (:func:`~train.fitting.blend.blend_weights`);
    ``result.blend`` records them, MF's best epoch and each component's scores, and
    ``result.scores`` are the blend's. ``checkpoint`` (one file per member) and ``device`` go
    to :func:`train.fitting.training.fit_autorec`. The history is the first member's.

    The served model is then made as small as the validation data allows
    (:func:`smallest_projection`, within ``serve_tolerance`` of the full model's validation
    RMSE; None serves the full vectors); ``result.projection`` says what was chosen."""
    started = time.perf_counter()
    model, histories = _train_members(
        data,
        configs.autorec,
        configs.member_configs(),
        data.validation,
        progress,
        checkpoint,
        device,
    )
    blend = None
    if configs.mf is not None:
        model, blend = _blend_with_mf(data, model, configs, progress)
    projection = None
    if serve_tolerance is not None:
        model, projection = smallest_projection(model, data, serve_tolerance)
    seconds = time.perf_counter() - started
    return RunResult(
        configs.name,
        model,
        histories[0],
        seconds,
        _scores(lambda d: _predict(model, d), data),
        member_histories=histories,
        projection=projection,
        blend=blend,
    )


def _blend_with_mf(
    data: Prepared, average: FactorModel, configs: RatingConfigs, progress: bool
) -> tuple[FactorModel, ChosenBlend]:
    """The blend of the autoencoders' ``average`` and matrix factorization trained with
    ``configs.mf`` on the same split, weights chosen on validation; and its record."""
    if configs.mf is None or data.validation is None:
        raise ValueError("a blend with MF needs an MF config and validation ratings")
    mf = run_mf(data, configs.mf, progress=progress)
    members = configs.members
    averaged = f"item autoencoders ({members} averaged)" if members > 1 else "item autoencoder"
    components = {averaged: average, mf.name: mf.model}
    models = list(components.values())
    validation = data.interactions("validation")
    if configs.blend_by_user:
        covariate = UserCovariate.fit(_user_counts(data), data.interactions().user_idx)
        z = covariate.values(_user_counts(data))
        weights, intercept, slopes, intercept_slope = varying_blend_weights(models, validation, z)
        chosen = BlendWeights(
            list(components), weights, intercept, slopes, intercept_slope, covariate
        )
    else:
        weights, intercept = blend_weights(models, validation)
        chosen = BlendWeights(list(components), weights, intercept)
    blended = chosen.blend(models, _user_counts(data))
    record = ChosenBlend(
        chosen,
        "least squares of the validation ratings on the components' unclamped predictions",
        MFTraining(configs.mf, MF_CODE_DIM, best_epoch(mf.history), mf.seconds),
        # Each component alone, as trained (before any projection of the blend).
        {
            name: _scores(functools.partial(_predict, component), data)
            for name, component in components.items()
        },
    )
    return blended, record


def _user_counts(data: Prepared) -> np.ndarray:
    """Training ratings of every user of ``data``'s vocabulary."""
    return np.diff(data.vocab.rated_indptr)


def refit_autorec(
    data: Prepared,
    configs: RatingConfigs,
    selection: RunResult,
    progress: bool = False,
    checkpoint: str | None = None,
    device: str = "cpu",
) -> RunResult:
    """Train our model again on ``data`` (all ratings, :func:`~train.data.prepared.prepare_all`,
    or the split's training and validation parts, :func:`~train.data.prepared.prepare_refit`)
    with what the selection run ``selection`` (:func:`run_autorec` on a split, same configs)
    chose on validation data: the same sizes, options and member seeds, each member for the
    number of epochs that was its best there, without early stopping (nothing is held out); with
    ``configs.mf``, matrix factorization for its best number of epochs there, blended with
    the weights and intercept chosen there; and the result projected to the served size
    chosen there.

    The result is scored on what ``data`` holds out: the test part of a
    :func:`~train.data.prepared.prepare_refit`; nothing for all ratings, whose estimate of
    quality is the selection run's figures. ``result.projection`` and ``result.blend``
    record the served size and the blend, and that the selection run chose them."""
    autorec = dataclasses.replace(
        configs.autorec,
        num_users=data.vocab.num_users,
        num_items=data.vocab.num_items,
        global_mean=float(data.train.rating.mean()),
    )
    epochs = [best_epoch(history) for history in selection.member_histories]
    member_configs = [
        dataclasses.replace(config, epochs=n) for config, n in zip(configs.member_configs(), epochs)
    ]
    started = time.perf_counter()
    model, histories = _train_members(
        data, autorec, member_configs, None, progress, checkpoint, device
    )
    blend = None
    if configs.mf is not None:
        chosen = selection.blend
        if not isinstance(chosen, ChosenBlend):
            raise ValueError("the configs blend with MF but the selection run has no blend")
        mf_config = dataclasses.replace(configs.mf, epochs=chosen.mf.best_epoch)
        mf, mf_history = _fit_mf(data, mf_config, chosen.mf.code_dim, None, progress)
        model = chosen.weights.blend([model, mf], _user_counts(data))
        blend = RepeatedBlend(
            chosen.weights, "validation ratings of the selection run", len(mf_history)
        )
    projection = None
    if selection.projection is not None:
        served_dim = selection.projection.served_dim
        if served_dim < model.config.code_dim:
            model = project(model, served_dim, principal_directions(model)).eval()
        projection = RepeatedProjection(selection.projection.code_dim, model.config.code_dim)
    return RunResult(
        selection.name,
        model,
        histories[0],
        time.perf_counter() - started,
        _scores(lambda d: _predict(model, d), data),
        member_histories=histories,
        projection=projection,
        blend=blend,
    )


def _train_members(
    data: Prepared,
    model_config: AutoRecConfig,
    configs: list[AutoRecTrainConfig],
    validation: Encoded | None,
    progress: bool,
    checkpoint: str | None,
    device: str,
) -> tuple[FactorModel, list[list[dict]]]:
    """One autoencoder per config, trained on ``data.train`` (early stopping on
    ``validation`` unless None), exported and averaged; returns the average and each
    member's history."""
    item_ratings = ItemRatings(data.interactions())
    served, histories = [], []
    for member, config in enumerate(configs):
        torch.manual_seed(config.seed)
        net = ItemAutoRec(model_config, torch.from_numpy(data.vocab.genres))
        path = f"{checkpoint}.{member}" if checkpoint and len(configs) > 1 else checkpoint
        histories.append(
            fit_autorec(
                net,
                item_ratings,
                validation,
                config,
                progress=progress,
                checkpoint=path,
                device=device,
            )
        )
        served.append(net.export(item_ratings))
    return average_factor_models(served), histories


def smallest_projection(
    model: FactorModel, data: Prepared, tolerance: float = SERVE_TOLERANCE
) -> tuple[FactorModel, ChosenProjection]:
    """The smallest :func:`model.network.project` of ``model`` (sizes 16, 32, 64, ...) whose
    validation RMSE is within ``tolerance`` of the full model's; chosen on validation only."""

    validation = data.interactions("validation")

    def score(m: FactorModel) -> float:
        return rmse(_predict(m, validation), validation.rating)

    full = chosen_score = score(model)
    chosen, directions, rank = model, principal_directions(model), 16
    while rank < model.config.code_dim:
        candidate = project(model, rank, directions)
        if (candidate_score := score(candidate)) <= full + tolerance:
            chosen, chosen_score = candidate, candidate_score
            break
        rank *= 2
    info = ChosenProjection(
        model.config.code_dim, chosen.config.code_dim, full, chosen_score, tolerance
    )
    return chosen.eval(), info


def _baseline_predict(model: GlobalMean | BiasBaseline, d: Interactions) -> np.ndarray:
    return model.predict(d.user_idx, d.item_idx)


def _predict(model: FactorModel, d: Interactions) -> np.ndarray:
    return predict(model, torch.from_numpy(d.user_idx), torch.from_numpy(d.item_idx))
