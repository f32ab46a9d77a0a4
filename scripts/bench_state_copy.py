#!/usr/bin/env python3
"""`vmm-state`'s state copy: one `conntrack -R` (migfw.testbed.conntrack.carry) against the
copy it replaced, one `conntrack -I` - and, the entry being there, `conntrack -U` - process
per entry, between two scratch network namespaces (root; conntrack-tools).

    python scripts/bench_state_copy.py [--entries 150] [--rounds 3] [--stale]

The source holds --entries ESTABLISHED entries of the VM's address; with --stale the
destination holds the same entries already (issue 22's grid: the entries of earlier trials
piled up on both hosts, so every `-I` failed and `-U` walked the table). Each round times
both copies (the destination emptied or re-filled before each) and prints seconds, entries
present afterwards and the load average; the namespaces are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import time
import uuid

from migfw.testbed.conntrack import carry, entries_for, run_on

VM = "10.231.0.10"


def per_entry_copy(source: str, destination: str, address: str) -> tuple[float, int]:
    """The replaced method: seconds, entries present afterwards (its own ok count)."""
    started = time.monotonic()
    entries = entries_for(run_on(source, ["conntrack", "-L", "-o", "save"]).stdout, address)
    lines = []
    for args in entries:
        quoted = shlex.join(args)
        lines.append(f"if conntrack -I {quoted} 2>/dev/null || conntrack -U {quoted} 2>/dev/null;"
                     " then echo ok; else echo fail; fi")  # fmt: skip
    out = run_on(destination, ["sh", "-s"], "\n".join(lines) + "\n").stdout.split()
    return time.monotonic() - started, out.count("ok")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stale", action="store_true", help="the destination has them already")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_state_copy: needs root (network namespaces)")
    tag = uuid.uuid4().hex[:6]
    source, destination = f"mbsc{tag}-s", f"mbsc{tag}-d"
    load = "".join(
        f"-A -t 431999 -u SEEN_REPLY,ASSURED -s 10.231.0.2 -d {VM} -p tcp --sport {20000 + i}"
        " --dport 7 --state ESTABLISHED\n"
        for i in range(args.entries)
    )
    made = []
    try:
        for ns in (source, destination):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        run_on(source, ["conntrack", "-R", "-"], load)

        def reset() -> None:
            run_on(destination, ["conntrack", "-F"])
            if args.stale:
                run_on(destination, ["conntrack", "-R", "-"], load)

        print(f"{args.entries} entries, destination {'holds them' if args.stale else 'empty'}")
        for k in range(args.rounds):
            reset()
            old_s, old_ok = per_entry_copy(source, destination, VM)
            reset()
            started = time.monotonic()
            record = carry(source, destination, VM)
            new_s = time.monotonic() - started
            print(f"round {k + 1}: per-entry -I/-U {old_s:.3f} s ({old_ok} ok)   "
                  f"conntrack -R {new_s:.3f} s ({record['inserted']}/{record['entries']} "
                  f"present)   ratio {old_s / new_s:.1f}x   "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
