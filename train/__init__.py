"""Command-line entry points over :mod:`model`: ``python -m train``, ``python -m train.archive``,
``python -m train.generate``, ``python -m train.newusers``."""
