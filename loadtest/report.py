"""The benchmark's report: machine details and reports/bench.md (Markdown)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from loadtest.server import REPO
from model.artifact import cpu_name

# The serving targets (2-core machine, Locust on the same machine).
TARGET_VS_ECHO = 0.85  # our single-rating throughput / the echo floor's
TARGET_VS_NAIVE = 2.0  # our single-rating throughput / the naive handler's
TARGET_PAIRS_MS = 25.0  # one 10,000-pair request inside the handler
TARGET_TOPK_62K_P50_MS = 10.0  # top-K over 62k movies, p50
TARGET_EXPLAIN_62K_P50_MS = 12.0  # top-10 with explanations over 62k movies, p50
TARGET_LONE_VS_ECHO = 1.3  # a lone single-rating request's p50 / the echo floor's


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=REPO)
        return (done.stdout or done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("torch", "torchserve", "torch-model-archiver", "locust", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    java = _run(["java", "-version"]).splitlines()
    out["java"] = java[0] if java else "unknown"
    return out


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def commit() -> str:
    """The checkout's short commit, marked when tracked code outside reports/ has changed
    (reports/ holds the runs' own output, bench.md among it)."""
    head = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"])
    return head + (" (uncommitted changes)" if dirty else "")


def machine() -> dict:
    """CPU, cores, memory, OS, versions, git commit and time of the run."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "os": f"{_os_name()}, kernel {platform.release()}",
        "versions": _versions(),
        "commit": commit(),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _http_section(settings: dict, runs: list, medians: dict) -> list[str]:
    rounds = settings["rounds"]
    lines = [
        f"## HTTP: single-rating requests, {settings['users']} closed-loop Locust users, "
        f"{settings['duration']} per server"
        + (f" (median of {rounds} alternating rounds)" if rounds > 1 else ""),
        "",
        "| server | req/s | p50 ms | p95 ms | p99 ms | failed | worker RSS MiB "
        "| CPU cores used: frontend / workers / Locust | CPU µs per request: frontend / workers "
        "| other processes' CPU cores meanwhile |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"echo": "echo (floor)", "naive": "naive handler", "ours": "**movierec handler**"}
    for name, m in medians.items():
        cpu = m["cpu_cores"]
        per_req = " / ".join(f"{m['cpu_us_per_request'][p]:.0f}" for p in ("frontend", "workers"))
        lines.append(
            f"| {labels[name]} | {m['rps']:.0f} | {m['p50_ms']:g} | {m['p95_ms']:g} "
            f"| {m['p99_ms']:g} | {m['failures']} of {m['requests']} | {m['worker_rss_mb']:.0f} "
            f"| {cpu['frontend']:.2f} / {cpu['workers']:.2f} / {cpu['locust']:.2f} "
            f"| {per_req} | {m['others_cores']:.2f} |"
        )
    ours = medians.get("ours")
    if ours:
        lines += [
            "",
            "| movierec handler as a ratio to | req/s | p50 | p95 | p99 |",
            "|---|---|---|---|---|",
        ]
        for name in ("echo", "naive"):
            if name in medians:
                base = medians[name]
                keys = ("rps", "p50_ms", "p95_ms", "p99_ms")
                ratios = " | ".join(_ratio(ours[k], base[k]) for k in keys)
                lines.append(f"| {labels[name]} | {ratios} |")
        lines += ["", "(req/s above 1x is better; latency below 1x is better.)"]
    lines += [
        "",
        f"Lone requests: after each measured run, {settings['lone_requests']} single-rating "
        "requests sent one at a time over one keep-alive connection (no other load), so each "
        "waits for no one but may wait for company that never comes (maxBatchDelay):",
        "",
        "| server | lone p50 ms | lone p99 ms |",
        "|---|---|---|",
    ]
    lines += [
        f"| {labels[name]} | {m['lone_p50_ms']:.2f} | {m['lone_p99_ms']:.2f} |"
        for name, m in medians.items()
    ]
    if rounds > 1:
        lines += [
            "",
            "Every round:",
            "",
            "| round | server | req/s | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.round} | {r.server} | {r.rps:.0f} | {r.p50_ms:g} | {r.p95_ms:g} | {r.p99_ms:g} |"
            for r in runs
        ]
        by_round = {(r.round, r.server): r.rps for r in runs}
        for base in ("echo", "naive"):
            pairs = [
                (by_round.get((n, "ours")), by_round.get((n, base))) for n in range(1, rounds + 1)
            ]
            measured = [(a, b) for a, b in pairs if a and b]
            if len(measured) == len(pairs):
                per_round = ", ".join(_ratio(a, b) for a, b in measured)
                lines += ["", f"movierec / {base} req/s, round by round: {per_round}"]
    return [*lines, ""]


def _micro_section(pairs: dict | None, topk: list | None, others: float | None) -> list[str]:
    lines = ["## Handler micro-benchmarks (no HTTP; `handle()` as TorchServe calls it)", ""]
    if others is not None:
        lines += [
            f"Other processes used {others:.2f} CPU cores on average meanwhile: these are "
            "absolute times, so the fastest call (min) is given as the least disturbed cost.",
            "",
        ]
    if pairs:
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in pairs["stages_p50_ms"].items())
        lines += [
            f"- One {pairs['pairs']:,}-pair rating request (ML-100K model, {pairs['torch_threads']}"
            f" torch thread): p50 **{pairs['p50_ms']:.1f} ms**, p95 {pairs['p95_ms']:.1f} ms, "
            f"min {pairs['min_ms']:.1f} ms "
            f"over {pairs['reps']} calls = **{pairs['pairs_per_s']:,.0f} pairs/s**. "
            f"Stages (p50): {stages}.",
            "",
        ]
    if topk:
        lines += [
            "Top-10 for one user per call, and for a batch of 16 users in one call (generated "
            "FactorModel with random weights; vectors of the served model's size, marked *, "
            "and of other sizes on the largest catalogue):",
            "",
            "| catalogue | vectors | p50 ms | p95 ms | min ms | calls | explained: p50 ms | "
            "novelty 0.5: p50 ms | batch of 16: p50 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['movies']:,} movies "
            f"| {t.get('code_dim', '?')}{'*' if t.get('served_dim') else ''} "
            f"| {t['p50_ms']:.2f} | {t['p95_ms']:.2f} | {t['min_ms']:.2f} | {t['reps']} "
            f"| {_ms(t.get('explain_p50_ms'))} | {_ms(t.get('novelty_p50_ms'))} "
            f"| {t['batch16_p50_ms']:.1f} |"
            for t in topk
        ]
        lines.append("")
    return lines


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _targets(medians: dict, pairs: dict | None, topk: list | None) -> list[str]:
    rows = []
    ours, echo, naive = medians.get("ours"), medians.get("echo"), medians.get("naive")
    if ours and echo:
        r = ours["rps"] / echo["rps"]
        rows.append(("single-rating req/s >= 85% of echo", f"{r:.0%}", r >= TARGET_VS_ECHO))
    if ours and echo and echo["lone_p50_ms"]:
        r = ours["lone_p50_ms"] / echo["lone_p50_ms"]
        rows.append(
            (
                "a lone single-rating request's p50 <= 1.3x echo's",
                f"{r:.2f}x",
                r <= TARGET_LONE_VS_ECHO,
            )
        )
    if ours and naive:
        r = ours["rps"] / naive["rps"]
        rows.append(("single-rating req/s >= 2x naive", f"{r:.2f}x", r >= TARGET_VS_NAIVE))
    if pairs:
        ms = pairs["p50_ms"]
        rows.append(
            ("10,000 pairs <= 25 ms in the handler", f"{ms:.1f} ms (p50)", ms <= TARGET_PAIRS_MS)
        )
    served = [t for t in topk or [] if t.get("served_dim", True)]
    largest = max(served, key=lambda t: t["movies"]) if served else None
    if largest and largest["movies"] >= 62_000:
        ms = largest["p50_ms"]
        rows.append(
            ("top-K over 62k movies <= 10 ms p50", f"{ms:.1f} ms", ms <= TARGET_TOPK_62K_P50_MS)
        )
        if "explain_p50_ms" in largest:
            ms = largest["explain_p50_ms"]
            rows.append(
                (
                    "top-10 with explanations over 62k movies <= 12 ms p50",
                    f"{ms:.1f} ms",
                    ms <= TARGET_EXPLAIN_62K_P50_MS,
                )
            )
    lines = ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {_met(ok)} |" for name, value, ok in rows]
    lines += [
        "| zero failed requests in 5 minutes at the knee | not part of `make bench`: "
        "`make knee`, then `make loadtest USERS=<knee users> DURATION=5m` | |",
        "",
    ]
    return lines


def bench_markdown(
    command: str,
    settings: dict,
    context: dict,
    runs: list,
    medians: dict,
    pairs: dict | None,
    topk: list | None,
) -> str:
    """reports/bench.md: what ran where, the figures, the ratios and the targets."""
    v = context["versions"]
    lines = [
        "# movierec serving benchmark",
        "",
        f"- Run: {context['date']}, {context['minutes']:.1f} min, commit {context['commit']}",
        f"- Command: `make bench` = `.venv/bin/{command}`",
        f"- Machine: {context['cpu']}, {context['logical_cpus']} logical CPUs "
        f"({context['physical_cpus']} physical), {context['memory_gib']:.0f} GiB RAM, "
        f"{context['os']}; load average (1/5/15 min) {context['load_before']} before, "
        f"{context['load_after']} after",
        f"- Software: Python {v['python']}, torch {v['torch']}, torchserve {v['torchserve']}, "
        f"locust {v['locust']}, numpy {v['numpy']}, {v['java']}",
        f"- Serving settings: config.properties; {settings['model_config']} (workers, batchSize, "
        f"maxBatchDelay, torch threads) for echo and ours; naive the same with batchSize 1. "
        f"Locust runs on the same machine; {settings['warmup']} of warm-up per server.",
        "",
        "Speed is quoted as ratios to baselines measured in the same run: on a shared machine "
        "the absolute figures move with the neighbours' load. CPU per request moves less than "
        "req/s does; Locust's CPU includes its own start-up (about a second).",
        "",
    ]
    if runs:
        lines += _http_section(settings, runs, medians)
    lines += _micro_section(pairs, topk, context.get("micro_others_cores"))
    lines += _targets(medians, pairs, topk)
    return "\n".join(lines)
