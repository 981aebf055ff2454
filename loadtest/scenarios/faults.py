"""Fault scenario: kill a model worker while Locust loads the server, measure the recovery.

    python -m loadtest.scenarios.faults    # 8 users, 40 s, one worker killed at 10 s
    make faults                            # the same

Starts a private TorchServe (free ports, see :mod:`loadtest.server`) serving
``model_store/movierec.mar``, runs the Locust mix against it, SIGKILLs one of its Python
workers mid-run, and reports: how long until TorchServe had a replacement worker ready
(polled on the management API every 50 ms), how many requests failed, and why. Only requests
that were inside the killed worker may fail (TorchServe answers them 500 "Worker died"); the
run exits 1 if anything else failed or the server did not recover. Bounded in time.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from loadtest import run
from loadtest.server import ServerError, endpoints, local_torchserve

log = logging.getLogger("loadtest.scenarios.faults")


def main(argv: list[str] | None = None) -> int:
    p = run.parser("python -m loadtest.scenarios.faults", __doc__)
    run.load_options(p, duration_s=40)
    p.add_argument("--kill-after", type=float, default=10.0, help="seconds into the load")
    args = p.parse_args(argv)
    mar = run.find_archive(args.mar)
    if mar is None:
        return 1
    prefix = Path(args.report_dir) / "fault-worker-kill"
    try:
        with local_torchserve(mar.parent, *endpoints(mar)) as server:
            before = server.describe()["workers"]
            locust = run.locust_thread(server, mar, prefix, args.users, args.duration)
            locust.start()
            time.sleep(args.kill_after)
            victim = server.worker_pids()[0]
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            log.info("killed worker pid %d", victim)
            recovered = None
            while time.monotonic() - killed_at < args.duration:
                workers = server.describe()["workers"]
                ready = [w for w in workers if w["status"] == "READY" and w["pid"] != victim]
                if len(ready) >= len(before):
                    recovered = time.monotonic() - killed_at
                    break
                time.sleep(0.05)
            locust.join()
    except ServerError as exc:
        log.error("%s", exc)
        return 1
    count = run.totals(prefix)
    failed = run.failures(prefix)
    other = [
        f for f in failed if "500" not in f.get("Error", "") and "died" not in f.get("Error", "")
    ]
    print(
        f"worker pid {victim} killed {args.kill_after:.0f} s into {args.duration} s of load "
        f"from {args.users} users"
    )
    print(
        f"replacement worker ready after: "
        f"{f'{recovered:.2f} s' if recovered is not None else 'never (within the run)'}"
    )
    print(f"requests: {count.requests}, failed: {count.failures}")
    for line in run.failure_lines(failed):
        print(line)
    return 0 if recovered is not None and not other else 1


if __name__ == "__main__":
    sys.exit(main())
