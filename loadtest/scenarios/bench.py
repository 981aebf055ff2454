"""Serving benchmark: movierec's handler against TorchServe's own floor and a naive handler.

    make bench                             # = python -m loadtest.scenarios.bench
    python -m loadtest.scenarios.bench --duration 60s --rounds 3

In one run, on one machine, with the same config.properties, the same workers and the same
Locust settings (``--users`` closed-loop users sending single-rating requests, no pauses):

1. echo  - the floor: a handler that returns the request body, no model
   (loadtest/scenarios/handlers/echo_handler.py, our model-config.yaml);
2. naive - the same model served the textbook way: batchSize 1, BaseHandler's
   preprocess/inference/postprocess, default torch threads, TorchServe's json.dumps(indent=2)
   (loadtest/scenarios/handlers/naive_handler.py);
3. ours  - handler/movierec_handler.py with handler/model-config.yaml.

The three archives are built from the same artifact in a temporary folder; each server is
started on free ports, warmed up, measured and stopped in turn (``--rounds`` alternates them,
and the median of the rounds is reported, because the machine may be shared and noisy). Then
the handler micro-benchmarks of :mod:`loadtest.scenarios.micro`, title search among them.
Everything goes to ``reports/bench.md``, and Locust's own reports to
``reports/loadtest/bench/``.
"""

from __future__ import annotations

import http.client
import json
import logging
import resource
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil
import yaml

from loadtest import report
from loadtest.run import Figures, run_locust, seconds, timespan, totals
from loadtest.scenarios import micro
from loadtest.server import REPO, Server, ServerError, local_torchserve
from loadtest.traffic import Catalogue, SingleRating
from model import console
from train import archive

log = logging.getLogger("loadtest.scenarios.bench")

HANDLERS = Path(__file__).resolve().parent / "handlers"  # the baselines, beside this file
SERVERS = ("echo", "naive", "ours")
TARGET_SEARCH_P50_MS = 10.0  # title search over 62k titles, p50, in the worker's process


@dataclass
class HttpRun(Figures):
    """One measured Locust run against one server: its figures, CPU and worker memory."""

    server: str
    round: int
    worker_rss_mb: list[float] = field(default_factory=list)
    cpu_cores: dict[str, float] = field(default_factory=dict)  # CPU seconds / run seconds
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    others_cores: float = 0.0  # CPU of every other process on the machine meanwhile
    lone_p50_ms: float = 0.0  # one request at a time on a quiet server (:func:`lone_latency`)
    lone_p99_ms: float = 0.0


def build_archives(artifact_dir: Path, model_config: Path, out: Path) -> dict[str, Path]:
    """One model store per server, each holding a movierec.mar built from ``artifact_dir``."""
    ours = yaml.safe_load(model_config.read_text())
    naive = {k: v for k, v in ours.items() if k != "handler"} | {"batchSize": 1}
    naive_config = out / "naive-model-config.yaml"
    naive_config.write_text(yaml.safe_dump(naive))
    builds = {
        "echo": (model_config, HANDLERS / "echo_handler.py"),
        "naive": (naive_config, HANDLERS / "naive_handler.py"),
        "ours": (model_config, archive.HANDLER),
    }
    stores = {}
    for name, (config, handler) in builds.items():
        stores[name] = out / name
        archive.build(artifact_dir, stores[name], config_file=config, handler=handler)
    return stores


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all CPUs)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the Locust runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lone_latency(server: Server, mar: Path, requests: int, warmup: int = 20) -> tuple[float, float]:
    """``(p50, p99)`` ms of single-rating requests sent one at a time over one keep-alive
    connection: what a person's lone request costs on a quiet server, batching delay included.
    The pairs are the archive's own ids, drawn as the Locust traffic draws them."""
    catalogue = Catalogue.from_mar(mar)
    rng = np.random.default_rng(0)
    bodies = [SingleRating(catalogue).body(rng) for _ in range(requests + warmup)]
    host, port = server.url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {server.token()}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    try:
        for body in bodies:
            started = time.perf_counter()
            conn.request("POST", "/predictions/movierec", json.dumps(body), headers)
            response = conn.getresponse()
            response.read()
            times.append(1000 * (time.perf_counter() - started))
            if response.status != 200:
                raise ServerError(f"a lone request got HTTP {response.status}")
    finally:
        conn.close()
    measured = np.array(times[warmup:])
    return float(np.percentile(measured, 50)), float(np.percentile(measured, 99))


def measure(server: Server, name: str, round_: int, mar: Path, args, raw_dir: Path) -> HttpRun:
    """Warm up, then one measured run of single-rating requests; CPU and worker memory too."""
    locust_args = ["SingleRating", "--slo-p95-ms", "inf", "--slo-p99-ms", "inf"]
    env = {"MOVIEREC_ECHO": "1" if name == "echo" else "0"}
    common = dict(users=args.users, spawn_rate=args.users, extra=locust_args, env=env)
    run_locust(
        server.url, server.key_file, mar, raw_dir / f"warmup-{name}", duration=args.warmup, **common
    )
    frontend, workers = server.processes()
    before = (_cpu_seconds(frontend), _cpu_seconds(workers), _children_cpu_seconds())
    machine_before, wall_before = busy_seconds(), time.perf_counter()
    prefix = raw_dir / f"{name}-round{round_}"
    code = run_locust(server.url, server.key_file, mar, prefix, duration=args.duration, **common)
    machine = busy_seconds() - machine_before
    wall = time.perf_counter() - wall_before
    # Locust (a finished child of this process) includes its ~1 s start-up; the server's parts
    # only spent CPU on the load, which ran for the run time.
    cpu_seconds = {
        "frontend": _cpu_seconds(frontend) - before[0],
        "workers": _cpu_seconds(workers) - before[1],
        "locust": _children_cpu_seconds() - before[2],
    }
    rss = [psutil.Process(pid).memory_info().rss / 2**20 for pid in server.worker_pids()]
    figures = totals(prefix)
    lone_p50, lone_p99 = lone_latency(server, mar, args.lone_requests)
    requests = figures.requests
    result = HttpRun(
        server=name,
        round=round_,
        **asdict(figures),
        worker_rss_mb=rss,
        cpu_cores={k: v / seconds(args.duration) for k, v in cpu_seconds.items()},
        cpu_us_per_request={k: 1e6 * v / max(requests, 1) for k, v in cpu_seconds.items()},
        others_cores=max(0.0, machine - sum(cpu_seconds.values())) / wall,
        lone_p50_ms=lone_p50,
        lone_p99_ms=lone_p99,
    )
    if code != 0 or result.failures:
        log.error(
            "%s: Locust exited %d with %d failures (see %s)",
            name,
            code,
            result.failures,
            f"{prefix}_failures.csv",
        )
    log.info(
        "%s round %d: %.0f req/s, p50 %g ms, p95 %g ms, p99 %g ms; lone request p50 %.2f ms",
        name,
        round_,
        result.rps,
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        result.lone_p50_ms,
    )
    return result


def http_benchmark(artifact_dir: Path, args, raw_dir: Path) -> list[HttpRun]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="movierec-bench-") as tmp:
        stores = build_archives(artifact_dir, Path(args.model_config), Path(tmp))
        ours_mar = stores["ours"] / "movierec.mar"  # the traffic's ids come from its vocabulary
        for round_ in range(1, args.rounds + 1):
            for name in args.servers:
                with local_torchserve(stores[name], ["movierec"]) as server:
                    runs.append(measure(server, name, round_, ours_mar, args, raw_dir))
    return runs


def median_runs(runs: list[HttpRun]) -> dict[str, dict]:
    """Per server, the median of each figure over the rounds."""
    out = {}
    for name in SERVERS:
        mine = [r for r in runs if r.server == name]
        if not mine:
            continue
        out[name] = {
            key: statistics.median(getattr(r, key) for r in mine)
            for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "lone_p50_ms", "lone_p99_ms")
        }
        out[name]["failures"] = sum(r.failures for r in mine)
        out[name]["requests"] = sum(r.requests for r in mine)
        out[name]["worker_rss_mb"] = max(max(r.worker_rss_mb, default=0.0) for r in mine)
        out[name]["others_cores"] = statistics.median(r.others_cores for r in mine)
        for key in ("cpu_cores", "cpu_us_per_request"):
            parts = getattr(mine[0], key)
            out[name][key] = {p: statistics.median(getattr(r, key)[p] for r in mine) for p in parts}
    return out


def search_section(search: dict) -> list[str]:
    """reports/bench.md's lines on title search (:func:`micro.search_latency`)."""
    p50 = search["p50_ms"]
    by_kind = ", ".join(f"{kind} {ms:.1f}" for kind, ms in search["p50_ms_by_kind"].items())
    met = "met" if p50 <= TARGET_SEARCH_P50_MS else "**not met**"
    return [
        "## Title search (`model.search.TitleIndex`, no HTTP)",
        "",
        f"Top-{search['k']} over {search['titles']:,} generated titles ({search['names']:,} "
        f"typable names; the index built in {search['build_s']:.2f} s), queries of every kind "
        "reports/search.md measures, mixed:",
        "",
        "| queries | p50 ms | p90 ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
        f"| {search['queries']:,} | {p50:.2f} | {search['p90_ms']:.2f} "
        f"| {search['p95_ms']:.2f} | {search['max_ms']:.2f} |",
        "",
        f"p50 ms by kind of query: {by_kind}.",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| title search over {search['titles'] // 1000}k titles <= "
        f"{TARGET_SEARCH_P50_MS:g} ms p50 | {p50:.1f} ms | {met} |",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.bench", __doc__)
    p.add_argument("--artifact", default="artifacts/ml-100k", help="trained artifact folder")
    p.add_argument("--users", type=int, default=16, help="closed-loop Locust users per server")
    p.add_argument(
        "--duration", type=timespan, default="30s", help="measured run per server and round"
    )
    p.add_argument(
        "--warmup", type=timespan, default="5s", help="unmeasured run before each measured one"
    )
    p.add_argument(
        "--rounds", type=int, default=2, help="echo, naive, ours in turn, this many times"
    )
    p.add_argument(
        "--lone-requests",
        type=int,
        default=300,
        help="single-rating requests sent one at a time per server and round",
    )
    p.add_argument("--report", default="reports/bench.md")
    p.add_argument("--raw-dir", default="reports/loadtest/bench", help="Locust CSV and HTML")
    p.add_argument(
        "--model-config",
        default=str(archive.MODEL_CONFIG.relative_to(REPO)),
        help="serving settings of echo and ours (naive: the same with batchSize 1); "
        "another file tries other settings",
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        type=lambda text: [s for s in text.split(",") if s],
        help="which of echo,naive,ours to measure",
    )
    p.add_argument("--skip-http", action="store_true", help="micro-benchmarks only")
    p.add_argument("--skip-micro", action="store_true", help="HTTP benchmark only")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.users < 1:
        p.error("--rounds and --users must be at least 1")
    if not args.servers or set(args.servers) - set(SERVERS):
        p.error(f"--servers takes names among {','.join(SERVERS)}")
    artifact_dir = micro.find_artifact(args.artifact)
    if artifact_dir is None:
        return 1

    started = time.time()
    context = report.machine() | {"load_before": report.load_average()}
    runs: list[HttpRun] = []
    if not args.skip_http:
        try:
            runs = http_benchmark(artifact_dir, args, Path(args.raw_dir))
        except ServerError as exc:
            log.error("%s", exc)
            return 1
    pairs = topk = search = None
    if not args.skip_micro:
        me = psutil.Process()
        mine, machine, wall = sum(me.cpu_times()[:2]), busy_seconds(), time.perf_counter()
        pairs, topk, search = micro.benchmarks(artifact_dir)
        others = (busy_seconds() - machine) - (sum(me.cpu_times()[:2]) - mine)
        context["micro_others_cores"] = max(0.0, others) / (time.perf_counter() - wall)
    context["load_after"] = report.load_average()
    context["minutes"] = (time.time() - started) / 60
    command = "python -m loadtest.scenarios.bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = report.bench_markdown(
        command=command.strip(),
        settings=vars(args),
        context=context,
        runs=runs,
        medians=median_runs(runs),
        pairs=pairs,
        topk=topk,
    )
    if search is not None:
        text += "\n" + "\n".join(search_section(search))
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(text)
    log.info("wrote %s", args.report)
    failed = any(r.failures for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
