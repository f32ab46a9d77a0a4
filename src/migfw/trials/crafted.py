"""Crafted migration trials with known losses, for demos, CI and the analysis's own checks.

A crafted trial is a real pcap (Ethernet/IPv4/ICMP echo, checksums correct) plus a
trial.json in the contract's format, generated from a simple model of a live migration:
constant-rate probes, a migration window, and a stop-and-copy pause near its end during
which requests are lost, except the last few sent before the pause, which are queued in
the guest and answered late after it resumes. The truth (which requests were lost) is
written beside it, so the analysis can be checked against it.

The `migfw craft` command is migfw.trials.craftcli.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from migfw.errors import MigfwError
from migfw.io import atomic_write, write_json
from migfw.testbed.placements import get as get_placement
from migfw.trials.contract import DEFAULT_FACTORS, SERVICE_HEADER
from migfw.trials.craftpcap import (  # noqa: F401 - also this module's API (tests import them)
    ACK,
    ATTACKER,
    ETH_IP_TCP,
    RST,
    SYN,
    _checksum,
    pcap_bytes,
    tcp_frames,
    write_side,
)
from migfw.trials.design import (
    TrialSpec,
    adhoc_spec,
    repetition_of,
    trial_name,
)

ETH_IP_ICMP = 14 + 20 + 8
PAYLOAD = 56


@dataclass
class CraftedTrial:
    trial_id: str
    interval_s: float
    lead_in_s: float = 2.0
    migration_s: float = 8.0
    settle_s: float = 2.0
    downtime_s: float = 0.3
    queued: int = 2  # requests answered late after the pause
    rtt_s: float = 0.0004
    jitter_s: float = 0.00002
    start_epoch: float = 1_700_000_000.0
    seed: int = 0
    prober: str = "10.231.0.2"
    target: str = "10.231.0.10"
    ident: int = 0x4D46
    experiment: str = "default"
    factors: dict | None = None
    repetition: int | None = None  # None: the id's -rNN (1 if it has none)


def echo_frames(
    ts_ns: np.ndarray, src: str, dst: str, icmp_type: int, ident: int, seq: np.ndarray
) -> np.ndarray:
    """Ethernet/IPv4/ICMP echo frames as an (n, 98) uint8 array, checksums filled in."""
    n = len(ts_ns)
    frame = np.zeros((n, ETH_IP_ICMP + PAYLOAD), dtype=np.uint8)
    frame[:, 0:6] = [0x52, 0x54, 0, 0, 0, 0x0A if icmp_type == 8 else 0x02]
    frame[:, 6:12] = [0x52, 0x54, 0, 0, 0, 0x02 if icmp_type == 8 else 0x0A]
    frame[:, 12:14] = [0x08, 0x00]
    ip = frame[:, 14:34]
    ip[:, 0] = 0x45
    ip[:, 2:4] = np.frombuffer((20 + 8 + PAYLOAD).to_bytes(2, "big"), np.uint8)
    ip[:, 4:6] = np.stack([(seq >> 8) & 0xFF, seq & 0xFF], axis=1)
    ip[:, 8] = 64
    ip[:, 9] = 1
    ip[:, 12:16] = np.frombuffer(ipaddress.IPv4Address(src).packed, np.uint8)
    ip[:, 16:20] = np.frombuffer(ipaddress.IPv4Address(dst).packed, np.uint8)
    ip_sum = _checksum(ip.view(">u2").reshape(n, 10))
    ip[:, 10] = ip_sum >> 8
    ip[:, 11] = ip_sum & 0xFF
    icmp = frame[:, 34:]
    icmp[:, 0] = icmp_type
    icmp[:, 4:6] = [ident >> 8, ident & 0xFF]
    icmp[:, 6] = (seq >> 8) & 0xFF
    icmp[:, 7] = seq & 0xFF
    icmp[:, 8:] = np.arange(PAYLOAD, dtype=np.uint8)
    icmp_sum = _checksum(icmp.view(">u2").reshape(n, (8 + PAYLOAD) // 2))
    icmp[:, 2] = icmp_sum >> 8
    icmp[:, 3] = icmp_sum & 0xFF
    return frame


def craft_trial(spec: CraftedTrial, out_dir: str | Path) -> dict:
    """Write <out_dir>/probe.pcap, trial.json and truth.json; return the truth."""
    rng = np.random.default_rng(spec.seed)
    interval_ns = round(spec.interval_s * 1e9)
    total_s = spec.lead_in_s + spec.migration_s + spec.settle_s
    count = int(total_s / spec.interval_s)
    t0 = int(spec.start_epoch * 1e9)
    send = t0 + np.arange(count, dtype=np.int64) * interval_ns
    send += rng.integers(0, int(spec.jitter_s * 1e9) + 1, count)
    mig_start = t0 + int(spec.lead_in_s * 1e9)
    mig_end = mig_start + int(spec.migration_s * 1e9)
    pause = mig_end - int(0.05e9) - int(spec.downtime_s * 1e9)  # stop-and-copy near the end
    resume = pause + int(spec.downtime_s * 1e9)
    rtt_ns = int(spec.rtt_s * 1e9)

    # A request is lost if it reaches the guest while paused; the last `queued` requests
    # that arrived just before the pause are answered when the guest resumes.
    arrive = send + rtt_ns // 2
    in_pause = (arrive >= pause) & (arrive < resume)
    before = np.flatnonzero(arrive < pause)
    queued = before[-spec.queued :] if spec.queued else before[:0]
    reply = send + rtt_ns + rng.integers(0, rtt_ns // 4 + 1, count)
    reply[queued] = resume + rtt_ns // 2 + np.arange(len(queued)) * 20_000
    lost = in_pause.copy()
    seq = (np.arange(count) % 65536).astype(np.uint16)

    requests = echo_frames(send, spec.prober, spec.target, 8, spec.ident, seq)
    answered = ~lost
    replies = echo_frames(reply[answered], spec.target, spec.prober, 0, spec.ident, seq[answered])
    data = pcap_bytes(np.concatenate([send, reply[answered]]), np.concatenate([requests, replies]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "probe.pcap", "wb") as handle:
        handle.write(data)

    window = (send >= mig_start) & (send <= mig_end)
    factors = {**DEFAULT_FACTORS, **(spec.factors or {}), "interval_s": spec.interval_s}
    load = None
    if factors.get("workload") == "service":
        rate = float(factors.get("service_rate_hz") or SERVICE_RATE_HZ)
        load = {"name": "service", "rate_hz": rate, "timeout_s": SERVICE_TIMEOUT_S}
        service_truth = craft_service(out_dir, t0, t0 + int(total_s * 1e9), pause, resume, rate,
                                      spec.seed + 11)  # fmt: skip
        load.update(requests=service_truth["service_requests"], ok=service_truth["service_ok"],
                    failed=service_truth["service_failed"])  # fmt: skip
    truth = {
        "ps_window": int(window.sum()),
        "pl_window": int((lost & window).sum()),
        "ps_total": count,
        "pl_total": int(lost.sum()),
        "max_run": int(lost.sum()),  # one contiguous pause
        "late_replies": len(queued),
        "pause_start": pause / 1e9,
        "pause_end": resume / 1e9,
    }
    if load is not None:
        truth.update(service_truth)
    write_json(out_dir / "truth.json", truth)
    write_json(
        out_dir / "trial.json",
        {
            "trial_id": spec.trial_id,
            "experiment": spec.experiment,
            "factors": factors,
            "interval_s": spec.interval_s,
            "prober": {"icmp_id": spec.ident},
            "flags": [],
            "target": spec.target,
            "status": "ok",
            "failure": None,
            "migration": {
                "start": mig_start / 1e9,
                "end": mig_end / 1e9,
                "source": "A",
                "destination": "B",
                "mode": "crafted",
            },
            "hypervisor": {
                "downtime_ms": spec.downtime_s * 1000,
                "total_ms": spec.migration_s * 1000,
                "setup_ms": 10.0,
            },
            "repetition": _repetition(spec),
            "direction": "A->B",
            "accelerator": "crafted",
            "crafted": True,
            **({"workload": load} if load is not None else {}),
        },
    )
    return truth


def _repetition(spec: CraftedTrial) -> int:
    """The trial's repetition: given, else read from its id (`…-r03` -> 3), else 1."""
    if spec.repetition is not None:
        return int(spec.repetition)
    return repetition_of(spec.trial_id)


# The `service` workload (migfw.testbed.service): its default rate and request timeout.
SERVICE_RATE_HZ = 2.0
SERVICE_TIMEOUT_S = 5.0


def craft_service(
    out_dir: Path, start_ns: int, end_ns: int, pause_ns: int, resume_ns: int, rate_hz: float,
    seed: int,
) -> dict:  # fmt: skip
    """service.csv for a crafted trial: FTP and SSH requested at `rate_hz` each (SSH half a
    period later), answered in a few ms while the guest runs. A request in flight when the
    pause starts is answered after the resume, its remaining time later; one sent into the
    pause loses its SYN and is answered after TCP's SYN retransmission (1, 3, 7 s after the
    send), or times out. Returns the truth: counts and the longest gap without an answer
    (the last answer before the pause to the first one after it)."""
    rng = np.random.default_rng(seed)
    period = round(1e9 / rate_hz)
    rows = []
    for name, port, offset, base_ms in (("ftp", 21, 0, 3.0), ("ssh", 22, period // 2, 2.0)):
        send = np.arange(start_ns + offset, end_ns, period, dtype=np.int64)
        send += rng.integers(0, 200_000, len(send))
        latency = (base_ms * 1e6 + rng.integers(0, 1_000_000, len(send))).astype(np.int64)
        for seq, (t, lat) in enumerate(zip(send.tolist(), latency.tolist(), strict=True)):
            done, outcome = t + lat, "ok"
            if t < pause_ns < t + lat:  # held by the paused guest, finished after it
                done = resume_ns + (t + lat - pause_ns)
            elif pause_ns <= t < resume_ns:  # the SYN is lost: TCP retries it
                retries = (t + d * 10**9 for d in (1, 3, 7, 15) if t + d * 10**9 >= resume_ns)
                retry = next(retries, t + 31 * 10**9)
                done = retry + lat
                if done - t > SERVICE_TIMEOUT_S * 1e9:
                    done, outcome = t + round(SERVICE_TIMEOUT_S * 1e9), "timeout"
            rows.append((name, seq, port, t, done, outcome))
    rows.sort(key=lambda r: r[3])
    with atomic_write(out_dir / "service.csv", "w") as handle:
        handle.write(",".join(SERVICE_HEADER) + "\n")
        handle.writelines(f"{n},{q},{p},{t},{d},{o},\n" for n, q, p, t, d, o in rows)
    ok_done = np.array([r[4] for r in rows if r[5] == "ok"], dtype=np.int64)
    before, after = ok_done[ok_done < pause_ns], ok_done[ok_done >= resume_ns]
    ok = len(ok_done)
    return {
        "service_requests": len(rows),
        "service_ok": ok,
        "service_failed": len(rows) - ok,
        "service_gap_ms": (int(after.min()) - int(before.max())) / 1e6,
    }


def crafted_spec(
    trial_id: str, seed: int = 1, factors: dict | None = None, repetition: int | None = None
) -> CraftedTrial:
    """The crafted trial for an id like thesis/i0.01-r03 named without a design sheet:
    `factors` completes the levels the id leaves out (those fixed in its experiment)."""
    return crafted_from(adhoc_spec(trial_id, factors, repetition), seed)


def crafted_from(trial: TrialSpec, seed: int = 1) -> CraftedTrial:
    """The crafted trial of a spec (a design-sheet row): migration and pause lengths drawn
    from a generator seeded by the id, so each trial differs and reruns give the same file."""
    factors = trial.id_first()
    rep = trial.repetition
    if "interval_s" not in factors:
        raise MigfwError(
            f"trial {trial.trial_id}: its id gives no interval_s (the experiment fixes it): pass "
            "--config with that experiment, or one --intervals value"
        )
    interval = float(factors["interval_s"])
    salt = sum(trial.trial_id.encode()) if trial.experiment != "default" else 0  # legacy ids
    rng = np.random.default_rng([seed, rep, round(interval * 1e6), salt])
    return CraftedTrial(
        trial_id=trial.trial_id,
        interval_s=interval,
        migration_s=float(rng.uniform(6, 14)),
        downtime_s=float(rng.uniform(0.2, 0.6)),
        seed=int(rng.integers(0, 2**31)),
        start_epoch=1_700_000_000.0 + 1000 * rep + round(interval * 1e4),
        experiment=trial.experiment,
        factors=factors,
        repetition=rep,
    )


def craft_demo_set(
    out_dir: str | Path,
    intervals: list[float],
    repetitions: int,
    seed: int = 1,
    experiment: str = "demo",
    attack: CraftedAttack | None = None,
) -> list[str]:
    """A set of crafted trials (one folder each, <out>/<experiment>/i<I>-rNN, or
    <placement>-i<I>-rNN with attack data for `attack`'s placement) with varied lengths."""
    ids = []
    for interval in intervals:
        for rep in range(1, repetitions + 1):
            factors: dict = {"interval_s": interval}
            if attack is not None:
                factors["placement"] = attack.placement
                if attack.agent_delay_ms is not None:
                    factors["agent_delay_ms"] = attack.agent_delay_ms
            spec = crafted_spec(trial_name(experiment, factors, rep), seed, factors)
            if attack is not None:
                craft_placement_trial(spec, attack, Path(out_dir) / spec.trial_id)
            else:
                craft_trial(spec, Path(out_dir) / spec.trial_id)
            ids.append(spec.trial_id)
    return ids


# --------------------------------------------------------------------------- attack window


@dataclass
class CraftedAttack:
    """How the attacker's probes are answered in a crafted placement trial.

    Times are epoch ns of the trial's model (pause/resume from craft_trial's truth). A
    blocked probe is answered when it reaches the guest while nothing filters it:
      none:      always, except while the guest is paused;
      vm, both:  never (the guest's own ruleset drops it);
      vmm-agent: from resume (the VM appears on the destination host, unfiltered) until
                 resume + event_lag_ms + agent_delay_ms (the agent installs the rules);
      vmm:       from resume for vmm_window_ms (0: the destination filters at once).

    `issue22` (implied by any of its settings) switches to the model of
    migfw.trials.crafted_exposure: the agent's `trigger` and `port_default`, vmm-state, the
    attackers of `sides` besides the switch, flows in both directions of initiative
    (`established`, `guest_first`; `open_everywhere` False reproduces the older testbed whose
    temporary allow rule was only in the guest) and conntrack dumps.
    """

    placement: str = "vm"
    agent_delay_ms: float | None = None
    event_lag_ms: float = 5.0  # libvirt event -> agent, in the model
    vmm_window_ms: float = 0.0
    rate_hz: float = 1000.0
    blocked_port: int = 23
    allowed_port: int = 22
    jitter_us: int = 20
    rtt_us: int = 300
    flow_rate_hz: float = 100.0
    issue22: bool = False
    trigger: str | None = None  # pre | incoming | resume (agent placements; default resume)
    port_default: str | None = None  # open | closed (agent placements; default open)
    tcp_loose: int | None = None  # 0 | 1 (default 1, the kernel's)
    sides: tuple[str, ...] = ("dst_cotenant", "src_cotenant", "egress")
    open_everywhere: bool = True

    def model(self, start: int, end: int, mig_start: int, pause: int, resume: int):  # -> Model
        from migfw.trials.crafted_exposure import Model

        return Model(
            self.placement, start, end, mig_start, pause, resume,
            trigger=self.trigger or "resume", agent_delay_ms=float(self.agent_delay_ms or 0),
            port_default=self.port_default or "open",
            tcp_loose=1 if self.tcp_loose is None else int(self.tcp_loose),
            vmm_window_ms=self.vmm_window_ms, event_lag_ms=self.event_lag_ms,
        )  # fmt: skip


def _answer_flags(count: int, rng: np.random.Generator) -> np.ndarray:
    """SYN-ACK or RST+ACK: a closed port answers RST, a listening one SYN-ACK (both breaches)."""
    return np.where(rng.random(count) < 0.5, SYN | ACK, RST | ACK).astype(np.uint8)


def craft_attack(
    attack: CraftedAttack,
    out_dir: str | Path,
    start_ns: int,
    end_ns: int,
    pause_ns: int,
    resume_ns: int,
    target: str,
    seed: int = 0,
    model: Any = None,
) -> dict:
    """Write attack.pcap, attack_sendlog.csv and flows.csv for one trial; return the truth
    (breach window etc., computed from the construction, not by the analysis). With a
    crafted_exposure `model`, it says which probes get through (and flows.csv is left to it)."""
    rng = np.random.default_rng(seed)
    kind = get_placement(attack.placement)
    period = round(1e9 / attack.rate_hz)
    count = int((end_ns - start_ns) // period)
    sched = start_ns + np.arange(count, dtype=np.int64) * period
    rows, pkt_ts, frames = [], [], []
    truth: dict = {"placement": attack.placement, "agent_delay_ms": attack.agent_delay_ms}
    half = round(attack.rtt_us * 500)
    for port, offset in ((attack.blocked_port, 0), (attack.allowed_port, period // 2)):
        t_sched = sched + offset
        t_send = t_sched + rng.integers(0, attack.jitter_us * 1000 + 1, count)
        arrive = t_send + half
        up = (arrive < pause_ns) | (arrive >= resume_ns)  # the guest runs
        if model is not None:
            passes = model.unfiltered if port == attack.blocked_port else (
                lambda t: model.runs(t) and not model.closed(t))  # fmt: skip
            reach = np.array([passes(int(a)) for a in arrive], dtype=bool)
        elif port == attack.allowed_port or not (kind.guest_rules or kind.host_rules):
            reach = up  # the allowed port, or no firewall anywhere (`none`)
        elif kind.guest_rules:  # the guest's own ruleset drops it
            reach = np.zeros(count, bool)
        else:
            if kind.agent:
                open_ms = attack.event_lag_ms + float(attack.agent_delay_ms or 0)
            else:
                open_ms = attack.vmm_window_ms
            reach = (arrive >= resume_ns) & (arrive < resume_ns + round(open_ms * 1e6))
        index = np.arange(count, dtype=np.int64)
        sport = 40000 + port % 1000
        rows += [
            (port, int(i), int(a), int(b)) for i, a, b in zip(index, t_sched, t_send, strict=True)
        ]
        pkt_ts.append(t_send)
        frames.append(
            tcp_frames(
                ATTACKER, target, np.full(count, sport), np.full(count, port), index,
                np.zeros(count), np.full(count, SYN),
            )
        )  # fmt: skip
        hit = np.flatnonzero(reach)
        pkt_ts.append(t_send[hit] + 2 * half)
        frames.append(
            tcp_frames(
                target, ATTACKER, np.full(len(hit), port), np.full(len(hit), sport),
                rng.integers(0, 2**32, len(hit)), index[hit] + 1,
                _answer_flags(len(hit), rng),
            )
        )  # fmt: skip
        if port == attack.blocked_port:
            truth.update(_attack_truth(index, t_send, reach, pause_ns, resume_ns))
            truth["blocked_sent"] = count
        else:
            truth["allowed_answered"] = int(reach.sum())
    out_dir = Path(out_dir)
    ts = np.concatenate(pkt_ts)
    with atomic_write(out_dir / "attack.pcap", "wb") as handle:
        handle.write(pcap_bytes(ts, np.concatenate(frames)))
    with atomic_write(out_dir / "attack_sendlog.csv", "w") as handle:
        handle.write("port,index,t_sched_ns,t_send_ns\n")
        handle.writelines(f"{p},{i},{a},{b}\n" for p, i, a, b in rows)
    if model is None:
        truth.update(_craft_flows(attack, out_dir, start_ns, end_ns, pause_ns, resume_ns, rng))
    return truth


def write_attack(
    out_dir: str | Path,
    target: str,
    sends: list[tuple[int, int, int]],
    answers: list[tuple[int, int, int, int]],
) -> None:
    """attack.pcap + attack_sendlog.csv from explicit lists, for hand-worked tests:
    sends (port, index, t_send_ns) and answers (t_ns, port, probe index, TCP flags). The
    pcap keeps the answers in the order given (capture order), after the probes."""
    write_side(out_dir, "switch", target, ATTACKER, sends, answers)


def _attack_truth(
    index: np.ndarray, t_send: np.ndarray, reach: np.ndarray, pause_ns: int, resume_ns: int
) -> dict:
    """Runs of answered probes, by construction (pure Python, independent of the analysis)."""
    from migfw.trials.crafted_exposure import runs_truth

    send = [int(t) for t in t_send]
    t = runs_truth(send, [bool(r) for r in reach], send, pause_ns, resume_ns)
    return {
        "blocked_answered": t["answered"],
        "breach_runs": t["runs"],
        "breach_window_ms": t["window_ms"],
        "breach_window_hi_ms": t["window_hi_ms"],
        "breaches_total_ms": t["total_ms"],
        "breach_positions": t["run_positions"],
    }


def _craft_flows(
    attack: CraftedAttack,
    out_dir: Path,
    start_ns: int,
    end_ns: int,
    pause_ns: int,
    resume_ns: int,
    rng: np.random.Generator,
) -> dict:
    """flows.csv: both flows answered whenever the guest runs; the `established` flow is
    reset after resume under vmm/vmm-agent (host conntrack does not move with the VM), and
    survives under vm/none (the guest's conntrack is guest memory)."""
    period = round(1e9 / attack.flow_rate_hz)
    count = int((end_ns - start_ns) // period)
    send = start_ns + np.arange(count, dtype=np.int64) * period
    send += rng.integers(0, 1000, count)
    reply = send + 2 * round(attack.rtt_us * 500)
    up = (send < pause_ns) | (send >= resume_ns)
    # Requests sent during the pause are answered when the guest resumes (TCP retransmits).
    reply = np.where(up, reply, resume_ns + 1_000_000)
    lines, truth = [], {}
    for flow in ("stateful", "established"):
        # Host conntrack that stays behind (vmm, vmm-agent): the flow is reset after resume.
        kind = get_placement(attack.placement)
        cut = flow == "established" and kind.host_rules and not (kind.guest_rules
                                                                 or kind.carries_state)  # fmt: skip
        last = count
        if cut:  # the first request after resume is answered by RST: the flow ends there
            last = int(np.argmax(send >= resume_ns)) + 1
        for i in range(last):
            answered = not (cut and i == last - 1)
            event = "reset" if cut and i == last - 1 else ""
            lines.append(f"{flow},{i},{send[i]},{reply[i] if answered else ''},{event}\n")
        replies = np.sort(reply[: last - 1 if cut else last])
        truth[f"{flow}_survived"] = not cut
        truth[f"{flow}_stall_ms"] = float(np.max(np.diff(replies)) / 1e6)
        truth[f"{flow}_reset"] = cut
    with atomic_write(out_dir / "flows.csv", "w") as handle:
        handle.write("flow,seq,t_send_ns,t_reply_ns,event\n")
        handle.writelines(lines)
    return truth


def craft_placement_trial(
    spec: CraftedTrial, attack: CraftedAttack, out_dir: str | Path, extra: dict | None = None
) -> dict:
    """A crafted trial with attack data: probe.pcap/trial.json as craft_trial, plus
    attack.pcap, attack_sendlog.csv, flows.csv, and trial.json's firewall/attack/phases;
    truth.json gains the attack truth. With `attack.issue22`, also every other attacker
    side, the two-sided flows with flows.pcap, the conntrack dumps and the factors
    (crafted_exposure), their truth under truth.json `sides` and `flows`."""
    import json

    out_dir = Path(out_dir)
    truth = craft_trial(spec, out_dir)
    pause, resume = round(truth["pause_start"] * 1e9), round(truth["pause_end"] * 1e9)
    start = int(spec.start_epoch * 1e9)
    end = start + int((spec.lead_in_s + spec.migration_s + spec.settle_s) * 1e9)
    mig_start = start + int(spec.lead_in_s * 1e9)
    model = attack.model(start, end, mig_start, pause, resume) if attack.issue22 else None
    truth.update(
        craft_attack(
            attack, out_dir, start, end, pause, resume, spec.target, spec.seed + 7, model
        )  # fmt: skip
    )
    meta = json.loads((out_dir / "trial.json").read_text())
    agent_placement = get_placement(attack.placement).agent
    delay = attack.agent_delay_ms if agent_placement else None
    meta.update(
        {
            "firewall": {"placement": attack.placement, "agent_delay_ms": delay},
            "attack": {
                "address": spec.target,
                "blocked_port": attack.blocked_port,
                "allowed_port": attack.allowed_port,
                "rate_hz": attack.rate_hz,
            },
            "phases": {"pause": pause / 1e9, "resume": resume / 1e9},
        }
    )
    positions = list(dict.fromkeys(truth["breach_positions"]))  # by construction
    meta["breach_position"] = (positions[0] if len(positions) == 1 else positions) or "none"
    factors = meta.setdefault("factors", {})
    if model is not None:
        from migfw.trials.crafted_exposure import craft_exposure

        added, exposure = craft_exposure(
            model, out_dir, spec.target, attack.rate_hz, tuple(attack.sides),
            attack.flow_rate_hz, attack.open_everywhere, spec.seed + 13,
        )  # fmt: skip
        agent = added.pop("agent", None)
        meta.update(added)
        if agent:
            meta["firewall"]["agent"] = agent
        if agent_placement:
            meta["firewall"]["port_default"] = {"level": model.port_default}
            factors.update(trigger=model.trigger, port_default=model.port_default)
        factors["nf_conntrack_tcp_loose"] = model.tcp_loose
        truth.update(exposure)
    meta.update(extra or {})
    factors.setdefault("interval_s", spec.interval_s)
    factors["placement"] = attack.placement  # the placement crafted is the trial's
    if delay is not None:
        factors["agent_delay_ms"] = delay
    else:
        factors.pop("agent_delay_ms", None)
    write_json(out_dir / "trial.json", meta)
    write_json(out_dir / "truth.json", truth)
    return truth
