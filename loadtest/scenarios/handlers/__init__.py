"""Baseline handlers the benchmark compares movierec's handler with (never served in production)."""
