"""Locust load test of movierec: one user class per endpoint kind, in a realistic mix.

    make loadtest                                    # headless, SLO-judged (see README)
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080      # web UI on :8089

The request bodies, the id sampling (the archive's own vocabulary, weighted by popularity) and
the checks of each answer live in :mod:`loadtest.traffic`; this file adapts them to Locust.
Settings from the environment: ``MOVIEREC_MAR`` (the archive to sample ids from, default
model_store/movierec.mar), ``MOVIEREC_KEY_FILE`` (TorchServe's key_file.json, default
./key_file.json), ``MOVIEREC_MODEL`` (the interactive registration, default movierec),
``MOVIEREC_ECHO=1`` (expect the benchmark's echo handler), ``MOVIEREC_BULK=1`` (add the bulk
clients, :data:`traffic.BULK_ENDPOINTS`, which send to /predictions/movierec-bulk, or to
``MOVIEREC_BULK_MODEL``). A user sends
as fast as answers come (``--user-rps 0``, a closed loop) or paced at ``--user-rps`` requests
per second.

Keys expire and are renewed (``python -m client.keys``); the old key is refused at once. A user
whose token is refused re-reads key_file.json and sends the request again, once: the refused
attempt is recorded as a success under the name :data:`traffic.TOKEN_REFRESHED` (so a run shows how
often it happened), the retry under the endpoint's own name and judged as usual.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# Locust puts only the locustfile's own folder on sys.path; the project's packages sit above it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent
import numpy as np
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import WorkerRunner

from client import ClientError, fresh_token, read_token
from loadtest import slo, traffic

log = logging.getLogger("loadtest")

MAR = os.environ.get("MOVIEREC_MAR", "model_store/movierec.mar")
MODEL = os.environ.get("MOVIEREC_MODEL", "movierec")
ECHO = os.environ.get("MOVIEREC_ECHO", "") == "1"
BULK = os.environ.get("MOVIEREC_BULK", "") == "1"
BULK_MODEL = os.environ.get("MOVIEREC_BULK_MODEL", "")  # default: each bulk endpoint's own
CATALOGUE = traffic.Catalogue.from_mar(MAR)
# gevent's clock was read before this file's imports and the archive's loading (seconds on a
# busy machine); Locust starts its --run-time timer from that stale clock, so a run ended that
# much early (a 75 s run stopped after 60 s). Read the clock again.
gevent.get_hub().loop.update_now()
_user_numbers = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("movierec")
    group.add_argument("--slo-p95-ms", type=float, default=slo.DEFAULT.p95_ms)
    group.add_argument("--slo-p99-ms", type=float, default=slo.DEFAULT.p99_ms)
    group.add_argument(
        "--user-rps", type=float, default=0.0, help="requests/s per user; 0: no pause"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the id sampling")


def _token_refused(response) -> bool:
    # TorchServe 0.12 answers a missing, wrong or expired token with 400 InvalidKeyException.
    return response.status_code == 400 and b"InvalidKeyException" in (response.content or b"")


class MovieRecUser(FastHttpUser):
    """Sends one endpoint's requests with the bearer token and judges every answer."""

    abstract = True
    endpoint: type[traffic.Endpoint]

    def on_start(self) -> None:
        # Read per user, not once at import: a restarted server writes new keys.
        self.headers = {"Authorization": f"Bearer {read_token('inference')}"}
        options = self.environment.parsed_options
        self.rng = np.random.default_rng([options.seed, next(_user_numbers)])
        self.call = self.endpoint(CATALOGUE)
        # Large bodies are drawn and encoded once, then sent in turn.
        drawn = (self.call.body(self.rng) for _ in range(self.call.pool))
        pooled: list[tuple[dict, str] | None] = [(b, json.dumps(b)) for b in drawn]
        self.pool = itertools.cycle(pooled or [None])
        interactive = self.call.model == "movierec"
        self.path = f"/predictions/{MODEL if interactive else BULK_MODEL or self.call.model}"
        self._wait = constant_throughput(options.user_rps) if options.user_rps > 0 else constant(0)

    def wait_time(self) -> float:
        return self._wait(self)

    @task
    def request(self) -> None:
        pooled = next(self.pool)
        body, encoded = pooled if pooled else (self.call.body(self.rng), None)
        with self._post(body, encoded) as response:
            if _token_refused(response):
                # Expired or renewed: take the key file's new key and send the request again.
                response.request_meta["name"] = traffic.TOKEN_REFRESHED
                response.success()
                stale = self.headers["Authorization"].removeprefix("Bearer ")
                try:
                    self.headers = {"Authorization": f"Bearer {fresh_token(stale)}"}
                except ClientError as exc:  # no key file: the retry fails and says so
                    log.error("%s", exc)
                retry = True
            else:
                retry = False
                self._judge(body, response)
        if retry:
            with self._post(body, encoded) as response:
                self._judge(body, response)

    def _post(self, body: dict, encoded: str | None = None):
        """The request (``encoded``: ``body`` already as JSON), its response to be marked
        by the caller (``with``)."""
        if encoded is None:
            return self.client.post(
                self.path, json=body, headers=self.headers, name=self.call.name, catch_response=True
            )
        headers = {**self.headers, "Content-Type": "application/json"}
        return self.client.post(
            self.path, data=encoded, headers=headers, name=self.call.name, catch_response=True
        )

    def _judge(self, body: dict, response) -> None:
        """Mark a response failed unless it is a 200 with the right answer to ``body``."""
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}: {(response.text or '')[:120]}")
            return
        try:
            answer = json.loads(response.content)
        except (TypeError, ValueError) as exc:
            response.failure(f"not JSON: {exc}")
            return
        problem = traffic.check_echo(body, answer) if ECHO else self.call.check(body, answer)
        if problem:
            response.failure(problem)


def _user_class(endpoint: type[traffic.Endpoint]) -> type[MovieRecUser]:
    """A user class named after ``endpoint`` that sends its requests, weighted by its share."""
    namespace = {"endpoint": endpoint, "weight": endpoint.share, "__module__": __name__}
    metaclass: Any = type(MovieRecUser)  # Locust's user metaclass, which registers the class
    made: type[MovieRecUser] = metaclass(endpoint.__name__, (MovieRecUser,), namespace)
    return made


# Locust takes its user classes from this module's names: one per endpoint of the mix, named
# after it (`locust ... TopK` runs those alone; the smoke test relies on the names).
globals().update(
    {e.__name__: _user_class(e) for e in traffic.ENDPOINTS + (traffic.BULK_ENDPOINTS * BULK)}
)


@events.quitting.add_listener
def _judge_slo(environment, **_kwargs) -> None:
    """Exit non-zero when the run missed its SLO (the master or a local runner decides)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    if getattr(environment.shape_class, "judges_its_own_run", False):
        return  # a knee search exceeds the SLO on purpose; it sets its own exit code
    options = environment.parsed_options
    objective = slo.SLO(p95_ms=options.slo_p95_ms, p99_ms=options.slo_p99_ms)
    stats = environment.stats
    missed = slo.violations([*stats.entries.values(), stats.total], objective)
    for line in missed:
        log.error("SLO missed: %s", line)
    if missed:
        environment.process_exit_code = 1
    else:
        log.info(
            "SLO met: p95 <= %g ms, p99 <= %g ms, no failures", objective.p95_ms, objective.p99_ms
        )
