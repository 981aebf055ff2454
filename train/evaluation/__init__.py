"""Judging models offline: rating and ranking metrics, new-user protocols."""
