"""Ranking peers on tiny synthetic data whose right answers are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from train.data.interactions import Interactions
from train.data.prepared import Encoded, Prepared
from train.evaluation.ranking import ranking_on
from train.peers import (
    EASE,
    IALS,
    MostPopular,
    ease_weights,
    grid,
    history_matrix,
    interaction_matrix,
    tune,
)

# Two blocks of four movies (0-3, 4-7). For every block and every movie j in it, two users
# rated the block's other three movies (5 stars), so each user's one unseen in-block movie is
# the right first recommendation: everyone who shares their taste rated it.
BLOCK = 4


def _blocks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, items, missing = [], [], []
    for block in range(2):
        for j in range(BLOCK):
            for _copy in range(2):
                u = len(missing)
                missing.append(block * BLOCK + j)
                rated = [block * BLOCK + i for i in range(BLOCK) if i != j]
                users += [u] * len(rated)
                items += rated
    return np.array(users), np.array(items), np.array(missing)


def _liked(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> Interactions:
    """Every pair rated 5 stars."""
    return Interactions(users, items, np.full(len(users), 5.0), num_users, num_items)


def _first_unseen(scores: torch.Tensor, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    scores = scores.clone()
    scores[torch.from_numpy(users), torch.from_numpy(items)] = -torch.inf
    return scores.argmax(dim=1).numpy()


PEERS = [
    pytest.param(lambda: EASE(l2=1.0), id="EASE"),
    pytest.param(lambda: EASE(l2=1.0, low_weight=0.5), id="EASE-rating-aware"),
    pytest.param(lambda: IALS(factors=2, regularization=0.1, alpha=5.0, seed=0), id="iALS"),
]


@pytest.mark.parametrize("make", PEERS)
def test_block_structure_puts_the_unseen_in_block_movie_first(make):
    users, items, missing = _blocks()
    peer = make().fit(_liked(users, items, len(missing), 2 * BLOCK))
    scores = peer.score(np.arange(len(missing)))
    assert scores.shape == (len(missing), 2 * BLOCK)
    assert scores.dtype == torch.float32
    assert _first_unseen(scores, users, items).tolist() == missing.tolist()


@pytest.mark.parametrize("make", PEERS)
def test_new_user_from_history_gets_the_unseen_in_block_movie(make):
    users, items, missing = _blocks()
    peer = make().fit(_liked(users, items, len(missing), 2 * BLOCK))
    # Two new users: one rated movies 0, 1, 2 (so 3 is next), one rated 5, 6, 7 (so 4).
    histories = [np.array([0, 1, 2]), np.array([5, 6, 7])]
    scores = peer.score_history(histories, [np.full(3, 5.0), np.full(3, 4.0)])
    assert scores.shape == (2, 2 * BLOCK)
    seen_users, seen_items = np.repeat([0, 1], 3), np.concatenate(histories)
    assert _first_unseen(scores, seen_users, seen_items).tolist() == [3, 4]


@pytest.mark.parametrize("make", PEERS)
def test_similar_movies_come_from_the_same_block(make):
    users, items, missing = _blocks()
    peer = make().fit(_liked(users, items, len(missing), 2 * BLOCK))
    similar = peer.similar(np.array([0, 6]))  # (2, 8)
    for row, (movie, same) in enumerate(((0, [1, 2, 3]), (6, [4, 5, 7]))):
        others = [i for i in range(2 * BLOCK) if i not in same and i != movie]
        assert similar[row, same].min() > similar[row, others].max()


def test_ease_matches_the_closed_form_on_a_small_matrix():
    # 5 users x 4 movies; B = I - P / diag(P), P = (XᵀX + λI)⁻¹, computed here with a plain
    # inverse; the peer goes through a Cholesky factorization.
    x = np.array(
        [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64
    )
    l2 = 2.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(4))
    expected = np.eye(4) - p / np.diag(p)
    np.testing.assert_allclose(ease_weights(x, l2), expected, atol=1e-12)
    assert np.diag(ease_weights(x, l2)).tolist() == [0.0] * 4
    users, items = np.nonzero(x)
    peer = EASE(l2=l2).fit(_liked(users, items, 5, 4))
    np.testing.assert_allclose(peer.score(np.arange(5)).numpy(), x @ expected, rtol=1e-5)
    np.testing.assert_allclose(peer.similar(np.array([2])).numpy(), expected[[2]], rtol=1e-6)


def test_rating_aware_ease_weighs_low_ratings():
    # Same pairs; ratings below 4 enter X as low_weight.
    users = np.array([0, 0, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 0, 2, 1, 2, 3])
    ratings = np.array([5, 2, 4, 3, 1, 5, 4], dtype=np.float64)
    x = np.zeros((3, 4))
    x[users, items] = np.where(ratings >= 4, 1.0, 0.6)
    p = np.linalg.inv(x.T @ x + 1.5 * np.eye(4))
    expected = np.eye(4) - p / np.diag(p)
    peer = EASE(l2=1.5, low_weight=0.6).fit(Interactions(users, items, ratings, 3, 4))
    np.testing.assert_allclose(peer.score(np.arange(3)).numpy(), x @ expected, rtol=1e-5)
    assert peer.params == {"l2": 1.5, "low_weight": 0.6}
    # A new user with user 2's history gets user 2's scores.
    again = peer.score_history([items[users == 2]], [ratings[users == 2]])
    np.testing.assert_allclose(again.numpy(), peer.score(np.array([2])).numpy(), rtol=1e-6)


def test_interaction_matrix_weights_and_duplicates():
    # (0, 2) and (1, 0) are given twice: each counts once, with its first rating.
    rated = Interactions(
        np.array([0, 0, 1, 1, 1]), np.array([2, 2, 0, 1, 0]), np.array([5, 5, 3, 4, 2]), 2, 3
    )
    m = interaction_matrix(rated, 0.5)
    assert m.toarray().tolist() == [[0.0, 0.0, 1.0], [0.5, 1.0, 0.0]]
    with pytest.raises(ValueError, match="item indices"):
        interaction_matrix(Interactions(np.array([0]), np.array([3]), np.array([5]), 1, 3))
    with pytest.raises(ValueError, match="low_weight"):
        interaction_matrix(rated, low_weight=0.0)
    with pytest.raises(ValueError, match="rating lists"):
        history_matrix([np.array([0])], [], 3)


def test_most_popular_counts_training_ratings():
    peer = MostPopular().fit(
        Interactions(np.array([0, 1, 2]), np.array([2, 2, 0]), np.ones(3), 3, 3)
    )
    assert peer.score(np.array([0, 1])).tolist() == [[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]]
    assert peer.score_history([np.array([1])], [np.array([5.0])]).tolist() == [[1.0, 0.0, 2.0]]


def test_unfitted_and_bad_settings_are_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        EASE().score(np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        IALS().score_history([np.array([0])], [np.array([5.0])])
    with pytest.raises(ValueError, match="l2"):
        EASE(l2=0.0)
    with pytest.raises(ValueError, match="factors"):
        IALS(factors=0)


def _encoded(users, items, ratings) -> Encoded:
    return Encoded(
        torch.tensor(users, dtype=torch.int64),
        torch.tensor(items, dtype=torch.int64),
        torch.tensor(ratings, dtype=torch.float32),
    )


def _prepared():
    """The block data as a split: every user's missing movie is held out, in validation for
    users 0-7 and in test for users 8-15; test users also have one validation rating (a
    movie of the other block, 2 stars) that test must skip."""
    users, items, missing = _blocks()
    n = len(missing)
    val_users = np.concatenate([np.arange(8), np.arange(8, n)])
    val_items = np.concatenate([missing[:8], (missing[8:] + BLOCK) % (2 * BLOCK)])
    val_ratings = np.concatenate([np.full(8, 5.0), np.full(n - 8, 2.0)])
    vocab = SimpleNamespace(
        num_users=n, num_items=2 * BLOCK, genres=np.zeros((2 * BLOCK, 1), np.uint8)
    )
    return Prepared(
        vocab,  # a stand-in with the three fields a ranking reads
        train=_encoded(users, items, np.full(len(users), 5.0)),
        validation=_encoded(val_users, val_items, val_ratings),
        test=_encoded(np.arange(8, n), missing[8:], np.full(n - 8, 5.0)),
        rating_scale=(1.0, 5.0),
    )


def test_ranking_on_test_skips_validation_movies():
    data = _prepared()
    # A scorer that ranks the validation movie of test users first, then their missing movie:
    # with validation movies excluded the missing movie is first on test.
    table = torch.zeros(16, 2 * BLOCK)
    v = data.validation
    table[v.user_idx, v.item_idx] = 2.0
    table[data.test.user_idx, data.test.item_idx] = 1.0
    scores = lambda u: table[torch.from_numpy(u)]
    assert ranking_on(scores, data, "test")["ndcg@10"] == pytest.approx(1.0)
    assert ranking_on(scores, data, "validation")["ndcg@10"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="part"):
        ranking_on(scores, data, "train")


class _Signed(EASE):
    """EASE whose scores are multiplied by ``sign``: -1 ranks the right movie last."""

    def __init__(self, sign: float):
        super().__init__(l2=1.0)
        self.sign = sign

    def score(self, user_idx):
        return self.sign * super().score(user_idx)


def test_tune_keeps_the_best_validation_setting():
    data = _prepared()
    tuning = tune(_Signed, grid(sign=(-1.0, 1.0, 2.0)), data)
    assert [trial.params for trial in tuning.table] == [{"sign": s} for s in (-1.0, 1.0, 2.0)]
    assert tuning.table[0].validation["ndcg@10"] < 0.5
    # 1 and 2 rank identically; the first of a tie is kept.
    assert tuning.params == {"sign": 1.0}
    assert tuning.best.validation["ndcg@10"] == pytest.approx(1.0)
    assert isinstance(tuning.peer, _Signed) and tuning.peer.sign == 1.0
    assert tuning.best.fit_seconds >= 0.0
    # A later stage keeps the earlier settings and does not fit them again.
    more = tune(_Signed, grid(sign=(1.0, 3.0)), data, previous=tuning)
    assert [trial.params["sign"] for trial in more.table] == [-1.0, 1.0, 2.0, 3.0]
    assert more.peer is tuning.peer


def test_grid_crosses_axes():
    assert grid(a=(1, 2), b=(3,)) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
