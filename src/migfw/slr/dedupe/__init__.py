"""Deduplicate bibliographic records into linked clusters (`migfw slr dedupe`).

Nothing is deleted: every imported record keeps its provenance and is assigned to a
cluster; each cluster gets one merged record; every compared pair is written out with
the rule that decided it and the per-field evidence, so a reviewer can audit each merge.

Fields are evidence with a reliability, not vetoes (a false merge silently loses a
study, a missed duplicate inflates the counts):
  * true conflicts block: different DOIs, journal vs conference version, an erratum /
    retraction / comment vs the item it is about, different part numbers, years more
    than two apart;
  * equal DOIs merge when the titles agree (a proceedings-volume DOI or a book DOI
    shared by chapters with different titles never merges them);
  * otherwise each field adds a weight (W_* below): title and authors strongly, year,
    venue (ISO 4/NLM abbreviations and acronyms count as the same venue), volume and
    start page as locators, issue only when it looks like an issue number (some exports
    put an accession number there); >= MATCH merges, REVIEW..MATCH goes to a person;
  * clusters are grown link by link and every new member is checked against every
    member already in the cluster, so a chain A~B~C cannot join contradicting A and C;
  * a person's same/different decisions override all of this (decided_by = person).

Candidate pairs come from blocking, never from all pairs: shared DOI, and sorted
neighbourhoods on the title key (every title variant), the reversed title key, first
author + year, and the locators (volume + start page + year, first author + start page).

Modules, in pipeline order: `features` (per-record keys), `blocking` (candidate pairs),
`linkage` (match weights, one chunk of pairs at a time), `scoring` (conflicts and
evidence per pair), `linkstore` (link rows on disk), `clustering` (guarded union),
`merging` (merged records), `decisions` (review table, a person's decisions), `export`
(library CSV/RIS), `core` (`deduplicate`, which runs them), `cli` (`migfw slr dedupe`).
"""

from __future__ import annotations

from migfw.slr.dedupe.cli import register_cli
from migfw.slr.dedupe.core import deduplicate
from migfw.slr.dedupe.decisions import load_dedupe_decisions, review_table
from migfw.slr.dedupe.export import library_records, write_ris
from migfw.slr.dedupe.result import (
    BLOCKED,
    CANONICAL_COLUMNS,
    DISTINCT,
    DUPLICATE,
    LINK_COLUMNS,
    MAYBE,
    DedupeResult,
)
from migfw.slr.dedupe.scoring import MATCH, REVIEW

__all__ = [
    "BLOCKED",
    "CANONICAL_COLUMNS",
    "DISTINCT",
    "DUPLICATE",
    "LINK_COLUMNS",
    "MATCH",
    "MAYBE",
    "REVIEW",
    "DedupeResult",
    "deduplicate",
    "library_records",
    "load_dedupe_decisions",
    "register_cli",
    "review_table",
    "write_ris",
]
