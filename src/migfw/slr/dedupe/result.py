"""What `deduplicate` returns and writes: the result type, column lists, decisions."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pandas as pd

CANONICAL_COLUMNS = [
    "record_id", "source_file", "source_index", "database", "format", "entry_type", "title",
    "authors", "year", "doi", "venue", "volume", "issue", "pages", "abstract", "keywords",
    "publisher", "issn", "isbn", "url", "language",
]  # fmt: skip

LINK_COLUMNS = [
    "record_a", "record_b", "decision", "score", "evidence", "rule", "decided_by", "title_sim",
    "author_sim",
    "venue_sim", "doi", "year", "pages", "volume", "issue", "venue_type",
]  # fmt: skip

# Decisions written to links.csv.
DUPLICATE = "duplicate"  # link accepted: both records are in one cluster
DISTINCT = "distinct"  # evidence says these are different works
MAYBE = "maybe"  # similar, not merged: too little evidence either way (manual check)
BLOCKED = "blocked"  # pair looked like a duplicate, but joining would put contradicting


class DedupeResult:
    """Output of `deduplicate`: nothing is dropped, everything is traceable.

    `clusters`: record_id, cluster_id (one row per input record); `links`: one row per
    scored candidate pair (LINK_COLUMNS), read from disk on first use when `deduplicate`
    spilled them (a LinkStore); `write_links` writes links.csv without holding them all;
    `merged`: one row per cluster."""

    def __init__(
        self, clusters: pd.DataFrame, links: Any, merged: pd.DataFrame, stats: dict | None = None
    ) -> None:
        self.clusters = clusters
        self._links = links
        self.merged = merged
        self.stats = stats if stats is not None else {}

    @property
    def links(self) -> pd.DataFrame:
        if not isinstance(self._links, pd.DataFrame):
            store, self._links = self._links, self._links.frame()
            store.close()
        return self._links

    @links.setter
    def links(self, frame: pd.DataFrame) -> None:
        self._links = frame

    def select_links(self, where: Callable[[pd.DataFrame], Any]) -> pd.DataFrame:
        """The link rows for which `where(frame)` is true, in links order, read bucket
        by bucket when they are on disk (the review table needs the few `maybe` rows)."""
        if isinstance(self._links, pd.DataFrame):
            return self._links[where(self._links)]
        parts = [frame[where(frame)] for frame in self._links.frames()]
        return pd.concat(parts, ignore_index=True) if parts else self.links

    def write_links(self, path: str | os.PathLike) -> None:
        """links.csv (atomically), streamed from disk when the rows are still there."""
        from migfw.io import atomic_write, write_csv

        if isinstance(self._links, pd.DataFrame):
            write_csv(path, self._links)
            return
        with atomic_write(path, newline="") as handle:
            self._links.write_csv(handle)


def text_column(frame: pd.DataFrame, column: str) -> list[str]:
    """A column as strings ('' for missing values or a missing column)."""
    if column not in frame.columns:
        return [""] * len(frame)
    return ["" if pd.isna(v) else str(v) for v in frame[column].tolist()]
