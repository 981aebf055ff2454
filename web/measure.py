"""python -m web.measure: the page's speeds in a real browser, and its screenshots.

    python -m web.measure --mar model_store/movierec.mar --artifact artifacts/ml-100k

Starts a private TorchServe serving ``--mar`` and the web app in front of it (free ports, both
stopped at the end), opens the page in headless Chromium and reads the browser's own timings
(the Performance API; see web/static/app.js):

- **interactive**: from navigation start to the first list shown (the mark ``app-ready``), and
  the navigation timings ``domInteractive`` and ``domContentLoadedEventEnd``, over ``--loads``
  fresh loads;
- **star click to updated list**: the measure ``rate-to-list``, over ``--clicks`` clicks on the
  stars of listed movies (a person rating their way through the list);
- **keystroke to suggestions**: the measure ``keystroke-to-suggestions``, typing titles one
  key at a time at ``--key-delay`` ms a key;
- **the web app's cost**: the same new-user request, ``--requests`` times, sent straight to
  TorchServe and through ``/api/recommend``, interleaved, from this process over kept-alive
  connections (as a browser keeps one to the web app): the difference of the medians is what
  the web app adds.

Writes ``OUT.json`` and ``OUT.md`` (``--out``, default reports/web) and, unless
``--no-screenshots``, ``web-desktop.png`` (1280 x 900) and ``web-phone.png`` (360 x 740) into
``--screenshots`` (default docs/img). Nothing here is judged against a threshold.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from client import MovieRecClient, read_token
from loadtest.run import find_archive
from loadtest.server import ServerError, endpoints, local_torchserve
from model import console
from web import validation
from web.browser import BrowserMissing, chromium
from web.catalogue import Catalogue
from web.local import WebError, local_web

log = logging.getLogger("web.measure")

# Titles typed in the suggestions test (one with a typo) and rated in the screenshots: ML-100K's.
TYPED = ("star wars", "godfahter", "fargo", "toy story", "casablanca", "pulp fiction")
RATED = {50: 5, 127: 5, 100: 4, 1: 3, 174: 5}


def percentiles(values: list[float]) -> dict[str, float]:
    """Count, p50, p90 and max of ``values`` (ms), rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "n": len(values),
        "p50": round(statistics.median(ordered), 1),
        "p90": round(p90, 1),
        "max": round(ordered[-1], 1),
    }


def _measures(page: Any, name: str) -> list[float]:
    return page.evaluate(f"performance.getEntriesByName('{name}').map((e) => e.duration)")


def _stored(ratings: dict[int, float]) -> str:
    entries = [
        {"movie_id": m, "stars": s, "title": f"Movie {m}", "genres": []} for m, s in ratings.items()
    ]
    return json.dumps(json.dumps(entries))


def _wait_list(page: Any) -> None:
    page.locator("#list-cards[aria-busy='false']").wait_for()


def measure_loads(browser: Any, url: str, loads: int) -> dict[str, dict]:
    """Fresh loads of the page (a new profile each): navigation timings and ``app-ready``."""
    ready, interactive, loaded = [], [], []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        # Polled from here: a string wait_for_function would be an eval the page's CSP forbids.
        while not page.evaluate("performance.getEntriesByName('app-ready').length"):
            time.sleep(0.01)
        ready.append(page.evaluate("performance.getEntriesByName('app-ready')[0].startTime"))
        nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        timing = json.loads(nav)
        interactive.append(timing["domInteractive"])
        loaded.append(timing["domContentLoadedEventEnd"])
        context.close()
    return {
        "app_ready_ms": percentiles(ready),
        "dom_interactive_ms": percentiles(interactive),
        "dom_content_loaded_ms": percentiles(loaded),
    }


def measure_clicks(browser: Any, url: str, clicks: int) -> dict[str, dict]:
    """Star clicks on listed movies, each followed by the list's update (``rate-to-list``)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    timings: list[float] = []
    fetches: list[float] = []

    def start_over() -> None:
        # A new document starts new timings: keep those of the last one first.
        if page.url.startswith(url):
            timings.extend(_measures(page, "rate-to-list"))
            fetches.extend(
                page.evaluate(
                    "performance.getEntriesByType('resource')"
                    ".filter((e) => e.name.endsWith('/api/recommend')).map((e) => e.duration)"
                )
            )
        page.goto(url)
        page.evaluate(f"localStorage.setItem('movierec.ratings.v1', {_stored({50: 5, 100: 4})})")
        page.goto(url)
        _wait_list(page)

    start_over()
    for n in range(clicks):
        before = page.locator("#list-cards").get_attribute("data-updates")
        stars = 2 + n % 4
        page.locator(f"#list-cards .card label[data-value='{stars}']").first.click()
        page.locator(f"#list-cards:not([data-updates='{before}'])").wait_for()
        if n % 10 == 9:  # keep the person's ratings few, as a new user's are
            start_over()
    start_over()
    context.close()
    return {"rate_to_list_ms": percentiles(timings), "recommend_fetch_ms": percentiles(fetches)}


def measure_typing(browser: Any, url: str, key_delay: float) -> dict[str, dict]:
    """Titles typed a key at a time; each set of suggestions shown is timed from its key."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    _wait_list(page)
    box = page.locator("#search")
    for title in TYPED:
        box.fill("")
        box.press_sequentially(title, delay=key_delay)
        page.locator("#suggestions li").first.wait_for()
        time.sleep(0.3)
    timings = _measures(page, "keystroke-to-suggestions")
    context.close()
    return {"keystroke_to_suggestions_ms": percentiles(timings)}


def _timed_post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> float:
    started = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"{path} answered HTTP {response.status}")
    return elapsed


def measure_overhead(web_url: str, model_url: str, key_file: Path, requests: int) -> dict:
    """The same new-user request three ways, interleaved: straight to TorchServe over a
    kept-alive connection (the fastest way to call it), straight to it with
    ``client.MovieRecClient`` built for the call (a new connection each time, as the web app
    calls it), and through the web app's ``/api/recommend`` over a kept-alive connection (as a
    browser calls it)."""
    page_body = {"ratings": {str(m): s for m, s in RATED.items()}, "novelty": 0.5}
    direct_body = validation.ROUTES["/api/recommend"](page_body, Catalogue())
    host, port = model_url.removeprefix("http://").split(":")
    direct = http.client.HTTPConnection(host, int(port), timeout=30)
    host, port = web_url.removeprefix("http://").split(":")
    web = http.client.HTTPConnection(host, int(port), timeout=30)
    json_type = {"Content-Type": "application/json"}
    times: dict[str, list[float]] = {"kept_alive": [], "client": [], "web": []}
    for n in range(requests + 10):
        token = {"Authorization": f"Bearer {read_token('inference', key_file)}"}
        kept_alive = _timed_post(
            direct, "/predictions/movierec", json.dumps(direct_body).encode(), token | json_type
        )
        started = time.perf_counter()
        MovieRecClient(model_url, key_file=key_file).predict(direct_body)
        client = (time.perf_counter() - started) * 1000
        through = _timed_post(web, "/api/recommend", json.dumps(page_body).encode(), json_type)
        if n >= 10:  # the first few warm every path up
            times["kept_alive"].append(kept_alive)
            times["client"].append(client)
            times["web"].append(through)
    direct.close()
    web.close()
    found = {name: percentiles(values) for name, values in times.items()}
    return {
        "direct_kept_alive_ms": found["kept_alive"],
        "direct_client_ms": found["client"],
        "through_web_ms": found["web"],
        "added_p50_ms": round(found["web"]["p50"] - found["kept_alive"]["p50"], 1),
        "added_p50_over_client_ms": round(found["web"]["p50"] - found["client"]["p50"], 1),
    }


def screenshots(browser: Any, url: str, folder: Path) -> list[str]:
    """The page of a person who rated a few movies, at desktop and phone width."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = []
    for name, width, height in (("web-desktop.png", 1280, 900), ("web-phone.png", 360, 740)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(url)
        page.evaluate(f"localStorage.setItem('movierec.ratings.v1', {_stored({})})")
        page.goto(url)
        _wait_list(page)
        box = page.locator("#search")
        for typed, stars in (("star wars", 5), ("godfather", 5), ("fargo", 4)):
            box.fill("")
            box.press_sequentially(typed)
            page.locator("#suggestions [role=option]").first.wait_for()
            box.press("Enter")
            before = page.locator("#list-cards").get_attribute("data-updates")
            page.locator(f"#picked-list label[data-value='{stars}']").click()
            page.locator(f"#list-cards:not([data-updates='{before}'])").wait_for()
        if width < 600:  # a phone shows the search and its suggestions first
            box.press_sequentially("shaw")
            page.locator("#suggestions li").first.wait_for()
        page.screenshot(path=str(folder / name))
        taken.append(str(folder / name))
        context.close()
    return taken


def write_report(out: Path, results: dict) -> None:
    """``out``.json (every number) and ``out``.md (the table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        ("page interactive (first list shown, `app-ready`)", results["loads"]["app_ready_ms"]),
        ("`domInteractive`", results["loads"]["dom_interactive_ms"]),
        ("`domContentLoadedEventEnd`", results["loads"]["dom_content_loaded_ms"]),
        ("star click to updated list (`rate-to-list`)", results["clicks"]["rate_to_list_ms"]),
        ("  of which `/api/recommend` (resource timing)", results["clicks"]["recommend_fetch_ms"]),
        (
            "keystroke to suggestions (`keystroke-to-suggestions`)",
            results["typing"]["keystroke_to_suggestions_ms"],
        ),
        (
            "a new-user request straight to TorchServe, kept-alive connection",
            results["overhead"]["direct_kept_alive_ms"],
        ),
        (
            "the same with `client.MovieRecClient` (a connection per call)",
            results["overhead"]["direct_client_ms"],
        ),
        ("the same through the web app (`/api/recommend`)", results["overhead"]["through_web_ms"]),
    ]
    lines = [
        "# The page's speeds",
        "",
        f"`{results['command']}` on {results['when']}: {results['machine']}; "
        f"model {results['model']}, headless Chromium {results['browser']}; "
        f"1-minute load average {results['load_average_at_start']} at the start, "
        f"{results['load_average_at_end']} at the end.",
        "Browser timings are the page's own Performance API entries (web/static/app.js); "
        "the web app's cost is measured from Python, interleaved with direct calls.",
        "",
        "| what | n | p50 (ms) | p90 (ms) | max (ms) |",
        "|---|---|---|---|---|",
        *(f"| {what} | {p['n']} | {p['p50']} | {p['p90']} | {p['max']} |" for what, p in rows),
        "",
        f"The web app adds **{results['overhead']['added_p50_ms']} ms** at p50 to a new-user "
        "request over calling TorchServe directly on a kept-alive connection, and "
        f"{results['overhead']['added_p50_over_client_ms']} ms over calling it with the "
        "project's client (which opens a connection per call, as the web app does).",
        "",
    ]
    Path(f"{out}.md").write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = console.parser("python -m web.measure", __doc__)
    p.add_argument("--mar", default="model_store/movierec.mar", help="the model archive to serve")
    p.add_argument("--artifact", default="artifacts/ml-100k", help="its artifact folder")
    p.add_argument("--out", default="reports/web", help="report path without .json/.md")
    p.add_argument("--screenshots", default="docs/img", help="folder for the screenshots")
    p.add_argument("--no-screenshots", action="store_true", help="take none")
    p.add_argument("--loads", type=int, default=20, help="fresh page loads")
    p.add_argument("--clicks", type=int, default=40, help="star clicks")
    p.add_argument("--key-delay", type=float, default=120.0, help="ms between typed keys")
    p.add_argument("--requests", type=int, default=300, help="requests each way, for the cost")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mar = find_archive(args.mar)
    if mar is None:
        return 1
    with zipfile.ZipFile(mar) as archive:
        config = json.loads(archive.read("config.json"))
    dataset = config.get("data", {}).get("dataset", "unknown data")
    model = f"{mar.name} ({dataset}, preset {config.get('preset', '?')})"
    try:
        with (
            tempfile.TemporaryDirectory() as home,
            local_torchserve(mar.parent, *endpoints(mar)) as server,
            local_web(server.url, server.key_file, args.artifact, Path(home) / "web.log") as url,
            chromium() as browser,
        ):
            results: dict[str, Any] = {
                "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                f"{platform.system()} {platform.release()}",
                "model": model,
                # What was measured and how (where the files went changes no figure).
                "command": f"python -m web.measure --mar {args.mar} --artifact {args.artifact} "
                f"--loads {args.loads} --clicks {args.clicks} --key-delay {args.key_delay:g} "
                f"--requests {args.requests}",
                "browser": browser.version,
                # Others' work on a shared machine slows every figure: say how busy it was.
                "load_average_at_start": round(os.getloadavg()[0], 2),
            }
            log.info("page loads")
            results["loads"] = measure_loads(browser, url, args.loads)
            log.info("star clicks")
            results["clicks"] = measure_clicks(browser, url, args.clicks)
            log.info("typing")
            results["typing"] = measure_typing(browser, url, args.key_delay)
            log.info("the web app's cost")
            results["overhead"] = measure_overhead(url, server.url, server.key_file, args.requests)
            if not args.no_screenshots:
                results["screenshots"] = screenshots(browser, url, Path(args.screenshots))
    except (ServerError, WebError, BrowserMissing) as exc:
        log.error("%s", exc)
        return 1
    results["load_average_at_end"] = round(os.getloadavg()[0], 2)
    write_report(Path(args.out), results)
    print(Path(f"{args.out}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
