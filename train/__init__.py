"""Command-line entry points over :mod:`model`: ``python -m train`` and ``python -m train.archive``."""
