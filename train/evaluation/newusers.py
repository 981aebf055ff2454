"""How well new users are served from a few ratings (fold-in), against retraining.

Protocol (:func:`evaluate_new_users`):

1. Test users: a random share of the users with at least ``max(given) + min_targets`` ratings.
   Each test user's ratings are put in time order; the first ``max(given)`` are their history,
   the rest are the targets to predict (the same targets for every ``n`` in ``given``, so the
   rows of the table compare like with like).
2. Fold-in: a model is trained without the test users at all (the other users' ratings, a
   random share held out for early stopping). Each test user is folded in from the first ``n``
   history ratings (:mod:`model.foldin`) and their targets are predicted.
3. Trained on: for each ``n``, the same model is trained on the other users plus the test
   users' first ``n`` ratings, as if they had been in the training data all along; their
   targets are predicted by it, and by the bias baseline fitted on the same data.

RMSE is pooled over all target ratings (users with more ratings weigh more).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from model.foldin import UserPrior, fold_in, prior_users
from model.network import FactorModel
from model.vocab import Vocabulary
from train.data import Dataset, Split
from train.data.prepared import prepare
from train.evaluation.metrics import rmse
from train.fitting.experiment import autorec_configs, run_autorec, run_baselines

log = logging.getLogger(__name__)


@dataclass
class NewUserConfig:
    """Settings of the new-user evaluation."""

    given: tuple[int, ...] = (10, 20)  # ratings a new user gives, in time order
    test_users: float = 0.1  # share of eligible users taken out of training
    min_targets: int = 10  # a test user keeps at least this many ratings to predict
    validation: float = 0.1  # share of the other users' ratings held out for early stopping
    ridges: tuple[float, ...] = (1.0,)  # fold-in prior weights to report (serving uses 1.0)
    preset: str = "fast"  # model preset (see train.fitting.settings.PRESETS); "fast" keeps it short
    # Train the model again with the test users' first ratings (the "trained on" column): two
    # more trainings per seed, ~25 minutes of the full preset on ML-1M.
    retrain: bool = True
    seed: int = 0  # test users, validation share, model initialization


def split_users(ratings: pd.DataFrame, config: NewUserConfig) -> tuple[pd.DataFrame, ...]:
    """``(others, history, targets)``: the other users' ratings; the test users' first
    ``max(given)`` ratings in time order, with their rank in column ``position``; the rest."""
    if not config.given or min(config.given) < 1:
        raise ValueError(f"given must be positive counts of ratings, got {config.given}")
    if not 0.0 < config.test_users < 1.0:
        raise ValueError(f"test_users must be a share in (0, 1), got {config.test_users}")
    first = max(config.given)
    counts = ratings.groupby("user_id").size()
    eligible = counts.index[counts >= first + config.min_targets].to_numpy()
    rng = np.random.default_rng(config.seed)
    size = round(config.test_users * len(eligible))
    if size < 1:
        raise ValueError(
            f"no test users: {len(eligible)} users have >= {first + config.min_targets} ratings"
        )
    test = np.sort(rng.choice(eligible, size, replace=False))
    is_test = ratings["user_id"].isin(test).to_numpy()
    # Time order; ties broken by movie id so the protocol is deterministic.
    theirs = ratings[is_test].sort_values(["user_id", "timestamp", "movie_id"], kind="stable")
    position = theirs.groupby("user_id").cumcount().to_numpy()
    history = theirs[position < first].assign(position=position[position < first])
    targets = theirs[position >= first]
    return ratings[~is_test], history.reset_index(drop=True), targets.reset_index(drop=True)


def _carve_validation(others: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, ...]:
    held_out = np.random.default_rng(seed).random(len(others)) < share
    return others[~held_out], others[held_out]


def evaluate_new_users(dataset: Dataset, config: NewUserConfig | None = None, **overrides) -> dict:
    """Run the protocol of the module docstring; ``overrides`` go to the model preset
    (e.g. ``epochs=2``). Returns the figures as a dict (see :func:`format_table`)."""
    config = config or NewUserConfig()
    started = time.perf_counter()
    others, history, targets = split_users(dataset.ratings, config)
    train_part, validation_part = _carve_validation(others, config.validation, config.seed)
    log.info(
        "%d test users (%d target ratings); training on %d ratings of %d other users",
        history["user_id"].nunique(),
        len(targets),
        len(train_part),
        others["user_id"].nunique(),
    )

    served, vocab, prior = _model_without_them(
        dataset, others, train_part, validation_part, config, overrides
    )
    test_users = np.unique(targets["user_id"].to_numpy())
    target_rows = np.searchsorted(test_users, targets["user_id"].to_numpy())
    target_items, target_known = vocab.lookup_items(targets["movie_id"].to_numpy())
    if not target_known.all():
        raise ValueError("a test user rated a movie that is not in the catalogue")
    actual = targets["rating"].to_numpy(np.float64)

    rows = []
    for n in sorted(config.given):
        given = history[history["position"] < n]
        item_lists, value_lists = _given_lists(given, vocab, test_users)
        fold_in_rmse = {}
        for ridge in config.ridges:
            vectors, biases = fold_in(served, prior, item_lists, value_lists, ridge)
            predicted = served.predict_vectors(
                vectors, biases, torch.from_numpy(target_rows), torch.from_numpy(target_items)
            ).numpy()
            fold_in_rmse[str(ridge)] = rmse(predicted, actual)

        # Trained on: the test users' first n ratings join the training data.
        split = Split(
            pd.concat([train_part, given[train_part.columns]], ignore_index=True),
            validation_part,
            targets,
            f"new users, {n} given",
        )
        with_them = prepare(dataset, split)
        trained_rmse = None
        if config.retrain:
            configs = autorec_configs(with_them, config.preset, config.seed, **overrides)
            trained_rmse = run_autorec(with_them, configs).scores["test"]["rmse"]
        baselines = {r.name: r for r in run_baselines(with_them)}
        rows.append(
            {
                "given": n,
                "test_users": len(test_users),
                "target_ratings": len(targets),
                "fold_in_rmse": fold_in_rmse,
                "trained_rmse": trained_rmse,
                "bias_baseline_rmse": baselines["bias baseline"].scores["test"]["rmse"],
            }
        )
        log.info("%d given: %s", n, rows[-1])
    return {
        "dataset": dataset.name,
        "protocol": (
            f"{config.test_users:.0%} of users with >= {max(config.given) + config.min_targets}"
            f" ratings held out; first {'/'.join(map(str, config.given))} ratings in time "
            f"order given, ratings after the first {max(config.given)} predicted"
        ),
        "preset": config.preset,
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "seed": config.seed,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def _model_without_them(
    dataset: Dataset,
    others: pd.DataFrame,
    train_part: pd.DataFrame,
    validation_part: pd.DataFrame,
    config: NewUserConfig,
    overrides: dict,
) -> tuple[FactorModel, Vocabulary, UserPrior]:
    """The model to fold the test users into: trained on the other users only, its vocabulary
    and the prior over its users' vectors."""
    without = dataclasses.replace(dataset, ratings=others)
    prepared = prepare(without, Split(train_part, validation_part, validation_part, "new users"))
    configs = autorec_configs(prepared, config.preset, config.seed, **overrides)
    served = run_autorec(prepared, configs).model
    vocab = prepared.vocab
    return served, vocab, UserPrior.from_model(served, prior_users(np.diff(vocab.rated_indptr)))


def _given_lists(
    given: pd.DataFrame, vocab: Vocabulary, test_users: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each test user's given ratings, in ``test_users`` order: the dense indices of the movies
    the catalogue knows, and their stars."""
    given_items, known = vocab.lookup_items(given["movie_id"].to_numpy())
    users_of = np.searchsorted(test_users, given["user_id"].to_numpy())
    stars = given["rating"].to_numpy(np.float64)
    item_lists = [given_items[known & (users_of == u)] for u in range(len(test_users))]
    value_lists = [stars[known & (users_of == u)] for u in range(len(test_users))]
    return item_lists, value_lists


def format_table(result: dict) -> str:
    """The figures of :func:`evaluate_new_users` as a Markdown table."""
    ridges = list(result["rows"][0]["fold_in_rmse"]) if result["rows"] else []
    fold_cols = [f"fold-in RMSE (ridge {r})" for r in ridges]
    header = [
        "ratings given",
        "test users",
        "target ratings",
        *fold_cols,
        "trained-on RMSE",
        "bias baseline RMSE",
        f"fold-in / bias baseline (ridge {ridges[0]})" if ridges else "fold-in / bias baseline",
    ]
    lines = [
        f"{result['dataset']}, preset {result['preset']}, seed {result['seed']}: "
        f"{result['protocol']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in result["rows"]:
        cells = [
            row["given"],
            row["test_users"],
            row["target_ratings"],
            *(f"{row['fold_in_rmse'][r]:.4f}" for r in ridges),
            "not run" if row["trained_rmse"] is None else f"{row['trained_rmse']:.4f}",
            f"{row['bias_baseline_rmse']:.4f}",
            f"{row['fold_in_rmse'][ridges[0]] / row['bias_baseline_rmse']:.3f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def summarize(results: list[dict]) -> str:
    """Mean and range over several runs (seeds) of :func:`evaluate_new_users`, as Markdown."""
    if len(results) == 1:
        return format_table(results[0])
    first = results[0]
    ridges = list(first["rows"][0]["fold_in_rmse"])
    columns = [
        *(f"fold-in RMSE (ridge {r})" for r in ridges),
        "trained-on RMSE",
        "bias baseline RMSE",
    ]

    def figures(row: dict) -> list[float]:
        fold = [row["fold_in_rmse"][r] for r in ridges]
        trained = np.nan if row["trained_rmse"] is None else row["trained_rmse"]
        return [*fold, trained, row["bias_baseline_rmse"]]

    seeds = ", ".join(str(r["seed"]) for r in results)
    lines = [
        f"{first['dataset']}, preset {first['preset']}, seeds {seeds}: {first['protocol']}; "
        "mean (min-max) over seeds; the last column is the ratio of the means",
        "",
        "| ratings given | test users per seed | "
        + " | ".join(columns)
        + f" | fold-in / bias baseline (ridge {ridges[0]}) |",
        "|" + "---|" * (len(columns) + 3),
    ]
    for j, row in enumerate(first["rows"]):
        values = np.array([figures(r["rows"][j]) for r in results])  # (seeds, columns)
        cells = [
            "not run" if np.isnan(m) else f"{m:.4f} ({lo:.4f}-{hi:.4f})"
            for m, lo, hi in zip(values.mean(0), values.min(0), values.max(0))
        ]
        ratio = values[:, 0].mean() / values[:, -1].mean()
        lines.append(
            f"| {row['given']} | {row['test_users']} | " + " | ".join(cells) + f" | {ratio:.3f} |"
        )
    return "\n".join(lines)
