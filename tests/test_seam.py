"""The raw-id seam (model.recommender.Recommender): raw MovieLens ids and one MovieFilter in,
the records of model.results out, equal to what the dense-index layer computes."""

from __future__ import annotations

import numpy as np
import pytest

import model.scoring
from model.errors import UnknownIdError
from model.filtering import NO_FILTER, MovieFilter
from model.recommender import Recommender
from model.scoring import Scorer
from tests.conftest import GENRES


@pytest.fixture(scope="module")
def rec(artifact_dir) -> Recommender:
    return Recommender.from_artifact(artifact_dir)


def raw(rec: Recommender, items: np.ndarray) -> list[int]:
    """Raw movie ids of a padded row of dense indices."""
    return [int(rec.vocab.movie_ids[i]) for i in items if i >= 0]


def test_the_recommender_holds_its_scorer_and_inherits_nothing_from_it(rec):
    assert Recommender.__mro__ == (Recommender, object)
    layer = [c for c in vars(model.scoring).values() if isinstance(c, type)]
    assert Scorer in layer and not any(issubclass(Recommender, c) for c in layer)
    assert isinstance(rec.scorer, Scorer) and not hasattr(rec, "top_k_indices")
    assert rec.vocab is rec.scorer.vocab and rec.popularity is rec.scorer.popularity


def test_the_seam_describes_the_model(rec):
    assert rec.genre_names == GENRES and rec.rating_scale == (1.0, 5.0)
    assert (rec.num_users, rec.num_movies) == (40, 30)
    movie = rec.movie(17)  # the third movie: 11, 14, 17 ...; genre flags of 2 = Comedy
    assert (movie.movie_id, movie.title, movie.genres) == (17, "Movie 17 (1995)", ("Comedy",))
    with pytest.raises(UnknownIdError, match="12345"):
        rec.movie(12345)


def test_predict_rates_known_pairs_and_marks_the_unknown(rec):
    users, movies = [101, 103, 999, 105], [11, 12345, 14, 17]
    got = rec.predict(users, movies)
    assert got.user_known.tolist() == [True, True, False, True]
    assert got.movie_known.tolist() == [True, False, True, True]
    assert got.known.tolist() == [True, False, False, True]
    expected = rec.scorer.predict_indices(np.array([0, 2]), np.array([0, 2]))
    assert got.ratings[[0, 3]].tolist() == expected.tolist()
    assert np.isnan(got.ratings[[1, 2]]).all()
    with pytest.raises(ValueError, match="2 user ids but 1 movie ids"):
        rec.predict([101, 103], [11])


def test_recommend_lists_what_the_index_layer_ranks(rec):
    users = [101, 107, 109]
    options = {"k": [3, 5, 2], "rank_by": ["ranking", "rating", "ranking"]}
    lists = rec.recommend(users, **options)
    for row, (u, k, order) in enumerate(zip((0, 3, 4), options["k"], options["rank_by"])):
        items, scores = rec.scorer.top_k_indices(np.array([u]), k, rank_by=order)
        found = lists[row]
        assert found.user_known and found.fallback is None and found.ranked_by == order
        assert [m.movie_id for m in found.movies] == raw(rec, items[0])
        # Scored in a batch of two users, here alone: float32 sums may differ in the last bits.
        assert [m.score for m in found.movies] == pytest.approx(scores[0].tolist(), rel=1e-5)
        ratings = rec.scorer.predict_indices(np.full(k, u), items[0])
        assert [m.rating for m in found.movies] == ratings.tolist()


def test_recommend_takes_one_filter_or_one_per_user(rec):
    drama = MovieFilter(genres=("Drama",), exclude_movie_ids=(20, 12345))
    same = rec.recommend([101, 103], 4, drama)
    each = rec.recommend([101, 103], 4, [drama, drama])
    assert same == each
    for found in same:
        assert all("Drama" in m.genres and m.movie_id != 20 for m in found.movies)
    with pytest.raises(ValueError, match="1 values of filters for 2 rows"):
        rec.recommend([101, 103], 4, [drama])
    with pytest.raises(ValueError, match="rank_by"):
        rec.recommend([101], 4, rank_by="stars")
    with pytest.raises(ValueError, match="fallback"):
        rec.recommend([101], 4, fallback="random")


def test_a_list_stops_where_eligible_movies_run_out(rec):
    # Action without Comedy or Drama: movies 1, 9, 17, 25 of 30 (genre flags of the index).
    only = MovieFilter(genres=("Action",), exclude_genres=("Comedy", "Drama"))
    (found,) = rec.recommend([10**9], 10, only, fallback="popular")
    assert sorted(m.movie_id for m in found.movies) == [11 + 3 * i for i in (1, 9, 17, 25)]


def test_unknown_users_get_no_list_unless_a_fallback_stands_in(rec):
    plain, chart, known = rec.recommend(
        [10**9, 10**9, 101], 3, fallback=[None, "popular", "popular"]
    )
    assert not plain.user_known and plain.movies == () and plain.fallback_error is None
    assert (
        chart.fallback == "popular" and chart.ranked_by == "popularity" and len(chart.movies) == 3
    )
    assert known.user_known and known.fallback is None and known.ranked_by == "ranking"


def test_new_users_are_folded_in_and_ranked_as_the_index_layer_does(rec):
    given, stars = [11, 14, 99999], [5.0, 1.0, 3.0]
    found, refused = rec.recommend_new_users(
        [given, [11]], [stars, [4.0]], 4, predict_movie_ids=[[17, 20], [17, 12345, 7]]
    )
    assert refused.movies == () and refused.unknown_predicted_ids == (12345, 7)
    assert found.unknown_movie_ids == (99999,) and found.ranked_by == "ranking"
    scorer, idx = rec.scorer, rec.vocab.item_index(np.array([11, 14]))
    vectors, biases = scorer.fold_in([idx], [np.array([5.0, 1.0])])
    items, scores = scorer.top_k_vectors(vectors, biases, [idx], 4, stars=[np.array([5.0, 1.0])])
    assert [m.movie_id for m in found.movies] == raw(rec, items[0])
    assert [m.score for m in found.movies] == scores[0].tolist()
    asked = scorer.predict_vectors(
        vectors, biases, np.zeros(2, int), rec.vocab.item_index([17, 20])
    )
    assert [(p.movie_id, p.rating) for p in found.predictions] == list(
        zip([17, 20], asked.tolist())
    )
    # The refused user took no part in the solve: the same list as alone.
    (alone,) = rec.recommend_new_users([given], [stars], 4, predict_movie_ids=[[17, 20]])
    assert alone == found


def test_a_batch_of_new_users_gets_the_index_layers_lists_at_each_ones_options(rec):
    given = [[11, 14, 17], [20, 23], [11, 26, 29]]
    stars = [[5.0, 1.0, 4.0], [3.0, 5.0], [2.0, 4.0, 5.0]]
    ks, orders, novelty = [3, 5, 4], ["ranking", "rating", "ranking"], [0.0, 0.5, 1.0]
    filters = [NO_FILTER, MovieFilter(exclude_movie_ids=(32,)), MovieFilter(genres=("Drama",))]
    found = rec.recommend_new_users(
        given, stars, ks, filters, orders, novelty=novelty, explain=[False, True, True]
    )
    scorer = rec.scorer
    idx = [rec.vocab.item_index(np.array(g)) for g in given]
    values = [np.array(s) for s in stars]
    vectors, biases = scorer.fold_in(idx, values)  # one solve for the batch, as served
    for b, answer in enumerate(found):
        items, scores = scorer.top_k_vectors(
            vectors[[b]],
            biases[[b]],
            [idx[b]],
            ks[b],
            [filters[b]],
            stars=[values[b]],
            rank_by=orders[b],
            novelty=np.array([novelty[b]]) if novelty[b] else None,
        )
        assert answer.ranked_by == orders[b] and answer.unknown_movie_ids == ()
        assert [m.movie_id for m in answer.movies] == raw(rec, items[0])
        # Scored in a batch of one user, served in a batch of three: float32 sums may differ.
        assert [m.score for m in answer.movies] == pytest.approx(scores[0].tolist(), rel=1e-5)
        assert all((m.because is None) == (b == 0) for m in answer.movies)


def test_similar_movies_by_raw_id(rec):
    found, missing = rec.similar([23, 12345], 3, [NO_FILTER, NO_FILTER])
    items, scores = rec.scorer.similar_indices(np.array([4]), 3)
    assert found.movie == rec.movie(23) and missing.movie is None and missing.movies == ()
    assert [m.movie_id for m in found.movies] == raw(rec, items[0])
    assert [m.score for m in found.movies] == scores[0].tolist()
    assert all(m.rating is None for m in found.movies)
