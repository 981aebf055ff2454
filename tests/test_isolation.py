"""The isolation scenario's arithmetic: the knee, the verdict and the report, on made-up runs."""

from __future__ import annotations

from loadtest.scenarios import isolation
from loadtest.scenarios.isolation import Group, Phase


def _group(rps: float, p99: float, users: int = 12, requests: int = 1000, **statuses) -> Group:
    failed = sum(statuses.values())
    return Group(
        requests=requests,
        failures=failed,
        rps=rps,
        p50_ms=p99 / 3,
        p95_ms=p99 / 2,
        p99_ms=p99,
        max_ms=p99 * 2,
        users=users,
        statuses={k.removeprefix("s"): v for k, v in statuses.items()},
    )


def _phases(light_together: float, p99_together: float, heavy_together: float) -> list[Phase]:
    phases = []
    for r in (1, 2, 3):
        phases += [
            Phase("light alone", r, {"light": _group(1000, 10)}),
            Phase("heavy alone", r, {"heavy": _group(40, 100, users=2)}),
            Phase(
                "together",
                r,
                {
                    "light": _group(light_together, p99_together),
                    "heavy": _group(heavy_together, 150, users=2),
                },
            ),
        ]
    return phases


def test_the_knee_is_the_busiest_step_within_the_slo():
    steps = [
        (8, _group(600, 5)),
        (16, _group(960, 8)),
        (32, _group(1100, 60)),
        (64, _group(1200, 150)),  # p99 over 100 ms
        (96, _group(1300, 60, s503=5)),  # failures
    ]
    assert isolation.knee(steps) == 32
    assert isolation.knee(steps[3:]) == 64  # none within: the fewest users stepped


def test_targets_met_and_missed():
    met = isolation.judge(_phases(800, 20, 25))  # 80%, 2.0x, 62%
    assert [t["met"] for t in met["targets"]] == [True, True, True]
    assert round(met["medians"]["light_rps"], 2) == 0.8

    missed = isolation.judge(_phases(600, 30, 15))  # 60%, 3.0x, 38%
    assert [t["met"] for t in missed["targets"]] == [False, False, False]


def test_overload_counts_503s_apart_from_other_failures():
    phases = _phases(800, 20, 25)
    overload = Phase("overload", 0, {"light": _group(900, 300, users=36, requests=5000, s503=1000)})
    overload.server = {"frontend_5xx": 1000.0}
    recovery = Phase("recovery", 0, {"light": _group(950, 12)})
    verdict = isolation.judge([*phases, overload, recovery])
    checks = {t["target"].split(" (")[0].split(";")[0]: t for t in verdict["targets"]}
    assert checks["overload: failures only 503"]["met"]
    assert checks["overload: the 503s are counted in metrics"]["met"]
    assert checks["overload: every response within 1000 ms"]["met"]  # slowest 600 ms
    assert checks["recovers by itself: light alone after the overload as light alone before"]["met"]

    # A 500 (or a timeout) among the failures, 503s the metrics missed, a slow answer.
    overload.groups["light"] = _group(900, 600, users=36, requests=5000, s503=999, sother=1)
    overload.server = {"frontend_5xx": 990.0}
    verdict = isolation.judge([*phases, overload, recovery])
    checks = {t["target"].split(" (")[0].split(";")[0]: t for t in verdict["targets"]}
    assert not checks["overload: failures only 503"]["met"]
    assert checks["overload: failures only 503"]["measured"] == "999 x 503, 1 other"
    assert not checks["overload: the 503s are counted in metrics"]["met"]
    assert not checks["overload: every response within 1000 ms"]["met"]  # slowest 1,200 ms


def test_locust_failure_messages_are_told_apart_by_status(tmp_path):
    (tmp_path / "run_failures.csv").write_text(
        "Method,Name,Error,Occurrences\n"
        'POST,rating,"CatchResponseError(\'HTTP 503: {""code"": 503}\')",7\n'
        "POST,rating,\"CatchResponseError('HTTP 500: worker died')\",2\n"
        "POST,rating,ConnectionResetError(104),1\n"
    )
    assert isolation._statuses(tmp_path / "run") == {"503": 7, "other": 3}


def test_the_report_gives_every_phase_and_target(tmp_path):
    from loadtest import report

    phases = _phases(800, 20, 25)
    verdict = isolation.judge(phases)
    run = {
        "command": "python -m loadtest.scenarios.isolation",
        "context": report.machine(),
        "load_before": "1 / 1 / 1",
        "load_after": "1 / 1 / 1",
        "minutes": 6.0,
        "knee_users": 12,
        "overload_users": 36,
        "plot": str(tmp_path / "isolation.png"),
    }
    text = isolation.markdown(run, phases, verdict)
    assert "| together | 2 | light | 12 | 1,000 | 800 |" in text
    assert "| median | 80% | 2.00x | 62% |" in text
    assert "| light clients beside heavy keep >= 70% of their req/s | 80% | met |" in text
    isolation.plot(phases, tmp_path / "isolation.png")
    assert (tmp_path / "isolation.png").stat().st_size > 0
