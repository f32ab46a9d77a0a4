"""Crafted RIS exports for the dedupe tests: one journal article whose fields the tests
vary (`BASE`), and a writer of records (tag -> value or list of values) as a RIS file."""

from __future__ import annotations

from pathlib import Path

BASE = {
    "AU": ["Nguyen, Thi Mai", "Okafor, Chidi", "Lindqvist, Erik"],
    "TI": "Keeping firewall state consistent during live migration of virtual machines",
    "PY": "2013",
    "T2": "Journal of Cloud Computing",
    "VL": "2",
    "IS": "4",
    "SP": "101",
    "EP": "118",
}


def ris_file(path: Path, records: list[dict]) -> Path:
    """`records` as RIS at `path` (TY defaults to JOUR; a list gives one line per item)."""
    lines = []
    for rec in records:
        lines.append(f"TY  - {rec.get('TY', 'JOUR')}")
        for tag, value in rec.items():
            if tag != "TY":
                lines += [f"{tag}  - {v}" for v in (value if isinstance(value, list) else [value])]
        lines += ["ER  - ", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def uncertain_pair_file(path: Path) -> Path:
    """`ua` and `ub`: the same title, authors and journal two years apart, without
    volume, issue or pages (neither a merge nor a split is safe: a person decides), and
    an unrelated record `other`."""
    a = {**BASE, "ID": "ua", "PY": "2013"}
    b = {**BASE, "ID": "ub", "PY": "2015"}
    for rec in (a, b):
        for tag in ("VL", "IS", "SP", "EP"):
            rec.pop(tag)
    return ris_file(path, [a, b, {**BASE, "ID": "other", "TI": "Unrelated work"}])
