"""What `deduplicate` returns and writes: the result type, column lists, decisions."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class DedupeResult:
    """Output of `deduplicate`: nothing is dropped, everything is traceable."""

    clusters: pd.DataFrame  # record_id, cluster_id (one row per input record)
    links: pd.DataFrame  # one row per scored candidate pair (LINK_COLUMNS)
    merged: pd.DataFrame  # one row per cluster
    stats: dict = field(default_factory=dict)


def text_column(frame: pd.DataFrame, column: str) -> list[str]:
    """A column as strings ('' for missing values or a missing column)."""
    if column not in frame.columns:
        return [""] * len(frame)
    return ["" if pd.isna(v) else str(v) for v in frame[column].tolist()]
