"""Per-interval figures of a long Locust run (the soak): one CSV row per interval.

    locust -f loadtest/locustfile.py,loadtest/minutes.py --headless ... \\
        --minutes-csv reports/loadtest/soak_minutes.csv --minutes-interval 60

Each row covers one interval of the run (the last one may be shorter): requests of the mix,
failures, requests/s, p50 and p99 of that interval alone (from Locust's own response-time
histograms, as the knee search does), and the attempts refused for an expired or renewed token
and retried (:data:`loadtest.traffic.TOKEN_REFRESHED`), which are not counted as requests.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

# Locust puts only this file's folder on sys.path; the project's packages sit above it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent
from locust import events
from locust.runners import WorkerRunner
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

from loadtest.traffic import TOKEN_REFRESHED

COLUMNS = ["interval", "seconds", "requests", "failures", "refreshed", "rps", "p50_ms", "p99_ms"]


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("movierec per-interval figures")
    group.add_argument("--minutes-csv", default="", help="write one row per interval here")
    group.add_argument("--minutes-interval", type=float, default=60.0, help="seconds")


class _Snapshot:
    """Cumulative counts of the mix (and of token refreshes) at one moment."""

    def __init__(self, environment):
        self.at = time.monotonic()
        self.requests = self.failures = self.refreshed = 0
        self.response_times: dict[int, int] = {}
        for entry in environment.stats.entries.values():
            if entry.name == TOKEN_REFRESHED:
                self.refreshed += entry.num_requests
                continue
            self.requests += entry.num_requests
            self.failures += entry.num_failures
            for ms, count in entry.response_times.items():
                self.response_times[ms] = self.response_times.get(ms, 0) + count


def _row(index: int, before: _Snapshot, after: _Snapshot) -> dict:
    seconds = after.at - before.at
    requests = after.requests - before.requests
    times = diff_response_time_dicts(after.response_times, before.response_times)

    def pct(p: float) -> float:
        return calculate_response_time_percentile(times, requests, p) if requests else 0.0

    return {
        "interval": index,
        "seconds": round(seconds, 1),
        "requests": requests,
        "failures": after.failures - before.failures,
        "refreshed": after.refreshed - before.refreshed,
        "rps": round(requests / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


class _Recorder:
    def __init__(self, environment, path: Path, interval: float):
        self.environment, self.path, self.interval = environment, path, interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            csv.DictWriter(f, COLUMNS).writeheader()
        self.last = _Snapshot(environment)
        self.index = 0
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        start = self.last.at
        while True:
            gevent.sleep(max(0.0, start + (self.index + 1) * self.interval - time.monotonic()))
            self.flush()

    def flush(self) -> None:
        now = _Snapshot(self.environment)
        if now.at - self.last.at < 0.5:
            return  # nothing left of the last interval
        self.index += 1
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow(_row(self.index, self.last, now))
        self.last = now


_recorder: _Recorder | None = None


@events.test_start.add_listener
def _start(environment, **_kwargs) -> None:
    global _recorder
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or not options.minutes_csv:
        return
    _recorder = _Recorder(environment, Path(options.minutes_csv), options.minutes_interval)


@events.test_stop.add_listener
def _stop(environment, **_kwargs) -> None:
    if _recorder is not None:
        _recorder.greenlet.kill()
        _recorder.flush()  # the last, shorter interval
