"""Trials: the trial-folder contract (names, load, validate, discover) and crafted trials."""
