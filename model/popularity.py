"""Popularity ranking for users the model knows nothing about: a Bayesian-average rating.

A movie's mean rating is unreliable when few people rated it (one 5-star rating would top a
plain mean ranking). The Bayesian average pulls each mean towards the catalogue's mean as if
every movie had ``prior_count`` extra ratings at that mean:

    score_i = (prior_count * global_mean + count_i * mean_i) / (prior_count + count_i)

so well-rated movies with many ratings come first (the IMDb Top 250 formula).
"""

from __future__ import annotations

import numpy as np


def bayesian_average(
    count: np.ndarray, mean: np.ndarray, prior_count: float | None = None
) -> np.ndarray:
    """Bayesian-average rating of each movie.

    Parameters
    ----------
    count : numpy.ndarray of int, shape (N,)
        Ratings per movie.
    mean : numpy.ndarray of float, shape (N,)
        Mean rating per movie (ignored where ``count`` is 0).
    prior_count : float, optional
        Weight of the prior, in ratings. Default: the median count of the movies that have
        ratings, which scales with the dataset (27 on ML-100K).

    Returns
    -------
    numpy.ndarray of float32, shape (N,)
        The catalogue's mean rating for movies without ratings.
    """
    count = np.asarray(count, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    if count.shape != mean.shape:
        raise ValueError(f"count {count.shape} and mean {mean.shape} differ in shape")
    rated = count > 0
    if not rated.any():
        raise ValueError("no movie has ratings: a popularity ranking needs some")
    if prior_count is None:
        prior_count = float(np.median(count[rated]))
    if prior_count <= 0:
        raise ValueError(f"prior_count must be > 0, got {prior_count}")
    total = np.where(rated, count * mean, 0.0)
    global_mean = total.sum() / count.sum()
    return ((prior_count * global_mean + total) / (prior_count + count)).astype(np.float32)
