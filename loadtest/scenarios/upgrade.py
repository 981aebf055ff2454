"""Model upgrade under load: bring in a new version, make it the default, roll back.

    python -m loadtest.scenarios.upgrade           # make upgrade: registered live; 8 users, 60 s
    python -m loadtest.scenarios.upgrade --staged  # both versions loaded at start, model API off

While the Locust mix runs against a private TorchServe (free loopback ports, token on, see
:mod:`loadtest.server`), a probe thread sends one rating request every 20 ms and records
which model version answered. The scenario then:

1. brings in the new version: ``POST /models?url=movierec-next.mar&synchronous=false`` on the
   management API, then waits until its workers are READY (``runtime``; needs
   ``enable_model_api=true`` for that server), or finds it
   already loaded next to the old one (``--staged``: ``load_models`` names both archives, and
   the model API stays off as in ``config.properties``);
2. makes it the default: ``PUT /models/movierec/NEW/set-default``;
3. rolls back: ``PUT /models/movierec/OLD/set-default``;
4. unregisters the new version (``runtime`` only): ``DELETE /models/movierec/NEW``.

It prints how long each step took, when the probe first and last saw each version, and every
failed request; the exit status is 1 if any request failed (the target is zero) or a step was
refused. The new version is the same trained artifact archived under another version string
unless ``--new-mar`` names another archive, which must serve the same ids.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from loadtest import run
from loadtest.server import BULK_MODEL, REPO, ServerError, endpoints, local_torchserve, wait_ready
from loadtest.traffic import Catalogue, SingleRating
from train.archive import build

log = logging.getLogger("loadtest.scenarios.upgrade")

NEXT = "movierec-next.mar"


def mar_version(path: str | Path) -> str:
    """The model version recorded in a ``.mar``'s manifest."""
    with zipfile.ZipFile(path) as mar:
        return json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["modelVersion"]


def call(method: str, url: str, token: str, timeout: float = 300.0) -> tuple[int, str]:
    """One management call; returns (status, body) instead of raising on 4xx/5xx."""
    request = urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@dataclass
class Probe:
    """Sends single-rating requests in a loop and records who answered, until stopped."""

    url: str
    token: str
    catalogue: Catalogue
    interval: float = 0.02
    answers: list[tuple[float, str]] = field(default_factory=list)  # (time, version)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = np.random.default_rng(0)
        endpoint = SingleRating(self.catalogue)
        while not self._stop.is_set():
            body = endpoint.body(rng)
            request = urllib.request.Request(
                f"{self.url}/predictions/movierec",
                data=json.dumps(body).encode(),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                problem = endpoint.check(body, answer)
                if problem:
                    self.errors.append(problem)
                else:
                    self.answers.append((time.monotonic(), answer["model"]["version"]))
            except (OSError, ValueError, KeyError) as exc:  # HTTPError is an OSError
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def seen(
        self, version: str, since: float, until: float = float("inf")
    ) -> tuple[float | None, float | None]:
        """Seconds after ``since`` of the first and the last answer from ``version`` before
        ``until``."""
        times = [t - since for t, v in self.answers if v == version and since <= t < until]
        return (min(times), max(times)) if times else (None, None)


def main(argv: list[str] | None = None) -> int:
    p = run.parser("python -m loadtest.scenarios.upgrade", __doc__, mar_help="serving now")
    run.load_options(p, duration_s=60)
    p.add_argument("--new-mar", help="the new version (default: --artifact archived anew)")
    p.add_argument("--artifact", default=str(REPO / "artifacts" / "ml-100k"))
    p.add_argument("--new-version", help="version of the rebuilt archive (default: OLD-next)")
    p.add_argument("--staged", action="store_true", help="load both at start, model API off")
    p.add_argument("--settle", type=float, default=8.0, help="seconds between steps")
    args = p.parse_args(argv)

    mar = run.find_archive(args.mar)
    if mar is None:
        return 1
    old = mar_version(mar)
    with tempfile.TemporaryDirectory(prefix="movierec-upgrade-") as tmp:
        store = Path(tmp) / "model_store"
        store.mkdir()
        shutil.copy2(mar, store / "movierec.mar")
        # The bulk endpoint, when built beside, serves on through the upgrade as it would.
        names, loaded = endpoints(mar)
        if BULK_MODEL in names:
            shutil.copy2(mar.parent / f"{BULK_MODEL}.mar", store / f"{BULK_MODEL}.mar")
        loaded = loaded.replace(mar.name, "movierec.mar")
        names = ["movierec", *names[1:]]
        if args.new_mar:
            shutil.copy2(args.new_mar, store / NEXT)
        else:
            new_version = args.new_version or f"{old}-next"
            build(args.artifact, Path(tmp) / "build", version=new_version)
            shutil.move(Path(tmp) / "build" / "movierec.mar", store / NEXT)
        new = mar_version(store / NEXT)
        if new == old:
            log.error("the new archive has the same version as the old one (%s)", old)
            return 1
        load = f"{loaded},{NEXT}" if args.staged else loaded
        mode = "staged" if args.staged else "runtime"
        prefix = Path(args.report_dir) / f"upgrade-{mode}"
        steps: list[tuple[str, int, float, float]] = []  # (step, status, at, took)
        try:
            api = {"enable_model_api": "false" if args.staged else "true"}
            with local_torchserve(store, names, load_models=load, settings=api) as server:
                steps, probe, start = run_scenario(args, server, store, old, new, prefix)
        except ServerError as exc:
            log.error("%s", exc)
            return 1
    return report(args, mode, old, new, steps, probe, start, prefix)


def run_scenario(args, server, store: Path, old: str, new: str, prefix: Path):
    """Load the server, step through the upgrade and the rollback, return what happened."""
    token = server.token("management")
    models = f"{server.management_url}/models"
    probe = Probe(server.url, server.token(), Catalogue.from_mar(store / "movierec.mar"))
    locust = run.locust_thread(server, store / "movierec.mar", prefix, args.users, args.duration)
    prober = threading.Thread(target=probe.run)
    start = time.monotonic()
    locust.start()
    prober.start()
    steps = []

    def step(name: str, method: str, url: str, ready: str | None = None) -> bool:
        time.sleep(args.settle)
        at = time.monotonic()
        status, body = call(method, url, token)
        if status in (200, 202) and ready is not None:
            try:  # its workers up: /models/movierec/VERSION describes that version
                wait_ready(server, [ready], timeout=300)
                status = 200
            except ServerError as exc:
                status, body = 504, str(exc)
        steps.append((name, status, at - start, time.monotonic() - at))
        log.info("%s: %d %s (%.2f s)", name, status, body.strip()[:120], time.monotonic() - at)
        return status == 200

    try:
        # Asynchronously: a synchronous registration holds one of the frontend's network
        # threads until the new workers are up, stalling every connection that thread serves.
        register = f"{models}?url={NEXT}&synchronous=false"
        ok = args.staged or step("register", "POST", register, ready=f"movierec/{new}")
        ok = ok and step(f"set-default {new}", "PUT", f"{models}/movierec/{new}/set-default")
        ok = ok and step(f"roll back to {old}", "PUT", f"{models}/movierec/{old}/set-default")
        if ok and not args.staged:
            step(f"unregister {new}", "DELETE", f"{models}/movierec/{new}")
    finally:
        locust.join()
        probe.stop()
        prober.join()
    if time.monotonic() - start > args.duration + 5:
        log.warning("the steps outlasted the load: raise --duration to cover them")
    return steps, probe, start


def report(args, mode, old, new, steps, probe: Probe, start: float, prefix: Path) -> int:
    count = run.totals(prefix)
    print(
        f"model upgrade under load ({mode}): {old} -> {new} -> {old}, {args.users} users, "
        f"{args.duration} s"
    )
    for name, status, at, took in steps:
        print(f"  {at:5.1f} s  {name}: HTTP {status} in {took:.2f} s")
    switches = [(s[0], s[2]) for s in steps if s[0].startswith(("set-default", "roll back"))]
    ends = [at for _, at in switches[1:]] + [float("inf")]
    for (name, at), end, version, previous in zip(switches, ends, (new, old), (old, new)):
        first, _ = probe.seen(version, start + at, start + end)
        _, last = probe.seen(previous, start + at, start + end)
        print(
            f"  after {name}: first {version} answer "
            f"{'never' if first is None else f'{first * 1000:.0f} ms'} later, last {previous} "
            f"answer {'none' if last is None else f'{last * 1000:.0f} ms'} later"
        )
    print(
        f"locust requests: {count.requests}, failed: {count.failures}, "
        f"p99 {count.p99_ms:.0f} ms, slowest {count.max_ms:.0f} ms"
    )
    for line in run.failure_lines(run.failures(prefix)):
        print(line)
    versions = {v: sum(a == v for _, a in probe.answers) for v in (old, new)}
    print(
        f"probe requests: {len(probe.answers) + len(probe.errors)}, answered by {versions}, "
        f"failed: {len(probe.errors)}"
    )
    for e in probe.errors[:10]:
        print(f"  {e[:160]}")
    refused = [s for s in steps if s[1] != 200]
    done = len(steps) == (2 if args.staged else 4) and not refused
    return 0 if done and count.failures == 0 and not probe.errors else 1


if __name__ == "__main__":
    sys.exit(main())
