"""Interactive requests beside bulk work: isolation, load shedding and recovery, measured.

    make isolation        # = python -m loadtest.scenarios.isolation --mar model_store/movierec.mar

One private TorchServe on free ports serves both archives ``make archive`` builds, with the
shipped config.properties: ``movierec`` (interactive) and ``movierec-bulk`` (large requests; see
docs/operations.md, "Interactive and bulk"). Headless Locust runs, closed-loop users without
pauses, in this order:

1. ``--rounds`` rounds of three phases of ``--phase`` seconds each: *light alone* (``--light``
   users sending single ratings to /predictions/movierec), *heavy alone* (``--heavy`` users
   sending 10,000 pairs or a new user with 1,000 ratings to /predictions/movierec-bulk, half
   each) and *together* (both at once, as two Locust processes started together);
2. the *knee*: light users stepped through ``--knee-steps``, ``--step`` seconds each; the knee is
   the step with the most requests per second within the SLO (``make knee``'s definition);
3. *overload*: ``--overload`` times the knee's users, light only. Locust counts every status:
   anything but a 200 or a 503 (another status, a timeout, a dropped connection) is an error,
   and an accepted request that never got its answer shows up as one. The server's metrics
   must count the 503s (``Requests5XX``). Users finish their request in flight when the phase
   ends (``--stop-timeout``);
4. *recovery*: light alone again, straight after.

With ``--shared`` (the default), one more round measures the design this replaces: one
registration for everything (the interactive archive's settings with the bulk endpoint's size
limits), the heavy users sending to it; light alone, then together.

Writes ``--out`` (reports/isolation.md), its ``.json`` and a ``.png`` plot beside it, and
Locust's own CSV and HTML under ``--report-dir``. Exits 1 when a target is missed.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from loadtest import report, slo
from loadtest.run import Figures, failures, find_archive, run_locust, totals
from loadtest.server import (
    BULK_MODEL,
    REPO,
    Server,
    ServerError,
    endpoints,
    local_torchserve,
)
from model import console
from train import archive

log = logging.getLogger("loadtest.scenarios.isolation")

LIGHT = ["SingleRating"]  # Locust user classes (loadtest/locustfile.py)
HEAVY = ["BulkPairs", "BulkNewUser"]
# Targets: the light clients beside the heavy ones, as a share of the light clients alone.
TARGET_LIGHT_RPS = 0.70  # at least this share of their throughput
TARGET_LIGHT_P99 = 2.5  # at most this multiple of their p99
TARGET_HEAVY_RPS = 0.50  # the heavy clients keep at least this share of theirs
TARGET_OVERLOAD_MAX_MS = 1000.0  # every response under overload within this


@dataclass(kw_only=True)
class Group(Figures):
    """One Locust process's figures in one phase, and the statuses of its failures."""

    users: int
    statuses: dict[str, int] = field(default_factory=dict)  # "503" or "other" -> count


@dataclass
class Phase:
    """A stretch of load: its name, round, and the figures of each group of users."""

    name: str
    round: int
    groups: dict[str, Group]
    server: dict[str, float] = field(default_factory=dict)  # counters moved meanwhile


def _statuses(prefix: Path) -> dict[str, int]:
    """Failures by kind: ``"503"`` (refused at once) or ``"other"`` (anything else)."""
    out: Counter = Counter()
    for row in failures(prefix):
        # Locust wraps the message: "CatchResponseError('HTTP 503: ...')".
        status = re.search(r"HTTP (\d{3})", row["Error"])
        kind = "503" if status and status[1] == "503" else "other"
        out[kind] += int(row["Occurrences"])
    return dict(out)


def run_phase(
    server: Server,
    mar: Path,
    prefix: Path,
    groups: dict[str, tuple[list[str], int]],
    seconds: int,
    stop_timeout: int,
    bulk_model: str = BULK_MODEL,
) -> dict[str, Group]:
    """Run one Locust process per group (``name -> (user classes, users)``), all started
    together for ``seconds``, bulk requests sent to ``bulk_model``; figures by group name."""
    threads = []
    for name, (classes, users) in groups.items():
        extra = [*classes, "--slo-p95-ms", "inf", "--slo-p99-ms", "inf"]
        extra += ["--stop-timeout", str(stop_timeout)]
        kwargs = dict(
            host=server.url,
            key_file=server.key_file,
            mar=mar,
            report_prefix=Path(f"{prefix}-{name}"),
            users=users,
            spawn_rate=users,
            duration=f"{seconds}s",
            extra=extra,
            env={"MOVIEREC_BULK": "1", "MOVIEREC_BULK_MODEL": bulk_model},
        )
        threads.append(threading.Thread(target=run_locust, kwargs=kwargs))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {}
    for name, (_, users) in groups.items():
        group_prefix = Path(f"{prefix}-{name}")
        figures = totals(group_prefix)
        out[name] = Group(**asdict(figures), users=users, statuses=_statuses(group_prefix))
    return out


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")


def counters(server: Server) -> dict[str, float]:
    """The server's counter that judges an overload: the frontend's 5xx answers
    (``Requests5XX``, where a full job queue's 503s are counted)."""
    import urllib.request

    with urllib.request.urlopen(f"{server.metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {"frontend_5xx": 0.0}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match[1] == "Requests5XX":
            out["frontend_5xx"] += float(match[3])
    return out


def settled_counters(server: Server, previous: dict[str, float] | None = None) -> dict[str, float]:
    """:func:`counters` once they stop moving: the workers send their metrics as log lines,
    which the frontend reads a little later."""
    last = counters(server)
    for _ in range(20):
        time.sleep(1.0)
        now = counters(server)
        if now == last:
            return now
        last = now
    return last


def knee(results: list[tuple[int, Group]]) -> int:
    """The knee, as ``make knee`` defines it: the users of the step with the most requests per
    second among those within the SLO (loadtest/slo.py: no failure, p95 and p99 under their
    limits); the fewest users stepped when none is."""
    within = [
        (g.rps, -users)
        for users, g in results
        if not g.failures and g.p95_ms <= slo.DEFAULT.p95_ms and g.p99_ms <= slo.DEFAULT.p99_ms
    ]
    return -max(within)[1] if within else min(users for users, _ in results)


def shared_archive(artifact_dir: Path, out: Path) -> Path:
    """The design this replaces: one registration named movierec with the interactive
    settings and the bulk endpoint's size limits, so every request shares one queue."""
    config = yaml.safe_load(archive.MODEL_CONFIG.read_text())
    bulk = yaml.safe_load(archive.BULK_CONFIG.read_text())["handler"]
    config["handler"] |= {"max_pairs": bulk["max_pairs"], "max_ratings": bulk["max_ratings"]}
    config["handler"].pop("bulk_model", None)
    path = out / "shared-model-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return archive.build(artifact_dir, out / "shared", config_file=path)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def judge(phases: list[Phase]) -> dict:
    """Per round, the light and heavy clients together as a share of alone; the overload and
    recovery checks; every target with its verdict."""
    rounds = sorted({p.round for p in phases if p.name == "light alone"})
    by = {(p.name, p.round): p for p in phases}
    per_round = []
    for r in rounds:
        alone, heavy, both = by[("light alone", r)], by[("heavy alone", r)], by[("together", r)]
        per_round.append(
            {
                "round": r,
                "light_rps": _ratio(both.groups["light"].rps, alone.groups["light"].rps),
                "light_p99": _ratio(both.groups["light"].p99_ms, alone.groups["light"].p99_ms),
                "heavy_rps": _ratio(both.groups["heavy"].rps, heavy.groups["heavy"].rps),
            }
        )
    medians = {
        key: statistics.median(r[key] for r in per_round)
        for key in ("light_rps", "light_p99", "heavy_rps")
    }
    targets = [
        {
            "target": f"light clients beside heavy keep >= {TARGET_LIGHT_RPS:.0%} of their req/s",
            "measured": f"{medians['light_rps']:.0%}",
            "met": medians["light_rps"] >= TARGET_LIGHT_RPS,
        },
        {
            "target": f"light clients' p99 beside heavy <= {TARGET_LIGHT_P99:g}x alone",
            "measured": f"{medians['light_p99']:.2f}x",
            "met": medians["light_p99"] <= TARGET_LIGHT_P99,
        },
        {
            "target": f"heavy clients beside light keep >= {TARGET_HEAVY_RPS:.0%} of their req/s",
            "measured": f"{medians['heavy_rps']:.0%}",
            "met": medians["heavy_rps"] >= TARGET_HEAVY_RPS,
        },
    ]
    overload = by.get(("overload", 0))
    if overload:
        g = overload.groups["light"]
        refused, other = g.statuses.get("503", 0), g.statuses.get("other", 0)
        counted = round(overload.server.get("frontend_5xx", 0))
        targets += [
            {
                "target": f"overload: every response within {TARGET_OVERLOAD_MAX_MS:g} ms",
                "measured": f"slowest {g.max_ms:.0f} ms",
                "met": g.max_ms <= TARGET_OVERLOAD_MAX_MS,
            },
            {
                "target": "overload: failures only 503; no other error, no timeout, no dropped "
                "connection (nothing accepted is lost)",
                "measured": f"{refused:,} x 503, {other} other",
                "met": other == 0,
            },
            {
                "target": "overload: the 503s are counted in metrics (Requests5XX)",
                "measured": f"{counted:,} counted, {refused:,} seen by Locust",
                "met": counted >= refused,
            },
        ]
    recovery = by.get(("recovery", 0))
    before = [by[("light alone", r)] for r in rounds]
    if recovery:
        base_rps = statistics.median(p.groups["light"].rps for p in before)
        base_p99 = statistics.median(p.groups["light"].p99_ms for p in before)
        g = recovery.groups["light"]
        ok = (
            g.rps >= TARGET_LIGHT_RPS * base_rps
            and g.p99_ms <= TARGET_LIGHT_P99 * base_p99
            and not g.failures
        )
        targets.append(
            {
                "target": "recovers by itself: light alone after the overload as light alone "
                f"before (>= {TARGET_LIGHT_RPS:.0%} req/s, p99 <= {TARGET_LIGHT_P99:g}x, "
                "no failures)",
                "measured": f"{_ratio(g.rps, base_rps):.0%} req/s, "
                f"p99 {_ratio(g.p99_ms, base_p99):.2f}x, {g.failures} failed",
                "met": ok,
            }
        )
    return {"per_round": per_round, "medians": medians, "targets": targets}


def markdown(run: dict, phases: list[Phase], verdict: dict) -> str:
    """reports/isolation.md: what ran, every phase's figures, the ratios and the targets."""
    c = run["context"]
    v = c["versions"]
    lines = [
        "# Interactive beside bulk: isolation, overload and recovery",
        "",
        f"- Run: {c['date']}, {run['minutes']:.1f} min, commit {c['commit']}",
        f"- Command: `make isolation` = `.venv/bin/{run['command']}`",
        f"- Machine: {c['cpu']}, {c['logical_cpus']} logical CPUs, {c['memory_gib']:.0f} GiB "
        f"RAM, {c['os']}; load average (1/5/15 min) {run['load_before']} before, "
        f"{run['load_after']} after",
        f"- Software: Python {v['python']}, torch {v['torch']}, torchserve {v['torchserve']}, "
        f"locust {v['locust']}, {v['java']}",
        "- Serving: config.properties as shipped; movierec.mar (handler/model-config.yaml) and "
        "movierec-bulk.mar (handler/model-config-bulk.yaml) from one artifact. Locust runs on "
        "the same machine, closed-loop users without pauses; light: single ratings to "
        "/predictions/movierec; heavy: half 10,000-pair requests, half new users with 1,000 "
        "ratings, to /predictions/movierec-bulk.",
        "",
        "Ratios compare phases of the same run; absolute figures move with the machine's "
        "other load.",
        "",
        "## Every phase",
        "",
        "| phase | round | clients | users | requests | req/s | p50 ms | p95 ms | p99 ms "
        "| max ms | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        for name, g in p.groups.items():
            failed = ", ".join(f"{n} x {k}" for k, n in g.statuses.items()) or "0"
            lines.append(
                f"| {p.name} | {p.round or ''} | {name} | {g.users} | {g.requests:,} "
                f"| {g.rps:.0f} | {g.p50_ms:g} | {g.p95_ms:g} | {g.p99_ms:g} | {g.max_ms:.0f} "
                f"| {failed} |"
            )
    lines += [
        "",
        "## Together, as a share of alone",
        "",
        "| round | light req/s | light p99 | heavy req/s |",
        "|---|---|---|---|",
    ]
    for r in verdict["per_round"]:
        lines.append(
            f"| {r['round']} | {r['light_rps']:.0%} | {r['light_p99']:.2f}x "
            f"| {r['heavy_rps']:.0%} |"
        )
    m = verdict["medians"]
    lines.append(
        f"| median | {m['light_rps']:.0%} | {m['light_p99']:.2f}x | {m['heavy_rps']:.0%} |"
    )
    shared = verdict.get("shared")
    if shared:
        lines += [
            "",
            "One registration for everything (the design the two endpoints replace, measured in "
            f"this run): the light clients beside heavy ones keep {shared['light_rps']:.0%} of "
            f"their req/s, their p99 {shared['light_p99']:.2f}x alone; the heavy clients get "
            f"{shared['heavy_rps']:.0f} req/s (beside light, on the two endpoints: "
            f"{shared['heavy_rps_two']:.0f}).",
        ]
    lines += [
        "",
        f"Knee: {run['knee_users']} light users (the step with the most req/s within the SLO, "
        f"p95 <= {slo.DEFAULT.p95_ms:g} ms, p99 <= {slo.DEFAULT.p99_ms:g} ms, no failure); "
        f"overload: {run['overload_users']} users.",
    ]
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for t in verdict["targets"]:
        lines.append(
            f"| {t['target']} | {t['measured']} | {'met' if t['met'] else '**not met**'} |"
        )
    lines += ["", f"![phases]({Path(run['plot']).name})", ""]
    return "\n".join(lines)


def plot(phases: list[Phase], path: Path) -> None:
    """Light and heavy req/s and p99 per phase, in the order they ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{p.name}{f' {p.round}' if p.round else ''}" for p in phases]
    x = range(len(phases))
    fig, (rps, p99) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for name, colour, offset in (("light", "tab:blue", -0.2), ("heavy", "tab:orange", 0.2)):
        rps.bar(
            [i + offset for i in x],
            [p.groups[name].rps if name in p.groups else 0 for p in phases],
            width=0.4,
            color=colour,
            label=f"{name} clients",
        )
        p99.bar(
            [i + offset for i in x],
            [p.groups[name].p99_ms if name in p.groups else 0 for p in phases],
            width=0.4,
            color=colour,
            label=f"{name} clients",
        )
    rps.set_ylabel("requests/s")
    rps.set_yscale("log")
    rps.legend(loc="upper right")
    p99.set_ylabel("p99 (ms)")
    p99.set_yscale("log")
    p99.set_xticks(list(x), labels, rotation=45, ha="right")
    fig.suptitle("Interactive (light) and bulk (heavy) clients, phase by phase")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = console.parser("python -m loadtest.scenarios.isolation", __doc__)
    p.add_argument("--mar", default=str(REPO / "model_store" / "movierec.mar"))
    p.add_argument("--artifact", help="artifact of --shared's archive (default: from the .mar)")
    p.add_argument("--light", type=int, default=12, help="light users (single ratings)")
    p.add_argument("--heavy", type=int, default=2, help="heavy users (bulk requests)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--phase", type=int, default=20, help="seconds per phase")
    p.add_argument("--step", type=int, default=8, help="seconds per knee step")
    p.add_argument("--knee-steps", type=int, nargs="+", default=[8, 16, 32, 48, 64, 96, 128, 160])
    p.add_argument("--overload", type=float, default=3.0, help="overload users / knee users")
    p.add_argument("--stop-timeout", type=int, default=10, help="s users get to finish")
    p.add_argument("--no-shared", dest="shared", action="store_false")
    p.add_argument("--out", default=str(REPO / "reports" / "isolation.md"))
    p.add_argument("--report-dir", default=str(REPO / "reports" / "loadtest" / "isolation"))
    args = p.parse_args(argv)
    mar = find_archive(args.mar)
    if mar is None:
        return 1
    names, _ = endpoints(mar)
    if BULK_MODEL not in names:
        log.error("%s not beside %s: build both (make archive)", f"{BULK_MODEL}.mar", mar)
        return 1
    raw = Path(args.report_dir)
    raw.mkdir(parents=True, exist_ok=True)
    started, load_before = time.time(), report.load_average()
    context = report.machine()
    light = {"light": (LIGHT, args.light)}
    heavy = {"heavy": (HEAVY, args.heavy)}
    phases: list[Phase] = []

    def phase(server, name, round_, groups, seconds=args.phase, bulk=BULK_MODEL) -> Phase:
        prefix = raw / f"{re.sub(r'[^a-z0-9]+', '-', name)}{round_ or ''}"
        figures = run_phase(server, mar, prefix, groups, seconds, args.stop_timeout, bulk)
        done = Phase(name, round_, figures)
        for group, g in done.groups.items():
            log.info(
                "%s %s: %s %d users, %.0f req/s, p99 %g ms, %d failed",
                name,
                round_ or "",
                group,
                g.users,
                g.rps,
                g.p99_ms,
                g.failures,
            )
        return done

    try:
        with local_torchserve(mar.parent, *endpoints(mar)) as server:
            phase(server, "warm-up", 0, light | heavy, 5)
            for r in range(1, args.rounds + 1):
                phases.append(phase(server, "light alone", r, light))
                phases.append(phase(server, "heavy alone", r, heavy))
                phases.append(phase(server, "together", r, light | heavy))
            steps = []
            for users in args.knee_steps:
                stepped = phase(server, f"knee {users}", 0, {"light": (LIGHT, users)}, args.step)
                steps.append((users, stepped.groups["light"]))
            knee_users = knee(steps)
            overload_users = round(args.overload * knee_users)
            before = settled_counters(server)
            overload = phase(server, "overload", 0, {"light": (LIGHT, overload_users)})
            after = settled_counters(server)
            overload.server = {k: after[k] - before[k] for k in after}
            phases.append(overload)
            phases.append(phase(server, "recovery", 0, light))
        shared_phases: list[Phase] = []
        if args.shared:
            with tempfile.TemporaryDirectory(prefix="movierec-isolation-") as tmp:
                artifact_dir = (
                    Path(args.artifact) if args.artifact else _artifact_of(mar, Path(tmp))
                )
                one = shared_archive(artifact_dir, Path(tmp))
                with local_torchserve(one.parent, ["movierec"]) as server:
                    # Heavy requests go to the one registration there is.
                    phase(server, "warm-up", 0, light | heavy, 5, bulk="movierec")
                    shared_phases.append(phase(server, "one registration: light alone", 0, light))
                    shared_phases.append(
                        phase(
                            server, "one registration: together", 0, light | heavy, bulk="movierec"
                        )
                    )
    except ServerError as exc:
        log.error("%s", exc)
        return 1
    verdict = judge(phases)
    if shared_phases:
        alone, both = shared_phases
        verdict["shared"] = {
            "light_rps": _ratio(both.groups["light"].rps, alone.groups["light"].rps),
            "light_p99": _ratio(both.groups["light"].p99_ms, alone.groups["light"].p99_ms),
            "heavy_rps": both.groups["heavy"].rps,
            "heavy_rps_two": statistics.median(
                p.groups["heavy"].rps for p in phases if p.name == "together"
            ),
        }
    out = Path(args.out)
    run = {
        "command": "python -m loadtest.scenarios.isolation "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "context": context,
        "load_before": load_before,
        "load_after": report.load_average(),
        "minutes": (time.time() - started) / 60,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "report_dir")},
        "knee_users": knee_users,
        "overload_users": overload_users,
        "plot": str(out.with_suffix(".png")),
    }
    all_phases = phases + shared_phases
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(all_phases, out.with_suffix(".png"))
    out.write_text(markdown(run, all_phases, verdict))
    out.with_suffix(".json").write_text(
        json.dumps(
            {**run, "plot": out.with_suffix(".png").name, "phases": [asdict(p) for p in all_phases]}
            | {"verdict": verdict},
            indent=2,
        )
        + "\n"
    )
    log.info("wrote %s", out)
    return 0 if all(t["met"] for t in verdict["targets"]) else 1


def _artifact_of(mar: Path, tmp: Path) -> Path:
    """The artifact files inside a .mar (a zip), unpacked into ``tmp``: what --shared's
    archive is built from when --artifact is not given."""
    import zipfile

    from model import artifact

    folder = tmp / "artifact"
    with zipfile.ZipFile(mar) as z:
        for name in (*artifact.FILES, artifact.RANKER):
            if name in z.namelist():
                z.extract(name, folder)
    return folder


if __name__ == "__main__":
    sys.exit(main())
