"""movierec's own metrics, sent through TorchServe's metrics API (``context.metrics``).

Per batch, :func:`record` adds to three counters, declared in ``metrics.yaml`` (TorchServe 0.12
shows undeclared ones nowhere):

    movierec_requests{kind, status}         requests answered
    movierec_client_errors{field, status}   400 and 404 answers, by the field at fault
    movierec_handler_ms{kind}               handler milliseconds, summed over requests

This module only records: what each request was (its kind, status and the label of the field at
fault) and how long each kind took come from :class:`handler.answering.Batch`. Kinds: rating,
pairs, top_k, new_user, similar, chart, search, fallback (a top_k answered with popular movies)
and invalid (no kind recognised). Labels come from fixed sets only (a field name a client made
up is counted as ``other``), so clients cannot grow the label set.

TorchServe carries metrics from the worker to the frontend as log lines, one per counter and
label set, which both sides pay for: at every small batch they cost more than the batch itself.
So a :class:`Recorder` adds batches up and sends the sums once a second (the handler setting
``metrics_interval_s``; 0 sends at every batch, as :func:`record` does), from a thread of its
own, so counts also arrive when traffic stops. A worker that dies takes at most that second's
counts with it. Nothing here fails a batch: a metrics error is logged and the answers go out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


Requests = Sequence[tuple[str, int, str | None]]  # kind, status, error field label per request


@dataclass
class Counts:
    """What batches counted: requests by (kind, status), 4xx answers by (field, status), and
    handler milliseconds by kind."""

    answered: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[tuple[str, int]] = field(default_factory=Counter)
    ms: dict[str, float] = field(default_factory=dict)

    def add(self, requests: Requests, ms: Mapping[str, float]) -> None:
        """Add one batch: each request's kind, status and error field label (None unless
        4xx), and the milliseconds per kind, charged to each of its requests."""
        for kind, status, label in requests:
            self.answered[(kind, status)] += 1
            if label is not None:
                self.errors[(label, status)] += 1
            self.ms[kind] = self.ms.get(kind, 0.0) + ms[kind]

    def __bool__(self) -> bool:
        return bool(self.answered)


def record(metrics: Any, requests: Requests, ms: Mapping[str, float]) -> None:
    """Send one batch's counts to ``metrics`` (TorchServe's ``context.metrics``; None outside a
    server) at once; see :class:`Counts` for the arguments."""
    counts = Counts()
    counts.add(requests, ms)
    send(metrics, counts)


def send(metrics: Any, counts: Counts) -> None:
    """Add ``counts`` to the counters of ``metrics``: one log line per counter and label set."""
    if metrics is None or not counts:
        return
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    counter = MetricTypes.COUNTER
    try:
        for (kind, status), n in counts.answered.items():
            dims = [Dimension("kind", kind), Dimension("status", str(status))]
            metrics.add_metric("movierec_requests", n, "count", None, dims, counter)
        for (label, status), n in counts.errors.items():
            dims = [Dimension("field", label), Dimension("status", str(status))]
            metrics.add_metric("movierec_client_errors", n, "count", None, dims, counter)
        for kind, total in counts.ms.items():
            dims = [Dimension("kind", kind)]
            metrics.add_metric("movierec_handler_ms", round(total, 3), "ms", None, dims, counter)
    except Exception:  # metrics are best effort: never fail the batch over them
        log.exception("movierec metrics not recorded")


class Recorder:
    """Adds batches' counts up and sends them every ``interval`` seconds from a daemon thread
    (started by the first batch); ``interval`` 0 sends at every batch."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._lock = threading.Lock()
        self._pending = Counts()
        self._metrics: Any = None
        self._thread: threading.Thread | None = None

    def add(self, metrics: Any, requests: Requests, ms: Mapping[str, float]) -> None:
        """Count one batch for ``metrics`` (TorchServe's ``context.metrics``; None: nothing)."""
        if metrics is None:
            return
        if self._metrics is not None and metrics is not self._metrics:
            self.flush()  # what was counted for another metrics object goes there first
        with self._lock:
            self._metrics = metrics
            self._pending.add(requests, ms)
        if self.interval <= 0:
            self.flush()
        elif self._thread is None:
            self._thread = threading.Thread(target=self._run, name="movierec-metrics", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        """Send what has been counted since the last flush."""
        with self._lock:
            pending, self._pending = self._pending, Counts()
            metrics = self._metrics
        send(metrics, pending)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()
