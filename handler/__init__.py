"""The TorchServe adapter: request protocol (:mod:`handler.protocol`) and the handler class."""
