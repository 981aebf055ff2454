"""Less obvious lists and what they cost: movierec beside penalised peers, and explanations.

Part of ``make evaluate`` (:mod:`train.evaluate`), on its splits, with its ranking model and
its tuned peers:

- **Trade-off curve**: every model's novelty strengths are calibrated on validation the same
  way (:mod:`train.fitting.discovery`: the popularity penalty of :mod:`model.novelty` at each
  level brings the validation lists' popularity percentile down by that share of the way to
  70), and test is scored once per level: Recall@10, NDCG@10 and the beyond-accuracy figures
  of :mod:`train.evaluation.ranking`, against the mean popularity percentile.
- **Faithfulness of explanations**: for sampled test users' top-10 (novelty 0), the first
  movie an entry's explanation cites is removed from the user's history and the entry's
  ranking score recomputed; so is a random other movie of the history. The share of (user,
  entry) pairs where the cited movie's removal lowers the score more, and the mean drops.

The report gives the mean curves over seeds, the comparisons at equal popularity, a plot
(``reports/<dataset>-tradeoff.png``) and the faithfulness per seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model.network import FactorModel
from model.novelty import LEVELS, penalise, popularity_penalty
from model.ranker import Ranker
from train.data.prepared import Prepared
from train.evaluation.ranking import ranking_on
from train.fitting.discovery import Calibration
from train.fitting.ranker_training import history_matrix
from train.peers.tuning import Tuning

log = logging.getLogger(__name__)

PENALISED = ("EASE", "EASE (rating-aware)")  # peers swept with the same penalty
AT_NOVELTY_0 = ("iALS", "most popular")  # peers shown at novelty 0 only
FAITHFULNESS_USERS = 500  # test users whose top-10 explanations are checked, per seed
LEVEL_GRID = (90.0, 85.0, 80.0, 75.0, 70.0)  # popularity percentiles the curves are compared at
FIGURES = (
    "recall@10",
    "ndcg@10",
    "popularity_percentile@10",
    "coverage@10",
    "novelty@10",
    "diversity@10",
    "long_tail@10",
)


Scorer = Callable[[np.ndarray], torch.Tensor]


def _curve(
    score: Scorer, prepared: Prepared, strengths: list[float], penalty: torch.Tensor
) -> list:
    """Test figures of ``score`` at each novelty level (one test pass per level)."""
    rows = []
    for level in LEVELS:
        levels = lambda u, level=level: np.full(len(u), level)
        scored = lambda u, levels=levels: penalise(score(u), levels(u), penalty, strengths)
        figures = ranking_on(scored, prepared, "test")
        rows.append({"novelty": level, **{f: figures[f] for f in FIGURES}})
        log.info("  novelty %.2f: %s", level, {f: round(figures[f], 4) for f in FIGURES[:3]})
    return rows


def _strengths(score: Scorer, prepared: Prepared, seed: int) -> list[float]:
    return Calibration.on_validation(score, prepared, seed).strengths()[0]


def faithfulness(
    ranker: Ranker,
    rating_model: FactorModel | None,
    prepared: Prepared,
    seed: int,
    users: int = FAITHFULNESS_USERS,
) -> dict:
    """Removing the first cited movie vs a random other rated movie, over sampled test users'
    top-10 (see the module docstring)."""
    x = history_matrix(prepared.interactions(), ranker.config.low_weight)
    rng = np.random.default_rng(seed)
    if prepared.test is None:
        raise ValueError("faithfulness is measured on test users")
    test_users = np.unique(prepared.interactions("test").user_idx)
    chosen = rng.choice(test_users, min(users, len(test_users)), replace=False)
    wins, cited_drops, random_drops, skipped = 0, [], [], 0
    for u in chosen:
        history = torch.from_numpy(x[[u]].toarray())  # (1, N)
        rated = np.flatnonzero(history[0].numpy())
        if len(rated) < 2:
            continue
        stars = rating_model.score_all(torch.tensor([int(u)])) if rating_model is not None else None
        scores = ranker.scores(history, stars)[0]
        scores[torch.from_numpy(rated)] = -torch.inf
        top = torch.topk(scores, 10).indices.numpy()
        values = history[0].numpy()[rated]
        terms = ranker.contributions(rated, values, top)  # (h, 10)
        for col, entry in enumerate(top):
            if terms[:, col].max() <= 0:
                skipped += 1
                continue
            cited = int(np.argmax(terms[:, col]))
            other = int(rng.choice(np.delete(np.arange(len(rated)), cited)))
            removed = history.repeat(2, 1)
            removed[0, rated[cited]] = 0.0
            removed[1, rated[other]] = 0.0
            both = ranker.scores(removed, None if stars is None else stars.repeat(2, 1))
            base = float(scores[entry])
            drop_cited, drop_other = base - float(both[0, entry]), base - float(both[1, entry])
            wins += drop_cited > drop_other
            cited_drops.append(drop_cited)
            random_drops.append(drop_other)
    pairs = len(cited_drops)
    return {
        "pairs": pairs,
        "share": wins / max(pairs, 1),
        "mean_drop_cited": float(np.mean(cited_drops)) if pairs else 0.0,
        "mean_drop_random": float(np.mean(random_drops)) if pairs else 0.0,
        "entries_without_reason": skipped,
        "users": len(chosen),
    }


def run(
    prepared: Prepared,
    seed: int,
    ours: tuple[Scorer, list[float]],
    peers: dict[str, Tuning],
) -> dict[str, list[dict]]:
    """Test curves of movierec (``ours``: its scorer and calibrated strengths) and of the
    penalised peers (each calibrated here), and the other peers at novelty 0."""
    penalty = popularity_penalty(prepared.rating_counts())
    log.info("seed %d: movierec at each novelty level", seed)
    curves = {"movierec": _curve(ours[0], prepared, ours[1], penalty)}
    for name in PENALISED:
        score = peers[name].peer.score
        log.info("seed %d: %s at each novelty level", seed, name)
        curves[name] = _curve(score, prepared, _strengths(score, prepared, seed), penalty)
    for name in AT_NOVELTY_0:
        figures = ranking_on(peers[name].peer.score, prepared, "test")
        curves[name] = [{"novelty": 0.0, **{f: figures[f] for f in FIGURES}}]
    return curves


def mean_curves(per_seed: list[dict]) -> dict[str, list[dict]]:
    """Each model's curve, every figure's mean and standard deviation over the seeds'
    ``{"curves": ...}``."""
    out = {}
    for name in per_seed[0]["curves"]:
        rows = []
        for j, row in enumerate(per_seed[0]["curves"][name]):
            values = {f: [s["curves"][name][j][f] for s in per_seed] for f in FIGURES}
            rows.append(
                {
                    "novelty": row["novelty"],
                    **{f: float(np.mean(v)) for f, v in values.items()},
                    **{f"{f}_std": float(np.std(v)) for f, v in values.items()},
                }
            )
        out[name] = rows
    return out


def at_percentile(curve: list[dict], level: float, figure: str = "recall@10") -> float | None:
    """``figure`` of a curve interpolated at popularity percentile ``level``; None where the
    curve does not reach it."""
    pct = np.array([r["popularity_percentile@10"] for r in curve])
    values = np.array([r[figure] for r in curve])
    order = np.argsort(pct)
    if not pct.min() <= level <= pct.max():
        return None
    return float(np.interp(level, pct[order], values[order]))


def targets(curves: dict[str, list[dict]]) -> dict:
    """The comparisons at equal popularity: movierec against the penalised peers at each of
    :data:`LEVEL_GRID` both reach, and movierec's Recall@10 at 85."""
    ours = curves["movierec"]
    rows = []
    for level in LEVEL_GRID:
        row: dict = {"percentile": level, "movierec": at_percentile(ours, level)}
        for name in PENALISED:
            row[name] = at_percentile(curves[name], level)
        rows.append(row)
    return {"at_85": at_percentile(ours, 85.0), "levels": rows}


def plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, figure in zip(axes, ("recall@10", "ndcg@10")):
        for name, curve in curves.items():
            pct = [r["popularity_percentile@10"] for r in curve]
            values = [r[figure] for r in curve]
            errors = [r[f"{figure}_std"] for r in curve]
            style = "o" if len(curve) == 1 else "o-"
            ax.errorbar(pct, values, yerr=errors, fmt=style, label=name, capsize=2)
        ax.set_xlabel("mean popularity percentile of the top-10 (lower: less obvious)")
        ax.set_ylabel(figure)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown_lines(dataset: str, curves: dict[str, list[dict]], faithful: list[dict]) -> list[str]:
    """The report's section: the curves, the comparisons at equal popularity, the plot and
    the faithfulness of explanations per seed (``faithful``: :func:`faithfulness`' rows,
    each with its ``seed``)."""
    lines = [
        "## Less obvious lists: accuracy against popularity",
        "",
        "`novelty` (0 to 1) re-ranks a list with a popularity penalty on its standardised "
        "scores (model/novelty.py). Each model's strengths are calibrated on validation the "
        "same way: at novelty t the penalty brings the validation top-10's mean popularity "
        "percentile a share t of the way from where it is to 70; test is scored once per "
        "level. EASE and rating-aware EASE are the tuned rows above with the same penalty, "
        "calibrated the same way; iALS and most popular are shown at novelty 0. Novelty: mean "
        "self-information of the listed movies (bits); genre diversity: mean 1 - Jaccard of "
        "the genres of two movies of a list; long tail: share of listed movies outside the "
        "most-rated movies that hold half of the training ratings.",
        "",
        "| model | novelty | Recall@10 | NDCG@10 | popularity percentile | coverage@10 | "
        "novelty (bits) | genre diversity | long-tail share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, curve in curves.items():
        for r in curve:
            lines.append(
                f"| {model} | {r['novelty']:g} | {r['recall@10']:.4f} ± {r['recall@10_std']:.4f}"
                f" | {r['ndcg@10']:.4f} ± {r['ndcg@10_std']:.4f}"
                f" | {r['popularity_percentile@10']:.1f} | {r['coverage@10']:.3f}"
                f" | {r['novelty@10']:.2f} | {r['diversity@10']:.3f} | {r['long_tail@10']:.3f} |"
            )
    t = targets(curves)
    lines += [
        "",
        f"![accuracy against popularity]({dataset}-tradeoff.png)",
        "",
        "Recall@10 at equal popularity (each mean curve interpolated linearly between its "
        "levels; blank where a curve does not reach that percentile):",
        "",
        "| popularity percentile | movierec | EASE | movierec / EASE | EASE (rating-aware) | "
        "movierec / rating-aware EASE |",
        "|---|---|---|---|---|---|",
    ]
    for row in t["levels"]:
        ours, ease, aware = row["movierec"], row["EASE"], row["EASE (rating-aware)"]
        lines.append(
            f"| {row['percentile']:g} | {_fmt(ours)} | {_fmt(ease)} | "
            f"{_fmt(ours / ease if ours and ease else None, 3)} | {_fmt(aware)} | "
            f"{_fmt(ours / aware if ours and aware else None, 3)} |"
        )
    lines += [
        "",
        f"movierec's Recall@10 at popularity percentile 85: {_fmt(t['at_85'])}.",
        "",
        "## Explanations",
        "",
        "An entry's explanation (`explain`) cites the rated movies whose item-item terms "
        "`x_j B_ji` add most to its ranking score. For the top-10 (novelty 0) of "
        f"{FAITHFULNESS_USERS} sampled test users per seed, the first cited movie is removed "
        "from the history and the entry's whole ranking score (item-item, deep and rating "
        "parts, the row standardised again) recomputed; so is a random other rated movie.",
        "",
        "| seed | (user, entry) pairs | removing the cited movie lowers the score more | "
        "mean drop, cited | mean drop, random | entries without a positive term |",
        "|---|---|---|---|---|---|",
    ]
    for f in faithful:
        lines.append(
            f"| {f['seed']} | {f['pairs']} | {100 * f['share']:.1f}% | "
            f"{f['mean_drop_cited']:.4f} | {f['mean_drop_random']:.4f} | "
            f"{f['entries_without_reason']} |"
        )
    return [*lines, ""]
