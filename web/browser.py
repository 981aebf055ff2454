"""A headless Chromium for the page's browser tests and measurements, driven by Playwright.

    python -m web.browser       # prints the Chromium it would use; exit 1, and how to get one

Playwright's own browser download comes from a server many machines cannot reach, so the
system's Chromium is preferred: ``$MOVIEREC_CHROMIUM`` if set, else Debian's
``/usr/bin/chromium`` (``apt-get install chromium``; ``make test`` installs it where apt-get
and root are there), else the one ``python -m playwright install chromium`` downloaded.
Playwright is a development dependency (requirements-dev.txt): only tests and
:mod:`web.measure` import this module.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SYSTEM_CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")
HOW_TO_GET_ONE = (
    "no Chromium found: on Debian/Ubuntu `sudo apt-get install chromium`; elsewhere "
    "`.venv/bin/python -m playwright install chromium`; or set MOVIEREC_CHROMIUM to a "
    "Chromium or Chrome executable"
)


class BrowserMissing(RuntimeError):
    """No Chromium to drive (the message says how to get one)."""


def system_chromium() -> str | None:
    """``$MOVIEREC_CHROMIUM``, else the first system Chromium on PATH, else None."""
    chosen = os.environ.get("MOVIEREC_CHROMIUM")
    if chosen:
        return chosen
    for name in SYSTEM_CHROMIUMS:
        found = shutil.which(name)
        if found:
            return found
    return None


def find_chromium() -> str:
    """The Chromium executable to launch (module docstring); raises :class:`BrowserMissing`."""
    found = system_chromium()
    if found:
        return found
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        own = p.chromium.executable_path
    if own and Path(own).is_file():
        return own
    raise BrowserMissing(HOW_TO_GET_ONE)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed (with Playwright) when the block ends."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    # Chromium refuses to start its sandbox as root (CI runs as root): without it there.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def main() -> int:
    try:
        print(find_chromium())
    except BrowserMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
