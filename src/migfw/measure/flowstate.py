"""The flows across the migration and the connection state that carries them (issue 22).

Per flow of `flows.csv` (docs/attack_window.md, migfw.trials.attack_contract):
  opened              established before migrating: it connected, a request sent after
                      the last temporary allow rule was removed (a flow admitted only by
                      state) and before the migration started was answered, and it was still
                      alive then (no reset/closed/timeout/error on a request sent before it)
  survived            (opened flows only) no reset/closed/timeout/error, a request sent
                      after the migration's end was answered, and an answer came in the last
                      second of the flows' log (still alive when the flows stopped)
  stall_ms            (opened only) longest gap between consecutive answers' arrivals
  reset               (opened only) a `reset` event was recorded
  recovery_ms         (opened only) resume -> the first answer that arrived after it
  first_after_resume  prober | guest | none: whose segment of the flow the prober's capture
                      (`flows.pcap`) shows first at or after the resume
  restored_by         prober | guest | none: for a flow that survived, whose packet got
                      through first after the resume - prober if the guest's first segment
                      after it acknowledges data the prober sent after it (or less than the
                      flow's fastest answer before it: then still in flight), else guest;
                      none if it did not survive
  ct_<host>_<moment>  the flow's entry in conntrack/<host>-<moment>.txt: `<STATE>:<side>`
                      (side: whose packet opened the entry, by its original direction) or
                      `absent`; empty without that dump

A flow that did not open gets empty survival cells: it is never counted as "not survived".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from migfw.errors import MigfwError
from migfw.io import csv_records
from migfw.trials.attack_contract import (
    CONNTRACK_HOSTS,
    CONNTRACK_MOMENTS,
    FLOW_NAME,
    FLOWS_CAPTURE,
    FLOWS_HEADER,
    KNOWN_FLOWS,
    TERMINAL_EVENTS,
    allow_removed_at,
    conntrack_file,
    flow_meta,
)

FLOW_METRICS = ["opened", "survived", "stall_ms", "reset", "recovery_ms", "first_after_resume",
                "restored_by"]  # fmt: skip
CT_METRICS = [f"ct_{h}_{m}" for h in CONNTRACK_HOSTS for m in CONNTRACK_MOMENTS]


def flow_column(flow: str, metric: str) -> str:
    """trials.csv column of a flow's metric (`stateful`'s survival keeps its older name)."""
    if flow == "stateful" and metric == "survived":
        return "stateful_flow_survived"
    return f"{flow}_{metric}"


def flow_columns(flows: list[str] | None = None) -> list[str]:
    """The columns of the given flows (default: the contract's known flows), in order."""
    return [flow_column(f, m) for f in (flows or list(KNOWN_FLOWS))
            for m in FLOW_METRICS + CT_METRICS]  # fmt: skip


# --------------------------------------------------------------------------- flows.csv


def read_flows(path: str | Path) -> dict[str, dict[str, Any]]:
    """flow -> {send (int64 ns), reply (int64 ns, -1 if unanswered), events: [(seq, event)]},
    each sorted by send time. Exact integers: epoch ns do not fit a float64 exactly."""
    path = Path(path)
    rows: dict[str, list[tuple[int, int, int]]] = {}
    events: dict[str, list[tuple[int, str]]] = {}
    try:
        with open(path, newline="") as handle:
            for line, rec in csv_records(handle, path, FLOWS_HEADER):
                if len(rec) != 5:
                    raise MigfwError(f"{path}: line {line}: expected 5 fields, got {len(rec)}")
                flow, seq, send, reply, event = (v.strip() for v in rec)
                if not FLOW_NAME.match(flow):
                    raise MigfwError(f"{path}: line {line}: flow name {flow!r} must match "
                                     f"{FLOW_NAME.pattern}")  # fmt: skip
                try:
                    item = (int(seq), int(send), int(reply) if reply else -1)
                except ValueError:
                    raise MigfwError(
                        f"{path}: line {line}: seq/t_send_ns/t_reply_ns must be integers"
                    ) from None
                rows.setdefault(flow, []).append(item)
                if event:
                    events.setdefault(flow, []).append((item[0], event))
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MigfwError(f"{path}: not a text CSV file") from None
    out: dict[str, dict[str, Any]] = {}
    for flow, items in rows.items():
        arr = np.array(items, dtype=np.int64)
        arr = arr[np.argsort(arr[:, 1], kind="stable")]
        out[flow] = {
            "send": arr[:, 1],
            "reply": arr[:, 2],
            "events": events.get(flow, []),
            "sent_at": dict(zip(arr[:, 0].tolist(), arr[:, 1].tolist(), strict=True)),
        }
    return out


ALIVE_WITHIN_NS = 1_000_000_000  # a surviving flow still got an answer in the log's last second


def flow_metrics(
    flow: dict[str, Any] | None, after_s: float | None, log_end_ns: int | None = None
) -> dict[str, Any]:
    """survived, stall_ms, reset of one flow (whether or not it opened). survived: no
    terminal event, a request sent after `after_s` (the migration's end) answered, and - with
    `log_end_ns`, the end of the flows' log - an answer within its last second (a flow that
    answered once after the migration and then went silent did not survive)."""
    if flow is None:
        return {"survived": None, "stall_ms": None, "reset": None}
    events = [e for _, e in flow["events"]]
    ended = any(e.split(":", 1)[0] in TERMINAL_EVENTS for e in events)
    answered = flow["reply"] >= 0
    late = flow["send"] >= round(after_s * 1e9) if after_s is not None else answered
    survived = bool(not ended and np.any(answered & late))
    if survived and log_end_ns is not None:
        survived = bool(np.max(flow["reply"][answered]) >= log_end_ns - ALIVE_WITHIN_NS)
    rx = np.sort(flow["reply"][answered])
    stall = int(np.max(np.diff(rx))) / 1e6 if len(rx) >= 2 else None
    return {"survived": survived, "stall_ms": stall, "reset": "reset" in events}


def flow_opened(flow: dict[str, Any], state_only: bool | None, allow_removed_s: float | None,
                start_s: float | None) -> bool:  # fmt: skip
    """Established before migrating: no connect error, and a request sent after the temporary
    allow rules were gone (for a flow only state admits) and before the migration's start was
    answered. Without a known start, any answered request counts."""
    if any(e.startswith("error:connect") for _, e in flow["events"]):
        return False
    ok = flow["reply"] >= 0
    if start_s is not None:
        start_ns = round(start_s * 1e9)
        ok &= flow["send"] < start_ns
        # A flow that ended before the migration started (a TCG guest starved under load
        # once: timeout 19 s before the pause) was not established when it mattered.
        sent_at = flow.get("sent_at", {})
        if any(sent_at.get(seq, start_ns) < start_ns for seq, e in flow["events"]
               if e.split(":", 1)[0] in TERMINAL_EVENTS):  # fmt: skip
            return False
    if state_only and allow_removed_s is not None:
        ok &= flow["send"] >= round(allow_removed_s * 1e9)
    return bool(np.any(ok))


# --------------------------------------------------------------------------- flows.pcap


def _seq_before(a: np.ndarray, b: int) -> np.ndarray:
    """a < b in TCP sequence space (modulo 2^32)."""
    d = (np.int64(b) - a.astype(np.int64)) % (1 << 32)
    return (d > 0) & (d < (1 << 31))


def initiative(
    segments: Any, port: int, local_port: int | None, resume_ns: int, lead_ns: int = 0
) -> tuple[str, str]:
    """(first_after_resume, whose packet got through first) of one flow from the prober's
    capture.

    Segments of the flow: to the VM's `port` (from `local_port` when known) and back. After
    the resume, the first one's side is `first_after_resume`. The guest's first segment (not
    a RST) after the resume went out on its own unless it acknowledges data the prober sent
    after the resume - or up to `lead_ns` before it (the flow's fastest answer: a request then
    still in flight reached the guest after it resumed) - and before it: then a prober packet
    had got through first.
    """
    mine = segments.to_target & (segments.dport == port)
    back = ~segments.to_target & (segments.sport == port)
    if local_port is not None:
        mine &= segments.sport == local_port
        back &= segments.dport == local_port
    sel = np.flatnonzero((mine | back) & (segments.ts_ns >= resume_ns))
    if not len(sel):
        return "none", "none"
    sel = sel[np.argsort(segments.ts_ns[sel], kind="stable")]
    first = "prober" if segments.to_target[sel[0]] else "guest"
    from_guest = sel[back[sel] & ((segments.flags[sel] & 0x04) == 0)]
    if not len(from_guest):
        return first, "none"
    g = from_guest[0]
    window = np.flatnonzero(mine & (segments.ts_ns >= resume_ns - lead_ns))
    before = window[segments.ts_ns[window] < segments.ts_ns[g]]
    acked = _seq_before(segments.seq[before], int(segments.ack[g]))
    return first, "prober" if bool(np.any(acked)) else "guest"


# --------------------------------------------------------------------------- conntrack

_SAVE_KEYS = {  # conntrack -o save options -> (direction, field)
    "-s": ("orig", "src"), "--orig-src": ("orig", "src"),
    "-d": ("orig", "dst"), "--orig-dst": ("orig", "dst"),
    "-r": ("reply", "src"), "--reply-src": ("reply", "src"),
    "-q": ("reply", "dst"), "--reply-dst": ("reply", "dst"),
    "--sport": ("orig", "sport"), "--orig-port-src": ("orig", "sport"),
    "--dport": ("orig", "dport"), "--orig-port-dst": ("orig", "dport"),
    "--reply-port-src": ("reply", "sport"), "--reply-port-dst": ("reply", "dport"),
}  # fmt: skip
_PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "udplite", "gre", "unknown"}


def _parse_save(tokens: list[str]) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"orig": {}, "reply": {}, "state": None, "proto": None}
    i = 0
    while i < len(tokens) - 1:
        key, value = tokens[i], tokens[i + 1]
        if key in _SAVE_KEYS:
            direction, field = _SAVE_KEYS[key]
            entry[direction][field] = value
        elif key in ("-p", "--protonum"):
            entry["proto"] = value.lower()
        elif key == "--state":
            entry["state"] = value.upper()
        i += 1 if key == "-A" else 2
    return entry if entry["orig"] else None


def _parse_listing(tokens: list[str]) -> dict[str, Any] | None:
    if tokens and tokens[0] in ("ipv4", "ipv6"):
        tokens = tokens[2:]
    if not tokens or tokens[0].lower() not in _PROTOCOLS:
        return None
    entry: dict[str, Any] = {"orig": {}, "reply": {}, "state": None, "proto": tokens[0].lower()}
    for token in tokens[1:]:
        if "=" in token:
            key, _, value = token.partition("=")
            if key in ("src", "dst", "sport", "dport"):
                direction = "orig" if key not in entry["orig"] else "reply"
                entry[direction].setdefault(key, value)
        elif re.fullmatch(r"[A-Z_]+", token) and not entry["orig"]:
            entry["state"] = token
    return entry if entry["orig"] else None


def parse_conntrack(text: str) -> list[dict[str, Any]]:
    """Entries of a `conntrack -L` listing (plain, `-o extended` or `-o save`): proto, state
    (TCP) and the original and reply tuples {src, dst, sport, dport}; other lines (the tool's
    summary, blank lines) are skipped."""
    out = []
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0].startswith("[") and tokens[0].endswith("]"):  # -o timestamp
            tokens = tokens[1:]
        entry = _parse_save(tokens) if tokens and tokens[0] == "-A" else _parse_listing(tokens)
        if entry is not None:
            out.append(entry)
    return out


def read_conntrack(path: Path) -> list[dict[str, Any]]:
    try:
        return parse_conntrack(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MigfwError(f"{path}: not a text conntrack listing") from None
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None


def flow_entry(entries: list[dict[str, Any]], vm: str, port: int, local_port: int | None) -> str:
    """`<STATE>:<side>` of the flow's entry (side: prober if its original direction goes to
    the VM, guest if it comes from it), ESTABLISHED preferred among several; else `absent`."""
    found = []
    for e in entries:
        if e["proto"] not in (None, "tcp", "6"):
            continue
        o = e["orig"]
        lp = str(local_port) if local_port is not None else None
        if o.get("dst") == vm and o.get("dport") == str(port) and lp in (None, o.get("sport")):
            found.append((e["state"] or "?", "prober"))
        elif o.get("src") == vm and o.get("sport") == str(port) and lp in (None, o.get("dport")):
            found.append((e["state"] or "?", "guest"))
    if not found:
        return "absent"
    found.sort(key=lambda f: f[0] != "ESTABLISHED")
    return f"{found[0][0]}:{found[0][1]}"


# --------------------------------------------------------------------------- per trial


def flow_state(trial_dir: Path, meta: dict[str, Any], resume_s: float | None) -> dict[str, Any]:
    """The flow columns of one trial (empty dict without flows.csv)."""
    path = trial_dir / "flows.csv"
    if not path.exists():
        return {}
    parsed = read_flows(path)
    migration = meta.get("migration") or {}
    start, end = migration.get("start"), migration.get("end")
    removed = allow_removed_at(meta)
    vm = meta.get("target") or (meta.get("attack") or {}).get("address")
    capture_name = (meta.get("flows") or {}).get("capture") or FLOWS_CAPTURE
    capture = trial_dir / capture_name
    segments = None
    if capture.exists() and resume_s is not None and vm:
        from migfw.measure.capture import read_tcp

        segments = read_tcp(capture, str(vm))
    dumps = {
        (h, m): read_conntrack(trial_dir / conntrack_file(h, m))
        for h in CONNTRACK_HOSTS
        for m in CONNTRACK_MOMENTS
        if (trial_dir / conntrack_file(h, m)).exists()
    }
    row: dict[str, Any] = {}
    resume_ns = round(resume_s * 1e9) if resume_s is not None else None
    # The flows run together and stop together: their log ends at its last send or answer.
    log_end = max(int(max(f["send"].max(), f["reply"].max())) for f in parsed.values())
    for name, flow in parsed.items():
        info = flow_meta(meta, name)
        opened = flow_opened(flow, info["state_only"], removed, start)
        base = flow_metrics(flow, end, log_end)
        cells: dict[str, Any] = {"opened": opened, "survived": None, "stall_ms": None,
                                 "reset": None}  # fmt: skip
        if opened:
            cells.update(base)
            after = flow["reply"][flow["reply"] >= resume_ns] if resume_ns is not None else []
            cells["recovery_ms"] = (int(after.min()) - resume_ns) / 1e6 if len(after) else None
            if segments is not None and info["port"] is not None:
                ok = flow["reply"] >= 0
                if start is not None:
                    ok &= flow["send"] < round(start * 1e9)
                lead = int(np.min(flow["reply"][ok] - flow["send"][ok])) if ok.any() else 0
                first, through = initiative(segments, int(info["port"]), info["local_port"],
                                            resume_ns, lead)  # fmt: skip
                restored = through if cells["survived"] else "none"
                cells.update(first_after_resume=first, restored_by=restored)
        if info["port"] is not None and vm:
            for (h, m), entries in dumps.items():
                cells[f"ct_{h}_{m}"] = flow_entry(entries, str(vm), int(info["port"]),
                                                  info["local_port"])  # fmt: skip
        row.update({flow_column(name, k): v for k, v in cells.items()})
    return row
