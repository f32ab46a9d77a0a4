"""The egress attacker (issue 22): the guest itself sends TCP SYNs to a destination its
ruleset blocks outbound, and a sink captures what arrives.

    <prefix>-sink: eth0 = the ruleset's `other` address, on the switch (pS in br0)

The guest runs `migfw-syn` (resources/guest/syn.c, built into the image): SYNs to the sink's
`blocked_port` (the ruleset's rule E1 blocks tcp from the VM to `other` port 25) and, as
the control, to `allowed_port` (26: passed by D3) at their rates, probe k with sequence
number k and source port 43000 + port % 1000, its send log on the guest's clock (every
attempt: the guest's own output chain refusing one is that firewall blocking it). The sink's
capture (`attack_egress.pcap`) is the evidence: a SYN to the blocked port that arrived got
out of the guest, whatever placement should have stopped it (the guest's output chain, the
host's rules for traffic from the VM's port, nwfilter, OVN's from-lport ACLs). The send log
is copied back over SSH (`attack_egress_sendlog.csv`, trial.json attackers.egress.clock
`guest`).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.netns import netns_argv
from migfw.trials.attack_contract import SIDE_SPORT_BASE, side_files

SINK_PORT = "pS"
GUEST_SENDLOG = "/tmp/migfw-egress.csv"
BLOCKED, ALLOWED = 25, 26


def blocks_egress(ruleset: Any, addresses: dict[str, str], port: int = BLOCKED) -> bool:
    """Does the ruleset block a SYN from the VM to `other`:port (so egress can be tested)?"""
    from migfw.testbed.ruleset import Packet, decide

    pkt = Packet("out", "tcp", addresses["target"], addresses["other"],
                 SIDE_SPORT_BASE["egress"] + port % 1000, port)  # fmt: skip
    return decide(ruleset, pkt, addresses) == "block"


def ensure_sink(local: Any, address: str) -> dict[str, str]:
    """The sink namespace on the switch, made on demand (recorded for down/cleanup)."""
    from migfw.testbed.cotenant import add_namespace_on_bridge
    from migfw.testbed.local import netns_exists

    ns = f"{local.prefix}-sink"
    if not netns_exists(ns):
        add_namespace_on_bridge(local, ns, "eth0", SINK_PORT, local.ns["switch"], address)
    return {"netns": ns, "iface": "eth0", "address": address}


def _frames(pcap: Path):  # -> Iterator[bytes]
    """The frames of a classic pcap as tcpdump writes it here (either byte order)."""
    import struct

    data = Path(pcap).read_bytes()
    if len(data) < 24:
        return
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        yield data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl


def arrivals(pcap: Path, vm: str, sink: str, ports: tuple[int, ...]) -> dict[int, int]:
    """Distinct probe indices (TCP seq) of the VM's SYNs per port that reached the sink."""
    seen: dict[int, set[int]] = {p: set() for p in ports}
    for frame in _frames(pcap):
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = frame[14 + ihl :]
        if len(tcp) < 14 or tcp[13] & 0x12 != 0x02:
            continue
        src, dst = ".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))
        dport = int.from_bytes(tcp[2:4], "big")
        if src == vm and dst == sink and dport in seen:
            seen[dport].add(int.from_bytes(tcp[4:8], "big"))
    return {p: len(s) for p, s in seen.items()}


class EgressSession:
    """tcpdump in the sink + migfw-syn in the guest; start() / stop() -> summary."""

    def __init__(self, bed: Any, sink: dict[str, str], folder: Path, rate_hz: float,
                 allowed_rate_hz: float) -> None:  # fmt: skip
        self.bed, self.sink, self.folder = bed, sink, Path(folder)
        self.rate_hz, self.allowed_rate_hz = float(rate_hz), float(allowed_rate_hz)
        self.pcap, self.sendlog = (self.folder / n for n in side_files("egress"))
        self.tcpdump: subprocess.Popen | None = None
        self.guest_pid: int | None = None
        self.pids: dict[str, int] = {}
        self.ahead: Any = None  # stop()'s login, made ahead (login_ahead)

    def _shell(self, timeout_s: float = 60.0):  # -> GuestShell
        from migfw.testbed.deploy import GuestShell

        b = self.bed
        return GuestShell(b.vm_address, b.ssh_user, b.ssh_key, b.ssh_known_hosts,
                          netns=b.ssh_netns, timeout_s=timeout_s)  # fmt: skip

    def start(self) -> None:
        import select

        part = self.pcap.with_name(f".{self.pcap.name}.part")
        dump = ["tcpdump", "-n", "-Z", "root", "-i", self.sink["iface"], "-s", "128", "-U",
                "--immediate-mode", "--time-stamp-precision=nano", "-w", str(part),
                f"tcp and src host {self.bed.vm_address}"]  # fmt: skip
        self.tcpdump = subprocess.Popen(netns_argv(self.sink["netns"], dump), text=True,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        start_new_session=True)  # fmt: skip
        deadline, seen = time.monotonic() + 20, ""
        while time.monotonic() < deadline and "listening on" not in seen:
            ready, _, _ = select.select([self.tcpdump.stderr], [], [], 0.5)
            if ready:
                line = self.tcpdump.stderr.readline()
                if not line:
                    break
                seen += line
        if "listening on" not in seen:
            self.kill()
            raise MigfwError(f"egress: tcpdump did not start in {self.sink['netns']}: {seen!r}")
        self.pids["tcpdump"] = self.tcpdump.pid
        base = SIDE_SPORT_BASE["egress"]
        args = (f"{self.sink['address']} {BLOCKED} {self.rate_hz!r} {ALLOWED} "
                f"{self.allowed_rate_hz!r} {base} {GUEST_SENDLOG}")  # fmt: skip
        with self._shell() as shell:
            out = shell.run(f"rm -f {GUEST_SENDLOG}; /usr/bin/migfw-syn {args} "
                            ">/tmp/migfw-egress.out 2>&1 </dev/null & echo $!")  # fmt: skip
            pid = int(out.strip().split()[-1])
            alive = shell.run(f"sleep 0.2; kill -0 {pid} 2>/dev/null && echo alive || "
                              "cat /tmp/migfw-egress.out", check=False)  # fmt: skip
        if alive.strip() != "alive":
            self.kill()
            tail = (alive.strip().splitlines() or ["no output"])[-1]
            raise MigfwError(f"egress: the guest's migfw-syn did not start: {tail}")
        self.guest_pid = pid

    def login_ahead(self) -> None:
        """Make stop()'s guest login now, in a thread (at the settle's end: the migration is
        over), so the stop does not wait for it."""
        from migfw.testbed.recovery import LoginAhead

        self.ahead = LoginAhead(self.bed)

    def _take_ahead(self) -> Any:
        ahead, self.ahead = self.ahead, None
        if ahead is None:
            return None
        try:
            return ahead.take()
        except MigfwError:
            return None  # a login of its own (with its retries) then

    def stop(self) -> dict[str, Any]:
        """Stop the guest's sender, copy its send log back, stop the capture; the summary."""
        try:
            made_ahead = self.ahead is not None
            shell = self._take_ahead()
            if shell is None:
                # No login made ahead: the migration failed, and the guest may not answer at
                # all (its QEMU stopped: 62 s here for GuestShell's 60 s). Bounded as the
                # conntrack dumps' logins are; a failed ahead login still gets the full 60 s.
                from migfw.testbed.conntrack import GUEST_DUMP_TIMEOUT_S

                shell = self._shell(60.0 if made_ahead else GUEST_DUMP_TIMEOUT_S)
                shell.open()
            try:
                if self.guest_pid is not None:
                    shell.run(f"kill {self.guest_pid}", check=False)
                text = ""
                for _ in range(50):  # the log is written at exit (rename: whole or absent)
                    text = shell.run(f"cat {GUEST_SENDLOG} 2>/dev/null || true")
                    if text.startswith("port,index"):
                        break
                    time.sleep(0.1)
            finally:
                shell.close()
            if not text.startswith("port,index"):
                raise MigfwError("egress: the guest's migfw-syn wrote no send log")
            self.sendlog.write_text(text)
            time.sleep(0.3)  # the last SYNs reach the sink
            assert self.tcpdump is not None
            self.tcpdump.send_signal(signal.SIGINT)
            self.tcpdump.wait(timeout=15)
            self.pcap.with_name(f".{self.pcap.name}.part").replace(self.pcap)
        finally:
            self.kill()
        rows = text.strip().splitlines()[1:]
        sent = {p: sum(1 for r in rows if r.split(",")[0] == str(p)) for p in (BLOCKED, ALLOWED)}
        got = arrivals(self.pcap, self.bed.vm_address, self.sink["address"], (BLOCKED, ALLOWED))
        return {"syns_sent": sum(sent.values()),
                "sent_per_port": {str(k): v for k, v in sent.items()},
                "blocked_arrived": got[BLOCKED], "allowed_arrived": got[ALLOWED]}  # fmt: skip

    def kill(self) -> None:
        if self.tcpdump is not None and self.tcpdump.poll() is None:
            import os

            try:
                os.killpg(self.tcpdump.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.tcpdump.wait(timeout=5)

    def _kill(self) -> None:  # the attackers' kill name (TrialTraffic.kill)
        self.kill()
