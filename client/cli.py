"""The preamble every movierec command line shares.

    from client import cli

    def main(argv=None):
        p = cli.parser("python -m loadtest.scenarios.fuzz", __doc__)
        p.add_argument(...)
        args = p.parse_args(argv)

One place decides how our tools log (INFO, a timestamp and the logger's name on each line) and
how their ``--help`` reads (the module's docstring, its layout kept). It lives in :mod:`client`
because that package needs nothing beyond the standard library, so ``train``, ``loadtest`` and
``client`` may all import it without pulling in torch.
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
