"""movierec's served core: what a TorchServe worker imports, and all that the .mar packs.

The vocabulary, the rating network, the ranking model, new-user fold-in, the popular fallback,
the artifact format and the :class:`~model.recommender.Recommender` the handler talks to. Pure
PyTorch/numpy/pandas: nothing here imports TorchServe or any offline code (see :mod:`train`).
"""

__version__ = "0.1.0"
