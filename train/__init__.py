"""Everything offline: data, fitting, evaluation, and the command lines over them.

- :mod:`train.data`: MovieLens releases, their formats, splits;
- :mod:`train.fitting`: the rating models, the ranking model, choosing settings on validation;
- :mod:`train.evaluation` and :mod:`train.peers`: metrics, new-user protocols, ranking peers;
- command lines: ``python -m train`` (train.train), ``train.archive``, ``train.evaluate``,
  ``train.newusers``, ``train.generate``, ``train.ranker_scale``.

Nothing here is packed into the .mar: serving needs only :mod:`model` and :mod:`handler`.
"""
