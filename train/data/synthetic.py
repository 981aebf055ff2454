"""MovieLens-shaped synthetic data of any size, written in the official ml-25m CSV format.

ML-25M cannot be downloaded everywhere (and may not be redistributed), yet scale has to be
tested at its size. This writes ``ratings.csv`` and ``movies.csv`` exactly as GroupLens does, so
the loaders read them as they read ml-25m, with the shape that matters for a recommender:

- user activity: at least 20 ratings a user (every MovieLens release keeps only such users)
  plus a Pareto (power-law) tail, scaled to the exact total;
- movie popularity: Zipf-Mandelbrot weights ``(rank + 300) ** -2``: at ML-1M's size the top
  10 % of movies get 46 % of the ratings (ML-1M: 44 %) and the most rated one 0.2 % (0.3 %);
  the far tail is thinner than MovieLens', where many movies have a single rating;
- ratings with structure a model can learn: ``mu + b_u + b_i + p_u . q_i + noise``, where a
  movie's factors ``q_i`` come partly from its genres and popular movies rate higher; rounded
  to half stars for users who joined after MovieLens introduced them (February 2003), to whole
  stars before, and clipped to the scale;
- timestamps inside each user's active span between 1995-01-09 and 2019-11-21 (ML-25M's
  range), never before the movie was added; movie ids are sparse and grow with that time;
- genres with roughly ML-25M's frequencies, ``(no genres listed)`` and ``IMAX`` included; titles
  with a year, some with commas, quotes and accents so that CSV quoting and UTF-8 are exercised;
- rows sorted by ``userId`` then ``movieId``, as in ML-25M's ratings.csv.

Generation is vectorized and runs over blocks of users holding about ``chunk_ratings``
ratings each, appended to the CSV as they are made: memory is bounded by the block, whatever
the total. The output is a function of the whole :class:`SyntheticConfig` (seed and block size
included).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from train.data.formats import CSV_RATINGS_HEADER

log = logging.getLogger(__name__)

FIRST_TIME = 789_652_009  # 1995-01-09, ML-25M's first rating
LAST_TIME = 1_574_327_703  # 2019-11-21, its last
HALF_STARS_SINCE = 1_045_526_400  # 2003-02-18: MovieLens allows half stars from then on
DAY = 86_400
# Before rounding and clipping, which pull the mean down: generated data averages about 3.5
# stars, as ML-1M (3.58) and ML-25M (3.53) do.
MEAN_RATING = 3.65

# ML-25M's genres with roughly their counts in its movies.csv (relative weights).
GENRE_WEIGHTS = {
    "Action": 7348,
    "Adventure": 4145,
    "Animation": 2929,
    "Children": 2935,
    "Comedy": 16870,
    "Crime": 5319,
    "Documentary": 5605,
    "Drama": 25606,
    "Fantasy": 2731,
    "Film-Noir": 353,
    "Horror": 5989,
    "IMAX": 195,
    "Musical": 1054,
    "Mystery": 2925,
    "Romance": 7719,
    "Sci-Fi": 3595,
    "Thriller": 8654,
    "War": 1874,
    "Western": 1399,
}
NO_GENRES = "(no genres listed)"
# Half-star codes 0..9 -> the text ML-25M writes for them.
RATING_TEXT = [f"{r / 2:.1f}" for r in range(1, 11)]

# Title words; "Café" and "Señorita" put UTF-8 into movies.csv.
_WORDS = {
    "adjectives": "Silent Last Broken Golden Lost Dark Little Wild Secret Final Electric Midnight "
    "Crimson Hidden Eternal Frozen Burning Quiet Savage Sweet Fatal Lonely Blue Strange",
    "nouns": "River Night Kingdom Heart City Road Garden Storm Dream Summer Mirror Island Empire "
    "Shadow Journey Promise Machine Letter Sky Café Señorita Frontier Ghost Detective",
}
_ADJECTIVES = np.array(_WORDS["adjectives"].split())
_NOUNS = np.array(_WORDS["nouns"].split())


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and shape of a synthetic dataset; the defaults give an ML-1M-sized one."""

    num_ratings: int = 1_000_000
    num_users: int = 6_040
    num_movies: int = 3_706  # the catalogue in movies.csv; the far tail may go unrated
    seed: int = 0
    min_user_ratings: int = 20  # as in every MovieLens release (lowered if the total is small)
    activity_tail: float = 1.8  # Pareto index of ratings per user: ML-25M's median/mean 71/154
    popularity_exponent: float = 2.0  # Zipf-Mandelbrot exponent of movie popularity
    popularity_offset: float = 300.0  # flattens the head: no movie gets more than ~0.2 %
    num_factors: int = 8  # rank of the user/movie taste structure
    noise: float = 0.65  # stars of per-rating noise before rounding: the floor of any RMSE
    chunk_ratings: int = 2_000_000  # ratings per block: peak memory grows with this, not the total

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        for name in ("num_ratings", "num_users", "num_movies", "num_factors", "chunk_ratings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_ratings < self.num_users:
            raise ValueError(
                f"num_ratings ({self.num_ratings}) must be >= num_users ({self.num_users}): "
                "every user rates at least one movie"
            )
        if self.num_ratings > self.num_users * self.num_movies:
            raise ValueError(
                f"num_ratings ({self.num_ratings}) exceeds num_users * num_movies "
                f"({self.num_users * self.num_movies}): a user rates a movie at most once"
            )
        if self.activity_tail <= 0 or self.popularity_exponent < 0 or self.noise < 0:
            raise ValueError("activity_tail must be > 0, popularity_exponent and noise >= 0")


def user_activity(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: a floor plus a Pareto tail, capped below the catalogue size, summing
    exactly to ``config.num_ratings``."""
    n_users = config.num_users
    # Nobody rates the whole catalogue: ML-1M's and ML-25M's most active users rate 55-62 % of
    # it. A total that needs more raises the cap as far as it must.
    cap = max(int(np.ceil(0.6 * config.num_movies)), -(-config.num_ratings // n_users))
    floor = min(config.min_user_ratings, config.num_ratings // n_users)
    counts = np.full(n_users, floor, dtype=np.int64)
    weights = rng.pareto(config.activity_tail, n_users) + 1e-3
    remaining = config.num_ratings - counts.sum()
    active = np.flatnonzero(counts < cap)
    # Water-filling: share the rest by weight; users that hit the cap drop out, and their
    # excess goes round again. Each pass fills at least one user or leaves < len(active) over.
    while remaining >= len(active) > 0:
        share = np.floor(remaining * weights[active] / weights[active].sum()).astype(np.int64)
        add = np.minimum(share, cap - counts[active])
        if add.sum() == 0:
            break
        counts[active] += add
        remaining -= int(add.sum())
        active = active[counts[active] < cap]
    # What floors left over (fewer than the active users): one more rating to some of them.
    counts[rng.choice(active, size=int(remaining), replace=False)] += 1
    return counts


def _movies(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The catalogue: sparse ids growing with the time a movie was added, titles, genres,
    popularity weights and taste factors."""
    n = config.num_movies
    ids = np.sort(rng.choice(int(n * 3.5) + 10, size=n, replace=False)) + 1
    added = np.sort(rng.integers(FIRST_TIME - 365 * DAY, LAST_TIME - 30 * DAY, size=n))
    added_year = 1970 + added // (365.25 * DAY)
    # Old films keep being added: the release year lags the time added by a few years or more.
    year = np.maximum(1902, added_year - np.floor(rng.exponential(6.0, size=n))).astype(int)

    # Genres: 1-5 per movie drawn by weight without replacement (Gumbel top-k); ~8 % have none.
    names = list(GENRE_WEIGHTS)
    log_w = np.log(np.array(list(GENRE_WEIGHTS.values()), dtype=np.float64))
    keys = log_w + rng.gumbel(size=(n, len(names)))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    how_many = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.42, 0.33, 0.17, 0.06, 0.02])
    how_many[rng.random(n) < 0.08] = 0
    flags = rank < how_many[:, None]  # (n, num_genres)
    genres = pd.Series([""] * n, dtype=object)
    for j, name in enumerate(names):  # 19 vectorized passes, alphabetical as in MovieLens
        genres = genres + np.where(flags[:, j], name + "|", "")
    genres = genres.str.removesuffix("|").replace("", NO_GENRES)

    # Titles: a few patterns, some needing CSV quotes ("," or '"') and some non-ASCII letters.
    adj = pd.Series(_ADJECTIVES[rng.integers(len(_ADJECTIVES), size=n)], dtype=object)
    noun = pd.Series(_NOUNS[rng.integers(len(_NOUNS), size=n)], dtype=object)
    noun2 = pd.Series(_NOUNS[rng.integers(len(_NOUNS), size=n)], dtype=object)
    sequel = pd.Series(rng.integers(2, 5, size=n).astype(str), dtype=object)
    pattern = rng.choice(5, size=n, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    base = np.select(
        [pattern == 0, pattern == 1, pattern == 2, pattern == 3],
        [
            adj + " " + noun,
            noun + ", The",
            adj + " " + noun + " " + sequel,
            '"' + adj + '" ' + noun,
        ],
        default=noun + " of the " + noun2 + ", A",
    )
    titles = pd.Series(base, dtype=object) + " (" + pd.Series(year.astype(str)) + ")"

    # Popularity: a random rank per movie, Zipf-Mandelbrot weights over ranks.
    popularity_rank = rng.permutation(n)
    weights = (popularity_rank + config.popularity_offset) ** -config.popularity_exponent
    weights /= weights.sum()

    # Taste: a movie's factors are part genre (shared across movies of a genre), part its own.
    k = config.num_factors
    genre_factors = rng.normal(0.0, 1.0, size=(len(names), k))
    per_genre = flags @ genre_factors / np.sqrt(np.maximum(flags.sum(1), 1))[:, None]
    factors = 0.7 * per_genre + rng.normal(0.0, 0.5, size=(n, k))
    log_pop = np.log(weights)
    bias = rng.normal(0.0, 0.5, size=n) + 0.25 * (log_pop - log_pop.mean()) / log_pop.std()
    bias -= weights @ bias  # centred over ratings, not movies: the mean rating stays near mu
    return {
        "ids": ids,
        "added": added,
        "titles": titles.to_numpy(dtype=object),
        "genres": genres.to_numpy(dtype=object),
        "weights": weights,
        "factors": factors.astype(np.float32),
        "bias": bias.astype(np.float32),
    }


def _distinct_movies(
    owners: np.ndarray, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Movie indices by popularity for each entry of ``owners`` (local user indices, sorted),
    no movie twice for a user.

    Draws with replacement, then redraws the duplicates: by popularity for a few rounds, then
    uniformly, which converges fast because callers keep each user under a quarter of the
    catalogue (heavier users go through :func:`_heavy_user_movies`).
    """
    n = len(weights)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    draw = lambda size: np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)
    movies = draw(len(owners))
    for attempt in range(200):
        key = owners.astype(np.int64) * n + movies
        order = np.argsort(key, kind="stable")
        dup = np.zeros(len(key), dtype=bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        count = int(dup.sum())
        if count == 0:
            return movies
        movies[dup] = draw(count) if attempt < 4 else rng.integers(0, n, size=count)
    raise RuntimeError("could not draw distinct movies in 200 rounds")  # pragma: no cover


def _heavy_user_movies(need: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``need`` distinct movies by popularity for one very active user: Gumbel top-k, exact
    sampling without replacement in one pass over the catalogue."""
    keys = np.log(weights) + rng.gumbel(size=len(weights))
    return np.sort(np.argpartition(-keys, need - 1)[:need])


def _block(
    users: np.ndarray,
    counts: np.ndarray,
    user_state: dict[str, np.ndarray],
    movies: dict[str, np.ndarray],
    config: SyntheticConfig,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Ratings of the users ``users`` (global indices), sorted by user then movie."""
    weights = movies["weights"]
    heavy = counts > len(weights) // 4
    light = np.flatnonzero(~heavy)
    owners = np.repeat(light, counts[light])
    items = _distinct_movies(owners, weights, rng)
    for local in np.flatnonzero(heavy):
        owners = np.concatenate([owners, np.full(counts[local], local)])
        items = np.concatenate([items, _heavy_user_movies(int(counts[local]), weights, rng)])
    order = np.lexsort((items, owners))  # movie ids grow with the index: sorts by movieId too
    owners, items = owners[order], items[order]
    u = users[owners]

    # Rating: mu + b_u + b_i + p_u . q_i + noise, rounded to the user's star granularity.
    taste = np.einsum("nk,nk->n", user_state["factors"][u], movies["factors"][items])
    raw = MEAN_RATING + user_state["bias"][u] + movies["bias"][items] + taste
    raw = raw + rng.normal(0.0, config.noise, size=len(u)).astype(np.float32)
    half = user_state["half_stars"][u]
    stars = np.where(half, np.round(raw * 2) / 2, np.round(raw))
    stars = np.clip(stars, np.where(half, 0.5, 1.0), 5.0)
    codes = (stars * 2).astype(np.int8) - 1  # 0.5 -> 0 ... 5.0 -> 9

    # Time: within the user's active span, but never before the movie was added.
    start, span = user_state["start"][u], user_state["span"][u]
    when = start + (rng.random(len(u)) * span).astype(np.int64)
    when = np.maximum(when, movies["added"][items] + rng.integers(0, 30 * DAY, size=len(u)))
    when = np.minimum(when, LAST_TIME)
    return pd.DataFrame(
        {
            "userId": (u + 1).astype(np.int32),
            "movieId": movies["ids"][items].astype(np.int32),
            "rating": pd.Categorical.from_codes(codes, RATING_TEXT),
            "timestamp": when,
        }
    )


def generate(config: SyntheticConfig, out: str | Path, overwrite: bool = False) -> dict:
    """Write ``ratings.csv``, ``movies.csv`` and ``SOURCE.json`` into the folder ``out``.

    The folder is written under a temporary name and renamed when complete.

    Parameters
    ----------
    config : SyntheticConfig
        Size, seed and shape.
    out : str or pathlib.Path
        Folder to create; name it ``synthetic`` or ``synthetic-<name>`` under the data
        directory for ``python -m train --dataset`` to find it.
    overwrite : bool
        Replace ``out`` if it exists (otherwise that is an error).

    Returns
    -------
    dict
        What was written: counts, mean rating, seconds.
    """
    config.validate()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    movies = _movies(config, rng)
    counts = user_activity(config, rng)
    start = rng.integers(FIRST_TIME, LAST_TIME - DAY, size=config.num_users)
    user_state: dict[str, np.ndarray] = {
        "factors": rng.normal(0.0, 0.25, size=(config.num_users, config.num_factors)).astype(
            np.float32
        ),
        "bias": rng.normal(0.0, 0.55, size=config.num_users).astype(np.float32),
        "start": start,
        # Most users rate in a few sessions; some over years.
        "span": np.minimum(rng.exponential(120 * DAY, size=config.num_users), LAST_TIME - start),
        "half_stars": (start >= HALF_STARS_SINCE) & (rng.random(config.num_users) < 0.7),
    }

    # Blocks of whole users holding about chunk_ratings ratings each.
    cumulative = np.cumsum(counts)
    cuts = np.searchsorted(
        cumulative, np.arange(config.chunk_ratings, cumulative[-1], config.chunk_ratings)
    )
    bounds = np.unique(np.concatenate([[0], cuts + 1, [config.num_users]]))
    bounds = bounds[bounds <= config.num_users]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        rated = np.zeros(config.num_movies, dtype=bool)
        total, rating_sum = 0, 0.0
        with open(tmp / "ratings.csv", "w", encoding="utf-8", newline="") as f:
            f.write(CSV_RATINGS_HEADER + "\n")
            for a, b in zip(bounds[:-1], bounds[1:]):
                users = np.arange(a, b)
                block = _block(users, counts[a:b], user_state, movies, config, rng)
                block.to_csv(f, header=False, index=False, lineterminator="\n")
                rated[np.searchsorted(movies["ids"], block["movieId"].to_numpy())] = True
                total += len(block)
                rating_sum += float((block["rating"].cat.codes.to_numpy() + 1).sum()) / 2
                log.info("%s: %d of %d ratings written", out.name, total, config.num_ratings)
        pd.DataFrame(
            {"movieId": movies["ids"], "title": movies["titles"], "genres": movies["genres"]}
        ).to_csv(tmp / "movies.csv", index=False, lineterminator="\n", encoding="utf-8")
        summary = {
            "ratings": total,
            "users": config.num_users,
            "movies": config.num_movies,
            "rated_movies": int(rated.sum()),
            "mean_rating": round(rating_sum / total, 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        source = {
            "source": "synthetic: python -m train.generate (model/datasets/synthetic.py)",
            "id_note": f"synthetic data (seed {config.seed}), not MovieLens",
            "config": asdict(config),
            "summary": summary,
        }
        (tmp / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
        tmp.chmod(out.parent.stat().st_mode & 0o777)  # mkdtemp makes it 0700
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
