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

Issue 22 adds attackers on every side (`breach_<side>_...` columns, one capture and send log
per side), exposure bounds that never let a breach-free trial read as "0", and the flows'
fate with connection state (migfw.measure.flowstate). Trials without these files get empty
cells (the thesis's trials); a corrupt file stops the analysis with one line naming the file
and the problem.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from migfw.errors import MigfwError
from migfw.io import csv_records
from migfw.measure.flowstate import flow_state
from migfw.trials.attack_contract import (
    ATTACKER_SIDES,
    SENDLOG_HEADER,
    probe_sport,
    side_files,
    side_meta,
)

SYN, RST, ACK = 0x02, 0x04, 0x10
POSITIONS = ("before_switchover", "blackout", "after_resume")

# Per-trial columns this module fills (trials.csv), contract names first.
ATTACK_COLUMNS = [
    "blocked_sent",
    "blocked_answered",
    "breached",
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
# Per attacker side (ATTACKER_SIDES), trials.csv `breach_<side>_<metric>`; docs/attack_window.md.
SIDE_METRICS = [
    "sent",
    "answered",
    "breached",
    "runs",
    "max_run_probes",
    "window_ms",
    "window_hi_ms",
    "bound_ms",
    "gap_max_ms",
    "total_ms",
    "position",
    "captured",
    "rate_hz",
    "allowed_sent",
    "allowed_answered",
    "allowed_outage_ms",
    "allowed_outage_hi_ms",
]


def side_column(side: str, metric: str) -> str:
    return f"breach_{side}_{metric}"


SIDE_COLUMNS = [side_column(side, m) for side in ATTACKER_SIDES for m in SIDE_METRICS]


# --------------------------------------------------------------------------- send log


def read_sendlog(path: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """port -> (probe indices, send times ns), sorted by index; one-line errors."""
    path = Path(path)
    want = SENDLOG_HEADER
    rows: list[tuple[int, int, int]] = []
    try:
        with open(path, newline="") as handle:
            for line, rec in csv_records(handle, path, want):
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


def gap_max_ms(send_ns: np.ndarray) -> float:
    """The longest time between two consecutive logged probes (ms; 0 for fewer than two)."""
    if len(send_ns) < 2:
        return 0.0
    return int(np.max(np.diff(np.sort(send_ns)))) / 1e6


def exposure_bound_ms(runs: list[dict[str, Any]], send_ns: np.ndarray) -> float:
    """Every exposure inside the probed span, seen or not, was shorter than this (ms).

    An exposure is an interval in which a probe sent would be answered. One that held no
    probe lies between two consecutive probes: shorter than the longest gap. One that held the
    probes of a run a..b lies strictly between probes a-1 and b+1: shorter than the run's
    `hi_ms`. So the bound is the larger of the longest gap and every run's `hi_ms`.
    """
    return max([gap_max_ms(send_ns), *(r["hi_ms"] for r in runs)])


def probe_evidence(
    segments: Any, port: int, sport: int, egress: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """(probe indices with evidence, the capture time of each one's first evidence, SYNs to
    `port` in the capture).

    Inbound: evidence is the VM's answer (SYN-ACK or RST+ACK, index = ack - 1) from `port` to
    the side's probe port `sport`. Egress: evidence is the VM's SYN itself (index = seq) from
    `sport` to `port`, captured where it arrived.
    """
    flags = segments.flags
    syn_only = (flags & (SYN | ACK)) == SYN
    if egress:
        hit = ~segments.to_target & (segments.dport == port) & (segments.sport == sport)
        hit &= syn_only
        idx = segments.seq[hit].astype(np.int64)
        captured = int(hit.sum())
    else:
        hit = ~segments.to_target & (segments.sport == port) & (segments.dport == sport)
        hit &= ((flags & ACK) != 0) & ((flags & (SYN | RST)) != 0)
        idx = (segments.ack[hit].astype(np.int64) - 1) % (1 << 32)
        probes = segments.to_target & (segments.dport == port) & (segments.sport == sport)
        captured = int((probes & syn_only).sum())
    ts = segments.ts_ns[hit]
    order = np.lexsort((ts, idx))
    idx, ts = idx[order], ts[order]
    first = np.r_[True, idx[1:] != idx[:-1]] if len(idx) else np.zeros(0, bool)
    return idx[first], ts[first], captured


def _outage(index: np.ndarray, send: np.ndarray, answered: np.ndarray) -> tuple[float, float]:
    """The longest run of unanswered probes: (first to last unanswered, between the answered
    neighbours) in ms; (0, 0) when every probe was answered or none was sent."""
    missing = index[~np.isin(index, answered)]
    runs = breach_runs(index, send, missing)
    best = longest_run(runs)
    return (best["lo_ms"], best["hi_ms"]) if best else (0.0, 0.0)


def side_metrics(
    trial_dir: Path, meta: dict[str, Any], side: str, phases: dict
) -> dict[str, Any] | None:
    """One attacker side's `breach_<side>_...` cells (docs/attack_window.md); None without
    its capture and send log. Windows and bounds are differences of send-log times (the
    side's own clock); a run's position compares its first evidence's capture time (the host
    clock) with the guest's pause and resume."""
    from migfw.measure.capture import read_tcp

    pcap_name, log_name = side_files(side)
    pcap, sendlog = trial_dir / pcap_name, trial_dir / log_name
    if not pcap.exists() and not sendlog.exists():
        return None
    for path in (pcap, sendlog):
        if not path.exists():
            raise MigfwError(f"{path}: missing although {trial_dir} has {side} attack data")
    info = side_meta(meta, side) or {}
    where = "trial.json " + ("attack" if side == "switch" and "attackers" not in meta
                             else f"attackers.{side}")  # fmt: skip
    for key in ("address", "blocked_port"):
        if info.get(key) is None:
            raise MigfwError(f"{where}: missing {key} (needed to read {pcap_name})")
    egress = side == "egress"
    blocked = int(info["blocked_port"])
    log = read_sendlog(sendlog)
    segments = read_tcp(pcap, str(info["address"]))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    index, send = log.get(blocked, empty)
    hit, hit_ts, captured = probe_evidence(segments, blocked, probe_sport(side, blocked), egress)
    keep = np.isin(hit, index)  # evidence for a probe never logged is ignored
    hit, hit_ts = hit[keep], hit_ts[keep]
    runs = breach_runs(index, send, hit)
    best = longest_run(runs)
    # Where each run starts: by its first probe's send time on the host's clock; a send log
    # on the guest's clock (egress) by the capture time of that probe's evidence instead.
    guest_clock = info.get("clock", "guest" if egress else "host") == "guest"
    at = dict(zip(hit.tolist(), hit_ts.tolist(), strict=True))
    positions = []
    for run in runs:
        first = at[run["first_index"]] if guest_clock else run["first_send_ns"]
        pos = run_position({"first_send_ns": first}, phases.get("pause"), phases.get("resume"))
        if pos not in positions:
            positions.append(pos)
    row = {
        "sent": int(len(index)),
        "answered": int(len(hit)),
        "breached": bool(len(hit)),
        "runs": len(runs),
        "max_run_probes": max((r["count"] for r in runs), default=0),
        "window_ms": best["lo_ms"] if best else 0.0,
        "window_hi_ms": best["hi_ms"] if best else 0.0,
        "bound_ms": exposure_bound_ms(runs, send),
        "gap_max_ms": gap_max_ms(send),
        "total_ms": float(sum(r["window_ms"] for r in runs)),
        "position": ";".join(positions) or "none",
        "captured": captured,
        "rate_hz": info.get("rate_hz"),
    }
    allowed = info.get("allowed_port")
    if allowed is not None and int(allowed) in log:
        a_index, a_send = log[int(allowed)]
        a_hit, _, _ = probe_evidence(segments, int(allowed), probe_sport(side, int(allowed)),
                                     egress)  # fmt: skip
        a_hit = a_hit[np.isin(a_hit, a_index)]
        outage = _outage(a_index, a_send, a_hit)
        row.update(allowed_sent=int(len(a_index)), allowed_answered=int(len(a_hit)),
                   allowed_outage_ms=outage[0], allowed_outage_hi_ms=outage[1])  # fmt: skip
    return {side_column(side, k): v for k, v in row.items()}


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


def switchover(meta: dict[str, Any], outage: tuple[float, float] | None = None) -> dict:
    """pause / resume (epoch s) for issue 22's metrics: the hypervisor's events when the
    testbed recorded them (`phases.suspended`/`resumed`), else as `migration_phases` (the
    older `breach_position` column keeps using that one)."""
    phases = meta.get("phases")
    if isinstance(phases, dict) and phases.get("suspended") is not None:
        if phases.get("resumed") is not None:
            return {"pause": float(phases["suspended"]), "resume": float(phases["resumed"]),
                    "source": "hypervisor_events"}  # fmt: skip
    return migration_phases(meta, outage)


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


# --------------------------------------------------------------------------- per trial


def attack_metrics(
    trial_dir: str | Path, meta: dict[str, Any], outage: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The attack-window columns of one trial (empty dict if it has no attack data): the
    switch attacker's older columns, `breach_<side>_...` per attacker side, and the flows
    with their connection state (migfw.measure.flowstate)."""
    trial_dir = Path(trial_dir)
    pcap, sendlog = trial_dir / "attack.pcap", trial_dir / "attack_sendlog.csv"
    row: dict[str, Any] = {}
    phases = migration_phases(meta, outage)
    if pcap.exists() or sendlog.exists():
        for path in (pcap, sendlog):
            if not path.exists():
                raise MigfwError(f"{path}: missing although {trial_dir} has attack data")
        row.update(_probe_part(pcap, sendlog, meta, phases))
    moments = switchover(meta, outage)
    for side in ATTACKER_SIDES:
        row.update(side_metrics(trial_dir, meta, side, moments) or {})
    row.update(flow_state(trial_dir, meta, moments["resume"]))
    row.update(agent_timing(meta, moments["resume"]))
    return row


AGENT_COLUMNS = ["agent_event_after_resume_ms", "agent_installed_after_resume_ms"]


def agent_timing(meta: dict[str, Any], resume_s: float | None) -> dict[str, Any]:
    """When the host agent saw its event and installed the destination's rules, relative to
    the guest's resume (ms; negative: before it, as `trigger` pre or incoming should be)."""
    agent = (meta.get("firewall") or {}).get("agent") or {}
    if resume_s is None or not isinstance(agent, dict):
        return {}
    out = {}
    for column, key in zip(AGENT_COLUMNS, ("event_seen", "rules_installed"), strict=True):
        if isinstance(agent.get(key), int | float):
            out[column] = round(1000.0 * (float(agent[key]) - float(resume_s)), 6)
    return out


def _probe_part(pcap: Path, sendlog: Path, meta: dict[str, Any], phases: dict) -> dict[str, Any]:
    from migfw.measure.capture import read_tcp

    attack = side_meta(meta, "switch") or {}
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
        "breached": bool(len(answered)),
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
