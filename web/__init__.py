"""movierec's web page: a person searches titles, rates them, and gets movies to watch next.

A small ASGI app (Starlette, served by uvicorn on 127.0.0.1:8000) that ships its own HTML, CSS
and JavaScript (web/static: no build step, nothing fetched from elsewhere) and answers the
page's JSON routes by calling the model server through :mod:`client`, with the key read from
key_file.json at each call. Ratings stay in the browser; nothing about a person is stored here.

- :mod:`web.app`: routes, JSON errors, security headers;
- :mod:`web.validation`: what each route accepts, and the model server's request it makes;
- :mod:`web.upstream`: the model server calls, and what the page is told when they fail;
- :mod:`web.catalogue`: genres, decades and the star scale, from the served artifact;
- :mod:`web.local`: a private web app in front of a given TorchServe (tests, fuzz, measures);
- :mod:`web.browser`: finding a Chromium for the browser tests and measurements;
- :mod:`web.measure`: the page's speeds in a real browser, and its screenshots.

Run it with ``make serve`` (after TorchServe) or ``python -m web``; see docs/web.md.
"""
