"""Import native bibliographic exports into the canonical SLR record table.

Formats are detected from the file CONTENT (database exports often carry a misleading
extension): RIS (incl. Ovid/EBSCO variants), BibTeX, CSV/TSV (Scopus, IEEE Xplore,
Web of Science, SpringerLink, Lens.org, OpenAlex, Consensus, generic), Web of Science
tagged text, MEDLINE (PubMed nbib, ERIC), EndNote tagged text, EndNote XML and PubMed XML.

One module per format family: `detect` (format sniffing), `ris` (rispy underneath),
`bibtex` (bibtexparser 2 underneath), `csv_exports`, `tagged` (WoS, MEDLINE, EndNote),
`xml_exports` (PubMed XML, EndNote XML); `records` holds the canonical table and the
shared field helpers, `core` the dispatch and `cli` the command.

`migfw slr import FILE... [--database NAME] --out records.csv`
"""

from __future__ import annotations

from migfw.slr.imports.cli import register_cli
from migfw.slr.imports.core import read_export, read_exports, read_records
from migfw.slr.imports.detect import detect_format
from migfw.slr.imports.records import COLUMNS, SlrImportWarning

__all__ = [
    "COLUMNS",
    "SlrImportWarning",
    "detect_format",
    "read_export",
    "read_exports",
    "read_records",
    "register_cli",
]
