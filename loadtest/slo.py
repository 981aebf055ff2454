"""The service-level objectives every load run is judged by: defined here and nowhere else.

A run misses its SLO when any request failed, or when the 95th or 99th percentile latency of
any endpoint (or of all requests together) is above its threshold. ``make loadtest`` exits
non-zero then; ``make knee`` looks for the highest request rate that still meets it. The
thresholds can be changed per run (``--slo-p95-ms``, ``--slo-p99-ms``), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SLO:
    """Latency ceilings (ms) and the number of failed requests a run may have."""

    # A recommendation row is one call of a page render: 50 ms at p95 keeps it invisible,
    # 100 ms at p99 bounds the slow tail a user would notice.
    p95_ms: float = 50.0
    p99_ms: float = 100.0
    max_failures: int = 0  # a failed request (error status or malformed answer) is a bug


DEFAULT = SLO()


class LatencyStats(Protocol):
    """What is read of a Locust ``StatsEntry`` (so this module needs no Locust)."""

    name: str
    num_requests: int
    num_failures: int

    def get_response_time_percentile(self, percent: float) -> float: ...


def violations(entries: list[LatencyStats], slo: SLO = DEFAULT) -> list[str]:
    """One line per missed objective, for each stats entry (an endpoint, or the total)."""
    missed = []
    for entry in entries:
        name = entry.name or "all requests"
        if entry.num_failures > slo.max_failures:
            missed.append(f"{name}: {entry.num_failures} failed requests (max {slo.max_failures})")
        if not entry.num_requests:
            continue
        for percent, limit in ((0.95, slo.p95_ms), (0.99, slo.p99_ms)):
            value = entry.get_response_time_percentile(percent)
            if value > limit:
                missed.append(f"{name}: p{percent * 100:g} {value:.0f} ms > {limit:g} ms")
    return missed
