"""Run the Locust load test headless against movierec, judged by :mod:`loadtest.slo`.

    python -m loadtest.run                           # what `make loadtest` runs
    python -m loadtest.run --users 32 --duration 60s
    python -m loadtest.run --knee                    # step load up to the knee (`make knee`)
    python -m loadtest.run -- --user-rps 5 TopK      # anything after -- goes to Locust

If a movierec server answers at ``--url`` with the token of ``--key-file``, the run goes there.
Otherwise it starts a private TorchServe with the normal settings (``config.properties`` and
the archive's own model-config.yaml) on free ports, runs against it and stops it; a server
someone else started on 8080 is never touched. Reports (CSV, HTML, and the knee's JSON) go to
``--report-dir``. The exit status is Locust's: non-zero when the run missed its SLO.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from client import ClientError, read_token
from loadtest.server import REPO, ServerError, answers, endpoints, local_torchserve
from model import console

log = logging.getLogger("loadtest")

LOCUST = Path(sys.executable).parent / "locust"
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
KNEE = REPO / "loadtest" / "knee.py"
MINUTES = REPO / "loadtest" / "minutes.py"  # per-interval figures, loaded by the soak
MAR = REPO / "model_store" / "movierec.mar"  # what `make archive` builds

# Defaults of `make loadtest`: 16 users without pauses keep both cores of the reference
# 2-core machine busy without queueing behind TorchServe's 100-request job queue; 30 s gives
# ~10^4 requests, enough for a stable p99.
USERS, SPAWN_RATE, DURATION = 16, 8.0, "30s"
# A knee search ends itself at the knee; this only bounds it (knee.py's defaults, 20 steps of
# 10 s up to 160 users, take under 4 minutes).
KNEE_CAP = "6m"


def seconds(timespan: str) -> float:
    """Seconds of a Locust timespan such as ``90``, ``30s``, ``5m`` or ``1h30m``."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", timespan.strip())
    if not timespan.strip() or match is None:
        raise ValueError(f"not a timespan: {timespan!r} (use e.g. 30s, 5m, 1h30m)")
    hours, minutes, secs = (int(g or 0) for g in match.groups())
    return 3600 * hours + 60 * minutes + secs


def timespan(text: str) -> str:
    """``text`` when it is a Locust timespan: an argparse ``type`` that says what is wrong."""
    try:
        seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def failures(prefix: str | Path) -> list[dict]:
    """The rows of Locust's ``PREFIX_failures.csv`` (none when the file is absent)."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def failure_lines(rows: list[dict]) -> list[str]:
    """One indented line per row of :func:`failures` (a kind of failed request), for a report."""
    return [f"  {f['Occurrences']} x {f['Method']} {f['Name']}: {f['Error'][:120]}" for f in rows]


@dataclass(kw_only=True)
class Figures:
    """What a stretch of load measured: requests, failures, their rate, latency (ms)."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float  # the slowest response


def totals(prefix: str | Path) -> Figures:
    """The figures of a whole Locust run, from its ``PREFIX_stats.csv``."""
    with Path(f"{prefix}_stats.csv").open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg = rows["Aggregated"]
    return Figures(
        requests=int(agg["Request Count"]),
        failures=int(agg["Failure Count"]),
        rps=float(agg["Requests/s"]),
        p50_ms=float(agg["50%"]),
        p95_ms=float(agg["95%"]),
        p99_ms=float(agg["99%"]),
        max_ms=float(agg["Max Response Time"]),
    )


def run_locust(
    host: str,
    key_file: str | Path,
    mar: str | Path,
    report_prefix: str | Path,
    users: int = USERS,
    spawn_rate: float = SPAWN_RATE,
    duration: str = DURATION,
    knee: bool = False,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    more_files: list[Path] | None = None,
) -> int:
    """Run Locust headless once; returns its exit status (non-zero: SLO missed).

    The run is bounded by ``duration`` (Locust's ``--run-time``, which a knee search also
    obeys) and, should Locust hang, killed one minute later. ``more_files`` are loaded beside
    the locustfile (e.g. :mod:`loadtest.minutes`).
    """
    report_prefix = Path(report_prefix)
    report_prefix.parent.mkdir(parents=True, exist_ok=True)
    files = ",".join(map(str, [LOCUSTFILE, *([KNEE] if knee else []), *(more_files or [])]))
    command = [str(LOCUST), "-f", files, "--headless", "--host", host, "--run-time", duration]
    command += ["--users", str(users), "--spawn-rate", str(spawn_rate)] if not knee else []
    command += ["--csv", str(report_prefix), "--html", f"{report_prefix}.html", "--only-summary"]
    command += extra or []
    run_env = {
        **os.environ,
        "MOVIEREC_KEY_FILE": str(Path(key_file).resolve()),
        "MOVIEREC_MAR": str(Path(mar).resolve()),
        **(env or {}),
    }
    log.info("running %s", " ".join(command))
    try:
        return subprocess.run(command, env=run_env, timeout=seconds(duration) + 60).returncode
    except subprocess.TimeoutExpired:
        log.error("Locust did not stop within a minute of its run time; killed")
        return 1


def locust_thread(server, mar: str | Path, report_prefix: str | Path, users: int, duration_s: int):
    """An unstarted thread running the Locust mix against a private ``server`` (all users
    spawned at once) for ``duration_s`` seconds: for scenarios that act on the server meanwhile."""
    return threading.Thread(
        target=run_locust,
        kwargs=dict(
            host=server.url,
            key_file=server.key_file,
            mar=mar,
            report_prefix=report_prefix,
            users=users,
            spawn_rate=users,
            duration=f"{duration_s}s",
        ),
    )


def parser(
    prog: str, doc: str | None, mar_help: str = "archive to serve"
) -> argparse.ArgumentParser:
    """:func:`model.console.parser` with ``--mar``, the archive every load command serves or
    draws its ids from (default: what ``make archive`` builds)."""
    p = console.parser(prog, doc)
    p.add_argument("--mar", default=str(MAR), help=mar_help)
    return p


def load_options(p: argparse.ArgumentParser, duration_s: int) -> None:
    """``--users``, ``--duration`` (seconds) and ``--report-dir``: the options of a scenario
    that acts on a private server while :func:`locust_thread` loads it."""
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--duration", type=int, default=duration_s, help="seconds of load")
    p.add_argument("--report-dir", default=str(REPO / "reports" / "loadtest"))


def find_archive(path: str | Path) -> Path | None:
    """``path`` when it is a file; otherwise ``None``, having logged how to build it."""
    if Path(path).is_file():
        return Path(path)
    log.error("%s not found: build it first (make archive)", path)
    return None


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m loadtest.run", __doc__, mar_help="archive to sample ids from")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server to load, if it answers")
    p.add_argument("--key-file", default="key_file.json", help="that server's key_file.json")
    p.add_argument("--users", type=int, default=USERS)
    p.add_argument("--spawn-rate", type=float, default=SPAWN_RATE, help="users started per second")
    p.add_argument(
        "--duration",
        type=timespan,
        default=None,
        help=f"run time, e.g. 30s, 5m (default {DURATION}; for --knee a cap of {KNEE_CAP})",
    )
    p.add_argument("--knee", action="store_true", help="step load up to the knee (knee.py)")
    p.add_argument("--report-dir", default="reports/loadtest")
    p.add_argument("locust_args", nargs="*", help="passed to Locust (after --)")
    args = p.parse_args(argv)
    args.duration = args.duration or (KNEE_CAP if args.knee else DURATION)
    mar = find_archive(args.mar)
    if mar is None:
        return 1
    name = "knee" if args.knee else "loadtest"
    prefix = Path(args.report_dir) / name
    extra = args.locust_args
    if args.knee:
        extra = ["--knee-report", f"{prefix}.json", *extra]
    run = dict(
        mar=mar,
        report_prefix=prefix,
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        knee=args.knee,
        extra=extra,
    )

    try:
        token = read_token("inference", args.key_file)
    except ClientError:
        token = None
    if token and answers(args.url, token):
        log.info("loading the running server at %s", args.url)
        return run_locust(args.url, args.key_file, **run)
    log.info("no server answers at %s with %s: starting a private one", args.url, args.key_file)
    try:
        with local_torchserve(mar.parent, *endpoints(mar)) as server:
            return run_locust(server.url, server.key_file, **run)
    except ServerError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
