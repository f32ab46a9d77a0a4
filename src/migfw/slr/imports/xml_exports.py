"""XML exports: PubMed XML and EndNote XML (read with the standard library's
ElementTree; only the element paths are format knowledge)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from migfw.errors import MigfwError
from migfw.slr.imports.records import _DB_NAMES, _record, _split_issn_isbn
from migfw.slr.normalise import clean_text


def _xml_root(text: str, path: Path) -> ET.Element:
    # The DOCTYPE names an external DTD we must not fetch; expat ignores it.
    try:
        return ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise MigfwError(f"{path}: malformed XML ({exc})") from None


def _itertext(elem: ET.Element | None) -> str:
    return clean_text("".join(elem.itertext())) if elem is not None else ""


def _read_pubmed_xml(text: str, path: Path) -> tuple[list[dict], str]:
    root = _xml_root(text, path)
    out = []
    for art in root.iter():
        if art.tag not in ("PubmedArticle", "PubmedBookArticle"):
            continue
        cit = art.find("MedlineCitation")
        book = art.find("BookDocument")
        base = cit if cit is not None else book
        if base is None:
            continue
        article = base.find("Article") if cit is not None else base
        article = article if article is not None else base
        journal = article.find("Journal")
        authors = []
        for author in article.iterfind(".//AuthorList/Author"):
            last = _itertext(author.find("LastName"))
            first = _itertext(author.find("ForeName")) or _itertext(author.find("Initials"))
            collective = _itertext(author.find("CollectiveName"))
            if last:
                authors.append(f"{last}, {first}" if first else last)
            elif collective:
                authors.append(collective)
        doi = ""
        for elem in list(article.iterfind("ELocationID")) + list(
            art.iterfind(".//ArticleIdList/ArticleId")
        ):
            if (elem.get("EIdType") or elem.get("IdType")) == "doi":
                doi = _itertext(elem)
                break
        pubdate = journal.find("JournalIssue/PubDate") if journal is not None else None
        year = ""
        if pubdate is not None:
            year = _itertext(pubdate.find("Year")) or _itertext(pubdate.find("MedlineDate"))
        if not year:
            year = _itertext(base.find(".//ArticleDate/Year")) or _itertext(
                base.find(".//PubDate/Year")
            )
        abstract = " ".join(
            (f"{p.get('Label')}: " if p.get("Label") else "") + _itertext(p)
            for p in article.iterfind("Abstract/AbstractText")
        )
        pmid = _itertext(base.find("PMID"))
        issns = [_itertext(e) for e in (journal.iterfind("ISSN") if journal is not None else [])]
        issn, isbn = _split_issn_isbn(issns + [_itertext(e) for e in base.iterfind(".//Isbn")])
        out.append(
            _record(
                record_id=pmid,
                entry_type=_itertext(article.find(".//PublicationTypeList/PublicationType"))
                or ("book" if book is not None else "article"),
                title=_itertext(article.find("ArticleTitle"))
                or _itertext(article.find("BookTitle")),
                authors=authors,
                year=year,
                doi=doi,
                venue=_itertext(journal.find("Title")) if journal is not None else "",
                volume=_itertext(journal.find("JournalIssue/Volume"))
                if journal is not None
                else "",
                issue=_itertext(journal.find("JournalIssue/Issue")) if journal is not None else "",
                pages=_itertext(article.find("Pagination/MedlinePgn")),
                abstract=abstract,
                keywords=[_itertext(k) for k in base.iterfind(".//KeywordList/Keyword")],
                publisher=_itertext(base.find(".//Publisher/PublisherName")),
                issn=issn,
                isbn=isbn,
                url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid else "",
                language=_itertext(article.find("Language")),
            )
        )
    return out, "PubMed"


def _read_endnote_xml(text: str, path: Path) -> tuple[list[dict], str]:
    root = _xml_root(text, path)
    out = []
    databases = set()
    for rec in root.iter("record"):

        def t(xpath: str, rec: ET.Element = rec) -> str:
            return _itertext(rec.find(xpath))

        ref_type = rec.find("ref-type")
        kind = ref_type.get("name", "") if ref_type is not None else ""
        authors = [_itertext(a) for a in rec.iterfind("contributors/authors/author")]
        urls = [_itertext(u) for u in rec.iterfind("urls/related-urls/url")]
        issn, isbn = _split_issn_isbn([t("isbn")])
        databases.add(t("remote-database-name") or t("remote-database-provider"))
        out.append(
            _record(
                record_id=t("accession-num") or t("rec-number"),
                entry_type={
                    "journal article": "article",
                    "conference proceedings": "inproceedings",
                    "conference paper": "inproceedings",
                    "book section": "incollection",
                }.get(kind.lower(), kind),
                title=t("titles/title"),
                authors=authors,
                year=t("dates/year") or t("dates/pub-dates/date"),
                doi=t("electronic-resource-num"),
                venue=t("titles/secondary-title")
                or t("periodical/full-title")
                or t("titles/alt-title"),
                volume=t("volume"),
                issue=t("number") or t("issue"),
                pages=t("pages"),
                abstract=t("abstract"),
                keywords=[_itertext(k) for k in rec.iterfind("keywords/keyword")],
                publisher=t("publisher"),
                issn=issn,
                isbn=isbn,
                url=urls[0] if urls else "",
                language=t("language"),
            )
        )
    names = " ".join(sorted(d for d in databases if d)).lower()
    database = next((name for needle, name in _DB_NAMES if needle in names), "")
    return out, database
