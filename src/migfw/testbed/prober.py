"""Constant-rate ICMP prober + TCP enforcement probes, captured by tcpdump.

`ProbeSession` (used by the trial runner) starts tcpdump in the prober's namespace, waits
until it captures, then starts `python -m migfw.testbed.prober` there. The prober sends
ICMP echo requests from a raw socket at t0 + k*I - an absolute schedule, so it never slows
down while replies are lost (iputils ping does) - and logs each request's real send time.
Optional enforcement probes send TCP SYNs at rate_hz to a blocked and an allowed port and
record every answer: an answer from the blocked port is a breach of the firewall.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import atomic_write
from migfw.testbed.netns import netns_argv

PAYLOAD = b"migfw-probe-0001"  # 16 bytes; lets a capture tell our requests from others
SPORT_BASE, SPORT_POOL = 20000, 4096  # enforcement SYN source ports
SPIN_NS = 150_000  # sleep until this close to a send time, then spin
TCP_FLAGS = "FSRPAUEC"
SO_TIMESTAMPNS = 35  # Linux; also the SCM type of the ancillary timestamp


# ------------------------------------------------------------------- packet templates


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


class EchoTemplate:
    """An ICMP echo request crafted once with scapy; per packet only seq and checksum change."""

    def __init__(self, ident: int, payload: bytes = PAYLOAD) -> None:
        from scapy.layers.inet import ICMP
        from scapy.packet import Raw

        self.ident = ident & 0xFFFF
        self.raw = bytearray(bytes(ICMP(type=8, code=0, id=self.ident, seq=0) / Raw(payload)))
        self.raw[2:4] = b"\0\0"
        self._base = _sum16(bytes(self.raw))  # sum with checksum and seq zero

    def packet(self, seq: int) -> bytes:
        seq &= 0xFFFF
        csum = ~_fold(self._base + seq) & 0xFFFF
        self.raw[2:4] = csum.to_bytes(2, "big")
        self.raw[6:8] = seq.to_bytes(2, "big")
        return bytes(self.raw)


class SynTemplate:
    """A TCP SYN (header only; the kernel adds IP) crafted once with scapy for src -> dst:dport;
    per packet the source port and sequence number are patched and the checksum redone."""

    def __init__(self, src: str, dst: str, dport: int) -> None:
        from scapy.layers.inet import IP, TCP

        pkt = IP(src=src, dst=dst) / TCP(sport=SPORT_BASE, dport=dport, flags="S", seq=0,
                                         window=64240, options=[("MSS", 1460)])  # fmt: skip
        self.raw = bytearray(bytes(pkt[TCP]))
        self.raw[16:18] = b"\0\0"
        self.raw[0:2] = b"\0\0"
        pseudo = (
            socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(self.raw))
        )
        self._base = _sum16(pseudo) + _sum16(bytes(self.raw))
        self.dport = dport

    def packet(self, sport: int, seq: int) -> bytes:
        self.raw[0:2] = sport.to_bytes(2, "big")
        self.raw[4:8] = seq.to_bytes(4, "big")
        total = self._base + sport + (seq >> 16) + (seq & 0xFFFF)
        self.raw[16:18] = (~_fold(total) & 0xFFFF).to_bytes(2, "big")
        return bytes(self.raw)


def flags_text(value: int) -> str:
    return "".join(ch for i, ch in enumerate(TCP_FLAGS) if value & (1 << i))


# ---------------------------------------------------------------------- the prober


def _precise_sleep_setup() -> str:
    """Make the sender punctual on a busy machine; return the scheduling policy obtained."""
    # Default timer slack (50 us) blurs nanosleep; 1 ns makes the sleep phase precise.
    try:
        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass
    # Real-time priority keeps busy neighbours (QEMU TCG threads) from delaying sends; the
    # loop sleeps between sends, and the kernel's RT throttling bounds it anyway.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        return "SCHED_FIFO:50"
    except (OSError, AttributeError):
        return "SCHED_OTHER"


def sleep_until(when_ns: int) -> int:
    """Wait for perf_counter_ns() >= when_ns: sleep until SPIN_NS before, then spin (the
    shared constant-rate machinery of the prober and the attacker). Returns the time."""
    now = time.perf_counter_ns()
    if when_ns - now > SPIN_NS * 2:
        time.sleep((when_ns - now - SPIN_NS) / 1e9)
    while (now := time.perf_counter_ns()) < when_ns:
        pass
    return now


def _source_for(target: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((target, 9))  # no packet is sent; only the route is looked up
        return s.getsockname()[0]


class _AnswerLog(threading.Thread):
    """Receives every TCP segment from the target's probed ports (raw socket copy)."""

    def __init__(self, target: str, ports: tuple[int, ...]) -> None:
        super().__init__(daemon=True)
        self.target, self.ports = socket.inet_aton(target), ports
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.2)
        self.rows: list[tuple[int, int, int, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(256, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 40 or data[12:16] != self.target:
                continue
            ihl = (data[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", data[ihl : ihl + 4])
            if sport not in self.ports or not SPORT_BASE <= dport < SPORT_BASE + SPORT_POOL:
                continue
            t_ns = time.time_ns()
            for level, kind, blob in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", blob[:16])
                    t_ns = sec * 1_000_000_000 + nsec
            self.rows.append((t_ns, sport, dport, flags_text(data[ihl + 13])))


def run_prober(
    target: str,
    interval_s: float,
    sendlog: Path,
    duration_s: float | None = None,
    enforcement: dict[str, Any] | None = None,
    enforcement_log: Path | None = None,
    ident: int | None = None,
    stop: threading.Event | None = None,
    ready: Any = None,
) -> dict[str, Any]:
    """Send at t0 + k*interval until `duration_s` or `stop`; log sends; return statistics."""
    policy = _precise_sleep_setup()
    stop = stop or threading.Event()
    ident = (os.getpid() if ident is None else ident) & 0xFFFF
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    echo = EchoTemplate(ident)
    period = int(round(interval_s * 1e9))
    syns: list[SynTemplate] = []
    answers = None
    tcp = None
    enf_period = 0
    if enforcement:
        src = _source_for(target)
        ports = (int(enforcement["blocked_port"]), int(enforcement["allowed_port"]))
        syns = [SynTemplate(src, target, p) for p in ports]
        enf_period = int(round(1e9 / float(enforcement["rate_hz"])))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        answers = _AnswerLog(target, ports)
        answers.start()
    offset = time.time_ns() - time.perf_counter_ns()  # monotonic schedule -> wall clock log
    t0 = time.perf_counter_ns() + 20_000_000
    if ready is not None:
        ready(t0 + offset)
    end = None if duration_s is None else t0 + int(duration_s * 1e9)
    rows: list[tuple[int, int, int, int]] = []
    enf_rows: list[tuple[int, int, int, str]] = []
    k = 0
    j = 0  # enforcement probes sent
    next_enf = t0 + (enf_period // 4 if syns else 0)
    while not stop.is_set():
        due = t0 + k * period
        is_enf = bool(syns) and next_enf < due
        when = next_enf if is_enf else due
        if end is not None and when >= end:
            break
        now = sleep_until(when)
        if is_enf:
            # Alternate blocked/allowed port; each SYN gets its own source port.
            syn = syns[j % 2]
            sport = SPORT_BASE + (j // 2) % SPORT_POOL
            tcp.sendto(syn.packet(sport, (j * 7919) & 0xFFFFFFFF), (target, 0))
            enf_rows.append((now + offset, syn.dport, sport, "S"))
            j += 1
            next_enf = t0 + enf_period // 4 + j * (enf_period // 2)
            continue
        try:
            icmp.sendto(echo.packet(k), (target, 0))
        except OSError:
            pass  # e.g. ENOBUFS/EHOSTUNREACH during an outage: the request counts as sent late
        rows.append((k, ident, due + offset, now + offset))
        k += 1
    if answers is not None:
        time.sleep(0.3)  # answers in flight
        answers.stopping.set()
        answers.join(1.0)
        answers.sock.close()
        tcp.close()
    icmp.close()
    with atomic_write(sendlog, newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["seq", "ident", "scheduled_ns", "sent_ns"])
        out.writerows(rows)
    if enforcement_log is not None and answers is not None:
        with atomic_write(enforcement_log, newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["kind", "time_ns", "port", "sport", "flags"])
            for t, port, sport, flags in enf_rows:
                out.writerow(["sent", t, port, sport, flags])
            for t, port, dport, flags in answers.rows:
                out.writerow(["answer", t, port, dport, flags])
    return lateness_stats(rows, interval_s) | {
        "enforcement_sent": len(enf_rows),
        "scheduling": policy,
    }


def lateness_stats(rows: list[tuple[int, int, int, int]], interval_s: float) -> dict[str, Any]:
    """sent - scheduled per request: p50/p99/max in microseconds, and how many were late by
    more than half an interval."""
    if not rows:
        return {"requests_sent": 0}
    late = sorted(sent - sched for _, _, sched, sent in rows)

    def pct(q: float) -> float:
        return late[min(len(late) - 1, int(q * len(late)))] / 1000

    half = interval_s * 1e9 / 2
    return {
        "requests_sent": len(rows),
        "lateness_p50_us": pct(0.50),
        "lateness_p99_us": pct(0.99),
        "lateness_max_us": late[-1] / 1000,
        "late_over_half_interval": sum(x > half for x in late),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migfw.testbed.prober", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--interval", type=float, required=True, help="seconds between requests")
    p.add_argument("--sendlog", type=Path, required=True)
    p.add_argument("--duration", type=float, default=None, help="default: until SIGTERM")
    p.add_argument("--ident", type=int, default=None)
    p.add_argument("--enf-rate", type=float, default=None)
    p.add_argument("--blocked-port", type=int, default=23)
    p.add_argument("--allowed-port", type=int, default=22)
    p.add_argument("--enforcement-log", type=Path, default=None)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not (args.interval > 0):
        print("prober: --interval must be positive", file=sys.stderr)
        return 2
    enforcement = None
    if args.enf_rate:
        enforcement = {"rate_hz": args.enf_rate, "blocked_port": args.blocked_port,
                       "allowed_port": args.allowed_port}  # fmt: skip
    try:
        stats = run_prober(
            args.target, args.interval, args.sendlog, args.duration, enforcement,
            args.enforcement_log, args.ident, stop,
            ready=lambda t0: print(f"READY {t0}", flush=True),
        )  # fmt: skip
    except (OSError, MigfwError) as exc:
        print(f"prober: {exc}", file=sys.stderr)
        return 2
    print("DONE " + json.dumps(stats), flush=True)
    return 0


# -------------------------------------------------------------------- the session


_TCPDUMP_STATS = {
    "capture_packets": re.compile(r"(\d+) packets? captured"),
    "capture_received": re.compile(r"(\d+) packets? received by filter"),
    "capture_dropped": re.compile(r"(\d+) packets? dropped by kernel"),
}


def stray_traffic(pcap: str | Path, target: str, own_address: str, ident: int) -> dict[str, Any]:
    """Echo requests or TCP SYNs to `target` that are not this session's, in a capture so far.

    Ours: echo requests with ICMP id `ident`; SYNs from `own_address`. Reads a pcap still being
    written (an incomplete last record is ignored). Ethernet link type only (tcpdump -i <veth>).
    """
    data = Path(pcap).read_bytes()
    out: dict[str, Any] = {"echo_ids": {}, "syn_sources": {}}
    if len(data) < 24:
        return out
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    dst = socket.inet_aton(target)
    own = socket.inet_aton(own_address)
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < incl or len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        proto, src, to = frame[23], frame[26:30], frame[30:34]
        l4 = frame[14 + ihl :]
        if to != dst:
            continue
        if proto == 1 and len(l4) >= 8 and l4[0] == 8:
            echo_id = int.from_bytes(l4[4:6], "big")
            if echo_id != ident:
                out["echo_ids"][echo_id] = out["echo_ids"].get(echo_id, 0) + 1
        elif proto == 6 and len(l4) >= 14 and (l4[13] & 0x12) == 0x02 and src != own:
            key = socket.inet_ntoa(src)
            out["syn_sources"][key] = out["syn_sources"].get(key, 0) + 1
    return out


def capture_filter(target: str) -> str:
    """tcpdump filter of the probe capture: the probes and replies, plus the link-layer
    announcements after a migration — QEMU's self-announce RARP frames (ethertype 0x8035,
    broadcast, no IP address in them) and the guest's gratuitous ARP — so the timeline can
    show when the destination announced the VM (migfw.measure.announce)."""
    return f"(host {target} and (icmp or icmp6 or tcp)) or rarp or (arp and host {target})"


class ProbeSession:
    """tcpdump + prober in `netns`; a context manager (or start()/stop())."""

    def __init__(
        self,
        netns: str | None,
        iface: str,
        target: str,
        interval_s: float,
        pcap_path: str | Path,
        sendlog_path: str | Path,
        enforcement: dict[str, Any] | None = None,
        enforcement_log_path: str | Path | None = None,
        ready_timeout_s: float = 30.0,
        ident: int | None = None,
    ) -> None:
        if not interval_s > 0:
            raise MigfwError(f"prober: interval {interval_s!r} s must be positive")
        if enforcement is not None:
            missing = {"rate_hz", "blocked_port", "allowed_port"} - set(enforcement)
            if missing:
                raise MigfwError(f"prober: enforcement needs {', '.join(sorted(missing))}")
        self.netns, self.iface, self.target, self.interval_s = netns, iface, target, interval_s
        self.pcap_path, self.sendlog_path = Path(pcap_path), Path(sendlog_path)
        self.enforcement = enforcement
        self.enforcement_log_path = Path(
            enforcement_log_path or self.sendlog_path.with_name("enforcement.csv")
        )
        self.ready_timeout_s = ready_timeout_s
        # This session's ICMP id, recorded in trial.json: any other id in the capture is
        # someone else's prober (the analysis flags it).
        self.ident = (secrets.randbelow(0xFFFF) + 1) if ident is None else ident & 0xFFFF
        self.tcpdump: subprocess.Popen | None = None
        self.prober: subprocess.Popen | None = None
        self.t0_ns: int | None = None
        self.pids: dict[str, int] = {}
        self.result: dict[str, Any] | None = None

    def __enter__(self) -> ProbeSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.result is None:
            try:
                self.stop()
            finally:
                self._kill()

    def _readline(self, stream: Any, want: str, proc: subprocess.Popen, what: str) -> str:
        """Wait (with a deadline) for a line containing `want` on a child's pipe."""
        deadline = time.monotonic() + self.ready_timeout_s
        fd = stream.fileno()
        buf = b""
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if want in line:
                    return line
        lines = buf.decode(errors="replace").strip().splitlines()
        if proc.poll() is not None and proc.stderr is not None and proc.stderr is not stream:
            lines += proc.stderr.read().strip().splitlines()  # why it died
        tail = lines[-1] if lines else "no output"
        raise MigfwError(f"{what} did not start in {self.netns or 'this namespace'}: {tail}")

    def start(self) -> None:
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        self.sendlog_path.parent.mkdir(parents=True, exist_ok=True)
        self._pcap_part = self.pcap_path.with_name(f".{self.pcap_path.name}.part")
        dump = [
            "tcpdump", "-n", "-Z", "root", "-i", self.iface, "-s", "192", "-B", "16384", "-U",
            # Immediate mode: without it the last ring-buffer block (up to ~1 s of probes)
            # is still unwritten when tcpdump is stopped, and the trial's end goes missing.
            "--immediate-mode", "--time-stamp-precision=nano", "-w", str(self._pcap_part),
            self._dump_filter(),
        ]  # fmt: skip
        try:
            self.tcpdump = subprocess.Popen(
                netns_argv(self.netns, dump), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                text=True, start_new_session=True,
            )  # fmt: skip
            self._readline(self.tcpdump.stderr, "listening on", self.tcpdump, "tcpdump")
            self.prober = subprocess.Popen(
                netns_argv(self.netns, self._command()), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )  # fmt: skip
            line = self._readline(self.prober.stdout, "READY", self.prober, "prober")
            self.pids = {"tcpdump": self.tcpdump.pid, "prober": self.prober.pid}
            self.t0_ns = int(line.split()[1])
        except BaseException:
            self._kill()
            raise

    def _dump_filter(self) -> str:
        return capture_filter(self.target)

    def _command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "migfw.testbed.prober", "--target", self.target,
            "--interval", repr(self.interval_s), "--sendlog", str(self.sendlog_path),
            "--ident", str(self.ident),
        ]  # fmt: skip
        if self.enforcement:
            cmd += [
                "--enf-rate", str(self.enforcement["rate_hz"]),
                "--blocked-port", str(self.enforcement["blocked_port"]),
                "--allowed-port", str(self.enforcement["allowed_port"]),
                "--enforcement-log", str(self.enforcement_log_path),
            ]  # fmt: skip
        return cmd

    def _kill(self) -> None:
        for proc in (self.prober, self.tcpdump):
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if getattr(self, "_pcap_part", None) is not None and self.result is None:
            self._pcap_part.unlink(missing_ok=True)

    def stray(self, own_address: str) -> dict[str, Any]:
        """Other probers' echo requests and SYNs to the target in the capture so far."""
        return stray_traffic(self._pcap_part, self.target, own_address, self.ident)

    def stop(self, linger_s: float = 0.5) -> dict[str, Any]:
        """Stop probing, let the last replies arrive, stop the capture; return the summary."""
        if self.prober is None or self.tcpdump is None:
            raise MigfwError("prober: stop() before start()")
        try:
            self.prober.send_signal(signal.SIGTERM)
            try:
                out, err = self.prober.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                raise MigfwError("prober: did not stop within 15 s of SIGTERM") from None
            if self.prober.returncode != 0:
                raise MigfwError(f"prober: exited {self.prober.returncode}: "
                                 f"{(err.strip().splitlines() or ['no output'])[-1]}")  # fmt: skip
            stats = json.loads(next(ln[5:] for ln in out.splitlines() if ln.startswith("DONE ")))
            time.sleep(linger_s)
            self.tcpdump.send_signal(signal.SIGINT)
            try:
                _, dump_err = self.tcpdump.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                raise MigfwError("tcpdump: did not stop within 15 s of SIGINT") from None
            summary = {}
            for key, rx in _TCPDUMP_STATS.items():
                m = rx.search(dump_err)
                summary[key] = int(m[1]) if m else None
            os.replace(self._pcap_part, self.pcap_path)
            result = {**stats, **summary, "t0_ns": self.t0_ns, "interval_s": self.interval_s}
            result.update(self._enforcement_summary())
            self.result = result
            return result
        finally:
            self._kill()

    def _enforcement_summary(self) -> dict[str, Any]:
        if not self.enforcement:
            return {"breaches": [], "allowed_answers": None, "blocked_answers": None}
        blocked = int(self.enforcement["blocked_port"])
        allowed = int(self.enforcement["allowed_port"])
        breaches, n_allowed, n_blocked = [], 0, 0
        with open(self.enforcement_log_path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["kind"] != "answer":
                    continue
                port = int(row["port"])
                if port == blocked:
                    n_blocked += 1
                    breaches.append({"time": int(row["time_ns"]) / 1e9, "port": port,
                                     "flags": row["flags"]})  # fmt: skip
                elif port == allowed:
                    n_allowed += 1
        return {"breaches": breaches, "allowed_answers": n_allowed, "blocked_answers": n_blocked}


if __name__ == "__main__":
    sys.exit(main())
