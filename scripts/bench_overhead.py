#!/usr/bin/env python3
"""Where a trial's overhead goes: per experiment and placement, the median of `overhead_s`
(wall minus lead-in, migration and settle, as trials.csv computes it) and of its parts,
read from finished trial folders (trial.json `timeline.steps`, events.jsonl).

    python scripts/bench_overhead.py results/trials [LABEL=DIR ...]

Several folders (e.g. `old=/tmp/a new=/tmp/b`, trials of two code versions run interleaved)
print one block each, so their medians stand side by side. Parts (s): `before` (trial start
to the lead-in's start), of it `deploy` (placement deployed and verified), `guest` (the
guest's ruleset read, conntrack factor set, workload started) and `traffic` (prober,
attackers, temporary allows and flows started); `lead_x`/`settle_x` (lead-in and settle
beyond their configured length); `stop` (settle end to every probe stopped); `after` (the
rest: ruleset after, health, trial.json). Trials written before the parts were recorded
show `before`/`after` from their events only. Prints the load average: timings taken
beside other work are provisional.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

PARTS = ("overhead", "before", "deploy", "guest", "traffic", "lead_x", "settle_x", "stop",
         "after")  # fmt: skip


def parts(folder: Path) -> tuple[str, dict[str, float]] | None:
    """(experiment:placement, {part: seconds}) of one finished ok trial, else None."""
    meta = json.loads((folder / "trial.json").read_text())
    if meta.get("status") != "ok" or not meta.get("timeline"):
        return None
    steps, anchor = meta["timeline"]["steps"], meta["timeline"]["anchor"]
    mig = meta["migration"]
    out = {"overhead": meta["wall_s"] - meta["lead_in_s"] - meta["settle_s"]
           - (mig["end"] - mig["start"])}  # fmt: skip
    out["lead_x"] = steps["migrate_call"] - steps["lead_in_start"] - meta["lead_in_s"]
    out["settle_x"] = steps["settle_end"] - steps["migrate_return"] - meta["settle_s"]
    if "trial_start" in steps:
        out["before"] = steps["lead_in_start"] - steps["trial_start"]
        out["deploy"] = steps["deployed"] - steps["trial_start"]
        out["guest"] = steps["guest_ready"] - steps["deployed"]
        out["traffic"] = steps["lead_in_start"] - steps["guest_ready"]
        out["stop"] = steps["probes_stopped"] - steps["settle_end"]
        out["after"] = steps["trial_end"] - steps["probes_stopped"]
    else:  # older trials: the events' first and last times on the steps' clock
        events = [json.loads(line) for line in (folder / "events.jsonl").open()]
        mono = anchor["monotonic"] - anchor["epoch"]
        out["before"] = steps["lead_in_start"] - (events[0]["t"] + mono)
        out["after"] = events[-1]["t"] + mono - steps["settle_end"]
    key = f"{meta['experiment']}:{meta['factors'].get('placement', 'vm')}"
    return key, out


def table(root: Path) -> list[str]:
    cells: dict[str, list[dict[str, float]]] = defaultdict(list)
    for path in sorted(root.rglob("trial.json")):
        if ".aborted" in path.parts or path.parent.name.endswith(".partial"):
            continue
        found = parts(path.parent)
        if found is not None:
            key, row = found
            cells[key].append(row)
            cells[key.split(":")[0]].append(row)
    lines = [f"{'cell':28s} {'n':>3s} " + " ".join(f"{p:>8s}" for p in PARTS)]
    for key in sorted(cells):
        rows = cells[key]
        med = []
        for p in PARTS:
            values = [r[p] for r in rows if p in r]
            med.append(f"{statistics.median(values):8.2f}" if values else f"{'-':>8s}")
        lines.append(f"{key:28s} {len(rows):3d} " + " ".join(med))
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for arg in argv:
        label, _, where = arg.rpartition("=") if "=" in arg else ("", "", arg)
        root = Path(where)
        if not root.is_dir():
            print(f"{root}: not a directory", file=sys.stderr)
            return 2
        print(f"## {label or root} (median s)")
        print("\n".join(table(root)))
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
