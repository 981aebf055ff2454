"""New users and "more like this movie", measured as rankings (strong generalization).

Protocol (:func:`evaluate_ranking`):

1. Held-out users (:func:`hold_out_users`): a seeded share of the users with at least
   ``given + min_targets`` ratings. Nothing of theirs is trained on.
2. The other users' ratings are cut at random into training and validation. Everything is
   trained on the training part, every choice made on validation ranking as in
   reports/<dataset>.md: the rating model (a preset of :mod:`train.fitting.experiment`), our ranking
   model (:func:`train.fitting.ranker_training.fit_ranker`) and the peers
   (:func:`train.peers.tune_peers`).
3. Each held-out user gives a seeded random sample of their ratings (:func:`sample_given`):
   ``given`` of them, and again ``given_share`` of them. What they did not give is scored:
   relevant are those rated 4 or more; candidates are all movies but the given ones
   (:func:`train.evaluation.ranking.ranking_metrics`).

   Ours is answered by the code that answers a ``{"ratings": ...}`` request: a
   :class:`~model.scoring.Scorer` of the rating model, the vocabulary and the ranking model,
   ``fold_in`` then ``top_k_vectors(..., stars=..., rank_by="ranking")``. The top-20 it
   returns becomes a score row that ranks those 20 first (:func:`list_scores`), which is all
   the metrics look at. Peers: ``score_history`` (EASE: x·B; iALS: the least-squares fold-in
   of the user's vector; most popular: the chart). From ``given`` ratings, ours is also
   scored at each novelty level above 0 (:mod:`model.novelty`, the strengths its training
   calibrated on validation): the curve of less obvious lists for new users.
4. More like this movie: each held-out user with a given movie rated 4 or more asks for the
   10 movies most similar to one of them (a seeded choice). Hits are the listed movies among
   the user's relevant, not given movies (:func:`train.evaluation.ranking.list_hits`). Ours:
   ``Scorer.similar_indices`` (the served path); peers: rows of EASE's B, the cosine of
   iALS's item factors, the cosine of item co-occurrence, and the chart.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from model.novelty import LEVELS
from model.ranker import LIKED, RankerConfig
from model.scoring import Scorer
from train.data import Dataset, Split
from train.data.interactions import Interactions
from train.data.prepared import Prepared, prepare
from train.evaluation.ranking import RECALL_CUTOFFS, list_hits, ranking_metrics
from train.fitting.experiment import autorec_configs, run_autorec
from train.fitting.ranker_training import RankerFit, fit_ranker
from train.fitting.settings import RankerTrainConfig
from train.peers import CooccurrenceCosine, RankingPeer, Tuning, tune_peers

log = logging.getLogger(__name__)

OURS = "movierec"
BY_RATING = "movierec, by predicted rating"
K = 10  # the list length every figure is cut at (recall also at RECALL_CUTOFFS)


@dataclass
class RankingConfig:
    """Settings of the new-user ranking evaluation."""

    test_users: float = 0.1  # share of eligible users held out of training
    given: int = 10  # ratings a new user gives in the first setting (a sign-up form)
    given_share: float = 0.8  # share of their ratings a new user gives in the second
    min_targets: int = 10  # eligible users have at least given + min_targets ratings
    validation: float = 0.05  # share of the other users' ratings kept for choices (as ml-1m.md)
    ridge: float = 1.0  # fold-in prior weight: the served default (handler fold_in_ridge)
    preset: str = "fast"  # rating model preset (train.fitting.settings.PRESETS)
    seed: int = 0  # held-out users, validation, samples, initializations
    # Users scored at once: a fold-in from 80% of a heavy user's ~2,000 ratings is a
    # (users, ratings, code) float64 tensor, so batches stay small.
    chunk: int = 64


def hold_out_users(
    ratings: pd.DataFrame, share: float, min_ratings: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(others, held_out)``: the ratings of the other users and of a seeded ``share`` of
    the users with at least ``min_ratings`` ratings."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must be in (0, 1), got {share}")
    counts = ratings.groupby("user_id").size()
    eligible = counts.index[counts >= min_ratings].to_numpy()
    size = round(share * len(eligible))
    if size < 1:
        raise ValueError(f"no users held out: {len(eligible)} have >= {min_ratings} ratings")
    chosen = np.random.default_rng([seed, 0]).choice(eligible, size, replace=False)
    is_held = ratings["user_id"].isin(chosen).to_numpy()
    return ratings[~is_held].reset_index(drop=True), ratings[is_held].reset_index(drop=True)


def sample_given(
    ratings: pd.DataFrame,
    rng: np.random.Generator,
    count: int | None = None,
    share: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(given, rest)``: a random ``count`` (or ``share``, rounded) of each user's ratings,
    and the others. Every user gives at least one and keeps at least one."""
    if (count is None) == (share is None):
        raise ValueError("give exactly one of count and share")
    if (count is not None and count < 1) or (share is not None and not 0.0 < share < 1.0):
        raise ValueError(f"count must be >= 1 and share in (0, 1), got {count}, {share}")
    frame = ratings.assign(_key=rng.random(len(ratings)))
    frame = frame.sort_values(["user_id", "_key"], kind="stable")
    position = frame.groupby("user_id").cumcount().to_numpy()
    total = frame.groupby("user_id")["user_id"].transform("size").to_numpy()
    wanted = np.full(len(frame), count) if count is not None else np.rint(share * total)
    wanted = np.clip(wanted, 1, total - 1)
    gives = position < wanted
    frame = frame.drop(columns="_key")
    return frame[gives].reset_index(drop=True), frame[~gives].reset_index(drop=True)


def list_scores(lists: np.ndarray, num_items: int) -> torch.Tensor:
    """Scores (B, N) that put row ``b``'s listed movies ``lists[b]`` first, in their order,
    and every other movie at -inf; -1 (a short list's padding) is skipped."""
    out = torch.full((len(lists), num_items), -torch.inf)
    rows, cols = np.nonzero(lists >= 0)
    out[torch.from_numpy(rows), torch.from_numpy(lists[rows, cols])] = torch.from_numpy(
        (lists.shape[1] - cols).astype(np.float32)
    )
    return out


@dataclass
class _Users:
    """Held-out users' given and scored ratings as dense indices; row r = ``user_ids[r]``."""

    items: list[np.ndarray]  # given movies per row
    stars: list[np.ndarray]  # their ratings
    rest: Interactions  # the ratings scored, users by row

    @classmethod
    def encode(cls, given: pd.DataFrame, rest: pd.DataFrame, data: Prepared) -> _Users:
        user_ids = np.unique(given["user_id"].to_numpy())

        def flat(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            items, known = data.vocab.lookup_items(frame["movie_id"].to_numpy())
            if not known.all():
                raise ValueError("a held-out user rated a movie that is not in the catalogue")
            rows = np.searchsorted(user_ids, frame["user_id"].to_numpy())
            return rows, items.astype(np.int64), frame["rating"].to_numpy(np.float32)

        rows, items, stars = flat(given)
        bounds = np.searchsorted(rows, np.arange(len(user_ids) + 1))  # given is sorted by user
        pieces = lambda a: [a[s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        scored = Interactions(*flat(rest), len(user_ids), data.vocab.num_items)
        return cls(pieces(items), pieces(stars), scored)

    def __len__(self) -> int:
        return len(self.items)

    def given(self) -> Interactions:
        """The ratings the users gave, users by row."""
        rows = np.repeat(np.arange(len(self)), [len(i) for i in self.items])
        items, stars = np.concatenate(self.items), np.concatenate(self.stars)
        return Interactions(rows, items, stars, len(self), self.rest.num_items)


def _served_scorer(scorer: Scorer, users: _Users, rank_by: str, novelty: float = 0.0) -> Callable:
    depth = max(K, *RECALL_CUTOFFS)

    def score(rows: np.ndarray) -> torch.Tensor:
        items = [users.items[r] for r in rows]
        stars = [users.stars[r] for r in rows]
        vectors, biases = scorer.fold_in(items, stars)
        lists, _ = scorer.top_k_vectors(
            vectors,
            biases,
            items,
            depth,
            stars=stars,
            rank_by=rank_by,
            novelty=np.full(len(rows), novelty) if novelty else None,
        )
        return list_scores(lists, scorer.vocab.num_items)

    return score


def _history_scorer(peer: RankingPeer, users: _Users) -> Callable:
    return lambda rows: peer.score_history(
        [users.items[r] for r in rows], [users.stars[r] for r in rows]
    )


def _ranking(score: Callable, users: _Users, data: Prepared, chunk: int) -> dict:
    # Popularity percentile: by training rating count; candidates: all but the given movies.
    return ranking_metrics(
        score, data.interactions(), users.rest, k=K, chunk=chunk, seen=users.given()
    )


def _similar(similar_lists: dict[str, Callable], users: _Users, rng: np.random.Generator) -> dict:
    """:func:`list_hits` of each model's 10 movies most like one liked given movie per user."""
    asking = [r for r in range(len(users)) if (users.stars[r] >= LIKED).any()]
    seeds = np.array(
        [rng.choice(users.items[r][users.stars[r] >= LIKED]) for r in asking], dtype=np.int64
    )
    rest = users.rest
    liked = rest.rating >= LIKED
    relevant = [rest.item_idx[liked & (rest.user_idx == r)] for r in asking]
    return {name: list_hits(lists(seeds), relevant, K) for name, lists in similar_lists.items()}


def _peer_similar(scores: Callable[[np.ndarray], torch.Tensor]) -> Callable:
    def lists(item_idx: np.ndarray) -> np.ndarray:
        s = scores(item_idx).clone()
        s[torch.arange(len(item_idx)), torch.from_numpy(item_idx)] = -torch.inf  # not itself
        return torch.topk(s, K, dim=1).indices.numpy()

    return lists


@dataclass
class _Trained:
    """What the protocol trains on the other users' ratings: our model as served (the rating
    and ranking models behind a Scorer), what the ranking model chose, and the peers."""

    scorer: Scorer
    ranker: RankerFit
    peers: dict[str, Tuning]
    cosine: CooccurrenceCosine

    def similar_lists(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Each model's 10 movies most like each of a batch of movies."""
        peers = self.peers
        return {
            OURS: lambda items: self.scorer.similar_indices(items, K)[0],
            **{name: _peer_similar(t.peer.similar) for name, t in peers.items() if name != "iALS"},
            "iALS (item factors)": _peer_similar(peers["iALS"].peer.similar),
            "item co-occurrence cosine": _peer_similar(self.cosine.similar),
        }


def _train(
    data: Prepared,
    config: RankingConfig,
    ranker_config: RankerTrainConfig,
    overrides: dict[str, Any],
    seconds: dict[str, float],
) -> _Trained:
    """Step 2 of the protocol: every model trained on ``data``, each choice on its validation
    part; the time of each goes into ``seconds``."""
    seed = config.seed
    clock = time.perf_counter()
    rating_model = run_autorec(data, autorec_configs(data, config.preset, seed, **overrides)).model
    seconds["rating model"] = time.perf_counter() - clock
    clock = time.perf_counter()
    ranker, fitted = fit_ranker(
        data, rating_model, RankerConfig(data.vocab.num_items), ranker_config
    )
    seconds["ranking model"] = time.perf_counter() - clock
    scorer = Scorer(rating_model, data.vocab, None, config.ridge, ranker)
    clock = time.perf_counter()
    peers = tune_peers(data, seed)
    cosine = CooccurrenceCosine().fit(data.interactions())
    seconds["peers"] = time.perf_counter() - clock
    return _Trained(scorer, fitted, peers, cosine)


def _setting(
    users: _Users, data: Prepared, trained: _Trained, config: RankingConfig, index: int
) -> dict:
    """Steps 3 and 4 for the held-out users' sample ``index``: the figures of every model's
    lists from what ``users`` gave."""
    scorer = trained.scorer
    scorers = {
        OURS: _served_scorer(scorer, users, "ranking"),
        BY_RATING: _served_scorer(scorer, users, "rating"),
        **{peer: _history_scorer(t.peer, users) for peer, t in trained.peers.items()},
    }
    if index == 0:  # the curve of less obvious lists, from the fewest ratings
        for level in LEVELS[1:]:
            scorers[f"{OURS}, novelty {level:g}"] = _served_scorer(scorer, users, "ranking", level)
    ranking = {m: _ranking(s, users, data, config.chunk) for m, s in scorers.items()}
    rng = np.random.default_rng([config.seed, 3, index])
    similar = _similar(trained.similar_lists(), users, rng)
    return {
        "users": len(users),
        "given_ratings": int(sum(len(x) for x in users.items)),
        "scored_ratings": len(users.rest),
        "ranking": ranking,
        "similar": similar,
    }


def evaluate_ranking(
    dataset: Dataset,
    config: RankingConfig | None = None,
    ranker_config: RankerTrainConfig | None = None,
    **overrides,
) -> dict:
    """Run the protocol of the module docstring for one seed. ``ranker_config`` trains our
    ranking model (default: ``RankerTrainConfig(seed=config.seed)``); ``overrides`` go to the
    rating model's preset (e.g. ``epochs=2``). Returns the figures as a dict."""
    config = config or RankingConfig()
    seed = config.seed
    ranker_config = ranker_config or RankerTrainConfig(seed=seed)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    others, held = hold_out_users(
        dataset.ratings, config.test_users, config.given + config.min_targets, seed
    )
    validation = np.random.default_rng([seed, 1]).random(len(others)) < config.validation
    split = Split(others[~validation], others[validation], others[validation], "new users")
    data = prepare(dataclasses.replace(dataset, ratings=others), split)
    log.info(
        "%d held-out users (%d ratings); training on %d ratings of %d other users",
        held["user_id"].nunique(),
        len(held),
        len(split.train),
        others["user_id"].nunique(),
    )
    trained = _train(data, config, ranker_config, overrides, seconds)

    settings = {}
    clock = time.perf_counter()
    samples: dict[str, dict[str, Any]] = {f"{config.given} given": {"count": config.given}}
    samples[f"{config.given_share:.0%} given"] = {"share": config.given_share}
    for i, (name, how) in enumerate(samples.items()):
        given, rest = sample_given(held, np.random.default_rng([seed, 2, i]), **how)
        settings[name] = _setting(_Users.encode(given, rest, data), data, trained, config, i)
        ndcg = {m: round(r["ndcg@10"], 4) for m, r in settings[name]["ranking"].items()}
        log.info("%s: %s", name, ndcg)
    seconds["scoring"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started
    return {
        "dataset": dataset.name,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "held_out_users": int(held["user_id"].nunique()),
        "training_ratings": len(split.train),
        "validation_ratings": len(split.validation),
        "chosen": {
            OURS: trained.ranker.chosen,
            **{name: t.params for name, t in trained.peers.items()},
        },
        "settings": settings,
        "seconds": seconds,
    }
