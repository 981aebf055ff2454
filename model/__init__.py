"""movierec's model package: data, vocabulary, network, training and recommendation logic.

Pure PyTorch/numpy/pandas: nothing here imports TorchServe, so all of it is testable offline.
"""

__version__ = "0.1.0"
