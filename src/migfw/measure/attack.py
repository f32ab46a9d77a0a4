"""The attack window of one trial: blocked-port breaches and the stateful flows.

Inputs in a trial folder (contract: docs/attack_window.md, /work CONTRACT):
  attack.pcap          the attacker's capture: SYN probes to the VM on the blocked and the
                       allowed port (TCP sequence number = probe index), and every answer
  attack_sendlog.csv   port,index,t_sched_ns,t_send_ns (one row per probe sent)
  flows.csv            flow,seq,t_send_ns,t_reply_ns,event (flows: stateful, established)
  trial.json           attack {address, blocked_port, allowed_port, rate_hz}, migration
                       {start, end}, optional phases {pause, resume}

Breach = any answer (SYN-ACK or RST, matched to its probe by ack - 1) from the VM on the
blocked port: the ruleset DROPs that port, so any answer means the SYN reached the guest's
TCP stack. Runs of breaches are maximal sequences of consecutive probe indices that were
all answered; their times are the probes' send times from the send log.

Trials without these files get empty cells (the thesis's trials); a corrupt file stops the
analysis with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from migfw.errors import MigfwError

SYN, RST, ACK = 0x02, 0x04, 0x10
POSITIONS = ("before_switchover", "blackout", "after_resume")
TERMINAL_EVENTS = ("reset", "closed", "timeout", "error")

# Per-trial columns this module fills (trials.csv), contract names first.
ATTACK_COLUMNS = [
    "blocked_sent",
    "blocked_answered",
    "breach_window_ms",
    "breach_window_lo_ms",
    "breach_window_hi_ms",
    "breaches_total_ms",
    "established_survived",
    "established_stall_ms",
    "stateful_flow_survived",
]
EXTRA_COLUMNS = [
    "blocked_captured",
    "allowed_sent",
    "allowed_answered",
    "breach_runs",
    "breach_position",
    "established_reset",
    "stateful_stall_ms",
    "stateful_reset",
]


# --------------------------------------------------------------------------- send log


def _records(handle: Any, path: Path, want: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV whose header must be `want`; blank lines skipped."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != want:
        raise MigfwError(f"{path}: header must be {','.join(want)}, found {header}")
    for line, rec in enumerate(reader, start=2):
        if rec:
            yield line, rec


def read_sendlog(path: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """port -> (probe indices, send times ns), sorted by index; one-line errors."""
    path = Path(path)
    want = ["port", "index", "t_sched_ns", "t_send_ns"]
    rows: list[tuple[int, int, int]] = []
    try:
        with open(path, newline="") as handle:
            for line, rec in _records(handle, path, want):
                try:
                    port, index, _sched, send = (int(v) for v in rec)
                except ValueError:
                    raise MigfwError(
                        f"{path}: line {line}: expected 4 integers, got {rec}"
                    ) from None
                rows.append((port, index, send))
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MigfwError(f"{path}: not a text CSV file") from None
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if not rows:
        return out
    arr = np.array(rows, dtype=np.int64)
    for port in np.unique(arr[:, 0]):
        sel = arr[arr[:, 0] == port]
        sel = sel[np.argsort(sel[:, 1], kind="stable")]
        if np.any(np.diff(sel[:, 1]) == 0):
            dup = int(sel[np.flatnonzero(np.diff(sel[:, 1]) == 0)[0], 1])
            raise MigfwError(f"{path}: probe index {dup} on port {port} is logged twice")
        out[int(port)] = (sel[:, 1], sel[:, 2])
    return out


# --------------------------------------------------------------------------- answers


def answered_indices(segments: Any, port: int) -> tuple[np.ndarray, int, int]:
    """Probe indices on `port` that the VM answered (SYN-ACK or RST, ack - 1), de-duplicated;
    also how many SYN probes to that port the capture holds and how many answers it holds."""
    from_vm = ~segments.to_target & (segments.sport == port)
    flags = segments.flags
    is_answer = from_vm & ((flags & ACK) != 0) & ((flags & (SYN | RST)) != 0)
    idx = (segments.ack[is_answer].astype(np.int64) - 1) % (1 << 32)
    probes = segments.to_target & (segments.dport == port) & ((flags & (SYN | ACK)) == SYN)
    return np.unique(idx), int(probes.sum()), int(is_answer.sum())


def _runs(flag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (inclusive) positions of each run of True."""
    edges = np.diff(np.concatenate(([0], flag.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def breach_runs(
    index: np.ndarray, send_ns: np.ndarray, answered: np.ndarray
) -> list[dict[str, Any]]:
    """Runs of consecutive answered probes (consecutive in probe index) with their bounds.

    `index`/`send_ns` are the logged probes sorted by index; `answered` holds answered
    indices. A gap in the logged indices (a probe never sent) also ends a run. For a run of
    probes a..b: window = t[b] - t[a]; lo = window (what was observed); hi = t[b+1] - t[a-1]
    (the neighbouring unanswered probes, between which the exposure must lie); at the edge
    of the log the bound is the run's own first/last probe.
    """
    hit = np.isin(index, answered)
    # Split runs where indices are not consecutive, by marking a break between them.
    contiguous = np.r_[True, np.diff(index) == 1]
    runs = []
    starts, ends = _runs(hit)
    for a, b in zip(starts, ends, strict=True):
        cuts = [a, *(i for i in range(a + 1, b + 1) if not contiguous[i]), b + 1]
        for s, e in zip(cuts[:-1], cuts[1:], strict=True):
            e -= 1
            before = send_ns[s - 1] if s > 0 and contiguous[s] else send_ns[s]
            after = send_ns[e + 1] if e + 1 < len(index) and contiguous[e + 1] else send_ns[e]
            runs.append(
                {
                    "first_index": int(index[s]),
                    "last_index": int(index[e]),
                    "count": int(e - s + 1),
                    "first_send_ns": int(send_ns[s]),
                    "last_send_ns": int(send_ns[e]),
                    "window_ms": int(send_ns[e] - send_ns[s]) / 1e6,
                    "lo_ms": int(send_ns[e] - send_ns[s]) / 1e6,
                    "hi_ms": int(after - before) / 1e6,
                }
            )
    return runs


def longest_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The longest run by window, then by probe count; the earliest on a tie."""
    best = None
    for run in runs:
        if best is None or (run["window_ms"], run["count"]) > (best["window_ms"], best["count"]):
            best = run
    return best


# --------------------------------------------------------------------------- migration phases


def migration_phases(meta: dict[str, Any], outage: tuple[float, float] | None = None) -> dict:
    """pause / resume epoch seconds: trial.json `phases` if present ({pause, resume}, or a
    list of {event, t}); else the ICMP outage (`outage`) if given; else the migration's
    start and end (pause = resume = end: no blackout known)."""
    phases = meta.get("phases")
    pause = resume = None
    if isinstance(phases, dict):
        pause, resume = phases.get("pause"), phases.get("resume")
    elif isinstance(phases, list):
        for item in phases:
            if isinstance(item, dict) and item.get("event") in ("pause", "resume"):
                if item["event"] == "pause":
                    pause = item.get("t")
                else:
                    resume = item.get("t")
    source = "phases"
    if pause is None or resume is None:
        if outage is not None:
            pause, resume = outage
            source = "icmp_outage"
        else:
            end = (meta.get("migration") or {}).get("end")
            pause = resume = end
            source = "migration_end"
    return {"pause": pause, "resume": resume, "source": source}


def run_position(run: dict[str, Any], pause: float | None, resume: float | None) -> str:
    """Where a breach run starts relative to the migration: before the VM paused on the
    source (before_switchover), while it was paused (blackout), or after it resumed on the
    destination (after_resume). By the run's first answered probe's send time."""
    if pause is None or resume is None:
        return "unknown"
    first = run["first_send_ns"] / 1e9
    if first < pause:
        return "before_switchover"
    if first < resume:
        return "blackout"
    return "after_resume"


def breach_position(runs: list[dict[str, Any]], phases: dict) -> str | list[str]:
    """trial.json `breach_position`: none, one position, or the list of distinct positions."""
    found = []
    for run in runs:
        pos = run_position(run, phases.get("pause"), phases.get("resume"))
        if pos not in found:
            found.append(pos)
    if not found:
        return "none"
    return found[0] if len(found) == 1 else found


# --------------------------------------------------------------------------- flows


def read_flows(path: str | Path) -> dict[str, dict[str, Any]]:
    """flow -> {send (int64 ns), reply (int64 ns, -1 if unanswered), events: [(seq, event)]}.

    Parsed as exact integers: epoch nanoseconds do not fit a float64 exactly.
    """
    path = Path(path)
    want = ["flow", "seq", "t_send_ns", "t_reply_ns", "event"]
    rows: dict[str, list[tuple[int, int, int]]] = {}
    events: dict[str, list[tuple[int, str]]] = {}
    try:
        with open(path, newline="") as handle:
            for line, rec in _records(handle, path, want):
                if len(rec) != 5:
                    raise MigfwError(f"{path}: line {line}: expected 5 fields, got {len(rec)}")
                flow, seq, send, reply, event = (v.strip() for v in rec)
                if flow not in ("stateful", "established"):
                    raise MigfwError(
                        f"{path}: line {line}: unknown flow {flow!r} (stateful or established)"
                    )
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
        out[flow] = {"send": arr[:, 1], "reply": arr[:, 2], "events": events.get(flow, [])}
    return out


def flow_metrics(flow: dict[str, Any] | None, after_s: float | None) -> dict[str, Any]:
    """survived: no reset/closed/timeout/error event, and a request sent after `after_s`
    (the migration's end) was answered. stall_ms: the longest gap between the reply times of
    consecutive answered requests. reset: a `reset` event was recorded."""
    if flow is None:
        return {"survived": None, "stall_ms": None, "reset": None}
    events = [e for _, e in flow["events"]]
    ended = any(e.split(":", 1)[0] in TERMINAL_EVENTS for e in events)
    answered = flow["reply"] >= 0
    late = flow["send"] >= round(after_s * 1e9) if after_s is not None else answered
    survived = bool(not ended and np.any(answered & late))
    rx = np.sort(flow["reply"][answered])
    stall = int(np.max(np.diff(rx))) / 1e6 if len(rx) >= 2 else None
    return {"survived": survived, "stall_ms": stall, "reset": "reset" in events}


# --------------------------------------------------------------------------- per trial


def attack_metrics(
    trial_dir: str | Path, meta: dict[str, Any], outage: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The attack-window columns of one trial (empty dict if it has no attack data)."""
    trial_dir = Path(trial_dir)
    pcap, sendlog, flows = (
        trial_dir / "attack.pcap",
        trial_dir / "attack_sendlog.csv",
        trial_dir / "flows.csv",
    )
    row: dict[str, Any] = {}
    phases = migration_phases(meta, outage)
    if pcap.exists() or sendlog.exists():
        for path in (pcap, sendlog):
            if not path.exists():
                raise MigfwError(f"{path}: missing although {trial_dir} has attack data")
        row.update(_probe_part(pcap, sendlog, meta, phases))
    if flows.exists():
        parsed = read_flows(flows)
        after = (meta.get("migration") or {}).get("end")
        est = flow_metrics(parsed.get("established"), after)
        sta = flow_metrics(parsed.get("stateful"), after)
        row.update(
            established_survived=est["survived"],
            established_stall_ms=est["stall_ms"],
            established_reset=est["reset"],
            stateful_flow_survived=sta["survived"],
            stateful_stall_ms=sta["stall_ms"],
            stateful_reset=sta["reset"],
        )
    return row


def _probe_part(pcap: Path, sendlog: Path, meta: dict[str, Any], phases: dict) -> dict[str, Any]:
    from migfw.measure.capture import read_tcp

    attack = meta.get("attack") or {}
    where = "trial.json attack"
    for key in ("address", "blocked_port", "allowed_port"):
        if attack.get(key) is None:
            raise MigfwError(f"{where}: missing {key} (needed to read {pcap.name})")
    blocked, allowed = int(attack["blocked_port"]), int(attack["allowed_port"])
    log = read_sendlog(sendlog)
    segments = read_tcp(pcap, str(attack["address"]))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    index, send = log.get(blocked, empty)
    answered, captured, _ = answered_indices(segments, blocked)
    answered = answered[np.isin(answered, index)]  # answers to probes never logged: ignored
    runs = breach_runs(index, send, answered)
    best = longest_run(runs)
    a_index, _ = log.get(allowed, empty)
    a_answered, _, _ = answered_indices(segments, allowed)
    return {
        "blocked_sent": int(len(index)),
        "blocked_answered": int(len(answered)),
        "blocked_captured": captured,
        "allowed_sent": int(len(a_index)),
        "allowed_answered": int(np.isin(a_answered, a_index).sum()),
        "breach_runs": len(runs),
        "breach_window_ms": best["window_ms"] if best else 0.0,
        "breach_window_lo_ms": best["lo_ms"] if best else 0.0,
        "breach_window_hi_ms": best["hi_ms"] if best else 0.0,
        "breaches_total_ms": float(sum(r["window_ms"] for r in runs)),
        "breach_position": _position_text(breach_position(runs, phases)),
    }


def trial_breach_position(trial_dir: str | Path, meta: dict[str, Any]) -> str | list[str]:
    """trial.json `breach_position` for a finished trial folder (the testbed calls this at
    trial end): `none`, one position, or the list of positions of its breach runs."""
    from migfw.measure.capture import read_tcp

    trial_dir = Path(trial_dir)
    attack = meta.get("attack") or {}
    port = int(attack["blocked_port"])
    index, send = read_sendlog(trial_dir / "attack_sendlog.csv").get(
        port, (np.empty(0, np.int64), np.empty(0, np.int64))
    )
    answered = answered_indices(read_tcp(trial_dir / "attack.pcap", str(attack["address"])), port)[
        0
    ]
    runs = breach_runs(index, send, answered[np.isin(answered, index)])
    return breach_position(runs, migration_phases(meta))


def _position_text(pos: str | list[str]) -> str:
    return pos if isinstance(pos, str) else ";".join(pos)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
