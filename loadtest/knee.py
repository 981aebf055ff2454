"""Step-load shape: raise concurrency step by step until the SLO breaks, to find the knee.

    make knee                      # = python -m loadtest.run --knee
    locust -f loadtest/locustfile.py,loadtest/knee.py --headless --host URL

A Locust load shape, not a command of its own: :mod:`loadtest.run` loads it beside the
locustfile when given ``--knee``.

Every ``--step-seconds`` the shape adds ``--step-users`` users. Each step is measured after it
settles (its first third, at most 3 s, is left out) on all requests together: request rate,
p95, p99 and failures. The search stops at the first step that misses the SLO of
:mod:`loadtest.slo` (p99 above its limit, p95 above its limit, or any failure), or after
``--max-users``. The answer is the highest request rate of a step that met the SLO; it is
logged and written to ``--knee-report`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Locust puts only this file's folder on sys.path; the project's packages sit above it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import LoadTestShape, events
from locust.runners import Runner, WorkerRunner
from locust.stats import (
    calculate_response_time_percentile,
    diff_response_time_dicts,
)

from loadtest import slo
from loadtest.run import Figures

log = logging.getLogger("loadtest.knee")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("movierec knee search")
    # Closed-loop users only push latency up slowly once the server saturates (each waits for
    # its answer), so the knee of the reference 2-core machine lies near 100 users: 8-user
    # steps of 10 s get there in about 2 minutes; 10 s leave ~7 s (~2*10^4 requests) per step.
    group.add_argument("--step-users", type=int, default=8, help="users added per step")
    group.add_argument("--step-seconds", type=float, default=10.0, help="length of a step")
    group.add_argument("--max-users", type=int, default=160, help="stop after this many users")
    group.add_argument("--knee-report", default="reports/loadtest/knee.json")


@dataclass
class Step(Figures):
    """What one step measured once it had settled, and the objectives it missed."""

    users: int
    seconds: float
    missed: list[str]


@dataclass
class _Window:
    """Requests of one step (a diff of Locust's cumulative totals), read as slo.LatencyStats."""

    name: str
    num_requests: int
    num_failures: int
    response_times: dict[int, int]

    def get_response_time_percentile(self, percent: float) -> float:
        return calculate_response_time_percentile(
            self.response_times, sum(self.response_times.values()), percent
        )


class StepToKnee(LoadTestShape):
    """Adds users in steps until a step misses the SLO; see the module docstring."""

    judges_its_own_run = True  # the locustfile's SLO verdict does not apply to a knee search

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self._step = -1
        self._start: tuple[float, dict[int, int], int, int] | None = None

    def _runner(self) -> Runner:
        if self.runner is None:
            raise RuntimeError("the knee shape runs only under a Locust runner")
        return self.runner

    def _options(self) -> argparse.Namespace:
        options = self._runner().environment.parsed_options
        if options is None:
            raise RuntimeError("Locust parsed no options for the knee shape")
        return options

    def _snapshot(self) -> tuple[float, dict[int, int], int, int]:
        total = self._runner().stats.total
        return (
            time.perf_counter(),
            dict(total.response_times),
            total.num_requests,
            total.num_failures,
        )

    def _close_step(self, users: int, objective: slo.SLO) -> Step | None:
        if self._start is None:
            return None  # the step never settled (the run is ending)
        (t0, times0, n0, f0), (t1, times1, n1, f1) = self._start, self._snapshot()
        window = _Window("step", n1 - n0, f1 - f0, diff_response_time_dicts(times1, times0))
        seconds = t1 - t0
        step = Step(
            users=users,
            seconds=round(seconds, 1),
            requests=window.num_requests,
            failures=window.num_failures,
            rps=round(window.num_requests / seconds, 1) if seconds > 0 else 0.0,
            p50_ms=window.get_response_time_percentile(0.5),
            p95_ms=window.get_response_time_percentile(0.95),
            p99_ms=window.get_response_time_percentile(0.99),
            max_ms=max(window.response_times, default=0),  # Locust's rounded buckets
            missed=slo.violations([window], objective) if window.num_requests else ["no requests"],
        )
        log.info(
            "step %d users: %.1f req/s, p50 %g ms, p95 %g ms, p99 %g ms, %d failures%s",
            step.users,
            step.rps,
            step.p50_ms,
            step.p95_ms,
            step.p99_ms,
            step.failures,
            f" -> SLO missed ({'; '.join(step.missed)})" if step.missed else "",
        )
        self.steps.append(step)
        return step

    def tick(self) -> tuple[int, float] | None:
        options = self._options()
        objective = slo.SLO(p95_ms=options.slo_p95_ms, p99_ms=options.slo_p99_ms)
        run_time = self.get_run_time()
        step = int(run_time // options.step_seconds)
        if step != self._step:
            if self._step >= 0:
                closed = self._close_step(options.step_users * (self._step + 1), objective)
                if closed is not None and closed.missed:
                    return None  # past the knee
            if options.step_users * (step + 1) > options.max_users:
                return None
            self._step, self._start = step, None
        settle = min(3.0, options.step_seconds / 3)
        if self._start is None and run_time - step * options.step_seconds >= settle:
            self._start = self._snapshot()
        return options.step_users * (step + 1), float(options.step_users)

    def best(self) -> Step | None:
        """The step with the highest request rate among those that met the SLO."""
        within = [s for s in self.steps if not s.missed]
        return max(within, key=lambda s: s.rps) if within else None


@events.quitting.add_listener
def _report(environment, **_kwargs) -> None:
    shape = environment.shape_class
    if isinstance(environment.runner, WorkerRunner) or not isinstance(shape, StepToKnee):
        return
    options = environment.parsed_options
    best = shape.best()
    knee_found = any(s.missed for s in shape.steps)
    report = {
        "slo": {"p95_ms": options.slo_p95_ms, "p99_ms": options.slo_p99_ms, "max_failures": 0},
        "step_users": options.step_users,
        "step_seconds": options.step_seconds,
        "max_users": options.max_users,
        "best": asdict(best) if best else None,
        "knee_reached": knee_found,
        "steps": [asdict(s) for s in shape.steps],
    }
    path = Path(options.knee_report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if best is None:
        log.error("no step met the SLO; even %d users are too many (%s)", options.step_users, path)
        environment.process_exit_code = 1
        return
    log.info(
        "highest sustained rate within the SLO: %.1f req/s at %d users (p99 %g ms)%s; %s",
        best.rps,
        best.users,
        best.p99_ms,
        "" if knee_found else f", knee not reached by {options.max_users} users",
        path,
    )
    environment.process_exit_code = 0
