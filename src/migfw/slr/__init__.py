"""The systematic-literature-review branch: import, deduplicate, screen, score, tabulate."""
