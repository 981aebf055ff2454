"""Less obvious lists on request: the ``novelty`` of a list, from 0 (as ranked) to 1.

A list's scores rank movies for one person; their scale differs from person to person. Each
row is standardised over the catalogue (``(s - mean) / std``), then a popularity penalty is
subtracted:

    s'_i = z(s)_i - strength(novelty) * p_i,    p = z(log(1 + training ratings of movie i))

so a movie climbs when the person's scores say it fits them nearly as well as a blockbuster,
and the penalty grows with how far above the catalogue's typical movie it sits in popularity
(log counts: one more rating matters more to a rare movie than to a blockbuster).

``strength`` is calibrated per model on validation (:mod:`train.fitting.discovery`): at each
of :data:`LEVELS` it is the penalty that brings the mean popularity percentile of the
validation top-10 lists down from where it is (p0, novelty 0) by that share of the way to
:data:`FLOOR` percentile, and between levels it is interpolated. So a novelty asks the same of
any model and dataset ("half way from the blockbusters to the 70th percentile"), whatever the
spread of its scores. Rows asked with ``novelty=0`` are left as they are, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

# The novelty values the strengths are calibrated at; others are interpolated.
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The mean popularity percentile (of the validation top-10) that novelty 1 asks for: movies
# most people have not heard of, still from the upper part of the catalogue.
FLOOR = 70.0
# The strengths at LEVELS of a model that records none (an artifact from before they were
# calibrated, a model without a ranking model): the ranking model's on ML-1M validation.
DEFAULT_STRENGTHS = (0.0, 0.85, 0.98, 1.06, 1.13)


def strength(novelty: np.ndarray, strengths: tuple[float, ...] | list[float]) -> np.ndarray:
    """The penalty weight at each ``novelty``, interpolated between :data:`LEVELS`."""
    if len(strengths) != len(LEVELS):
        raise ValueError(f"{len(strengths)} strengths for {len(LEVELS)} novelty levels")
    return np.interp(np.asarray(novelty, dtype=np.float64), LEVELS, strengths)


def popularity_penalty(counts: np.ndarray) -> torch.Tensor:
    """``z(log(1 + counts))`` over the catalogue: (N,) -> (N,) float32, 0 for a catalogue
    where every movie has as many ratings."""
    logs = np.log1p(np.asarray(counts, dtype=np.float64))
    spread = logs.std()
    centred = logs - logs.mean()
    return torch.from_numpy((centred / spread if spread > 0 else centred).astype(np.float32))


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row centred on its mean and divided by its standard deviation: (B, N) -> (B, N)."""
    mean = scores.mean(dim=1, keepdim=True)
    return (scores - mean) / scores.std(dim=1, keepdim=True).clamp_min(1e-12)


def penalise(
    scores: torch.Tensor,
    novelty: np.ndarray,
    penalty: torch.Tensor,
    strengths: tuple[float, ...] | list[float],
) -> torch.Tensor:
    """Scores (B, N) with row ``b`` re-ranked at ``novelty[b]`` (module docstring); rows at 0
    are returned untouched. ``scores`` is not modified."""
    novelty = np.asarray(novelty, dtype=np.float64)
    if novelty.shape != (scores.shape[0],):
        raise ValueError(f"{novelty.shape} novelty values for {scores.shape[0]} rows")
    rows = np.flatnonzero(novelty > 0)
    if not len(rows):
        return scores
    out = scores.clone()
    rows_t = torch.from_numpy(rows)
    weights = torch.from_numpy(strength(novelty[rows], strengths).astype(np.float32))[:, None]
    out[rows_t] = standardise(scores[rows_t].float()) - weights * penalty[None, :]
    return out
