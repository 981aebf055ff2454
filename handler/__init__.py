"""The TorchServe adapter: requests parsed (:mod:`handler.parsing`), answered through the
Recommender (:mod:`handler.answering`), counted (:mod:`handler.metrics`), and the handler class."""
