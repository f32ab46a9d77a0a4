"""Crafted trials for issue 22's contract, with known truth: attackers on every side, flows in
both directions of initiative, conntrack dumps, and the host firewall's factors (trigger,
agent delay, port default, nf_conntrack_tcp_loose).

The model (times on the host's clock; pause/resume from the crafted ICMP trial):

* The destination host starts filtering the VM's port at `filter_from`: never (`vm`,
  `none`), at the resume (`vmm`, `both`: libvirt's nwfilter is there before the guest runs;
  `vmm`'s `vmm_window_ms` delays it), or when the agent installs its rules (`vmm-agent`,
  `vmm-state`): the trigger's moment - `pre` 200 ms before the migration starts, `incoming`
  100 ms after it starts, `resume` the resume - plus a 5 ms event lag plus `agent_delay_ms`,
  and never before the resume. Until then the port passes everything (`port_default` open) or
  nothing, both directions (`closed`).
* Blocked probes from every inbound side, and the guest's egress SYNs to a blocked port, get
  through while the guest runs and nothing filters: `none` always, the others from the resume
  until `filter_from` with the port open.
* Flows admitted only by state (`established`: the prober speaks first; `guest_first`: the
  guest speaks first) cross the switchover unharmed where the state moves with them (`vm`,
  `none`, `vmm-state`, whose host entries are carried). Elsewhere the destination has no
  entry: a prober packet is dropped once the port filters; a guest packet goes out (the
  outbound rule) and, with `nf_conntrack_tcp_loose` 1, re-creates the entry (originator: the
  guest), so the flow lives on; with 0 it is not tracked and the prober's next packet is
  dropped. A guest packet the closed port drops is retransmitted 200, 400, 800 ... ms later.

Every number in the truth is computed here from the model in plain Python; the analysis
(migfw.measure) never runs to make it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from migfw.io import atomic_write, write_json
from migfw.testbed.placements import get as get_placement
from migfw.trials.attack_contract import (
    CONNTRACK_HOSTS,
    FLOWS_HEADER,
    conntrack_file,
)
from migfw.trials.craftpcap import ACK, RST, SYN, pcap_bytes, tcp_frames, write_side

MS = 1_000_000
PROBER = "10.231.0.2"
PEERS = {"dst_cotenant": "10.231.0.67", "src_cotenant": "10.231.0.68", "egress": PROBER}
# Each side's own rate (share of the switch's) and phase, so no two sides' numbers coincide.
SIDE_TIMING = {"dst_cotenant": (0.5, 0.13), "src_cotenant": (0.25, 0.37), "egress": (0.5, 0.61)}
FLOW_PORTS = {"established": 7, "guest_first": 13}
EGRESS_PORTS = (25, 80)  # blocked outbound, allowed outbound
GUEST_CLOCK_AHEAD_NS = 1_234_567_890  # the guest's clock, ahead of the host's


@dataclass
class Model:
    """When the destination filters, for one crafted trial."""

    placement: str
    start: int  # ns: first probe
    end: int
    mig_start: int
    pause: int
    resume: int
    trigger: str = "resume"
    agent_delay_ms: float = 200.0
    port_default: str = "open"
    tcp_loose: int = 1
    vmm_window_ms: float = 0.0
    event_lag_ms: float = 5.0

    @property
    def event_at(self) -> int | None:
        """When the agent's trigger fired (its event seen), for agent placements."""
        if not get_placement(self.placement).agent:
            return None
        base = {"pre": self.mig_start - 200 * MS, "incoming": self.mig_start + 100 * MS,
                "resume": self.resume}[self.trigger]  # fmt: skip
        return base + round(self.event_lag_ms * MS)

    @property
    def installed_at(self) -> int | None:
        event = self.event_at
        return None if event is None else event + round(self.agent_delay_ms * MS)

    @property
    def filter_from(self) -> int | None:
        """From when the destination filters the VM's port (None: never)."""
        kind = get_placement(self.placement)
        if not kind.host_rules:  # vm, none
            return None
        if kind.host_layer == "nwfilter":  # vmm, both
            return self.resume + round(self.vmm_window_ms * MS)
        return max(self.resume, int(self.installed_at))

    def runs(self, t: int) -> bool:
        return t < self.pause or t >= self.resume

    def closed(self, t: int) -> bool:
        """The destination's port drops everything (port_default closed, not yet programmed)."""
        f = self.filter_from
        return self.port_default == "closed" and f is not None and self.resume <= t < f

    def unfiltered(self, t: int) -> bool:
        """A blocked probe reaching the guest at t is answered (or an egress SYN gets out)."""
        kind = get_placement(self.placement)
        if not self.runs(t) or kind.guest_rules:  # vm, both
            return False
        if not kind.host_rules:  # none
            return True
        f = self.filter_from
        return self.resume <= t < f and not self.closed(t)


# --------------------------------------------------------------------------- attacker sides


def runs_truth(send: list[int], hit: list[bool], when: list[int], pause: int,
               resume: int) -> dict:  # fmt: skip
    """Runs of consecutive answered probes with their windows, bounds and positions."""
    runs, current = [], []
    for i, h in enumerate(hit):
        if h:
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    out = []
    for r in runs:
        a, b = r[0], r[-1]
        before = send[a - 1] if a > 0 else send[a]
        after = send[b + 1] if b + 1 < len(send) else send[b]
        first = when[a]
        pos = ("before_switchover" if first < pause else
               "blackout" if first < resume else "after_resume")  # fmt: skip
        out.append({"lo": (send[b] - send[a]) / 1e6, "hi": (after - before) / 1e6,
                    "count": len(r), "position": pos})  # fmt: skip
    gap = max((b - a for a, b in zip(send, send[1:], strict=False)), default=0) / 1e6
    best = max(out, key=lambda r: (r["lo"], r["count"]), default=None)
    positions = list(dict.fromkeys(r["position"] for r in out))
    return {
        "run_positions": [r["position"] for r in out],
        "answered": sum(hit),
        "breached": any(hit),
        "runs": len(out),
        "max_run_probes": max((r["count"] for r in out), default=0),
        "window_ms": best["lo"] if best else 0.0,
        "window_hi_ms": best["hi"] if best else 0.0,
        "gap_max_ms": gap,
        "bound_ms": max([gap, *(r["hi"] for r in out)]),
        "total_ms": sum(r["lo"] for r in out),
        "position": ";".join(positions) or "none",
    }


def craft_side(model: Model, side: str, out_dir: Path, target: str, rate_hz: float,
               rng: np.random.Generator) -> tuple[dict, dict]:  # fmt: skip
    """One side's capture and send log (trials.crafted.write_side); returns its trial.json
    description and its truth (the `breach_<side>_...` values)."""
    share, phase = SIDE_TIMING[side]
    rate = rate_hz * share
    period = round(1e9 / rate)
    egress = side == "egress"
    blocked, allowed = EGRESS_PORTS if egress else (23, 22)
    sends, evidence, truth = [], [], {}
    offsets = (round(phase * period), round((phase + 0.5) * period))
    for port, offset in zip((blocked, allowed), offsets, strict=True):
        send_host, send_log, when, hit = [], [], [], []
        t = model.start + offset
        k = 0
        while t < model.end:
            if not egress or model.runs(t):  # a paused guest sends nothing
                jitter = int(rng.integers(0, 20_000))
                host = t + jitter
                arrive = host + 150_000
                # The guest's clock stands still while it is paused.
                guest = (
                    host
                    + GUEST_CLOCK_AHEAD_NS
                    - (model.resume - model.pause) * (host >= model.resume)
                )
                stamp = guest if egress else host
                ok = model.unfiltered(arrive) if port == blocked else (
                    model.runs(arrive) and not model.closed(arrive))  # fmt: skip
                send_host.append(host)
                send_log.append(stamp)
                when.append(arrive + 150_000 if egress else host)
                hit.append(ok)
                sends.append((port, k, stamp))
                if ok:
                    flags = SYN if egress else (SYN | ACK if k % 2 else RST | ACK)
                    evidence.append((arrive + (0 if egress else 300_000), port, k, flags))
                k += 1
            t += period
        if port == blocked:
            truth.update(runs_truth(send_log, hit, when, model.pause, model.resume))
            del truth["run_positions"]
            truth.update(sent=len(send_log), captured=sum(hit) if egress else len(send_log))
        else:
            unanswered = [not h for h in hit]
            outage = runs_truth(send_log, unanswered, when, model.pause, model.resume)
            truth.update(allowed_sent=len(send_log), allowed_answered=sum(hit),
                         allowed_outage_ms=outage["window_ms"],
                         allowed_outage_hi_ms=outage["window_hi_ms"])  # fmt: skip
    write_side(out_dir, side, target, PEERS[side], sends, evidence)
    truth["rate_hz"] = rate
    info = {"address": target, "peer": PEERS[side], "blocked_port": blocked,
            "allowed_port": allowed, "rate_hz": rate, "allowed_rate_hz": rate,
            "clock": "guest" if egress else "host",
            "host": {"dst_cotenant": "B", "src_cotenant": "A"}.get(side)}  # fmt: skip
    return info, truth


# --------------------------------------------------------------------------- flows


def _retransmissions(t: int) -> list[int]:
    return [t + d * MS for d in (200, 600, 1400, 3000, 6200, 12600)]


def flow_fate(model: Model, initiative: str, guest_tick: int) -> dict[str, Any]:
    """What happens to a state-only flow after the resume, in the model: `restore_at` (the
    first packet after the resume that got through, ns; None if none did), `first` (whose
    segment the prober's capture shows first after the resume), `entry_at` (when the guest's
    packet re-created the destination's entry), `dies_at` (from when the prober's packets are
    dropped for good; None if the flow lives on)."""
    host = get_placement(model.placement).host_rules
    carried = get_placement(model.placement).carries_state
    f = model.filter_from
    if initiative == "prober":
        # The prober's next request is the first packet; state elsewhere answers it at once.
        if not host or carried:
            first_ok = model.resume if not model.closed(model.resume) else int(f)
            return {"restore_at": first_ok, "first": "prober", "entry_at": None,
                    "dies_at": None}  # fmt: skip
        passes_until = f if model.port_default == "open" else model.resume
        return {"restore_at": model.resume if passes_until > model.resume else None,
                "first": "prober", "entry_at": None, "dies_at": passes_until}  # fmt: skip
    # The guest speaks first: its held answer on its first tick after the resume.
    tick = guest_tick
    if not host or carried:
        at = (
            tick
            if not model.closed(tick)
            else next(r for r in _retransmissions(tick) if not model.closed(r))
        )
        return {"restore_at": at, "first": "guest", "entry_at": None, "dies_at": None}
    if model.closed(tick):  # dropped; the first retransmission after the port opens passes
        at = next(r for r in _retransmissions(tick) if not model.closed(r))
        if model.tcp_loose:
            return {"restore_at": at, "first": "guest", "entry_at": at, "dies_at": None}
        return {"restore_at": at, "first": "guest", "entry_at": None, "dies_at": at}
    if tick < f:  # unfiltered: passes untracked; the first guest packet after f decides
        if model.tcp_loose:
            return {"restore_at": tick, "first": "guest", "entry_at": "first_tick_after_filter",
                    "dies_at": None}  # fmt: skip
        return {"restore_at": tick, "first": "guest", "entry_at": None,
                "dies_at": "first_tick_after_filter"}  # fmt: skip
    if model.tcp_loose:
        return {"restore_at": tick, "first": "guest", "entry_at": tick, "dies_at": None}
    return {"restore_at": tick, "first": "guest", "entry_at": None, "dies_at": tick}


def craft_flows(model: Model, out_dir: Path, target: str, rate_hz: float, allow_removed: int,
                open_everywhere: bool, rng: np.random.Generator) -> tuple[dict, dict]:  # fmt: skip
    """flows.csv, flows.pcap and conntrack/*.txt for `established` and `guest_first`;
    returns trial.json's `flows`/`conntrack` parts and the truth per flow."""
    period = round(1e9 / rate_hz)
    half = 150_000
    rows: list[tuple[str, int, int, int | None, str]] = []
    segs: list[tuple[int, bool, int, int, int, int]] = []  # t, to_vm, port, local, seq, ack
    truth: dict[str, Any] = {}
    host = get_placement(model.placement).host_rules
    # `stateful` (FTP, passed by rule S1/F1) keeps the older model: answered whenever the
    # guest runs; a request sent into the pause is answered 1 ms after the resume.
    stateful = []
    t, seq = model.start, 0
    while t < model.end:
        send = t + int(rng.integers(0, 1000))
        up = send < model.pause or send >= model.resume
        stateful.append((seq, send, send + 2 * half if up else model.resume + MS))
        seq += 1
        t += period
    for q, s_, r in stateful:
        rows.append(("stateful", q, s_, r, ""))
        segs += [(s_, True, 21, 50021, 21000 + 8 * q, 1), (r, False, 21, 50021, 1, 21008 + 8 * q)]
    replies_sf = sorted(r for _, _, r in stateful)
    truth["stateful"] = {"opened": True, "survived": True, "reset": False,
                         "stall_ms": max(b - a for a, b in zip(replies_sf, replies_sf[1:],
                                                               strict=False)) / 1e6}  # fmt: skip
    for flow, port in FLOW_PORTS.items():
        local = 50000 + port
        if host and not open_everywhere:  # the allow rule only in the guest: never connects
            rows.append((flow, 0, model.start, None, "error:connect timed out"))
            truth[flow] = {"opened": False}
            continue
        base = 1000 * port
        replies: list[tuple[int, int, int | None]] = []  # seq, send, reply
        if flow == "established":
            fate = flow_fate(model, "prober", 0)
            t, seq = model.start, 0
            restore = None
            while t < model.end:
                send = t + int(rng.integers(0, 50_000))
                reply: int | None = send + 2 * half
                if model.pause <= send + half < model.resume or model.closed(send + half):
                    reply = None  # lost: answered when the path is back (below)
                if send >= model.resume and fate["dies_at"] is not None and (
                        send + half >= fate["dies_at"]):  # fmt: skip
                    reply = None
                if reply is not None and send >= model.resume and restore is None:
                    restore = send
                replies.append((seq, send, reply))
                seq += 1
                t += period
            if restore is not None:  # TCP delivers the requests lost since the pause
                replies = [(q, s, restore + 2 * half if (r is None and model.pause <= s < restore)
                            else r) for q, s, r in replies]  # fmt: skip
        else:
            # Long poll: request k waits for the guest's next tick (every period).
            tick0 = model.start + period // 3
            fate = None
            t, seq = model.start, 0
            while t < model.end:
                send = t
                tick = tick0 + -(-(send + half - tick0) // period) * period
                while not model.runs(tick):
                    tick += period
                if fate is None and tick >= model.resume:
                    fate = flow_fate(model, "guest", tick)
                    if fate["entry_at"] == "first_tick_after_filter" or (
                            fate["dies_at"] == "first_tick_after_filter"):  # fmt: skip
                        f = int(model.filter_from)
                        first_after = tick0 + -(-(f - tick0) // period) * period
                        key = "entry_at" if fate["entry_at"] else "dies_at"
                        fate[key] = first_after
                    tick = fate["restore_at"] if fate["restore_at"] is not None else None
                if tick is None:
                    replies.append((seq, send, None))
                    break
                reply = tick + half
                replies.append((seq, send, reply))
                seq += 1
                nxt = reply + 50_000
                if fate is not None and fate["dies_at"] is not None and tick >= fate["dies_at"]:
                    replies.append((seq, nxt, None))  # dropped at the destination for good
                    break
                t = nxt
            fate = fate or {"restore_at": None, "first": "none", "entry_at": None,
                            "dies_at": None}  # fmt: skip
        for q, s, r in replies:
            rows.append((flow, q, s, r, ""))
        # The prober's capture: its requests as sent, the guest's answers as they arrive.
        acked: dict[int, int] = {}
        for q, s, r in replies:
            segs.append((s, True, port, local, base + 8 * q, 1))
            if r is not None:
                acked[r] = max(acked.get(r, 0), base + 8 * (q + 1))
        for r, ack in acked.items():
            segs.append((r, False, port, local, 1, ack))
        truth[flow] = (model, fate, replies)
    log_end = max(max(s_, r or 0) for _, _, s_, r, _ in rows)
    for flow in FLOW_PORTS:
        if isinstance(truth[flow], tuple):
            truth[flow] = _flow_truth(*truth[flow], allow_removed, log_end)
    with atomic_write(out_dir / "flows.csv", "w") as handle:
        handle.write(",".join(FLOWS_HEADER) + "\n")
        handle.writelines(f"{f},{q},{s},{'' if r is None else r},{e}\n"
                          for f, q, s, r, e in rows)  # fmt: skip
    if segs:
        segs.sort(key=lambda s: s[0])
        frames = np.concatenate([
            tcp_frames(PROBER, target, np.array([lp]), np.array([p]), np.array([sq]),
                       np.array([ak]), np.array([0x18])) if to_vm else
            tcp_frames(target, PROBER, np.array([p]), np.array([lp]), np.array([sq]),
                       np.array([ak]), np.array([0x18]))
            for _, to_vm, p, lp, sq, ak in segs
        ])  # fmt: skip
        ts = np.array([s[0] for s in segs], dtype=np.int64)
        with atomic_write(out_dir / "flows.pcap", "wb") as handle:
            handle.write(pcap_bytes(ts, frames))
    conntrack = craft_conntrack(model, out_dir, target, truth)
    record = {
        "rate_hz": rate_hz,
        "flows": {"stateful": {"port": 21, "local_port": 50021, "state_only": False},
                  **{f: {"port": p, "local_port": 50000 + p,
                         "initiative": "prober" if f == "established" else "guest",
                         "state_only": True} for f, p in FLOW_PORTS.items()}},
        "temporary_rules": [{"where": w, "rule": "ip saddr prober tcp dport {7, 13} accept",
                             "added_at": model.start / 1e9, "removed_at": allow_removed / 1e9}
                            for w in (["guest"] + (["A", "B"] if host and open_everywhere
                                                   else []))],
        "allow_removed": allow_removed / 1e9,
        "capture": "flows.pcap",
    }  # fmt: skip
    return {"flows": record, "conntrack": conntrack}, truth


def _flow_truth(model: Model, fate: dict, replies: list, allow_removed: int,
                log_end: int) -> dict:  # fmt: skip
    """A flow's expected cells, from its constructed requests and the model's fate."""
    answered = sorted(r for _, _, r in replies if r is not None)
    if not any(r is not None and allow_removed <= s < model.mig_start for _, s, r in replies):
        return {"opened": False}
    # Alive at the end: answered after the migration, and still in the log's last second.
    survived = any(r is not None for _, s, r in replies if s >= _migration_end(model)) and (
        answered[-1] >= log_end - 1_000 * MS
    )
    after = [r for r in answered if r >= model.resume]
    stall = max((b - a for a, b in zip(answered, answered[1:], strict=False)), default=None)
    # The first segment at or after the resume in the prober's capture: a request as sent or
    # an answer as it arrived.
    events = sorted([(s, "prober") for _, s, _ in replies if s >= model.resume]
                    + [(r, "guest") for r in after])  # fmt: skip
    return {
        "opened": True,
        "survived": survived,
        "stall_ms": None if stall is None else stall / 1e6,
        "reset": False,
        "recovery_ms": (after[0] - model.resume) / 1e6 if after else None,
        "first_after_resume": events[0][1] if events else "none",
        "restored_by": fate["first"] if survived else "none",
        "entry_at": fate["entry_at"],
    }


def _migration_end(model: Model) -> int:
    return model.resume + 50 * MS  # craft_trial: the pause ends 50 ms before the migration


# --------------------------------------------------------------------------- conntrack


def _moments(model: Model) -> dict[str, int]:
    return {"before": model.mig_start - 50 * MS, "resume": model.resume + 30 * MS,
            "end": model.end}  # fmt: skip


def craft_conntrack(model: Model, out_dir: Path, target: str, truth: dict) -> dict:
    """conntrack/<host>-<moment>.txt for the layers that track (the guest with its own
    firewall; both hosts under a host placement), in the three formats conntrack -L writes;
    each flow's expected cell goes into truth[flow]['ct'] by dump."""
    guest_fw = get_placement(model.placement).guest_rules
    host = get_placement(model.placement).host_rules
    layers = [h for h in CONNTRACK_HOSTS if (h == "guest" and guest_fw) or (h != "guest" and host)]
    dumps = {}
    for h in layers:
        for moment, at in _moments(model).items():
            lines = [_noise(h)]
            for flow, port in FLOW_PORTS.items():
                t = truth.get(flow, {})
                if not t.get("opened"):
                    continue
                t.setdefault("ct", {})
                state = _entry(model, h, moment, at, t)
                t["ct"][f"{h}_{moment}"] = "absent" if state is None else f"ESTABLISHED:{state}"
                if state is not None:
                    lines.append(_line(h, target, port, 50000 + port, state))
            lines.append("conntrack v1.4.7 (conntrack-tools): n flow entries have been shown.")
            path = out_dir / conntrack_file(h, moment)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            dumps[f"{h}-{moment}"] = {"t": at / 1e9, "host": {"src": "A", "dst": "B"}.get(h),
                                      "rc": 0}  # fmt: skip
    level = {h: model.tcp_loose for h in CONNTRACK_HOSTS}
    return {"tcp_loose": level, "dumps": dumps}


def _entry(model: Model, h: str, moment: str, at: int, t: dict) -> str | None:
    """Whose packet the flow's entry in this dump came from (None: no entry)."""
    if h == "guest":
        return "prober"
    carried = get_placement(model.placement).carries_state
    if h == "src":
        return None if (carried and moment == "end") else "prober"
    if moment == "before":
        return None
    if carried:
        return "prober"
    entry_at = t.get("entry_at")
    return "guest" if isinstance(entry_at, int) and entry_at <= at else None


def _noise(h: str) -> str:
    return ("udp      17 20 src=10.231.0.99 dst=10.231.0.98 sport=5353 dport=5353 [UNREPLIED] "
            "src=10.231.0.98 dst=10.231.0.99 sport=5353 dport=5353 mark=0 use=1")  # fmt: skip


def _line(h: str, vm: str, port: int, local: int, originator: str) -> str:
    """One ESTABLISHED entry in the dump's format: src plain, dst -o extended, guest -o save."""
    prober_side = originator == "prober"
    a, b, sa, sb = (PROBER, vm, local, port) if prober_side else (vm, PROBER, port, local)
    if h == "guest":
        return (f"-A -t 431999 -u SEEN_REPLY,ASSURED -s {a} -d {b} -r {b} -q {a} -p tcp "
                f"--sport {sa} --dport {sb} --reply-port-src {sb} --reply-port-dst {sa} "
                "--state ESTABLISHED")  # fmt: skip
    prefix = "ipv4     2 " if h == "dst" else ""
    return (f"{prefix}tcp      6 431999 ESTABLISHED src={a} dst={b} sport={sa} dport={sb} "
            f"src={b} dst={a} sport={sb} dport={sa} [ASSURED] mark=0 use=1")  # fmt: skip


# --------------------------------------------------------------------------- one trial


def craft_exposure(model: Model, out_dir: Path, target: str, rate_hz: float,
                   sides: tuple[str, ...], flow_rate_hz: float, open_everywhere: bool,
                   seed: int) -> tuple[dict, dict]:  # fmt: skip
    """Every issue-22 file of one crafted trial; returns trial.json's additions and the truth
    (`sides` {side: breach values}, `flows` {flow: values})."""
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {"attackers": {}}
    truth: dict[str, Any] = {"sides": {}, "flows": {}}
    for side in sides:
        info, side_truth = craft_side(model, side, out_dir, target, rate_hz, rng)
        meta["attackers"][side] = info
        truth["sides"][side] = side_truth
    allow_removed = model.start + 300 * MS
    parts, flows = craft_flows(model, out_dir, target, flow_rate_hz, allow_removed,
                               open_everywhere, rng)  # fmt: skip
    meta.update(parts)
    truth["flows"] = {f: {k: v for k, v in t.items() if k != "entry_at"} for f, t in flows.items()}
    if get_placement(model.placement).agent:
        meta["agent"] = {"event_seen": model.event_at / 1e9,
                         "rules_installed": model.installed_at / 1e9,
                         "trigger": model.trigger, "event": model.trigger}  # fmt: skip
        truth["agent_installed_after_resume_ms"] = (model.installed_at - model.resume) / 1e6
    json.dumps(truth)  # plain data only
    return meta, truth


def write_truth(out_dir: Path, truth: dict) -> None:
    write_json(out_dir / "truth.json", truth)
