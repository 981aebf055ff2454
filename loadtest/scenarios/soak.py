"""make soak: the Locust mix for longer than TorchServe's keys live, watching memory.

    make soak                                   # 75 minutes, 10 users at 10 req/s each
    python -m loadtest.scenarios.soak --duration 2m --interval 10 --setting token_expiration_min=1

Starts a private TorchServe with the shipped settings (``config.properties`` and the archive's
own model-config.yaml; only the addresses change, see :mod:`loadtest.server`) and the key
supervisor of ``make serve`` (:mod:`client.keys`), then runs the Locust mix for ``--duration``.
Every ``--interval`` seconds it records requests/s, p99 and failures of that interval
(:mod:`loadtest.minutes`) and the resident memory (RSS) of the Java frontend and of each
worker. Writes ``soak.csv``, ``soak.png`` and ``soak.md`` to ``--report-dir`` (Locust's own
CSV and HTML go to reports/loadtest/).

Exit status 1 on any failed request, on a dead key supervisor, or when memory grew beyond
:data:`LIMITS` over the last two thirds of the run (the first third is warm-up: JIT, caches,
the JVM's heap sizing). A run of fewer than :data:`MIN_SAMPLES` samples in that window is too
short to judge memory, and says so.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loadtest import report
from loadtest.run import MINUTES, find_archive, parser, run_locust, timespan, totals
from loadtest.server import Server, ServerError, endpoints, key_supervisor, local_torchserve

log = logging.getLogger("loadtest.scenarios.soak")

MIB = 2**20
# Modest by default: the reference machine has 2 cores that other work shares. 10 users (the
# fewest for which Locust gives each of the mix's 5 user classes one) at 10 req/s each: ~100
# req/s, a tenth of what the server can do there (make knee).
USERS, USER_RPS, DURATION, INTERVAL = 10, 10.0, "75m", 60.0
MIN_SAMPLES = 6  # samples in the judged window below which memory is not judged


@dataclass(frozen=True)
class Limit:
    """Most a process's RSS may grow over the judged window: both a share and MiB."""

    fraction: float
    mib: float

    def exceeded(self, start_mib: float, end_mib: float) -> bool:
        growth = end_mib - start_mib
        return growth > self.fraction * start_mib or growth > self.mib


# A worker (Python, the model in numpy/torch) holds everything it needs after its first
# requests: any steady growth is a leak. The JVM frontend sizes its heap lazily and collects
# in waves, so it gets more room.
LIMITS = {"worker": Limit(0.10, 50.0), "frontend": Limit(0.25, 150.0)}


def frontend_pid(server: Server) -> int | None:
    """The Java process of a running private server (a child of ``torchserve --foreground``)."""
    import psutil

    for child in psutil.Process(server.process.pid).children(recursive=True):
        if "org.pytorch.serve.ModelServer" in " ".join(child.cmdline()):
            return child.pid
    return None


def rss_mib(pids: list[int]) -> list[float | None]:
    """RSS in MiB of each pid (None for one that is gone)."""
    import psutil

    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid).memory_info().rss / MIB)
        except psutil.Error:
            out.append(None)
    return out


def sample(server: Server) -> dict:
    """One memory sample: frontend RSS and each worker's (workers by pid, sorted)."""
    front = frontend_pid(server)
    workers = sorted(server.worker_pids())
    return {
        "frontend_rss_mib": rss_mib([front])[0] if front else None,
        "worker_pids": workers,
        "worker_rss_mib": rss_mib(workers),
    }


def judge_memory(series: dict[str, list[float]]) -> list[dict]:
    """Growth of each process's RSS over the last two thirds of its samples.

    ``series`` maps a process name (``frontend``, ``worker 1``, ...) to its RSS per sample.
    Start and end are the medians of the window's first and last three samples (one sample is
    noise, not a trend). Each verdict: ``name``, ``start``, ``end``, ``growth`` (MiB),
    ``limit`` (text), ``ok`` (True, False, or None when the window is too short).
    """
    out: list[dict[str, object]] = []
    for name, values in series.items():
        window = [v for v in values[len(values) // 3 :] if v is not None]
        limit = LIMITS["frontend" if name == "frontend" else "worker"]
        text = f"> {limit.fraction:.0%} or > {limit.mib:g} MiB"
        if len(window) < MIN_SAMPLES:
            out.append(dict(name=name, start=None, end=None, growth=None, limit=text, ok=None))
            continue
        start, end = statistics.median(window[:3]), statistics.median(window[-3:])
        ok = not limit.exceeded(start, end)
        out.append(dict(name=name, start=start, end=end, growth=end - start, limit=text, ok=ok))
    return out


def read_minutes(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def combine(minutes: list[dict], samples: list[dict], interval: float) -> list[dict]:
    """One row per interval: Locust's figures beside the memory sampled at its end."""
    workers = max((len(s["worker_rss_mib"]) for s in samples), default=0)
    rows = []
    for n, figures in enumerate(minutes):
        mem = samples[n] if n < len(samples) else samples[-1] if samples else None
        row = {
            "minute": round((n * interval + float(figures["seconds"])) / 60, 2),
            "requests_per_s": figures["rps"],
            "p99_ms": figures["p99_ms"],
            "requests": figures["requests"],
            "failures": figures["failures"],
            "token_retries": figures["refreshed"],
            "frontend_rss_mib": _mib(mem["frontend_rss_mib"]) if mem else "",
        }
        for w in range(workers):
            values = mem["worker_rss_mib"] if mem else []
            row[f"worker{w + 1}_rss_mib"] = _mib(values[w]) if w < len(values) else ""
        row["worker_pids"] = " ".join(map(str, mem["worker_pids"])) if mem else ""
        rows.append(row)
    return rows


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]) if rows else ["minute"])
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Requests/s and failures, p99, and RSS per process against minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [float(r["minute"]) for r in rows]
    fig, (load, latency, memory) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    load.plot(minutes, [float(r["requests_per_s"]) for r in rows], label="requests/s")
    failed = [(m, int(r["failures"])) for m, r in zip(minutes, rows) if int(r["failures"])]
    if failed:
        load.scatter(*zip(*failed), color="red", label="failures in the interval", zorder=3)
    load.set_ylabel("requests/s")
    load.set_ylim(bottom=0)
    load.legend(loc="lower right")
    latency.plot(minutes, [float(r["p99_ms"]) for r in rows], color="tab:orange")
    latency.set_ylabel("p99 (ms)")
    latency.set_ylim(bottom=0)
    for name in [k for k in rows[0] if k.endswith("_rss_mib")] if rows else []:
        values = [float(r[name]) if r[name] else float("nan") for r in rows]
        memory.plot(minutes, values, label=name.removesuffix("_rss_mib"))
    memory.set_ylabel("RSS (MiB)")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("minutes")
    memory.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(run: dict, rows: list[dict], verdicts: list[dict], problems: list[str]) -> str:
    """soak.md: what ran, the totals, memory against its limits, and the verdict."""
    t = run["totals"]
    lines = [
        "# Soak",
        "",
        f"{run['started']} UTC, commit {run['commit']}, {run['duration']} "
        f"({run['elapsed_min']:.1f} min measured), {run['users']} Locust users at "
        f"{run['user_rps']:g} req/s each (the mix of loadtest/locustfile.py), a private "
        f"TorchServe with {run['config']} ({run['settings']}), keys of "
        f"{run['lifetime_min']:g} min renewed by python -m client.keys.",
        "",
        f"Command: `{run['command']}`",
        "",
        "| requests | failures | p99 (whole run) | token retries | key renewals "
        "(inference, management) |",
        "|---|---|---|---|---|",
        f"| {t.requests:,} | {t.failures} | {t.p99_ms:g} ms | {run['refreshed']} | "
        f"{run['renewals']['inference']}, {run['renewals']['management']} |",
        "",
        f"Per interval ({run['interval']:g} s, soak.csv, soak.png): requests/s "
        f"{_span([float(r['requests_per_s']) for r in rows])}, p99 "
        f"{_span([float(r['p99_ms']) for r in rows])} ms, failures in the worst interval "
        f"{max((int(r['failures']) for r in rows), default=0)}.",
        "",
        "Memory (RSS) over the last two thirds of the run (medians of its first and last "
        "three samples). A worker fails when it grows by more than "
        f"{_limit('worker')}, the Java frontend by more than {_limit('frontend')}:",
        "",
        "| process | start (MiB) | end (MiB) | growth (MiB) | limit | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        if v["ok"] is None:
            lines.append(
                f"| {v['name']} | | | | {v['limit']} | too short to judge "
                f"(< {MIN_SAMPLES} samples) |"
            )
        else:
            lines.append(
                f"| {v['name']} | {v['start']:.1f} | {v['end']:.1f} | {v['growth']:+.1f} | "
                f"{v['limit']} | {'ok' if v['ok'] else 'GREW'} |"
            )
    lines += ["", "**Verdict: " + ("; ".join(problems) if problems else "passed") + ".**", ""]
    return "\n".join(lines)


def _limit(kind: str) -> str:
    limit = LIMITS[kind]
    return f"{limit.fraction:.0%} or {limit.mib:g} MiB"


def _span(values: list[float]) -> str:
    return f"{min(values):g}-{max(values):g}" if values else "-"


def soak(args: argparse.Namespace) -> int:
    """Run the soak and write its report; returns the exit status."""
    mar = Path(args.mar)
    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    locust_prefix = Path(args.locust_dir) / "soak"
    minutes_csv = Path(f"{locust_prefix}_minutes.csv")
    minutes_csv.unlink(missing_ok=True)
    settings = dict(s.split("=", 1) for s in args.setting)
    started = datetime.now(UTC)
    commit = report.commit()  # the checkout when the run starts, not when an hour later it ends
    samples: list[dict] = []
    with (
        local_torchserve(mar.parent, *endpoints(mar), settings=settings) as srv,
        key_supervisor(srv) as supervisor,
    ):
        codes: list[int] = []
        locust = threading.Thread(
            target=lambda: codes.append(
                run_locust(
                    srv.url,
                    srv.key_file,
                    mar,
                    locust_prefix,
                    users=args.users,
                    spawn_rate=args.users,
                    duration=args.duration,
                    more_files=[MINUTES],
                    extra=[
                        *("--user-rps", str(args.user_rps)),
                        *("--minutes-csv", str(minutes_csv)),
                        *("--minutes-interval", str(args.interval)),
                        # Latency is recorded, not judged: failures and memory are.
                        *("--slo-p95-ms", "1e9", "--slo-p99-ms", "1e9"),
                    ],
                )
            )
        )
        t0 = time.monotonic()  # memory is sampled every interval from here
        locust.start()
        while locust.is_alive():
            locust.join(
                timeout=max(0.0, t0 + (len(samples) + 1) * args.interval - time.monotonic())
            )
            if locust.is_alive():
                samples.append(sample(srv))
        supervisor_alive = supervisor.poll() is None
        lifetime = float(srv.config.get("token_expiration_min", "60"))
        keys_log = (srv.home / "keys.log").read_text()
    rows = combine(read_minutes(minutes_csv), samples, args.interval)
    series = {"frontend": [s["frontend_rss_mib"] for s in samples]}
    for w in range(max((len(s["worker_rss_mib"]) for s in samples), default=0)):
        series[f"worker {w + 1}"] = [
            s["worker_rss_mib"][w] if w < len(s["worker_rss_mib"]) else None for s in samples
        ]
    verdicts = judge_memory(series)
    run_totals = totals(locust_prefix)
    problems = []
    if run_totals.failures or any(int(r["failures"]) for r in rows):
        problems.append(f"{run_totals.failures} failed requests")
    if codes != [0]:
        problems.append(f"Locust exited with {codes}")
    if not supervisor_alive:
        problems.append("the key supervisor died")
    grew = [v["name"] for v in verdicts if v["ok"] is False]
    if grew:
        problems.append(f"memory grew beyond its limit: {', '.join(grew)}")
    if len({" ".join(map(str, s["worker_pids"])) for s in samples}) > 1:
        problems.append("a worker was restarted (its pid changed)")
    run = {
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "commit": commit,
        "duration": args.duration,
        "elapsed_min": sum(float(r["seconds"]) for r in read_minutes(minutes_csv)) / 60,
        "users": args.users,
        "user_rps": args.user_rps,
        "interval": args.interval,
        "config": "config.properties",
        "settings": ", ".join(f"{k}={v}" for k, v in settings.items()) or "as shipped",
        "lifetime_min": lifetime,
        "totals": run_totals,
        "refreshed": sum(int(r["token_retries"]) for r in rows),
        "renewals": {
            k: keys_log.count(f"renewed the {k} key") for k in ("inference", "management")
        },
        "command": args.command,
    }
    write_csv(rows, report_dir / "soak.csv")
    if rows:
        plot(rows, report_dir / "soak.png", f"movierec soak, {run['started']} UTC")
    (report_dir / "soak.md").write_text(markdown(run, rows, verdicts, problems))
    for problem in problems:
        log.error("soak failed: %s", problem)
    log.info("report: %s", report_dir / "soak.md")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m loadtest.scenarios.soak", __doc__)
    p.add_argument(
        "--duration", type=timespan, default=DURATION, help=f"run time (default {DURATION})"
    )
    p.add_argument("--users", type=int, default=USERS)
    p.add_argument("--user-rps", type=float, default=USER_RPS, help="requests/s per user")
    p.add_argument("--interval", type=float, default=INTERVAL, help="seconds between samples")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="replace a config.properties setting (e.g. token_expiration_min=1)",
    )
    p.add_argument("--report-dir", default="reports/soak")
    p.add_argument("--locust-dir", default="reports/loadtest", help="Locust's own CSV and HTML")
    args = p.parse_args(argv)
    args.command = " ".join(
        ["python -m loadtest.scenarios.soak", *(argv if argv is not None else sys.argv[1:])]
    )
    if any("=" not in s for s in args.setting):
        p.error("--setting takes KEY=VALUE")
    if find_archive(args.mar) is None:
        return 1
    try:
        return soak(args)
    except ServerError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
