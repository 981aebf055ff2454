"""The page in a real browser: headless Chromium (Playwright) against the web app, in front of a
real TorchServe serving a small model of a made-up catalogue with known popularity.

The model server here runs with keys that live 6 seconds (``token_expiration_min=0.1``;
TorchServe reads it as a decimal number of minutes) and the key supervisor renewing them, so
every journey below runs across key renewals, and one waits for two expiries on purpose;
``MOVIEREC_WEB_KEY_MINUTES=1`` runs them with 1-minute keys instead.
Journeys time nothing against a limit: ``python -m web.measure`` measures the page's speeds.
The last test stops the model server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from client.keys import expiration
from loadtest.server import Server, ServerError, local_torchserve
from model import artifact
from model.vocab import Vocabulary
from tests.conftest import GENRES, item_ratings, tiny_autorec, tiny_ranker
from train import archive
from train.data.prepared import encode
from train.fitting.settings import AutoRecTrainConfig
from train.fitting.training import fit_autorec
from web.local import local_web

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

REPO = Path(__file__).resolve().parent.parent
XSS = "<img src=x onerror=alert(1)>"
# (title, genres); movie i has ids 1 + i and is rated by fewer people the later it comes.
CATALOGUE = [
    ("Star Wars (1977)", "Action"),
    ("Fargo (1996)", "Comedy|Drama"),
    (f"{XSS} (1999)", "Comedy"),
    ("Godfather, The (1972)", "Drama"),
    ("Toy Story (1995)", "Comedy"),
    ("Return of the Jedi (1983)", "Action"),
    ("Casablanca (1942)", "Drama"),
    ("Alien (1979)", "Action"),
    ("Groundhog Day (1993)", "Comedy"),
    ("Heat (1995)", "Action|Drama"),
    ("Amadeus (1984)", "Drama"),
    ("Blade Runner (1982)", "Action|Drama"),
    ("Clueless (1995)", "Comedy"),
    ("Vertigo (1958)", "Drama"),
    ("Die Hard (1988)", "Action"),
    ("Annie Hall (1977)", "Comedy"),
    ("Brazil (1985)", "Comedy|Drama"),
    ("Chinatown (1974)", "Drama"),
    ("Speed (1994)", "Action"),
    ("Rushmore (1998)", "Comedy|Drama"),
    ("Metropolis (1927)", "Drama"),
    ("Ran (1985)", "Action|Drama"),
    ("Local Hero (1983)", "Comedy"),
    ("Gattaca (1997)", "Drama"),
    ("Paths of Glory (1957)", "Drama"),
    ("Sneakers (1992)", "Action|Comedy"),
    ("Cube (1997)", "Drama"),
    ("Harvey (1950)", "Comedy"),
    ("Sanjuro (1962)", "Action"),
    ("Stalker (1979)", "Drama"),
]
# Keys' lifetime in minutes; MOVIEREC_WEB_KEY_MINUTES=1 runs the journeys with 1-minute keys
# (the key test then takes about 70 s instead of 10).
KEY_MINUTES = float(os.environ.get("MOVIEREC_WEB_KEY_MINUTES", "0.1"))


def catalogue_ratings(num_users: int = 80, seed: int = 0) -> pd.DataFrame:
    """Ratings from a rank-2 taste model where movie i is rated by ~90% of people times
    (i + 1)^-0.8: a long tail, so that popularity differs between movies by design."""
    rng = np.random.default_rng(seed)
    num_items = len(CATALOGUE)
    user_f, item_f = rng.normal(size=(num_users, 2)), rng.normal(size=(num_items, 2))
    reach = np.maximum(0.9 * (np.arange(num_items) + 1.0) ** -0.8, 0.06)
    mask = rng.random((num_users, num_items)) < reach
    mask[:, -1] |= ~mask.any(axis=0)[-1]  # every movie rated at least once
    u, i = np.nonzero(mask)
    raw = 3.4 + 1.1 * (user_f[u] * item_f[i]).sum(1) + rng.normal(0, 0.3, len(u))
    return pd.DataFrame(
        {
            "user_id": (1 + u).astype(np.int64),
            "movie_id": (1 + i).astype(np.int64),
            "rating": np.clip(np.round(raw), 1, 5).astype(np.float32),
            "timestamp": (880_000_000 + rng.integers(0, 10**7, len(u))).astype(np.int64),
        }
    )


def catalogue_movies() -> pd.DataFrame:
    titles, genres = zip(*CATALOGUE)
    ids = np.arange(1, len(CATALOGUE) + 1)
    return pd.DataFrame({"movie_id": ids, "title": titles, "genres": genres})


@pytest.fixture(scope="module")
def ratings_frame() -> pd.DataFrame:
    return catalogue_ratings()


@pytest.fixture(scope="module")
def popularity(ratings_frame) -> dict[int, int]:
    """Number of ratings of each movie: what the novelty control should move away from."""
    return ratings_frame.groupby("movie_id").size().to_dict()


@pytest.fixture(scope="module")
def web_artifact(tmp_path_factory, ratings_frame) -> Path:
    """A small model of :data:`CATALOGUE`, trained as tests/conftest.py trains its own."""
    vocab = Vocabulary.build(ratings_frame, catalogue_movies(), GENRES)
    data = encode(ratings_frame, vocab)
    net = tiny_autorec(vocab, data)
    train = item_ratings(data, vocab)
    config = AutoRecTrainConfig(epochs=3, batch_size=8, l2=1.0, dropout=0.0)
    fit_autorec(net, train, data, config, progress=False)
    out = tmp_path_factory.mktemp("web-artifact") / "catalogue"
    artifact.save(
        out,
        net.export(train),
        vocab,
        {"training": {"note": "web test fixture"}},
        {"results": {}},
        ranker=tiny_ranker(vocab, data),
    )
    return out


@contextmanager
def key_supervisor_from_start(home: Path) -> Iterator[None]:
    """``python -m client.keys`` for the TorchServe about to start in ``home``, started as soon
    as its config.properties is written: keys that live 6 s expire before the model is loaded,
    so they must be renewed from the start, as ``make serve`` does."""
    started: list[subprocess.Popen] = []
    done = threading.Event()

    def start_when_configured() -> None:
        config = home / "config.properties"
        while not config.is_file():
            if done.wait(0.05):
                return
        with open(home / "keys.log", "ab") as log:
            started.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "client.keys", "--config", str(config)),
                        *("--key-file", str(home / "key_file.json")),
                        *("--lifetime-min", str(KEY_MINUTES)),
                    ],
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    watcher = threading.Thread(target=start_when_configured, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        for process in started:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory, web_artifact) -> Iterator[Server]:
    """TorchServe with 6-second keys and the key supervisor renewing them."""
    mar = archive.build(web_artifact, tmp_path_factory.mktemp("web-store"))
    home = tmp_path_factory.mktemp("web-torchserve")
    with ExitStack() as stack:
        stack.enter_context(key_supervisor_from_start(home))
        try:
            server = stack.enter_context(
                local_torchserve(
                    mar.parent,
                    ["movierec"],
                    home=home,
                    settings={"token_expiration_min": str(KEY_MINUTES)},
                )
            )
        except ServerError as exc:
            pytest.fail(f"TorchServe did not start: {exc}")
        yield server


@pytest.fixture(scope="module")
def web_url(tmp_path_factory, model_server, web_artifact) -> Iterator[str]:
    """``python -m web`` (as ``make serve`` starts it) on a free port; always stopped."""
    log = tmp_path_factory.mktemp("web") / "web.log"
    with local_web(model_server.url, model_server.key_file, web_artifact, log) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from web.browser import BrowserMissing, chromium

    # A guard against a hung page, not a speed limit (web.measure measures speeds).
    expect.set_options(timeout=30_000)
    try:
        with chromium() as launched:
            yield launched
    except BrowserMissing as exc:
        pytest.fail(str(exc))


class Visit:
    """One person's browser tab on the page (a fresh profile: no stored ratings), with what
    the page said to the console and any dialog it opened."""

    def __init__(self, browser, url: str, width: int = 1280, height: int = 900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.url = url
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self) -> None:
        self.page.goto(self.url)
        self.wait_ready()

    def wait_ready(self) -> None:
        expect(self.page.locator("#list-cards")).to_have_attribute("aria-busy", "false")

    def list_ids(self, selector: str = "#list-cards") -> list[int]:
        cards = self.page.locator(f"{selector} > li.card")
        return [int(c) for c in cards.evaluate_all("(cs) => cs.map((c) => c.dataset.movie)")]

    def list_text(self) -> str:
        return self.page.locator("#list-cards").inner_text()

    def updates(self, selector: str = "#list-cards") -> str | None:
        return self.page.locator(selector).get_attribute("data-updates")

    def wait_update(self, before: str | None, selector: str = "#list-cards") -> None:
        expect(self.page.locator(selector)).not_to_have_attribute("data-updates", before or "")

    def search_and_pick(self, typed: str, expected_title: str) -> None:
        """Type like a person, one key at a time; choose with the arrow keys and Enter."""
        box = self.page.locator("#search")
        box.click()
        box.fill("")
        box.press_sequentially(typed)
        option = self.page.locator("#suggestions [role=option]").first
        expect(option).to_contain_text(expected_title)
        box.press("ArrowDown")
        expect(box).to_have_attribute("aria-activedescendant", "suggestion-0")
        box.press("Enter")
        expect(self.page.locator("#picked-list .card h3")).to_have_text(expected_title)

    def rate_picked(self, stars: int) -> None:
        before = self.updates()
        self.page.locator(f"#picked-list label[data-value='{stars}']").click()
        self.wait_update(before)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, web_url) -> Iterator[Visit]:
    tab = Visit(browser, web_url)
    try:
        yield tab
    finally:
        tab.close()
    assert tab.errors == [], tab.errors
    assert tab.dialogs == [], tab.dialogs


def rated_visit(visit: Visit, ratings: dict[int, int]) -> None:
    """Open the page with ``ratings`` already stored, as a return visit would."""
    stored = [
        {
            "movie_id": m,
            "stars": s,
            "title": CATALOGUE[m - 1][0],
            "genres": CATALOGUE[m - 1][1].split("|"),
        }
        for m, s in ratings.items()
    ]
    visit.page.goto(visit.url)
    visit.page.evaluate(
        f"localStorage.setItem('movierec.ratings.v1', {json.dumps(json.dumps(stored))})"
    )
    visit.open()


# --------------------------------------------------------------------------- journeys


def test_first_visit_offers_the_popular_chart_filtered_by_genre_and_decade(visit):
    visit.open()
    page = visit.page
    expect(page.locator("#list-heading")).to_have_text("Popular movies to rate")
    expect(page.locator("#yours-empty")).to_be_visible()
    assert 0 < len(visit.list_ids()) <= 20
    before = visit.updates()
    page.select_option("#genre", "Action")
    visit.wait_update(before)
    assert visit.list_ids() and all("Action" in CATALOGUE[m - 1][1] for m in visit.list_ids())
    before = visit.updates()
    page.select_option("#decade", "1980")
    visit.wait_update(before)
    years = [int(CATALOGUE[m - 1][0][-5:-1]) for m in visit.list_ids()]
    assert years and all(1980 <= y <= 1989 for y in years)
    before = visit.updates()
    page.select_option("#decade", "1920")  # Metropolis, a drama: no action film of the 1920s
    visit.wait_update(before)
    expect(page.locator("#list-empty")).to_be_visible()
    assert visit.list_ids() == []


def test_search_rate_see_reasons_change_a_rating_and_reload(visit):
    visit.open()
    page = visit.page
    visit.search_and_pick("star wa", "Star Wars")  # still typing
    visit.rate_picked(5)
    visit.search_and_pick("godfahter", "The Godfather")  # a typo
    visit.rate_picked(5)
    visit.search_and_pick("fargo", "Fargo")
    visit.rate_picked(2)
    expect(page.locator("#list-heading")).to_have_text("Recommended for you")
    expect(page.locator("#yours-list > li")).to_have_count(3)
    cards = page.locator("#list-cards > li.card")
    expect(cards.first.locator(".predicted")).to_contain_text("Predicted:")
    expect(cards.first.locator(".because")).to_contain_text("Because you")
    assert not {1, 2, 4} & set(visit.list_ids())  # nothing already rated

    # Change a rating, from "Your ratings", by keyboard: the list follows.
    before_text, before = visit.list_text(), visit.updates()
    star_wars = page.locator("#yours-list li[data-movie='1'] fieldset.stars")
    star_wars.locator("input[value='5']").focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # 5 -> 1 star, one change per key
    expect(star_wars.locator("input[value='1']")).to_be_checked()
    visit.wait_update(before)
    visit.wait_ready()  # the list of the last change: each key asked for one
    assert visit.list_text() != before_text
    stored = json.loads(page.evaluate("localStorage.getItem('movierec.ratings.v1')"))
    assert [(r["movie_id"], r["stars"]) for r in stored] == [(1, 1), (4, 5), (2, 2)]

    # A reload keeps the ratings (in this browser only) and shows the same list.
    after_text = visit.list_text()
    page.reload()
    visit.wait_ready()
    expect(page.locator("#yours-list > li")).to_have_count(3)
    expect(page.locator("#yours-list li[data-movie='4'] input[value='5']")).to_be_checked()
    assert visit.list_text() == after_text

    # Removing one updates the list too.
    before = visit.updates()
    page.get_by_role("button", name="Remove your rating of Fargo").click()
    visit.wait_update(before)
    expect(page.locator("#yours-list > li")).to_have_count(2)


def test_novelty_control_lowers_the_lists_popularity(visit, popularity):
    rated_visit(visit, {1: 5, 4: 4, 6: 5})
    page = visit.page
    familiar = visit.list_ids()
    before = visit.updates()
    slider = page.get_by_label("From familiar to surprising")
    slider.focus()
    slider.press("End")  # keyboard: all the way to surprising
    visit.wait_update(before)
    surprising = visit.list_ids()

    def mean(ids: list[int]) -> float:
        return sum(popularity[m] for m in ids) / len(ids)

    assert surprising and mean(surprising) < mean(familiar), (familiar, surprising)


def test_more_like_this_opens_on_any_movie_and_closes_back(visit):
    visit.open()
    page = visit.page
    button = page.get_by_role("button", name="More like Star Wars").first
    button.click()
    heading = page.locator("#similar-heading")
    expect(heading).to_have_text("More like Star Wars")
    expect(heading).to_be_focused()
    expect(page.locator("#similar-list > li.card").first).to_be_visible()
    assert 1 not in visit.list_ids("#similar-list")
    # Any movie of that list has its own "more like this".
    before = visit.updates("#similar-list")
    page.locator("#similar-list .more").first.click()
    visit.wait_update(before, "#similar-list")
    expect(heading).not_to_have_text("More like Star Wars")
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#similar")).to_be_hidden()


def test_titles_are_shown_as_text_and_run_nothing(visit):
    visit.open()
    page = visit.page
    # The chart of its genre lists the generated title, as text.
    before = visit.updates()
    page.select_option("#genre", "Comedy")
    visit.wait_update(before)
    expect(page.locator("#list-cards .card h3", has_text=XSS)).to_have_count(1)
    visit.search_and_pick("img src", XSS)
    visit.rate_picked(4)
    expect(page.locator("#yours-list")).to_contain_text(XSS)
    assert page.locator("img").count() == 1  # the page's own logo, nothing else
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    # visit's teardown checks that no dialog opened and no script error was reported


def test_phone_width_keyboard_and_labels(browser, web_url):
    tab = Visit(browser, web_url, width=360, height=740)
    try:
        tab.open()
        page = tab.page
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        # Every control has a name a screen reader can say.
        unnamed = page.evaluate(
            """[...document.querySelectorAll('input, select, button')]
                 .filter((e) => !e.closest('[hidden]'))
                 .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                && !e.textContent.trim())
                 .map((e) => e.outerHTML.slice(0, 80))"""
        )
        assert unnamed == []
        # Keyboard only: Tab reaches the search first (after the skip link), and a star.
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        expect(page.locator("#search")).to_be_focused()
        page.keyboard.type("heat")
        expect(page.locator("#suggestions [role=option]").first).to_contain_text("Heat")
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.name || ''")
        assert focused.startswith("stars-"), focused
        before = tab.updates()
        page.keyboard.press("ArrowRight")  # from the first star (focused, not chosen) to 2
        tab.wait_update(before)
        expect(page.locator("#yours-list > li")).to_have_count(1)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert tab.errors == [] and tab.dialogs == []
    finally:
        tab.close()


def test_page_keeps_working_across_two_key_expiries(visit, model_server):
    """The key the page started with expires, then the one after it; the page is used all
    along and every list update succeeds."""
    keys_log = model_server.home / "keys.log"
    renewed_before = keys_log.read_text().count("renewed the inference key")
    rated_visit(visit, {1: 5, 2: 4})
    current = json.loads(model_server.key_file.read_text())
    # The next key is drawn half a lifetime before this one expires and lives a lifetime.
    second_expiry = expiration(current, "inference") + timedelta(minutes=KEY_MINUTES / 2)
    genres = iter(["Drama", "Comedy"] * 50)
    while datetime.now(UTC) < second_expiry + timedelta(seconds=1):
        before = visit.updates()
        visit.page.select_option("#genre", next(genres))
        visit.wait_update(before)
        expect(visit.page.locator("#status")).to_be_hidden()
        time.sleep(1)
    renewed = keys_log.read_text().count("renewed the inference key") - renewed_before
    assert renewed >= 2, keys_log.read_text()
    assert json.loads(model_server.key_file.read_text())["inference"] != current["inference"]


def test_model_server_stopped_says_how_to_start_it(visit, model_server):
    """Runs last: it stops this module's model server."""
    rated_visit(visit, {1: 5})
    os.killpg(model_server.process.pid, 15)
    model_server.process.wait(timeout=60)
    page = visit.page
    page.select_option("#genre", "Drama")
    status = page.locator("#status")
    expect(status).to_contain_text("not running")
    expect(status).to_contain_text("make serve")
    # Opened while it is down, the page says the same.
    page.reload()
    expect(status).to_contain_text("start it with make serve")
    expect(page.locator("#list-cards > li")).to_have_count(0)
    # The browser logs each refused request; those are the only errors expected here.
    assert all("status of 503" in e for e in visit.errors), visit.errors
    visit.errors.clear()
