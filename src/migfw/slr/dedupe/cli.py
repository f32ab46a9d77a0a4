"""`migfw slr dedupe FILE... --out DIR [--decisions CSV]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from migfw.io import check_output_path, write_csv
from migfw.slr.dedupe.core import deduplicate
from migfw.slr.dedupe.decisions import REVIEW_FIELDS, load_dedupe_decisions, review_table
from migfw.slr.dedupe.export import write_library
from migfw.slr.dedupe.heap import return_heap

# What review.csv and the library read of the imported records once deduplicate is done.
_KEPT_AFTER = ["record_id", "source_file", *REVIEW_FIELDS]


def _run(args: argparse.Namespace) -> int:
    from migfw.slr.imports import read_exports  # S1's reader (raises MigfwError)

    check_output_path(args.out, "folder")
    records = read_exports([str(p) for p in args.files], databases=args.database)
    # The reader's freed text and row dicts stay in the heap and Arrow's pool otherwise
    # (25,000 records, a 13 MiB table: RSS 221 -> 186 MiB).
    return_heap()
    print(f"records imported: {len(records)}", file=sys.stderr)
    person = load_dedupe_decisions(args.decisions, records["record_id"]) if args.decisions else []
    result = deduplicate(records, decisions=person, apart_by=args.apart_by)
    out = Path(args.out)
    write_csv(out / "clusters.csv", result.clusters)
    write_csv(out / "records.csv", result.merged)
    result.write_links(out / "links.csv")  # streamed from disk, one bucket at a time
    # Abstracts, keywords and the other fields only merging needed: freed.
    records = records[[c for c in dict.fromkeys(_KEPT_AFTER) if c in records.columns]]
    return_heap()
    write_csv(out / "review.csv", review_table(result, records))
    return_heap()  # the link buckets review_table read (100,000 records: +27 MiB)
    write_library(out / "library.csv", out / "library.ris", result, records)
    s = result.stats
    print(
        f"candidate pairs: {s['candidate_pairs']} (scored {s['scored_pairs']}); "
        f"links: {s['links']}; clusters: {s['clusters']} "
        f"({s['records'] - s['clusters']} duplicates); {s['review_pairs']} pairs for review, "
        f"{s['person_decisions']} decided by a person; {s['seconds']} s",
        file=sys.stderr,
    )
    print(
        f"wrote {out / 'clusters.csv'}, {out / 'records.csv'}, {out / 'links.csv'}, "
        f"{out / 'review.csv'}, {out / 'library.csv'}, {out / 'library.ris'}"
    )
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dedupe",
        help="link duplicate records into clusters (nothing is deleted)",
        description="Read exports, cluster duplicates, write clusters.csv, records.csv "
        "(one merged record per cluster) and links.csv (evidence for every compared pair).",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="export files")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--database",
        action="append",
        metavar="NAME",
        help="database of each FILE, in order (give it once per file); default: inferred",
    )
    parser.add_argument(
        "--decisions",
        type=Path,
        metavar="CSV",
        help="a person's decisions (record_a, record_b, decision = same/different), e.g. "
        "review.csv with its decision column filled; they override the machine",
    )
    parser.add_argument(
        "--apart-by",
        choices=("source_file", "database"),
        help="each FILE (source_file) or each database's records were already deduplicated: "
        "records sharing it are never merged by the machine (CoLRev's search-set convention)",
    )
    parser.set_defaults(func=_run)
