"""The attacker: constant-rate TCP SYN probes to the VM's blocked and allowed port.

`AttackSession` (used by the trial runner) starts tcpdump on the attacker namespace's
interface (`attack.pcap`), waits until it captures, then starts `python -m
migfw.testbed.attacker` there. The sender uses the prober's constant-rate machinery
(`SynTemplate`, `sleep_until`, real-time scheduling): per port, probe k is due at
t0 + k/rate (the allowed port half a period after the blocked one), its TCP sequence number is
k (so an answer is matched by ack - 1), its source port is fixed per port (40000 + dport %
1000), and its real send time (after sendto returned) goes to `attack_sendlog.csv`:
`port,index,t_sched_ns,t_send_ns` in CLOCK_REALTIME epoch nanoseconds. A SYN that the kernel
refused to send (sendto error) is not logged: every logged SYN is on the wire.

The attacker never listens for answers itself: the capture is the record. Its kernel's RSTs
to the VM's SYN-ACKs are dropped by the testbed (migfw.testbed.local.ATTACKER_NFT).
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import atomic_write
from migfw.testbed.prober import (
    ProbeSession,
    SynTemplate,
    _precise_sleep_setup,
    _source_for,
    lateness_stats,
    sleep_until,
)

SPORT_BASE = 40000  # source port of the probes to dport: 40000 + dport % 1000 (contract)
SENDLOG_HEADER = ["port", "index", "t_sched_ns", "t_send_ns"]
SYN, RST, ACK = 0x02, 0x04, 0x10


def probe_sport(dport: int, base: int = SPORT_BASE) -> int:
    """The fixed source port of the SYN probes to `dport` (a side's own `base`: contract's
    migfw.trials.attack_contract.SIDE_SPORT_BASE)."""
    return base + dport % 1000


def run_attacker(
    target: str,
    ports: tuple[int, ...],
    rate_hz: float | tuple[float, ...],
    sendlog: Path,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    ready: Any = None,
    sport_base: int = SPORT_BASE,
) -> dict[str, Any]:
    """Send SYNs to each of `ports` at its rate (`rate_hz`: one for all, or one per port)
    until `duration_s` or `stop`; write the send log; return rate and lateness statistics."""
    rates = tuple(float(r) for r in (rate_hz if isinstance(rate_hz, tuple) else
                                     (rate_hz,) * len(ports)))  # fmt: skip
    if len(rates) != len(ports) or not all(r > 0 for r in rates):
        raise MigfwError(f"attacker: rates {rates} Hz must be positive, one per port")
    if len(set(ports)) != len(ports) or not ports:
        raise MigfwError(f"attacker: ports {ports} must be distinct and at least one")
    policy = _precise_sleep_setup()
    stop = stop or threading.Event()
    src = _source_for(target)
    syns = [SynTemplate(src, target, p) for p in ports]
    sports = [probe_sport(p, sport_base) for p in ports]
    periods = [int(round(1e9 / r)) for r in rates]
    # Port i's probes start i/len(ports) of the first port's period later (interleaved).
    offsets = [i * periods[0] // len(ports) for i in range(len(ports))]
    nxt = [0] * len(ports)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    offset = time.time_ns() - time.perf_counter_ns()  # monotonic schedule -> wall clock log
    t0 = time.perf_counter_ns() + 20_000_000
    if ready is not None:
        ready(t0 + offset)
    end = None if duration_s is None else t0 + int(duration_s * 1e9)
    rows: list[tuple[int, int, int, int]] = []  # index, port, scheduled, sent (log order)
    errors = 0
    try:
        while not stop.is_set():
            dues = [t0 + offsets[i] + nxt[i] * periods[i] for i in range(len(ports))]
            which = min(range(len(ports)), key=dues.__getitem__)
            k, due = nxt[which], dues[which]
            if end is not None and due >= end:
                break
            sleep_until(due)
            try:
                sock.sendto(syns[which].packet(sports[which], k), (target, 0))
            except OSError:
                errors += 1  # not on the wire: not logged (a gap in this port's indices)
            else:
                rows.append((k, ports[which], due + offset, time.perf_counter_ns() + offset))
            nxt[which] += 1
    finally:
        sock.close()
    with atomic_write(sendlog, newline="") as handle:
        out = csv.writer(handle)
        out.writerow(SENDLOG_HEADER)
        out.writerows((port, k, sched, sent) for k, port, sched, sent in rows)
    stats = lateness_stats(rows, min(periods) / 1e9)
    per_port = {str(p): sum(1 for r in rows if r[1] == p) for p in ports}
    achieved = {}
    for p in ports:
        sent = [r[3] for r in rows if r[1] == p]
        span = (sent[-1] - sent[0]) / 1e9 if len(sent) > 1 else 0.0
        achieved[str(p)] = round((len(sent) - 1) / span, 3) if span else None
    return {
        "syns_sent": stats.pop("requests_sent", 0),
        **stats,
        "send_errors": errors,
        "sent_per_port": per_port,
        "achieved_rate_hz": achieved,
        "rate_hz": dict(zip(map(str, ports), rates, strict=True)),
        "scheduling": policy,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migfw.testbed.attacker", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--ports", required=True, help="comma-separated, e.g. 23,22")
    p.add_argument("--rate", required=True, help="SYNs per second: one for every port, or "
                   "comma-separated per port")  # fmt: skip
    p.add_argument("--sendlog", type=Path, required=True)
    p.add_argument("--duration", type=float, default=None, help="default: until SIGTERM")
    p.add_argument("--sport-base", type=int, default=SPORT_BASE,
                   help="probes to port p leave from this + p %% 1000")  # fmt: skip
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        ports = tuple(int(x) for x in args.ports.split(","))
        rates = tuple(float(x) for x in args.rate.split(","))
        stats = run_attacker(
            args.target, ports, rates if len(rates) > 1 else rates[0], args.sendlog,
            args.duration, stop,
            ready=lambda t0: print(f"READY {t0}", flush=True), sport_base=args.sport_base,
        )  # fmt: skip
    except ValueError:
        print(f"attacker: --ports {args.ports!r}: expected comma-separated integers",
              file=sys.stderr)  # fmt: skip
        return 2
    except (OSError, MigfwError) as exc:
        print(f"attacker: {exc}", file=sys.stderr)
        return 2
    print("DONE " + json.dumps(stats), flush=True)
    return 0


# ------------------------------------------------------------------- answers in a capture


def capture_answers(
    pcap: str | Path,
    target: str,
    source: str,
    ports: tuple[int, ...],
    sport_base: int | None = None,
) -> dict[int, dict[str, Any]]:
    """Per probed port: SYN probes from `source` in the capture, and the VM's answers
    (SYN-ACK or RST with ACK; probe index = ack - 1, distinct) as {index: (time_s, flags)}.
    Ethernet captures only (tcpdump on the attacker's veth); a last record cut short by a
    kill is ignored."""
    from migfw.testbed.prober import flags_text

    data = Path(pcap).read_bytes()
    out = {p: {"probes": 0, "answers": {}, "answer_segments": 0} for p in ports}
    if len(data) < 24:
        return out
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    vm, me = socket.inet_aton(target), socket.inet_aton(source)
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl = struct.unpack_from(endian + "III", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < incl or len(frame) < 54 or frame[12:14] != b"\x08\x00":
            continue
        if frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = frame[14 + ihl :]
        if len(tcp) < 14:
            continue
        sport, dport, _seq, ack = struct.unpack_from("!HHII", tcp)
        flags = tcp[13]
        src, dst = frame[26:30], frame[30:34]
        if src == me and dst == vm and dport in out and flags & (SYN | ACK) == SYN:
            out[dport]["probes"] += 1
        elif (
            src == vm
            and dst == me
            and sport in out
            and flags & ACK
            and flags & (SYN | RST)
            and (sport_base is None or dport == probe_sport(sport, sport_base))
        ):
            entry = out[sport]
            entry["answer_segments"] += 1
            index = (ack - 1) % (1 << 32)
            if index not in entry["answers"]:
                entry["answers"][index] = (sec + frac / (1e9 if nano else 1e6), flags_text(flags))
    return out


# -------------------------------------------------------------------------- the session


class AttackSession(ProbeSession):
    """tcpdump (attack.pcap) + the SYN sender in the attacker's namespace."""

    def __init__(
        self,
        netns: str | None,
        iface: str,
        target: str,
        source: str,
        blocked_port: int,
        allowed_port: int,
        rate_hz: float,
        pcap_path: str | Path,
        sendlog_path: str | Path,
        ready_timeout_s: float = 30.0,
        allowed_rate_hz: float | None = None,
        sport_base: int = SPORT_BASE,
    ) -> None:
        if not float(rate_hz) > 0:
            raise MigfwError(f"attacker: rate_hz {rate_hz!r} must be positive")
        allowed_rate = float(rate_hz if allowed_rate_hz is None else allowed_rate_hz)
        if not allowed_rate > 0:
            raise MigfwError(f"attacker: allowed_rate_hz {allowed_rate_hz!r} must be positive")
        super().__init__(netns, iface, target, 1.0 / float(rate_hz), pcap_path, sendlog_path,
                         ready_timeout_s=ready_timeout_s)  # fmt: skip
        self.source = source
        self.rate_hz = float(rate_hz)
        self.allowed_rate_hz = allowed_rate
        self.ports = (int(blocked_port), int(allowed_port))
        self.sport_base = int(sport_base)

    def start_async(self) -> None:
        """start() in a thread (several attackers start at once); start_wait() joins it and
        raises what start() raised."""
        import threading

        self._start_error: BaseException | None = None

        def run() -> None:
            try:
                self.start()
            except BaseException as exc:  # noqa: BLE001 - re-raised by start_wait()
                self._start_error = exc

        self._starter = threading.Thread(target=run, name="migfw-attacker-start", daemon=True)
        self._starter.start()

    def start_wait(self) -> None:
        self._starter.join()
        if self._start_error is not None:
            raise self._start_error

    def _dump_filter(self) -> str:
        return f"host {self.target} and tcp"

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "migfw.testbed.attacker", "--target", self.target,
            "--ports", ",".join(map(str, self.ports)),
            "--rate", f"{self.rate_hz!r},{self.allowed_rate_hz!r}",
            "--sendlog", str(self.sendlog_path), "--sport-base", str(self.sport_base),
        ]  # fmt: skip

    def _enforcement_summary(self) -> dict[str, Any]:
        """Breaches (answered blocked probes) and allowed answers, read from the capture."""
        found = capture_answers(self.pcap_path, self.target, self.source, self.ports,
                                self.sport_base)  # fmt: skip
        blocked, allowed = (found[p] for p in self.ports)
        breaches = [
            {"index": i, "time": t, "port": self.ports[0], "flags": f}
            for i, (t, f) in sorted(blocked["answers"].items())
        ]
        return {
            "breaches": breaches,
            "blocked_captured": blocked["probes"],
            "allowed_captured": allowed["probes"],
            "blocked_answers": len(blocked["answers"]),
            "allowed_answers": len(allowed["answers"]),
        }


if __name__ == "__main__":
    sys.exit(main())
