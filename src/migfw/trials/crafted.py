"""Crafted migration trials with known losses, for demos, CI and the analysis's own checks.

A crafted trial is a real pcap (Ethernet/IPv4/ICMP echo, checksums correct) plus a
trial.json in the contract's format, generated from a simple model of a live migration:
constant-rate probes, a migration window, and a stop-and-copy pause near its end during
which requests are lost, except the last few sent before the pause, which are queued in
the guest and answered late after it resumes. The truth (which requests were lost) is
written beside it, so the analysis can be checked against it.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from migfw.io import atomic_write, write_json
from migfw.trials.contract import DEFAULT_FACTORS, parse_trial_id, trial_name, trial_spec

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


def _checksum(words: np.ndarray) -> np.ndarray:
    """Internet checksum of each row of big-endian 16-bit words."""
    total = words.astype(np.uint64).sum(axis=1)
    while np.any(total >> 16):
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


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


def pcap_bytes(ts_ns: np.ndarray, frames: np.ndarray) -> bytes:
    """A classic little-endian nanosecond pcap (link type Ethernet) of equal-length frames."""
    order = np.argsort(ts_ns, kind="stable")
    ts_ns, frames = ts_ns[order], frames[order]
    n, length = frames.shape
    header = np.zeros((n, 4), dtype="<u4")
    header[:, 0] = ts_ns // 1_000_000_000
    header[:, 1] = ts_ns % 1_000_000_000
    header[:, 2] = length
    header[:, 3] = length
    records = np.concatenate([header.view(np.uint8).reshape(n, 16), frames], axis=1)
    # magic (ns), version 2.4, thiszone, sigfigs, snaplen, link type Ethernet
    file_header = (
        np.array([0xA1B23C4D], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 65535, 1], "<u4").tobytes()
    )
    return file_header + records.tobytes()


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
    write_json(out_dir / "truth.json", truth)
    write_json(
        out_dir / "trial.json",
        {
            "trial_id": spec.trial_id,
            "experiment": spec.experiment,
            "factors": {**DEFAULT_FACTORS, **(spec.factors or {}), "interval_s": spec.interval_s},
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
            "repetition": spec.seed,
            "direction": "A->B",
            "accelerator": "crafted",
            "crafted": True,
        },
    )
    return truth


def crafted_spec(
    trial_id: str, seed: int = 1, factors: dict | None = None, repetition: int | None = None
) -> CraftedTrial:
    """The crafted trial for an id like thesis/i0.01-r03: migration and pause lengths drawn
    from a generator seeded by the id, so each trial differs and reruns give the same file.
    `factors` completes the levels the id leaves out (those fixed in its experiment)."""
    experiment, slug_factors, rep = parse_trial_id(trial_id)
    factors = {**slug_factors, **(factors or {})}
    rep = rep if repetition is None else repetition
    interval = float(factors["interval_s"])
    salt = sum(trial_id.encode()) if experiment != "default" else 0  # legacy ids: as before
    rng = np.random.default_rng([seed, rep, round(interval * 1e6), salt])
    return CraftedTrial(
        trial_id=trial_id,
        interval_s=interval,
        migration_s=float(rng.uniform(6, 14)),
        downtime_s=float(rng.uniform(0.2, 0.6)),
        seed=int(rng.integers(0, 2**31)),
        start_epoch=1_700_000_000.0 + 1000 * rep + round(interval * 1e4),
        experiment=experiment,
        factors=factors,
    )


def craft_demo_set(
    out_dir: str | Path, intervals: list[float], repetitions: int, seed: int = 1
) -> list[str]:
    """A set of crafted trials (one folder each, <out>/demo/i<I>-rNN) with varied lengths."""
    ids = []
    for interval in intervals:
        for rep in range(1, repetitions + 1):
            factors = {"interval_s": interval}
            spec = crafted_spec(trial_name("demo", factors, rep), seed, factors)
            craft_trial(spec, Path(out_dir) / spec.trial_id)
            ids.append(spec.trial_id)
    return ids


def _cli(args: argparse.Namespace) -> int:
    if args.trial:
        factors = None
        if args.config:
            from migfw.io import read_yaml

            cfg = read_yaml(args.config)
            factors = trial_spec((cfg or {}).get("experiments") or {}, args.trial)["factors"]
        craft_trial(crafted_spec(args.trial, args.seed, factors), Path(args.out))
        print(f"crafted {args.trial} in {args.out}")
        return 0
    ids = craft_demo_set(args.out, args.intervals, args.repetitions, args.seed)
    print(f"crafted {len(ids)} trials in {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("craft", help="write crafted trial folders with known losses")
    p.add_argument("--out", required=True)
    p.add_argument("--trial", help="one trial id (e.g. thesis/i0.01-r03) written into --out")
    p.add_argument("--config", help="config whose experiments give the trial's factor levels")
    p.add_argument("--intervals", type=float, nargs="+", default=[0.5, 0.01])
    p.add_argument("--repetitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_cli)
