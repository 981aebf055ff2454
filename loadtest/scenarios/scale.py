"""Scale: the .mar of an ML-25M-size model, TorchServe's start-up and memory, top-10 over HTTP.

    python -m loadtest.scenarios.scale                             # ML-25M's shape, printed
    python -m loadtest.scenarios.scale --out reports/scale.md      # also reports/scale.json
    make scale                                                     # the same as the line above
    python -m loadtest.scenarios.scale --users 300 --movies 200 --code-dim 8 --requests 20  # tiny

Nothing is trained: a FactorModel of the given shape with random weights over a generated
catalogue (:func:`loadtest.scenarios.micro.generated_artifact`; by default ML-25M's 162,541
users and 59,047 movies, code_dim 500 as one trained member exports at that size), with a
ranking model of the default sizes (its item-item part pruned to 256 neighbours per movie past
20k movies, as training writes it), is saved as a real artifact in a temporary folder and
archived as ``make archive`` does (:func:`train.archive.build`). A private TorchServe (free
loopback ports, token auth on, the repository's config.properties and
handler/model-config.yaml, see :mod:`loadtest.server`) then loads that .mar, and the run
records:

- the .mar's size and the time to generate the artifact and to archive it;
- start-up: wall time from launching TorchServe until every worker of the model is READY
  (the management API, polled every 0.25 s), and each worker's resident memory then, after
  the requests, and at its peak (VmHWM);
- ``--requests`` sequential top-10 requests for random known users over HTTP with the
  inference token, after ``--warmup`` unmeasured ones: p50 / p95 / max. Every answer must be
  a 200 with 10 recommendations for the user asked about, or the run fails (exit 1);
- for reference, as many single-rating requests the same way (the floor: TorchServe's
  frontend, batching and the handler with almost no model work), and one 1,000-pair rating
  request (median of 5, after one unmeasured).

Random weights cost what trained ones cost (the same tensors), so these are serving figures,
not quality ones. Every loop is bounded by a count.
"""

from __future__ import annotations

import http.client
import json
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import yaml

from loadtest import report
from loadtest.scenarios import micro
from loadtest.server import Server, ServerError, local_torchserve
from model import artifact, console
from model.ranker import RankerConfig
from model.vocab import Vocabulary
from train import archive

log = logging.getLogger("loadtest.scenarios.scale")

# ML-25M's shape, and the code size one trained member exports at that size (README, Scale).
ML25M_USERS, ML25M_MOVIES, ML25M_CODE_DIM = 162_541, 59_047, 500
K = 10  # the top-K list measured
PAIRS, PAIRS_REPS = 1_000, 5  # the reference rating request: its size and measured repeats


class ScaleError(RuntimeError):
    """A request got a wrong answer: latency measured over failures would mean nothing."""


def build_mar(work: Path, users: int, movies: int, code_dim: int, seed: int) -> dict:
    """Generate the artifact under ``work`` and archive it into ``work/model_store``."""
    start = time.perf_counter()
    artifact_dir = micro.generated_artifact(
        work,
        movies,
        like={"code_dim": code_dim},
        num_users=users,
        seed=seed,
        ranker_like=RankerConfig(movies).to_dict(),
    )
    generated_s = time.perf_counter() - start
    start = time.perf_counter()
    mar = archive.build(artifact_dir, work / "model_store")
    archive_s = time.perf_counter() - start
    return {
        "artifact_dir": str(artifact_dir),
        "mar": str(mar),
        "generate_s": generated_s,
        "archive_s": archive_s,
        "mar_bytes": mar.stat().st_size,
        "weights_bytes": (artifact_dir / artifact.WEIGHTS).stat().st_size,
        "vocab_bytes": (artifact_dir / artifact.VOCAB).stat().st_size,
        "ranker_bytes": (artifact_dir / artifact.RANKER).stat().st_size,
    }


def memory_mib(pid: int) -> dict:
    """Resident memory of a process now and at its peak, in MiB (peak: Linux only, else None)."""
    rss = psutil.Process(pid).memory_info().rss / 2**20
    peak = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return {"rss_mib": rss, "peak_mib": peak}


def frontend_rss_mib(server: Server) -> float:
    """Resident memory of everything TorchServe runs but the workers (launcher and Java)."""
    frontend, _ = server.processes()
    return sum(p.memory_info().rss for p in frontend) / 2**20


def _post(conn: http.client.HTTPConnection, token: str, body: dict) -> tuple[int, dict, float]:
    """POST one JSON body to /predictions/movierec: ``(status, answer, milliseconds)``."""
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start = time.perf_counter()
    conn.request("POST", "/predictions/movierec", body=payload, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    ms = 1000 * (time.perf_counter() - start)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"unparsed": raw[:200].decode(errors="replace")}
    return response.status, answer, ms


def _connection(server: Server) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=60)


def sequential(
    server: Server, bodies: list[dict], answered: Callable[[dict, dict], bool], warmup: int
) -> micro.Timing:
    """Send ``bodies`` one after the other on one kept-alive connection; time all but the
    first ``warmup``. Every answer must be a 200 that ``answered(body, answer)`` accepts."""
    token, samples = server.token(), []
    conn = _connection(server)
    try:
        for n, body in enumerate(bodies):
            status, answer, ms = _post(conn, token, body)
            if status != 200 or not answered(body, answer):
                raise ScaleError(f"{str(body)[:100]}: HTTP {status} {str(answer)[:300]}")
            if n >= warmup:
                samples.append(ms)
    finally:
        conn.close()
    return micro.Timing(samples)


def _top_k_answered(body: dict, answer: dict) -> bool:
    return (
        answer.get("user_id") == body["user_id"] and len(answer.get("recommendations") or []) == K
    )


def _rating_answered(body: dict, answer: dict) -> bool:
    return isinstance(answer.get("rating"), float)


def _pairs_answered(body: dict, answer: dict) -> bool:
    return len(answer.get("ratings") or []) == len(body["pairs"])


def request_bodies(vocab: Vocabulary, n: int, rng: np.random.Generator) -> dict[str, list[dict]]:
    """``n`` top-K bodies for random users with K movies left to recommend (all of them at
    ML-25M's shape, not so in a tiny catalogue), ``n`` single-rating bodies, and the same
    ``PAIRS``-pair body ``1 + PAIRS_REPS`` times."""
    unrated = vocab.num_items - np.diff(vocab.rated_indptr)
    users_asked = vocab.user_ids[unrated >= K]
    if not len(users_asked):
        raise ScaleError(f"no generated user has {K} unrated movies: ask for more --movies")
    users, movies = rng.choice(vocab.user_ids, n), rng.choice(vocab.movie_ids, n)
    pairs = np.stack([rng.choice(vocab.user_ids, PAIRS), rng.choice(vocab.movie_ids, PAIRS)], 1)
    return {
        "top_k": [{"user_id": int(u), "k": K} for u in rng.choice(users_asked, n)],
        # The floor: the cheapest request there is, through the same frontend and batching.
        "rating": [{"user_id": int(u), "movie_id": int(m)} for u, m in zip(users, movies)],
        "pairs": [{"pairs": pairs.tolist()}] * (1 + PAIRS_REPS),
    }


def measure(
    users: int,
    movies: int,
    code_dim: int,
    requests: int,
    warmup: int = 20,
    seed: int = 0,
    ready_timeout: float = 600.0,
) -> dict:
    """Build, archive, start, ask: every figure of the report, as a JSON-ready dict."""
    served = yaml.safe_load(archive.MODEL_CONFIG.read_text())
    result: dict = {
        "settings": {
            "users": users,
            "movies": movies,
            "code_dim": code_dim,
            "requests": requests,
            "warmup": warmup,
            "seed": seed,
            "k": K,
            "served": {key: served[key] for key in ("minWorkers", "batchSize", "maxBatchDelay")}
            | {"torch_threads": served["handler"]["torch_threads"]},
        },
        "machine": report.machine(),
        "load_before": report.load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="movierec-scale-") as tmp:
        built = build_mar(Path(tmp), users, movies, code_dim, seed)
        log.info("%s: %.1f MB", built["mar"], built["mar_bytes"] / 1e6)
        vocab = Vocabulary.load(Path(built["artifact_dir"]) / artifact.VOCAB)
        bodies = request_bodies(vocab, warmup + requests, np.random.default_rng(seed))
        start = time.perf_counter()
        with local_torchserve(Path(built["mar"]).parent, ["movierec"], timeout=ready_timeout) as s:
            startup_s = time.perf_counter() - start
            log.info("workers ready %.1f s after launching TorchServe", startup_s)
            pids = s.worker_pids()
            at_ready = [memory_mib(pid) for pid in pids]
            topk = sequential(s, bodies["top_k"], _top_k_answered, warmup)
            floor = sequential(s, bodies["rating"], _rating_answered, warmup)
            pairs = sequential(s, bodies["pairs"], _pairs_answered, 1)
            after = [memory_mib(pid) for pid in pids]
            frontend = frontend_rss_mib(s)
    result["load_after"] = report.load_average()
    result["build"] = {k: v for k, v in built.items() if k not in ("artifact_dir", "mar")}
    result["startup"] = {
        "ready_s": startup_s,
        "workers": len(pids),
        "worker_rss_mib": [m["rss_mib"] for m in at_ready],
        "worker_rss_after_requests_mib": [m["rss_mib"] for m in after],
        "worker_peak_mib": [m["peak_mib"] for m in after],
        "frontend_rss_mib": frontend,
    }
    result["top_k"] = {
        "requests": len(topk.samples_ms),
        "p50_ms": topk.p50,
        "p95_ms": topk.p95,
        "max_ms": max(topk.samples_ms),
        "samples_ms": [round(x, 2) for x in topk.samples_ms],
    }
    result["rating"] = {"requests": len(floor.samples_ms), "p50_ms": floor.p50, "p95_ms": floor.p95}
    result["pairs"] = {
        "pairs": PAIRS,
        "reps": len(pairs.samples_ms),
        "p50_ms": pairs.p50,
    }
    return result


def _mib(values: list) -> str:
    return " / ".join("n/a" if v is None else f"{v:,.0f}" for v in values)


def markdown(result: dict, command: str) -> str:
    """The report: what was run, on what, and one table of figures."""
    s, m, b, up, top = (result[key] for key in ("settings", "machine", "build", "startup", "top_k"))
    served, rating = s["served"], result["rating"]
    lines = [
        "# movierec at scale: the .mar, TorchServe start-up and top-10 over HTTP",
        "",
        f"- Run: {m['date']}, commit {m['commit']}",
        f"- Command: `{command}`",
        f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']:.0f} GiB RAM, "
        f"{m['os']}; load average (1/5/15 min) {result['load_before']} before, "
        f"{result['load_after']} after",
        "- Software: " + ", ".join(f"{name} {v}" for name, v in m["versions"].items()),
        f"- Model: FactorModel with random weights (seed {s['seed']}), {s['users']:,} users x "
        f"{s['movies']:,} movies, code_dim {s['code_dim']}, and a ranking model (Mult-DAE "
        "600-200, item-item part pruned to 256 neighbours per movie) that orders the top-10, "
        "over a generated vocabulary (every user rated 20-200 movies); no training, the "
        "tensors are those of a trained model",
        f"- Served with config.properties and handler/model-config.yaml: {served['minWorkers']} "
        f"workers, batchSize {served['batchSize']}, maxBatchDelay {served['maxBatchDelay']} ms "
        f"(a lone request waits for company that long), {served['torch_threads']} torch thread "
        "per worker; token auth on; the client is on the same machine",
        "",
        "| what | measured |",
        "|---|---|",
        f"| generate the artifact | {b['generate_s']:.1f} s; weights.pt "
        f"{b['weights_bytes'] / 1e6:,.1f} MB, ranker.pt {b.get('ranker_bytes', 0) / 1e6:,.1f} "
        f"MB, vocab.npz {b['vocab_bytes'] / 1e6:,.1f} MB |",
        f"| archive it (`train.archive.build`, as `make archive`) | {b['archive_s']:.1f} s |",
        f"| .mar size | {b['mar_bytes'] / 1e6:,.1f} MB ({b['mar_bytes']:,} bytes) |",
        f"| start-up: TorchServe launched until {up['workers']} of {up['workers']} workers READY "
        f"| {up['ready_s']:.1f} s |",
        f"| RSS per worker when ready | {_mib(up['worker_rss_mib'])} MiB |",
        f"| RSS per worker after the requests (peak) | {_mib(up['worker_rss_after_requests_mib'])}"
        f" MiB ({_mib(up['worker_peak_mib'])} MiB) |",
        f"| RSS of the frontend (launcher + Java) | {up['frontend_rss_mib']:,.0f} MiB |",
        f"| top-{s['k']} over HTTP, {top['requests']} sequential requests for random known users "
        f"(after {s['warmup']} unmeasured) | p50 {top['p50_ms']:.1f} ms, p95 "
        f"{top['p95_ms']:.1f} ms, max {top['max_ms']:.1f} ms |",
        f"| the floor: one-rating requests, the same way | p50 {rating['p50_ms']:.1f} ms, p95 "
        f"{rating['p95_ms']:.1f} ms |",
        f"| one {result['pairs']['pairs']:,}-pair rating request (median of "
        f"{result['pairs']['reps']}) | {result['pairs']['p50_ms']:.1f} ms |",
        "",
        "Every answer was a 200 with the right number of results (the run fails otherwise). "
        "Start-up is polled every 0.25 s and includes the Java frontend's own start.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.scale", __doc__)
    p.add_argument("--users", type=int, default=ML25M_USERS)
    p.add_argument("--movies", type=int, default=ML25M_MOVIES)
    p.add_argument("--code-dim", type=int, default=ML25M_CODE_DIM)
    p.add_argument("--requests", type=int, default=200, help="measured top-10 requests")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured top-10 requests first")
    p.add_argument("--seed", type=int, default=0, help="weights, vocabulary and user choice")
    p.add_argument(
        "--ready-timeout", type=float, default=600.0, help="s to wait for the workers at start"
    )
    p.add_argument("--out", help="write the Markdown report here, and the figures beside (.json)")
    args = p.parse_args(argv)
    if min(args.users, args.code_dim, args.requests) < 1 or args.warmup < 0:
        p.error("--users, --code-dim and --requests must be at least 1")
    if args.movies < K:
        p.error(f"--movies must be at least {K}")
    try:
        result = measure(
            args.users,
            args.movies,
            args.code_dim,
            args.requests,
            args.warmup,
            args.seed,
            args.ready_timeout,
        )
    except (ScaleError, ServerError) as exc:
        log.error("%s", exc)
        return 1
    given = sys.argv[1:] if argv is None else argv
    text = markdown(
        result, " ".join(["python -m loadtest.scenarios.scale", *map(shlex.quote, given)])
    )
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        log.info("wrote %s and %s", out, out.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
