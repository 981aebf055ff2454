"""Load and serving scenarios, each a command: ``python -m loadtest.scenarios.NAME``.

- ``bench.py``: echo floor vs naive vs movierec's handler over HTTP, then micro (``make bench``).
- ``micro.py``: handler micro-benchmarks without HTTP: a 10,000-pair request, top-K latency.
- ``fuzz.py``: malformed and valid requests at a private TorchServe: no 5xx (``make fuzz``).
- ``faults.py``: a worker killed under Locust load: recovery and failures (``make faults``).
- ``upgrade.py``: a new model version in, made default, rolled back under load (``make upgrade``).
- ``scale.py``: an ML-25M-size .mar: size, start-up, memory, top-10 latency (``make scale``).
- ``soak.py``: the Locust mix past the keys' expiry, memory watched (``make soak``).
- ``served_ranking.py``: Recall/NDCG of a split-trained archive over HTTP beside offline.
- ``handlers/``: the benchmark's baseline handlers (echo, naive), never served in production.
"""
