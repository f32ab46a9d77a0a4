"""Related items that share a title: a republication, a notice and the item it is
about. Whether such a pair is one work (merged, and allowed in one cluster despite its
two DOIs) or goes to a person (scoring.py decides with these)."""

from __future__ import annotations

import re

from migfw.slr.dedupe.features import _Features
from migfw.slr.normalise import split_pages

# A correction or retraction notice titled after its item ("Erratum to: <title>",
# "Retracted: <title>"); comments and replies are other people's works.
_NOTICE_OF_RE = re.compile(
    r"^(?:erratum|errata|corrigendum|corrigenda|correction|retraction|retracted|"
    r"notice of retraction)(?: (?:to|for|of|on|in|notice))* (.+)$"
)


def _notice_of(feat: _Features, i: int, j: int) -> bool:
    """One record is a correction/retraction notice whose title is the other's
    (informative) title after the notice words."""
    if feat.notice[i] == feat.notice[j]:
        return False
    notice, item = (i, j) if feat.notice[i] else (j, i)
    match = _NOTICE_OF_RE.match(feat.title[notice])
    return bool(match and not feat.generic[item] and match.group(1) == feat.title[item])


REPUBLISHED_TITLE_WORDS = 5  # shorter titles repeat as column headings in one venue


def _republication(feat: _Features, i: int, j: int) -> bool:
    """The same informative title (>= REPUBLISHED_TITLE_WORDS words, no notice) by the
    same non-empty author list in the same venue."""
    title = feat.title[i]
    return bool(
        title and title == feat.title[j]
        and not (feat.generic[i] or feat.generic[j] or feat.notice[i] or feat.notice[j])
        and len(title.split()) >= REPUBLISHED_TITLE_WORDS
        and feat.authors[i] and feat.authors[i] == feat.authors[j]
        and feat.venue[i] and feat.venue[i] == feat.venue[j]
    )  # fmt: skip


def _page_span(pages: str) -> tuple[int, int] | None:
    """(first, last) page of a numeric range or single page ('46-54' -> (46, 54))."""
    parts = split_pages(pages, maxsplit=1)
    if not all(p.isdigit() for p in parts):
        return None
    first, last = int(parts[0]), int(parts[-1])
    return (first, last) if last >= first else None


def _republished(feat: _Features, i: int, j: int) -> bool:
    """A republication of one text: the same title by the same authors in the same venue
    (`_republication`) on two page ranges of the same length (>= 2 pages). A sibling
    item that reuses a title (a section's introduction in a later issue, a correction
    on one page) differs in length."""
    a, b = _page_span(feat.pages[i]), _page_span(feat.pages[j])
    return bool(a and b and a[1] > a[0] and a[1] - a[0] == b[1] - b[0]) and _republication(
        feat, i, j
    )


def _notice_with_item(feat: _Features, i: int, j: int) -> bool:
    """A correction notice titled after its item (`_notice_of`) and printed with it: the
    same venue, volume and issue, starting on the item's last page or the page after.
    A notice in a later issue is a notice of its own."""
    if not _notice_of(feat, i, j):
        return False
    notice, item = (i, j) if feat.notice[i] else (j, i)
    at, of = _page_span(feat.pages[notice]), _page_span(feat.pages[item])
    return bool(
        at and of and 0 <= at[0] - of[1] <= 1
        and feat.venue[i] and feat.venue[i] == feat.venue[j]
        and feat.volume[i] and feat.volume[i] == feat.volume[j]
        and feat.issue[i] == feat.issue[j]
    )  # fmt: skip


def _one_work(feat: _Features, i: int, j: int) -> str:
    """The rule that makes two records one work although their DOIs (and locators)
    differ, or ''. Such a pair merges, and the cluster check lets it stand."""
    if not (feat.doi_base[i] and feat.doi_base[j] and feat.doi_base[i] != feat.doi_base[j]):
        return ""  # one DOI or none: the ordinary rules decide
    if _republished(feat, i, j):
        return "republished: same title, authors, venue and length"
    if _notice_with_item(feat, i, j):
        return "notice printed with its item"
    return ""
