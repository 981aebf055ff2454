"""The preamble every movierec command line shares.

    from model import console

    def main(argv=None):
        p = console.parser("python -m loadtest.scenarios.fuzz", __doc__)
        p.add_argument(...)
        args = p.parse_args(argv)

One place decides how our tools log (INFO, a timestamp and the logger's name on each line) and
how their ``--help`` reads (the module's docstring, its layout kept).

It lives in :mod:`model` because that is the one package every other one already builds on
(``train``, ``loadtest`` and ``web`` import the served core), so no command line depends on
another side's package for it: ``train`` does not import ``client``. It needs nothing beyond
the standard library, and importing it runs only ``model/__init__.py``, which imports
nothing, so ``client`` uses it too without pulling in torch. The .mar packs it with the rest
of :mod:`model`; the handler does not use it.
"""

from __future__ import annotations

import argparse
import logging

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr at ``level``, one timestamped line per record, named by its logger."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")


def parser(prog: str, doc: str | None, *, log_level: int = logging.INFO) -> argparse.ArgumentParser:
    """Set up logging and return an argument parser whose help is ``doc`` as written.

    ``prog`` is how the command is typed (``python -m train.evaluate``), so usage lines and
    error messages name the command a user can copy.
    """
    setup_logging(log_level)
    return argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
