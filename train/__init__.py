"""Everything offline: data, fitting, evaluation, and the command lines over them.

Its modules form layers, lowest first; a module imports only from its own layer and the ones
listed before it (tests/test_layers.py reads every import, those inside functions and behind
``TYPE_CHECKING`` too, and holds them to it):

1. data: :mod:`train.data`: MovieLens releases, their formats, splits, and the encoded split
   (:mod:`train.data.prepared`) whose parts are :class:`~train.data.interactions.Interactions`;
2. metrics: :mod:`train.evaluation.metrics` and :mod:`train.evaluation.ranking`: rating and
   ranking figures of any scorer on an encoded split;
3. peers: :mod:`train.peers`: the ranking peers (most popular, EASE, iALS, cosine) and their
   tuning on validation;
4. fitting: :mod:`train.fitting`: the rating models, the ranking model (whose item-item part is
   EASE's closed form, from the peers), choosing settings on validation, the experiment;
5. protocols: the rest of :mod:`train.evaluation`: new users folded in, new users ranked;
6. commands: the modules directly in train/: ``python -m train`` (train.train),
   ``train.archive``, ``train.evaluate`` (with train.tradeoff), ``train.newusers``,
   ``train.generate``, ``train.ranker_scale``, ``train.search_quality``.

Below all of them, :mod:`model` (the served core) and :mod:`model.console` (the command lines'
preamble); train/ imports nothing of ``client``, ``web``, ``loadtest`` or ``handler``.

Nothing here is packed into the .mar: serving needs only :mod:`model` and :mod:`handler`.
"""
