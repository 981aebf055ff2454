"""Top-K ranking of a split-trained archive, over HTTP, beside the offline figures.

    python -m train --split u1 --keep-split --output artifacts/u1
    python -m loadtest.scenarios.served_ranking --artifact artifacts/u1 --split u1

Builds the artifact's .mar in a temporary folder, serves it with a private TorchServe on free
ports (:mod:`loadtest.server`, always stopped), asks for the top-K of every test user with a
relevant movie (held-out rating >= 4), and counts the answers with the offline evaluation's own
code (:class:`train.evaluation.ranking.ListTally`, what
:func:`~train.evaluation.ranking.ranking_metrics` counts its lists with); then the offline
figures of the same model on the same split. Two orders are checked:

- the ranking model's (the default request), under the reports' protocol: the request also
  excludes the user's validation movies (``exclude_movie_ids``: a client knows what its user
  rated), so the server excludes what the report's test metric excludes, training and
  validation movies (:func:`train.evaluation.ranking.ranking_on`);
- the rating model's (``"rank_by": "rating"``), with training movies excluded only.

``--novelty`` checks the ranking model's order at each novelty given (0 is the default
request; others add ``"novelty"`` to every request and re-rank the offline scores with the
artifact's calibrated strengths, :mod:`model.novelty`).

Pass the split options the artifact was trained with (they are checked against its
config.json). With ``--keep-split`` the artifact holds only the training part, so what the
server excludes is what the offline metric excludes and the figures agree; a refit artifact
holds the test ratings and is refused.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from client import MovieRecClient
from loadtest.server import ServerError, endpoints, local_torchserve
from model import artifact, console
from model.errors import DataError
from model.scoring import Scorer
from model.vocab import Vocabulary
from train import archive, data
from train.data.interactions import Interactions
from train.data.prepared import Prepared, prepare
from train.evaluation.ranking import ListTally, ranking_metrics, relevant_rows
from train.train import make_split

log = logging.getLogger("loadtest.scenarios.served_ranking")


def http_ranking(
    api: MovieRecClient,
    vocab: Vocabulary,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    rank_by: str = "rating",
    exclude: Interactions | None = None,
    novelty: float = 0.0,
) -> dict[str, float]:
    """:func:`ranking_metrics`' figures of the served top-k (ordered as ``rank_by`` asks, at
    ``novelty``) of every user of ``test`` with a relevant movie, one request per user
    (``vocab`` turns dense indices into the raw ids of requests and back); each request also
    excludes that user's movies of ``exclude``, if given. The answers are counted by the
    offline metric's own :class:`ListTally`; popularity is measured on ``train``."""
    users, relevant = relevant_rows(test)
    excluded = exclude.user_rows() if exclude is not None else None
    lists = np.full((len(users), k), -1, dtype=np.int64)  # -1 pads a short answer
    for row, u in enumerate(users):
        body: dict = {"user_id": int(vocab.user_ids[u]), "k": k, "rank_by": rank_by}
        if excluded is not None:
            indptr, items = excluded
            drop = vocab.movie_ids[items[indptr[u] : indptr[u + 1]]]
            if len(drop):
                body["exclude_movie_ids"] = [int(m) for m in drop]
        if novelty:
            body["novelty"] = novelty
        answer = api.predict(body)
        top = [r["movie_id"] for r in answer["recommendations"]][:k]
        lists[row, : len(top)] = vocab.item_index(np.array(top, dtype=np.int64))
    tally = ListTally(test.num_items, k, recall_at=())
    tally.add(lists, relevant)
    return tally.figures(train)


def offline_ranking(
    artifact_dir: str | Path,
    prepared: Prepared,
    k: int = 10,
    rank_by: str = "rating",
    novelty: float = 0.0,
) -> dict[str, float]:
    """:func:`ranking_metrics` of the artifact on the split ``prepared``: by predicted rating
    with training movies excluded, or (``rank_by="ranking"``) the ranking model's order under
    the reports' protocol (training and validation movies excluded, as
    :func:`train.evaluation.ranking.ranking_on`). Both score users with
    :meth:`Scorer.score_users`, the serving code, and re-rank at ``novelty`` with
    :meth:`Scorer.rerank`, as the server does."""
    rec = Scorer.from_artifact(artifact_dir)
    same = (
        (rec.vocab.user_ids, prepared.vocab.user_ids),
        (rec.vocab.movie_ids, prepared.vocab.movie_ids),
    )
    if not all(np.array_equal(a, b) for a, b in same):
        raise DataError(f"{artifact_dir}: its users and movies are not those of the split")

    def score(users: np.ndarray) -> torch.Tensor:
        scores = rec.score_users(users, rank_by)
        return rec.rerank(scores, np.full(len(users), novelty)) if novelty else scores

    train = prepared.interactions("train")
    seen = train.concat(prepared.interactions("validation")) if rank_by == "ranking" else None
    with torch.no_grad():
        return ranking_metrics(
            score,
            train,
            prepared.interactions("test"),
            k=k,
            # Only the top k, as the server takes it: predicted ratings tie at the top of the
            # scale, and a deeper torch.topk may order tied movies differently (same Recall@k,
            # another NDCG@k).
            recall_at=(),
            seen=seen,
        )


def compare(
    artifact_dir: str | Path,
    dataset: data.Dataset,
    split: data.Split,
    k: int = 10,
    novelties: tuple[float, ...] = (0.0,),
) -> dict[str, tuple[dict, dict]]:
    """``{order: (served, offline)}`` ranking figures of a split-trained artifact on
    ``split``, for both orders (the ranking model's only when the artifact has one): keys
    ``"rating"``, ``"ranking"`` (novelty 0, when in ``novelties``) and ``"ranking, novelty
    0.5"`` for each other novelty.

    Raises ``DataError`` when the artifact was not trained on that split's training part."""
    config = json.loads((Path(artifact_dir) / artifact.CONFIG).read_text())
    held = config["data"].get("trained_on", {})
    if held.get("ratings") != "split train part" or config["data"]["split"] != split.protocol:
        raise DataError(
            f"{artifact_dir} holds {held.get('ratings', 'unknown ratings')} of split "
            f"{config['data']['split']!r}, not the training part of {split.protocol!r}: "
            "train it with --keep-split and the same split options"
        )
    prepared = prepare(dataset, split)
    vocab, train, test = prepared.vocab, prepared.interactions(), prepared.interactions("test")
    with tempfile.TemporaryDirectory(prefix="movierec-ranking-") as tmp:
        mar, _ = archive.build_endpoints(artifact_dir, Path(tmp) / "model_store")
        with local_torchserve(mar.parent, *endpoints(mar), home=Path(tmp) / "ts") as server:
            api = MovieRecClient(server.url, key_file=server.key_file)
            served = {("rating", 0.0): http_ranking(api, vocab, train, test, k)}
            for novelty in novelties if "ranker" in config else ():
                served[("ranking", novelty)] = http_ranking(
                    api,
                    vocab,
                    train,
                    test,
                    k,
                    rank_by="ranking",
                    exclude=prepared.interactions("validation"),
                    novelty=novelty,
                )
    return {
        (rank_by if not novelty else f"{rank_by}, novelty {novelty:g}"): (
            figures,
            offline_ranking(artifact_dir, prepared, k, rank_by, novelty),
        )
        for (rank_by, novelty), figures in served.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.served_ranking", __doc__)
    p.add_argument("--artifact", required=True, help="folder written by python -m train")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--split", default="random", choices=["random", "u1"])
    p.add_argument("--test", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--validation", type=float, default=0.1, help="as given to python -m train")
    p.add_argument("--seed", type=int, default=0, help="as given to python -m train")
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--novelty",
        type=float,
        nargs="+",
        default=[0.0],
        help="novelty values of the ranking model's lists to check (0 to 1)",
    )
    args = p.parse_args(argv)
    if not all(0.0 <= n <= 1.0 for n in args.novelty):
        p.error("--novelty values must lie between 0 and 1")
    try:
        dataset = data.load(args.dataset, args.data_dir)
        split = make_split(dataset, args)
        results = compare(args.artifact, dataset, split, args.k, tuple(args.novelty))
    except (DataError, ServerError) as exc:
        log.error("%s", exc)
        return 1
    key_r, key_n = f"recall@{args.k}", f"ndcg@{args.k}"
    users = results["rating"][0]["users"]
    print(f"{dataset.name}, split {split.protocol}, {users} test users")
    print(f"| order | figures | Recall@{args.k} | NDCG@{args.k} |\n|---|---|---|---|")
    for rank_by, (served, offline) in results.items():
        for name, row in (("served over HTTP", served), ("offline", offline)):
            print(f"| {rank_by} | {name} | {row[key_r]:.4f} | {row[key_n]:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
