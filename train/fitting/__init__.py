"""Fitting: the rating models (autoencoder, MF, baselines), the ranking model, and the experiment
that chooses their settings on validation and scores test once."""
