"""Vocabulary: dense indices, metadata and rated sets survive a save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from model.errors import UnknownIdError
from model.vocab import Vocabulary


def test_indices_map_back_to_raw_ids(vocab, ratings):
    users = ratings["user_id"].to_numpy()
    assert np.array_equal(vocab.user_ids[vocab.user_index(users)], users)
    movies = ratings["movie_id"].to_numpy()
    assert np.array_equal(vocab.movie_ids[vocab.item_index(movies)], movies)
    assert vocab.num_users == ratings["user_id"].nunique()


def test_catalogue_includes_unrated_movies(ratings, movies):
    vocab = Vocabulary.build(ratings[ratings.movie_id != 11], movies, ("Action", "Comedy", "Drama"))
    assert 11 in vocab.movie_ids.tolist()
    assert vocab.num_items == len(movies)


def test_unknown_ids_raise_with_field_and_value(vocab):
    with pytest.raises(UnknownIdError, match="user_id: unknown user id 102"):
        vocab.user_index(np.array([101, 102]))
    with pytest.raises(UnknownIdError, match="pairs\\[0\\]\\[1\\]: unknown movie id 12"):
        vocab.item_index(np.array([12]), field="pairs[0][1]")
    _, found = vocab.lookup_users(np.array([101, 102, 10**12, -5]))
    assert found.tolist() == [True, False, False, False]


def test_rated_sets_match_ratings(vocab, ratings):
    for user_id, group in ratings.groupby("user_id"):
        (u,) = vocab.user_index(np.array([user_id]))
        rated = vocab.movie_ids[vocab.rated_by(u)]
        assert sorted(rated.tolist()) == sorted(group["movie_id"].tolist())


def test_titles_and_genres(vocab):
    (i,) = vocab.item_index(np.array([14]))  # movie n=1: genre bit 0 -> Action
    assert vocab.titles[i] == "Movie 14 (1995)"
    assert vocab.genres[i].tolist() == [1, 0, 0]


def test_save_load_round_trip(vocab, tmp_path):
    vocab.save(tmp_path / "vocab.npz")
    loaded = Vocabulary.load(tmp_path / "vocab.npz")
    fields = (
        "user_ids",
        "movie_ids",
        "titles",
        "genres",
        "rated_indptr",
        "rated_items",
        "rating_count",
        "rating_mean",
    )
    for field in fields:
        assert np.array_equal(getattr(loaded, field), getattr(vocab, field)), field
    assert loaded.genre_names == vocab.genre_names


def test_rating_count_and_mean_per_movie(ratings, movies):
    vocab = Vocabulary.build(ratings[ratings.movie_id != 11], movies, ("Action", "Comedy", "Drama"))
    stats = ratings[ratings.movie_id != 11].groupby("movie_id")["rating"].agg(["count", "mean"])
    idx = vocab.item_index(stats.index.to_numpy())
    assert np.array_equal(vocab.rating_count[idx], stats["count"].to_numpy())
    assert np.allclose(vocab.rating_mean[idx], stats["mean"].to_numpy())
    (unrated,) = vocab.item_index(np.array([11]))
    assert vocab.rating_count[unrated] == 0 and vocab.rating_mean[unrated] == 0.0


def test_a_vocabulary_saved_before_rating_stats_still_loads(vocab, tmp_path):
    vocab.save(tmp_path / "vocab.npz")
    with np.load(tmp_path / "vocab.npz") as z:
        older = {k: z[k] for k in z.files if k not in ("rating_count", "rating_mean")}
    np.savez_compressed(tmp_path / "old.npz", **older)
    loaded = Vocabulary.load(tmp_path / "old.npz")
    assert loaded.rating_count is None and loaded.rating_mean is None
    assert np.array_equal(loaded.rated_items, vocab.rated_items)


def test_indices_may_cover_more_ratings_than_the_vocabulary_holds(ratings, movies):
    held = ratings[ratings.user_id != 101]
    vocab = Vocabulary.build(held, movies, ("Action", "Comedy", "Drama"), ids_from=ratings)
    assert vocab.user_ids.tolist() == sorted(ratings["user_id"].unique().tolist())
    (u,) = vocab.user_index(np.array([101]))
    assert len(vocab.rated_by(u)) == 0 and vocab.rating_count.sum() == len(held)
    with pytest.raises(ValueError, match="user id 101 of ratings is not in ids_from"):
        Vocabulary.build(ratings, movies, ("Action", "Comedy", "Drama"), ids_from=held)
