"""The MovieLens-shaped generator: exact ml-25m CSV format, read back by the ml-25m loader, exact
sizes, power-law shapes, learnable structure, determinism, bounded blocks. Small and fast."""

from __future__ import annotations

import csv
import json
import logging
import re

import numpy as np
import pytest

from train import data
from train import generate as generate_cli
from train.data.interactions import Interactions
from train.data.synthetic import SyntheticConfig, generate, user_activity
from train.evaluation.metrics import rmse
from train.fitting.baselines import BiasBaseline, GlobalMean

# Small blocks so that several of them are written and stitched together.
SMALL = SyntheticConfig(num_ratings=6_000, num_users=120, num_movies=400, chunk_ratings=1_000)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    summary = generate(SMALL, root / "synthetic-small")
    return root, summary


def test_files_are_in_the_exact_ml25m_format(small):
    root, _ = small
    folder = root / "synthetic-small"
    lines = (folder / "ratings.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    assert all(re.fullmatch(r"\d+,\d+,[0-5]\.[05],\d{9,10}", line) for line in lines[1:])
    with open(folder / "movies.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["movieId", "title", "genres"]
    assert all(re.fullmatch(r".+ \(\d{4}\)", title) for _, title, _ in rows[1:])
    raw = (folder / "movies.csv").read_text(encoding="utf-8")
    assert '"""' in raw and ", The (" in raw  # quoted titles: embedded quotes and commas


def test_the_ml25m_loader_reads_it_back_with_exact_sizes(small):
    root, summary = small
    ds = data.load("synthetic-small", root)
    r = ds.ratings
    assert len(r) == SMALL.num_ratings == summary["ratings"]
    assert r["user_id"].nunique() == SMALL.num_users
    assert len(ds.movies) == SMALL.num_movies
    assert r["movie_id"].nunique() == summary["rated_movies"]
    assert set(r["movie_id"]) <= set(ds.movies["movie_id"])
    assert not r.duplicated(["user_id", "movie_id"]).any()
    # Sorted by user then movie across block boundaries, as ML-25M's ratings.csv is.
    key = r["user_id"].to_numpy(np.int64) * 10**7 + r["movie_id"].to_numpy()
    assert (np.diff(key) > 0).all()
    assert r.groupby("user_id").size().min() >= 20
    assert set(np.unique(r["rating"])) <= {x / 2 for x in range(1, 11)}
    assert "IMAX" in ds.genre_names or len(ds.movies) < 1000
    assert ds.id_note.startswith("synthetic data (seed 0)")
    assert json.loads((ds.path / "SOURCE.json").read_text())["config"]["seed"] == 0


def test_same_config_same_bytes_other_seed_other_data(tmp_path, small):
    root, _ = small
    generate(SMALL, tmp_path / "again")
    for name in ("ratings.csv", "movies.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (
            root / "synthetic-small" / name
        ).read_bytes()
    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 1})
    generate(other, tmp_path / "other")
    assert (tmp_path / "other" / "ratings.csv").read_bytes() != (
        tmp_path / "again" / "ratings.csv"
    ).read_bytes()


def test_popularity_and_activity_follow_power_laws(tmp_path):
    config = SyntheticConfig(num_ratings=60_000, num_users=600, num_movies=3_000)
    generate(config, tmp_path / "synthetic-shape")
    r = data.load("synthetic-shape", tmp_path).ratings
    per_movie = np.sort(r.groupby("movie_id").size().to_numpy())[::-1]
    per_user = r.groupby("user_id").size().to_numpy()
    # ML-1M: the top 10 % of movies hold 44 % of the ratings, the median movie has half the mean.
    assert per_movie[: len(per_movie) // 10].sum() > 0.35 * len(r)
    assert np.median(per_movie) < 0.8 * per_movie.mean()
    assert per_user.max() > 5 * np.median(per_user)  # a few very active users
    assert per_user.max() <= 0.6 * config.num_movies + 1  # nobody rates everything


def test_ratings_carry_user_and_movie_structure(small):
    root, _ = small
    r = data.load("synthetic-small", root).ratings
    users = r["user_id"].to_numpy() - 1
    movies = np.unique(r["movie_id"], return_inverse=True)[1]
    ratings = r["rating"].to_numpy()
    train = np.random.default_rng(0).random(len(r)) < 0.8
    args = [a[train] for a in (users, movies, ratings)]
    baselines = [GlobalMean(), BiasBaseline(SMALL.num_users, movies.max() + 1, 0.5, 5.0)]
    scores = []
    for baseline in baselines:
        baseline.fit(Interactions(*args, SMALL.num_users, movies.max() + 1))
        scores.append(rmse(baseline.predict(users[~train], movies[~train]), ratings[~train]))
    assert scores[1] < scores[0] - 0.05  # user and movie effects a model can learn
    assert 3.2 < ratings.mean() < 3.8


@pytest.mark.parametrize(
    "total,users,movies", [(6_000, 120, 400), (1_000, 1_000, 5), (500, 10, 50), (57, 7, 9)]
)
def test_user_activity_sums_exactly_within_floor_and_cap(total, users, movies):
    config = SyntheticConfig(num_ratings=total, num_users=users, num_movies=movies)
    counts = user_activity(config, np.random.default_rng(0))
    assert counts.sum() == total and len(counts) == users
    assert counts.min() >= min(20, total // users)
    assert counts.max() <= movies


@pytest.mark.parametrize(
    "change,message",
    [
        ({"num_ratings": 100, "num_users": 10, "num_movies": 5}, "exceeds"),
        ({"num_ratings": 5, "num_users": 10}, "at least one"),
        ({"num_movies": 0}, "num_movies"),
    ],
)
def test_impossible_configs_are_refused(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        generate(SyntheticConfig(**{**SMALL.__dict__, **change}), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(tmp_path):
    config = SyntheticConfig(num_ratings=300, num_users=10, num_movies=50)
    generate(config, tmp_path / "synthetic")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(config, tmp_path / "synthetic")
    generate(SyntheticConfig(**{**config.__dict__, "seed": 3}), tmp_path / "synthetic", True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]  # no temporary left


def test_cli_writes_a_folder_that_training_can_name(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "synthetic-cli"
    argv = ["--ratings", "400", "--users", "10", "--movies", "60", "--out", str(out)]
    assert generate_cli.main(argv) == 0
    assert f"--dataset synthetic-cli --data-dir {tmp_path}" in caplog.text
    assert len(data.load("synthetic-cli", tmp_path).ratings) == 400
    assert generate_cli.main(argv) == 1  # exists, no --overwrite
