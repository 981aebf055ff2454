"""Handler-level micro-benchmarks, without HTTP: movierec's handler called as TorchServe calls it.

    python -m loadtest.scenarios.micro     # printed; `make bench` puts them in reports/bench.md
    python -m loadtest.scenarios.micro --artifact artifacts/ml-1m

- a 10,000-pair rating request through ``handle()`` (parse, one forward pass, JSON), with the
  time of each stage;
- top-K (k=10) latency for one user, and for a batch of 16, over generated catalogues of 1.7k,
  10k and 62k movies: a FactorModel of the trained model's sizes and a ranking model of the
  trained one's sizes (its item-item part pruned to ``PRUNED_NEIGHBORS`` per movie where a
  dense one would not fit), with random weights, and a generated vocabulary (every user rated
  20-200 movies), saved as a real artifact and loaded by the handler with the served
  ``handler:`` settings (torch threads included);
- a new user's top-K (20 ratings given) on the same catalogues;
- title search (:class:`model.search.TitleIndex`) over 62,000 generated titles: the index's
  build time and the latency of queries of every kind :mod:`train.search_quality` asks
  (clean, one typo, typing, with the article, with the year); ``--search-only`` runs just this
  one, without an artifact.

Every loop is bounded by a count and a time budget.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from ts.context import Context, RequestProcessor

from handler.answering import to_json
from handler.movierec_handler import MovieRecHandler
from handler.parsing import Limits, RatingRequest, decode_body, parse_request
from loadtest.traffic import Catalogue
from model import artifact, console
from model.network import FactorModel, FactorModelConfig
from model.ranker import Ranker, RankerConfig
from model.search import TitleIndex
from model.vocab import Vocabulary
from train import archive, search_quality
from train.fitting.ranker_training import DENSE_ITEM_ITEM_LIMIT, PRUNED_NEIGHBORS

log = logging.getLogger("loadtest.scenarios.micro")

MODEL_CONFIG = archive.MODEL_CONFIG  # the served settings, torch threads included
CATALOGUE_SIZES = (1_682, 10_000, 62_000)  # ML-100K, ML-10M-ish, ML-25M/ml-latest-ish
# Vector sizes also timed on the largest catalogue: a bigger dataset may need bigger vectors
# than the ML-100K model's (one unprojected member exports 500, three 1,500).
OTHER_DIMS = (128, 256, 512, 1_500)
SEARCH_TITLES = 62_000  # the largest catalogue: title search scans every name once a query

# Title words: common ones, which many titles share (as "Love", "Night", "Man" are), and made-up
# names from syllables (people, places), which few do; accented letters as MovieLens has them.
# Space-separated words.
_TITLE_WORDS = (
    "love night man day house girl life world last dead time little big black white blue red "
    "city dark star war king queen story secret lost return rise fall heart blood dream home "
    "road river island summer winter death game ghost shadow moon sun fire water stone iron "
    "golden silent wild young old new first final great long hidden broken street angel devil "
    "murder money power family brother sister father mother son daughter children boy woman "
    "men women friends lover kiss dance song music party school town country valley mountain "
    "sea ocean sky storm wind rain snow christmas holiday journey escape hunt chase run "
    "killer hero legend empire kingdom paradise heaven hell sin truth lies eyes hands face "
    "body mind soul spirit memory letter book picture mirror door window garden castle"
)
_SYLLABLES = (
    "ka lo mi ra to ne sa vi de ar en or us el in on ti ma be ro an ce da fe go ha ju le mo "
    "nu pe ri su ta ve wa yo ze bru cha dre fla gri klo pra sto tre vé ño ür å"
)
# Articles MovieLens moves to the end, with how often a generated title carries each.
_MOVED_ARTICLES = {"The": 0.15, "A": 0.03, "An": 0.005, "La": 0.004, "Les": 0.003, "Das": 0.002}


@dataclass
class Timing:
    """Milliseconds of repeated calls."""

    samples_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def best(self) -> float:
        """The fastest call: the cost with the least interference from other processes."""
        return min(self.samples_ms)


def timed(fn, reps: int, budget_s: float, warmup: int = 3) -> Timing:
    """Call ``fn`` ``warmup`` times unmeasured, then up to ``reps`` times or ``budget_s``."""
    for _ in range(warmup):
        fn()
    samples, deadline = [], time.perf_counter() + budget_s
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(1000 * (time.perf_counter() - start))
        if time.perf_counter() > deadline:
            break
    return Timing(samples)


def served_handler(model_dir: str | Path, config: Path = MODEL_CONFIG) -> MovieRecHandler:
    """The handler initialised as TorchServe would, with a served model-config file (the
    interactive endpoint's unless ``config`` names another)."""
    handler = MovieRecHandler()
    handler.initialize(_context(model_dir, settings=_served_settings(config)))
    return handler


@functools.cache
def _served_settings(config: Path = MODEL_CONFIG) -> dict:
    settings = yaml.safe_load(config.read_text())
    # A bulk endpoint's nice would lower this process's priority for the rest of the run.
    settings.get("handler", {}).pop("nice", None)
    return settings


def _context(model_dir: str | Path, rows: int = 0, settings: dict | None = None) -> Context:
    """A fresh context per call, as TorchServe gives each batch its own request processors;
    ``settings``: the model-config file's (default: the interactive endpoint's)."""
    yaml_config = _served_settings() if settings is None else settings
    ctx = Context(
        "movierec",
        str(model_dir),
        {"model": {"modelName": "movierec"}},
        16,
        None,
        "0.12.0",
        model_yaml_config=yaml_config,
    )
    ctx.request_processor = [RequestProcessor({}) for _ in range(rows)]
    return ctx


def _handle(handler: MovieRecHandler, rows: list[dict]) -> list[str]:
    model_dir = handler.context.system_properties["model_dir"]
    ctx = _context(model_dir, len(rows), handler.context.model_yaml_config)
    out = handler.handle(rows, ctx)
    refused = [o for i, o in enumerate(out) if ctx.get_response_status(i)[0] != 200]
    if refused:
        raise RuntimeError(f"the benchmark's own request was refused: {refused[0][:200]}")
    return out


def pairs_request(
    artifact_dir: str | Path, n_pairs: int = 10_000, reps: int = 50, budget_s: float = 10.0
) -> dict:
    """One ``n_pairs`` rating request, popularity-sampled ids, through ``handle()`` with the
    bulk endpoint's settings (the interactive one refuses more than 1,000 pairs)."""
    handler = served_handler(artifact_dir, archive.BULK_CONFIG)
    scale = handler.recommender.scorer.config["model"]
    catalogue = Catalogue(handler.recommender.vocab, scale["min_rating"], scale["max_rating"])
    rng = np.random.default_rng(0)
    users = [catalogue.user(rng) for _ in range(n_pairs)]
    body = {"pairs": [[u, m] for u, m in zip(users, catalogue.movies(rng, n_pairs))]}
    # TorchServe hands the handler the JSON already decoded (application/json).
    rows = [{"body": json.loads(json.dumps(body))}]
    total = timed(lambda: _handle(handler, rows), reps, budget_s)

    scorer, limits = handler.recommender.scorer, Limits(max_pairs=n_pairs)
    request = parse_request(decode_body(rows[0]), limits)
    if not isinstance(request, RatingRequest):
        raise TypeError(f"a pairs body parses to a RatingRequest, not {type(request).__name__}")
    user_idx = scorer.vocab.user_index(request.user_ids)
    item_idx = scorer.vocab.item_index(request.movie_ids)
    scores = scorer.predict_indices(user_idx, item_idx)
    answer = {"ratings": [round(s, 4) for s in scores.tolist()]}
    stages = {
        "parse": timed(lambda: parse_request(decode_body(rows[0]), limits), reps, budget_s / 3),
        "forward": timed(lambda: scorer.predict_indices(user_idx, item_idx), reps, budget_s / 3),
        "encode": timed(lambda: to_json(answer), reps, budget_s / 3),
    }
    return {
        "pairs": n_pairs,
        "reps": len(total.samples_ms),
        "p50_ms": total.p50,
        "p95_ms": total.p95,
        "min_ms": total.best,
        "pairs_per_s": n_pairs / (total.p50 / 1000),
        "stages_p50_ms": {name: t.p50 for name, t in stages.items()},
        "torch_threads": torch.get_num_threads(),
    }


def generated_artifact(
    directory: Path,
    num_items: int,
    like: dict,
    num_users: int = 2_000,
    seed: int = 0,
    ranker_like: dict | None = None,
) -> Path:
    """An artifact of a random-weight FactorModel (sizes as ``like``) over a generated
    catalogue, with a random-weight ranking model of ``ranker_like``'s sizes if given."""
    rng = np.random.default_rng(seed)
    num_genres = 19
    counts = rng.integers(min(20, num_items), min(200, num_items) + 1, num_users)
    rated = [np.sort(rng.choice(num_items, c, replace=False)) for c in counts]
    vocab = Vocabulary(
        user_ids=np.arange(1, num_users + 1),
        movie_ids=np.arange(1, num_items + 1),
        titles=np.array([f"Generated movie {i} (2000)" for i in range(1, num_items + 1)]),
        genre_names=tuple(f"genre{g}" for g in range(num_genres)),
        genres=(rng.random((num_items, num_genres)) < 0.15).astype(np.uint8),
        rated_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        rated_items=np.concatenate(rated).astype(np.int32),
        rated_ratings=rng.integers(1, 6, counts.sum()).astype(np.float32),
    )
    config = FactorModelConfig(num_users=num_users, num_items=num_items, code_dim=like["code_dim"])
    torch.manual_seed(seed)
    model = FactorModel(config)
    with torch.no_grad():  # random, non-degenerate weights everywhere, the last layer included
        for param in model.parameters():
            param.normal_(0, 0.1)
    ranker = None
    if ranker_like is not None:
        neighbors = 0 if num_items <= DENSE_ITEM_ITEM_LIMIT else PRUNED_NEIGHBORS
        fields = {k: v for k, v in ranker_like.items() if k not in ("num_items", "neighbors")}
        ranker = Ranker(RankerConfig(num_items, neighbors=neighbors, **fields))
        with torch.no_grad():
            for param in ranker.dae.parameters():
                param.normal_(0, 0.05)
            ranker.neighbor_weights.normal_(0, 0.01)
            if not ranker.dense:
                ranker.neighbor_items.copy_(
                    torch.from_numpy(rng.integers(0, num_items, ranker.neighbor_items.shape))
                )
    out = directory / f"generated-{num_items}-{like['code_dim']}"
    artifact.save(
        out, model, vocab, {"training": {"note": "generated for benchmarks"}}, {}, ranker=ranker
    )
    return out


def top_k_latency(
    model_config: dict,
    sizes: tuple[int, ...] = CATALOGUE_SIZES,
    k: int = 10,
    reps: int = 200,
    budget_s: float = 8.0,
    other_dims: tuple[int, ...] = OTHER_DIMS,
    ranker_config: dict | None = None,
) -> list[dict]:
    """Top-K latency through ``handle()``: one user per call (as asked by default, explained,
    and at novelty 0.5), a batch of 16 users, and one new user given by 20 ratings.

    Every catalogue size at the trained model's vector size, and the largest catalogue again
    at each of ``other_dims`` (what a model that needs bigger vectors would cost). With
    ``ranker_config`` (the trained ranking model's), lists are ranked by a ranking model of
    its sizes, as served."""
    results = []
    served = model_config["code_dim"]
    cases = [(size, served) for size in sizes]
    cases += [(max(sizes), d) for d in other_dims if d != served]
    with tempfile.TemporaryDirectory(prefix="movierec-micro-") as tmp:
        for size, dim in cases:
            like = {**model_config, "code_dim": dim}
            handler = served_handler(
                generated_artifact(Path(tmp), size, like, ranker_like=ranker_config)
            )
            user_ids = handler.recommender.vocab.user_ids
            movie_ids = handler.recommender.vocab.movie_ids
            rng = np.random.default_rng(size)

            def one(rng=rng, user_ids=user_ids, handler=handler):
                return _handle(handler, [{"body": {"user_id": int(rng.choice(user_ids)), "k": k}}])

            def explained(rng=rng, user_ids=user_ids, handler=handler):
                body = {"user_id": int(rng.choice(user_ids)), "k": k, "explain": True}
                return _handle(handler, [{"body": body}])

            def novel(rng=rng, user_ids=user_ids, handler=handler):
                body = {"user_id": int(rng.choice(user_ids)), "k": k, "novelty": 0.5}
                return _handle(handler, [{"body": body}])

            def sixteen(rng=rng, user_ids=user_ids, handler=handler):
                users = rng.choice(user_ids, 16, replace=False).tolist()
                return _handle(handler, [{"body": {"user_id": u, "k": k}} for u in users])

            def new_user(rng=rng, movie_ids=movie_ids, handler=handler):
                given = rng.choice(movie_ids, 20, replace=False).tolist()
                stars = {str(m): float(rng.integers(1, 6)) for m in given}
                return _handle(handler, [{"body": {"ratings": stars, "k": k}}])

            single = timed(one, reps, budget_s)
            explain = timed(explained, reps, budget_s)
            novelty = timed(novel, reps, budget_s)
            batch = timed(sixteen, max(10, reps // 8), budget_s)
            new = timed(new_user, reps, budget_s)
            results.append(
                {
                    "movies": size,
                    "code_dim": dim,
                    "served_dim": dim == served,
                    "k": k,
                    "reps": len(single.samples_ms),
                    "p50_ms": single.p50,
                    "p95_ms": single.p95,
                    "min_ms": single.best,
                    "explain_p50_ms": explain.p50,
                    "novelty_p50_ms": novelty.p50,
                    "batch16_p50_ms": batch.p50,
                    "batch16_reps": len(batch.samples_ms),
                    "new_user_p50_ms": new.p50,
                    "new_user_p95_ms": new.p95,
                    "ranker": handler.recommender.scorer.ranker is not None,
                }
            )
            log.info(
                "top-%d over %d movies, %d-dim vectors: p50 %.2f ms, p95 %.2f ms; explained: "
                "p50 %.2f ms; novelty 0.5: p50 %.2f ms; batch of 16: p50 %.2f ms; new user: "
                "p50 %.2f ms",
                k,
                size,
                dim,
                single.p50,
                single.p95,
                explain.p50,
                novelty.p50,
                batch.p50,
                new.p50,
            )
    return results


def generated_titles(num_titles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_titles`` MovieLens-style titles and rating counts: ``"Night River, The (1987)"``,
    ``"Kalomi Heart 2: Rise of Stone (2004)"``, ``"Summer Love (Tremo Dañve) (1971)"``.

    One to five words, common ones and made-up names (a one-word title is a made-up name, so
    that, as in MovieLens, few titles are the same); some titles with the article moved to the
    end, a sequel number, a subtitle or an alternative title; a year from 1920 to 2023, more of
    them recent; counts falling with a random popularity rank, as MovieLens' do.
    """
    rng = np.random.default_rng(seed)
    syllables, common_words = np.array(_SYLLABLES.split()), _TITLE_WORDS.split()
    made_up = sorted(
        {
            "".join(syllables[row[:size]])
            for row, size in zip(
                rng.integers(len(syllables), size=(num_titles, 3)),
                rng.integers(2, 4, num_titles),
            )
        }
    )
    pool = np.array([w.capitalize() for w in common_words + made_up])
    # 40 % of the words drawn are common ones (the first by rank more often), 60 % made-up.
    common = 1 / np.sqrt(np.arange(1, len(common_words) + 1))
    weights = np.concatenate(
        [0.4 * common / common.sum(), np.full(len(made_up), 0.6 / len(made_up))]
    )
    drawn = iter(pool[rng.choice(len(pool), 8 * num_titles, p=weights)].tolist())
    names = iter(pool[len(common_words) + rng.integers(len(made_up), size=2 * num_titles)].tolist())

    def words(n: int) -> str:
        return next(names) if n == 1 else " ".join(next(drawn) for _ in range(n))

    lengths = rng.choice([1, 2, 3, 4, 5], num_titles, p=[0.25, 0.35, 0.22, 0.12, 0.06])
    extras = rng.random((num_titles, 4))  # sequel, subtitle, article, alternative title
    extra_words = rng.integers(1, 4, (num_titles, 2))
    cumulative = np.cumsum(list(_MOVED_ARTICLES.values()))
    years = np.clip(2024 - rng.exponential(20, num_titles), 1920, 2023).astype(int)
    titles = []
    for i in range(num_titles):
        name = words(int(lengths[i]))
        if extras[i, 0] < 0.05:
            name += f" {2 + i % 3}"
        if extras[i, 1] < 0.08:
            name += f": {words(int(extra_words[i, 0]))}"
        article = int(np.searchsorted(cumulative, extras[i, 2], side="right"))
        if article < len(_MOVED_ARTICLES):
            name += f", {list(_MOVED_ARTICLES)[article]}"
        if extras[i, 3] < 0.08:
            name += f" ({words(int(extra_words[i, 1]))})"
        titles.append(f"{name} ({years[i]})")
    counts = (50_000 / (1 + rng.permutation(num_titles)) ** 0.9).astype(np.int64)
    return np.array(titles), counts


def search_latency(
    num_titles: int = SEARCH_TITLES,
    k: int = 10,
    queries: int = 1_000,
    budget_s: float = 10.0,
    seed: int = 0,
) -> dict:
    """Title search over ``num_titles`` generated titles: the index's build time, and the
    latency of up to ``queries`` queries (or ``budget_s``) drawn from every kind of
    :func:`train.search_quality.queries`, by kind and overall."""
    titles, counts = generated_titles(num_titles, seed)
    started = time.perf_counter()
    index = TitleIndex(titles, counts)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    sample = rng.choice(num_titles, min(num_titles, queries), replace=False)
    asked = search_quality.queries(titles[np.sort(sample)], seed)
    asked = [asked[i] for i in rng.permutation(len(asked))[:queries]]  # kinds mixed
    for query in asked[:3]:  # warm-up, unmeasured
        index.search(query.text, k)
    by_kind: dict[str, list[float]] = {}
    deadline = time.perf_counter() + budget_s
    for query in asked:
        start = time.perf_counter()
        index.search(query.text, k)
        by_kind.setdefault(query.kind, []).append(1000 * (time.perf_counter() - start))
        if time.perf_counter() > deadline:
            break
    every = Timing([ms for samples in by_kind.values() for ms in samples])
    figures = {
        "titles": num_titles,
        "names": index.num_names,
        "k": k,
        "build_s": build_s,
        "queries": len(every.samples_ms),
        "p50_ms": every.p50,
        "p90_ms": every.percentile(90),
        "p95_ms": every.p95,
        "max_ms": max(every.samples_ms),
        "p50_ms_by_kind": {kind: Timing(ms).p50 for kind, ms in sorted(by_kind.items())},
    }
    log.info(
        "title search over %d titles: built in %.2f s; p50 %.2f ms, p90 %.2f ms over %d queries",
        num_titles,
        build_s,
        figures["p50_ms"],
        figures["p90_ms"],
        figures["queries"],
    )
    return figures


def find_artifact(path: str | Path) -> Path | None:
    """``path`` when it holds a trained artifact; otherwise ``None``, having logged how to
    train one."""
    if (Path(path) / artifact.CONFIG).is_file():
        return Path(path)
    log.error("%s is not a trained artifact: run `make train` first", path)
    return None


def benchmarks(artifact_dir: str | Path) -> tuple[dict, list[dict], dict]:
    """Every micro-benchmark at its defaults, sized after the artifact's own model:
    ``(pairs_request, top_k_latency, search_latency)``."""
    config = json.loads((Path(artifact_dir) / artifact.CONFIG).read_text())
    pairs = pairs_request(artifact_dir)
    topk = top_k_latency(config["model"], ranker_config=config.get("ranker"))
    return pairs, topk, search_latency()


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.micro", __doc__)
    p.add_argument("--artifact", default="artifacts/ml-100k", help="trained artifact folder")
    p.add_argument(
        "--search-only", action="store_true", help="title search only (needs no artifact)"
    )
    args = p.parse_args(argv)
    if args.search_only:
        print(json.dumps(search_latency(), indent=2))
        return 0
    artifact_dir = find_artifact(args.artifact)
    if artifact_dir is None:
        return 1
    for figures in benchmarks(artifact_dir):
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
