"""`migfw slr import FILE... [--database NAME] --out records.csv`."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from migfw.io import check_output_path, write_csv
from migfw.slr.imports.core import _unique_ids, read_export
from migfw.slr.imports.detect import _detect
from migfw.slr.imports.records import SlrImportWarning, _read_text


def _cmd_import(args: argparse.Namespace) -> int:
    check_output_path(args.out, "file")
    frames = []
    for path in args.files:
        # Each file's warnings go out right after its line, even if a later file fails.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SlrImportWarning)
            try:
                frame = read_export(path, args.database)
            finally:
                for warning in caught:
                    print(f"warning: {warning.message}", file=sys.stderr)
        fmt = frame["format"].iloc[0] if len(frame) else _detect(Path(path), _read_text(Path(path)))
        db = (frame["database"].iloc[0] if len(frame) else args.database) or "unknown database"
        print(f"{path}: {len(frame)} records ({fmt}, {db})")
        frames.append(frame)
    table = _unique_ids(pd.concat(frames, ignore_index=True))
    write_csv(args.out, table)
    print(f"total: {len(table)} records from {len(frames)} files -> {args.out}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import",
        help="read native bibliographic exports into one canonical records CSV",
        description="Read RIS, BibTeX, CSV/TSV, WoS, nbib, EndNote (tagged or XML) or PubMed "
        "XML exports (format detected from content) and write the canonical record table.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="export files")
    parser.add_argument(
        "--database", default=None, help="database name for every FILE (default: inferred)"
    )
    parser.add_argument("--out", required=True, help="output CSV (written atomically)")
    parser.set_defaults(func=_cmd_import)
