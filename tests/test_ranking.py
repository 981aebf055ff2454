"""Ranking metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.data.interactions import Interactions
from train.evaluation.ranking import (
    ListTally,
    genre_diversity,
    head_items,
    popularity_percentile,
    ranking_metrics,
    self_information,
)


def _pairs(users, items, num_users: int, num_items: int, ratings=None) -> Interactions:
    """Interactions of these pairs (5 stars unless ``ratings`` are given)."""
    users, items = np.asarray(users), np.asarray(items)
    stars = np.full(len(users), 5.0) if ratings is None else np.asarray(ratings)
    return Interactions(users, items, stars, num_users, num_items)


def _metrics(scores: np.ndarray, k: int = 2, **kwargs):
    # User 0 rated item 0 in training; held out: item 1 (5 stars), item 2 (4), item 3 (2).
    # User 1 has nothing relevant held out, so it is not counted.
    table = torch.from_numpy(scores.astype(np.float32))
    return ranking_metrics(
        lambda users: table[torch.from_numpy(users)],
        train=_pairs([0], [0], 2, 5),
        test=_pairs([0, 0, 0, 1], [1, 2, 3, 0], 2, 5, ratings=[5.0, 4.0, 2.0, 3.0]),
        k=k,
        **kwargs,
    )


def test_perfect_ranking_scores_one():
    # The training item 0 scores highest but must be skipped.
    m = _metrics(np.array([[9, 8, 7, 1, 0], [0, 0, 0, 0, 0]]))
    assert (m["recall@2"], m["ndcg@2"], m["users"]) == (1.0, 1.0, 1)


def test_one_hit_in_second_place():
    m = _metrics(np.array([[9, 1, 7, 0, 8], [0, 0, 0, 0, 0]]))  # top-2: item 4, item 2
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_recall_at_twenty_counts_the_longer_list():
    # 25 movies; user 0 rated movie 0 in training; relevant held out: movies 1, 2 and 24.
    # Scores rank movie 24 in 15th place among the candidates: missed by @10, found by @20.
    scores = np.zeros((1, 25), dtype=np.float32)
    scores[0, :] = np.arange(25, 0, -1)  # movie 0 best, 24 worst...
    scores[0, 24] = scores[0, 15] + 0.5  # ...but 24 just above movie 15 (15th candidate)
    m = ranking_metrics(
        lambda users: torch.from_numpy(scores[users]),
        train=_pairs([0], [0], 1, 25),
        test=_pairs([0, 0, 0], [1, 2, 24], 1, 25, ratings=[5.0, 4.0, 4.0]),
    )
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["recall@20"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx(
        (1 + 1 / np.log2(3)) / (1 + 1 / np.log2(3) + 1 / np.log2(4))
    )


def test_seen_excludes_validation_items_too():
    # Item 4 was rated in validation: with seen = train + validation it cannot take a slot.
    scores = np.array([[9, 1, 7, 0, 8], [0, 0, 0, 0, 0]])
    plain = _metrics(scores)
    both = _metrics(scores, seen=_pairs([0, 0], [0, 4], 2, 5))
    assert plain["recall@2"] == pytest.approx(0.5)  # top-2: items 4, 2
    assert both["recall@2"] == pytest.approx(1.0)  # top-2: items 2, 1


def test_coverage_and_popularity_percentile_by_hand():
    # 4 movies with training counts 3, 1, 1, 0 -> percentiles (ties half):
    # movie 0: (3 + 4) / 8 = 87.5; movies 1, 2: (1 + 3) / 8 = 50; movie 3: (0 + 1) / 8 = 12.5.
    train_users = np.array([0, 1, 2, 1, 2])
    train_items = np.array([0, 0, 0, 1, 2])
    assert popularity_percentile(train_items, 4).tolist() == [87.5, 50.0, 50.0, 12.5]
    # Users 0..2 each have movie 3 relevant held out; scores put movie 3 first for everyone,
    # then movies by index. Top-1 lists: {3}, {3}, {3} -> coverage 1/4, percentile 12.5.
    # Top-2 (user 0: 3, 1; user 1: 3, 2 (0 and 1 seen); user 2: 3, 1) -> coverage 3/4,
    # percentile mean(12.5, 50, 12.5, 50, 12.5, 50) = 31.25.
    table = torch.tensor([[1.0, 0.9, 0.8, 2.0]]).expand(3, 4)
    args = dict(
        train=_pairs(train_users, train_items, 3, 4),
        test=_pairs([0, 1, 2], [3, 3, 3], 3, 4),
        recall_at=(),
    )
    one = ranking_metrics(lambda u: table[torch.from_numpy(u)], k=1, **args)
    two = ranking_metrics(lambda u: table[torch.from_numpy(u)], k=2, **args)
    assert (one["coverage@1"], one["popularity_percentile@1"]) == (0.25, 12.5)
    assert (two["coverage@2"], two["popularity_percentile@2"]) == (0.75, 31.25)
    assert one["recall@1"] == two["recall@2"] == 1.0


def test_the_head_is_the_fewest_most_rated_movies_holding_half_the_ratings():
    # Counts 6, 3, 2, 1, 0 of 12 ratings: movie 0 holds half alone.
    items = np.repeat(np.arange(5), [6, 3, 2, 1, 0])
    assert head_items(items, 5).tolist() == [True, False, False, False, False]
    # Counts 5, 4, 3 of 12: half needs the first two.
    assert head_items(np.repeat(np.arange(3), [5, 4, 3]), 3).tolist() == [True, True, False]


def test_self_information_is_minus_log2_of_the_share_a_movie_without_ratings_counting_one():
    items = np.repeat(np.arange(3), [4, 2, 0])  # 6 ratings: shares 2/3, 1/3, (1)/6
    assert self_information(items, 3) == pytest.approx(-np.log2([4 / 6, 2 / 6, 1 / 6]))


def test_genre_diversity_is_one_minus_jaccard_over_pairs():
    genres = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])
    # Items 0 and 1 share 1 of 2 genres (distance 0.5); 0 and 2 nothing (1); 1 and 2 (1).
    # Items 3 and 4 have no genres: alike (0).
    out = genre_diversity(np.array([[0, 1, 2], [3, 4, 3]]), genres)
    assert out == pytest.approx([(0.5 + 1 + 1) / 3, 0.0])
    assert genre_diversity(np.array([[0]]), genres).tolist() == [0.0]


def test_beyond_accuracy_figures_of_a_known_list():
    genres = np.array([[1, 0], [0, 1], [1, 1], [1, 0], [0, 1]])
    # Top-2 of user 0 (item 0 is trained): items 3 and 4, neither rated in training.
    m = _metrics(np.array([[9, 0, 1, 8, 7], [0, 0, 0, 0, 0]]), genres=genres)
    # One training rating, of item 0: the head is item 0, both listed movies are tail.
    assert m["long_tail@2"] == 1.0
    assert m["novelty@2"] == pytest.approx(0.0)  # share 1/1 (each counts one of one rating)
    assert m["diversity@2"] == pytest.approx(1.0)  # genres {0} and {1}: nothing shared


def test_a_tally_of_served_lists_counts_as_ranking_metrics_does():
    # The lists ranking_metrics makes of these scores, given as a server would answer them
    # (a short answer padded with -1), are counted to the same figures.
    scores = np.array([[9, 1, 7, 0, 8], [0, 0, 0, 0, 0]])
    offline = _metrics(scores, recall_at=())
    tally = ListTally(5, k=2, recall_at=())
    tally.add(np.array([[4, 2]]), [np.array([1, 2])])
    assert tally.figures(_pairs([0], [0], 2, 5)) == offline
    short = ListTally(5, k=2, recall_at=())
    short.add(np.array([[2, -1]]), [np.array([1, 2])])
    figures = short.figures(_pairs([0], [0], 2, 5))
    assert (figures["recall@2"], figures["coverage@2"]) == (0.5, 0.2)
    assert figures["ndcg@2"] == pytest.approx(1 / (1 + 1 / np.log2(3)))  # one hit of two ideal
    with pytest.raises(ValueError, match="relevant"):
        short.add(np.array([[2, 1]]), [np.array([], dtype=np.int64)])


def test_the_excluded_pairs_must_be_of_the_test_users():
    with pytest.raises(ValueError, match="users"):
        _metrics(np.zeros((2, 5)), seen=_pairs([0], [0], 3, 5))


def test_interactions_join_select_and_group_by_user():
    a = _pairs([1, 0, 1], [2, 3, 0], 3, 4, ratings=[5.0, 2.0, 4.0])
    b = _pairs([2], [1], 3, 4)
    both = a.concat(b)
    assert (both.user_idx.tolist(), both.item_idx.tolist(), len(both)) == (
        [1, 0, 1, 2],
        [2, 3, 0, 1],
        4,
    )
    assert a.liked(4.0).item_idx.tolist() == [2, 0]
    indptr, items = both.user_rows()
    assert (indptr.tolist(), items.tolist()) == ([0, 1, 3, 4], [3, 0, 2, 1])
    with pytest.raises(ValueError, match="join"):
        a.concat(_pairs([0], [0], 3, 5))
    with pytest.raises(ValueError, match="one of each"):
        Interactions(np.array([0]), np.array([0, 1]), np.array([5.0]), 1, 2)
