"""Ranking peers: the top-K recommenders movierec's ranking is measured against.

Each learns from the training part of a split and honours :class:`RankingPeer`: ``fit``, then
``score`` (trained users), ``score_history`` (new users, from their ratings) and, where it has
item-item scores, ``similar``. :func:`tune` picks hyperparameters on validation ranking and
:func:`run_peers` produces the report's rows.
"""

from train.peers.base import MostPopular, RankingPeer, history_matrix, interaction_matrix
from train.peers.cosine import CooccurrenceCosine
from train.peers.ease import EASE, ease_weights
from train.peers.ials import IALS
from train.peers.tuning import Tuning, grid, run_peers, tune, tune_peers

__all__ = [
    "EASE",
    "IALS",
    "CooccurrenceCosine",
    "MostPopular",
    "RankingPeer",
    "Tuning",
    "ease_weights",
    "grid",
    "history_matrix",
    "interaction_matrix",
    "run_peers",
    "tune",
    "tune_peers",
]
