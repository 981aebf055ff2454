"""Load tests (Locust) and serving benchmarks of movierec; see README "Load testing".

The plumbing every load run shares lives here; the scenarios built on it, each its own
command (``python -m loadtest.scenarios.NAME``), live in :mod:`loadtest.scenarios`.

- ``locustfile.py``: the Locust users, one class per endpoint kind, in the realistic mix.
- ``traffic.py``: what the users send and how each answer is judged (no Locust).
- ``slo.py``: the service-level objectives every load run is judged by.
- ``knee.py``: Locust load shape that steps users up until the SLO breaks (``make knee``).
- ``minutes.py``: Locust plug-in writing per-interval figures of a long run (the soak).
- ``run.py``: ``make loadtest`` / ``make knee`` (``python -m loadtest.run``), and running Locust.
- ``server.py``: a private TorchServe on free ports, always stopped.
- ``report.py``: machine details and the benchmark's Markdown report.
"""
