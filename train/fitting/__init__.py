"""Fitting: the rating models (autoencoder, MF, baselines), the ranking model, and the experiment
that chooses their settings on validation and scores test once.

settings.py defines every training setting and the presets; loop.py the epoch loop every
trainer runs (training.py: the rating models; ranker_training.py: the ranking model);
experiment.py a run on a split and the refit on all ratings."""
