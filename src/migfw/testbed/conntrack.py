"""Connection-tracking state of a trial (issue 22): dumps, the `nf_conntrack_tcp_loose`
factor, and carrying the VM's entries from the source host to the destination (`vmm-state`).

A host is reached as a network namespace name (local testbed) or any object with
`run(argv, stdin) -> CompletedProcess` (an SSH login, migfw.testbed.placement.HostSsh); the
guest through its shell (`run(command) -> str`). Dumps are conntrack-tools' `conntrack -L`
(`-o extended`) on hosts and `/proc/net/nf_conntrack` in the guest (same line format; the
guest has no conntrack-tools), written as `conntrack/<src|dst|guest>-<moment>.txt`
(migfw.trials.attack_contract.conntrack_file).

Carrying state: `conntrack -L -o save` on the source prints each entry as the arguments of
`conntrack -I`; the VM's entries (either tuple naming its address) are loaded on the
destination by one `conntrack -R -` (conntrack-tools >= 1.4.6 reads the saved lines in one
process; one `conntrack -I` process per entry took 6-11 s for ~150 entries under load, issue
22). An entry that already exists there (an earlier copy of the same trial) is left as it is;
a listing right after the load counts the carried entries present on the destination.

Each trial starts from the VM's clean host tables (`flush_vm`): the VM's entries left by earlier
trials (established flows whose end no host saw: 5 days of timeout) are deleted on both hosts,
again by one `conntrack -R -` of `-D` lines - except the entries of the guest's SSH port, the
testbed's own control session to the guest: with `nf_conntrack_tcp_loose` 0 a deleted entry is
never picked up again and the host's ruleset would drop the session's next segment.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.netns import netns_argv
from migfw.trials.attack_contract import conntrack_file

TCP_LOOSE_SYSCTL = "net.netfilter.nf_conntrack_tcp_loose"
TCP_LOOSE_PROC = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"
DEFAULT_TCP_LOOSE = 1  # Linux's default

GUEST_DUMP_TIMEOUT_S = 20.0  # SSH to the guest for its conntrack table (default 60 s)
CONTROL_PORTS = (22,)  # the guest's SSH: the testbed's control session, never flushed


def run_on(where: Any, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """`argv` on a host: in its namespace (str) or through its `run` (an SSH login)."""
    if not isinstance(where, str):
        return where.run(argv, stdin)
    try:
        return subprocess.run(netns_argv(where, argv), input=stdin, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except FileNotFoundError:
        raise MigfwError(f"{argv[0]}: command not found (install conntrack / iproute2)") from None


def _check(proc: subprocess.CompletedProcess, what: str, where: Any) -> str:
    if proc.returncode != 0:
        tail = ((proc.stderr or proc.stdout or "").strip().splitlines() or ["no output"])[-1]
        raise MigfwError(f"{what} on {where}: {tail}")
    return proc.stdout


# --------------------------------------------------------------------------- tcp_loose
def set_host_tcp_loose(where: Any, value: int | None) -> int | None:
    """Set the sysctl in a host's namespace (None: leave it) and read it back."""
    if value is not None:
        if int(value) not in (0, 1):
            raise MigfwError(f"nf_conntrack_tcp_loose: {value!r} is not 0 or 1")
        _check(run_on(where, ["sysctl", "-qw", f"{TCP_LOOSE_SYSCTL}={int(value)}"]),
               f"sysctl {TCP_LOOSE_SYSCTL}", where)  # fmt: skip
    proc = run_on(where, ["sysctl", "-n", TCP_LOOSE_SYSCTL])
    return int(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def set_guest_tcp_loose(shell: Any, value: int | None) -> int | None:
    """Set the guest's sysctl through /proc (busybox has no sysctl -w of its own need)."""
    if value is not None:
        if int(value) not in (0, 1):
            raise MigfwError(f"nf_conntrack_tcp_loose: {value!r} is not 0 or 1")
        out = shell.run(f"echo {int(value)} > {TCP_LOOSE_PROC} && "
                        f"(cat {TCP_LOOSE_PROC} 2>/dev/null || true)").strip()  # fmt: skip
    else:
        out = shell.run(f"cat {TCP_LOOSE_PROC} 2>/dev/null || true").strip()
    return int(out) if out.isdigit() else None


# --------------------------------------------------------------------------- dumps
def dump_host(where: Any) -> tuple[str, int]:
    """`conntrack -L -o extended` of a host's namespace: (listing, exit code)."""
    proc = run_on(where, ["conntrack", "-L", "-o", "extended"])
    return proc.stdout, proc.returncode


def dump_guest(shell: Any) -> tuple[str, int]:
    """The guest's table (/proc/net/nf_conntrack: `conntrack -L -o extended`'s format)."""
    try:
        return shell.run("cat /proc/net/nf_conntrack"), 0
    except MigfwError as exc:
        return f"# {exc}\n", 1


class Dumps:
    """The trial's conntrack/ folder and trial.json's `conntrack` record."""

    def __init__(self, folder: Path, tcp_loose: dict[str, int | None] | None = None) -> None:
        self.folder = Path(folder)
        self.record: dict[str, Any] = {"tcp_loose": dict(tcp_loose or {}), "dumps": {}}

    def host(self, role: str, where: Any, host: str, moment: str) -> None:
        """Dump host `host` (A/B) as the trial's `role` (src/dst) at `moment`; never raises
        for a failed dump (its rc and text say so)."""
        t = time.time()
        try:
            text, rc = dump_host(where)
        except MigfwError as exc:
            text, rc = f"# {exc}\n", 127
        self._write(role, moment, text, {"t": t, "host": host, "rc": rc})

    def guest(self, shell: Any, moment: str) -> None:
        t = time.time()
        text, rc = dump_guest(shell)
        self._write("guest", moment, text, {"t": t, "host": "guest", "rc": rc})

    def _write(self, role: str, moment: str, text: str, info: dict[str, Any]) -> None:
        path = self.folder / conntrack_file(role, moment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.record["dumps"][f"{role}-{moment}"] = info


# --------------------------------------------------------------------------- carrying state
_ADDR_OPTS = ("-s", "-d", "-r", "-q", "--src", "--dst", "--reply-src", "--reply-dst",
              "--orig-src", "--orig-dst")  # fmt: skip


def entries_for(save_text: str, address: str) -> list[list[str]]:
    """The `conntrack -L -o save` entries naming `address` in either tuple, as argv lists
    without the leading `-A`."""
    want = str(ipaddress.ip_address(address))
    out = []
    for line in save_text.splitlines():
        parts = shlex.split(line)
        if not parts or parts[0] != "-A":
            continue
        args = parts[1:]
        if any(a in _ADDR_OPTS and i + 1 < len(args) and args[i + 1] == want
               for i, a in enumerate(args)):  # fmt: skip
            out.append(args)
    return out


_TUPLE_OPTS = ("-s", "-d", "-p", "--sport", "--dport", "--icmp-type", "--icmp-code",
               "--icmp-id", "-w", "--zone", "--orig-zone", "--reply-zone")  # fmt: skip


def _option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args[:-1]):
        if a in names:
            return args[i + 1]
    return None


def tuple_key(args: list[str]) -> tuple[str | None, ...]:
    """An entry's original-direction tuple (protocol, source, destination, ports / ICMP id)."""
    return (_option(args, "-p"), _option(args, "-s", "--src", "--orig-src"),
            _option(args, "-d", "--dst", "--orig-dst"), _option(args, "--sport"),
            _option(args, "--dport"), _option(args, "--icmp-id"))  # fmt: skip


def load_text(entries: list[list[str]]) -> str:
    """`conntrack -R` input re-creating `entries` (as entries_for returns them)."""
    return "".join(f"-A {shlex.join(args)}\n" for args in entries)


def is_control(args: list[str], address: str) -> bool:
    """The entry is a TCP connection to one of the VM's CONTROL_PORTS (its SSH)."""
    if _option(args, "-p") != "tcp":
        return False
    ports = {str(p) for p in CONTROL_PORTS}
    for ip_opts, port_opt in ((("-d", "--dst", "--orig-dst"), "--dport"),
                              (("-s", "--src", "--orig-src"), "--sport")):  # fmt: skip
        if _option(args, *ip_opts) == address and _option(args, port_opt) in ports:
            return True
    return False


def delete_text(entries: list[list[str]]) -> str:
    """`conntrack -R` input deleting exactly `entries` (their original tuple and zone)."""
    lines = []
    for args in entries:
        keep = [tok for i, a in enumerate(args[:-1]) if a in _TUPLE_OPTS
                for tok in (a, args[i + 1])]  # fmt: skip
        lines.append(f"-D {shlex.join(keep)}\n")
    return "".join(lines)


def flush_vm(where: Any, address: str) -> dict[str, Any]:
    """Delete the VM's entries on a host but its control session's (module doc): {t, deleted,
    kept, error}. Never raises: the trial records what happened."""
    record: dict[str, Any] = {"t": time.time(), "deleted": 0, "kept": 0}
    try:
        entries = entries_for(_check(run_on(where, ["conntrack", "-L", "-o", "save"]),
                                     "conntrack -L", where), address)  # fmt: skip
        vm = str(ipaddress.ip_address(address))
        gone = [e for e in entries if not is_control(e, vm)]
        record["kept"] = len(entries) - len(gone)
        if gone:
            _check(run_on(where, ["conntrack", "-R", "-"], delete_text(gone)), "conntrack -R",
                   where)  # fmt: skip
        record["deleted"] = len(gone)
    except MigfwError as exc:
        record["error"] = str(exc)
    return record


def carry(source: Any, destination: Any, address: str) -> dict[str, Any]:
    """Copy the VM's entries from `source` to `destination` now: {t_start, t_dump,
    t_inserted, entries, inserted (carried entries present on the destination after the
    load), failed, method, error}. Never raises: the trial records what happened."""
    record: dict[str, Any] = {"t_start": time.time(), "entries": 0, "inserted": 0, "failed": 0,
                              "method": "conntrack -R"}  # fmt: skip
    try:
        proc = run_on(source, ["conntrack", "-L", "-o", "save"])
        record["t_dump"] = time.time()
        entries = entries_for(_check(proc, "conntrack -L", source), address)
        record["entries"] = len(entries)
        if entries:
            # One exec: load them all, then list the table to see which are there.
            proc = run_on(destination, ["sh", "-c", "conntrack -R - && echo '# loaded' >&2; "
                                        "conntrack -L -o save"], load_text(entries))  # fmt: skip
            record["t_inserted"] = time.time()
            there = {tuple_key(e) for e in entries_for(proc.stdout, address)}
            record["inserted"] = sum(1 for e in entries if tuple_key(e) in there)
            record["failed"] = record["entries"] - record["inserted"]
            if "# loaded" not in (proc.stderr or ""):
                tail = ((proc.stderr or "").strip().splitlines() or ["no output"])[-1]
                record["error"] = f"conntrack -R on {destination}: {tail}"
        else:
            record["t_inserted"] = time.time()
    except MigfwError as exc:
        record["error"] = str(exc)
    return record


class TrialConntrack:
    """One trial's connection-tracking side: the tcp_loose factor applied to both hosts and
    the guest, and the dumps at `before`, `resume` and `end` (trial.json `conntrack`)."""

    def __init__(self, bed: Any, folder: Path, source: str, destination: str,
                 tcp_loose: int | None, host_dumps: bool = True) -> None:  # fmt: skip
        # host_dumps False: another part writes the hosts' dumps (ovn: OVS's own conntrack).
        self.host_dumps = host_dumps
        self.bed, self.folder = bed, Path(folder)
        self.roles = {"src": source, "dst": destination}
        # No level given: the kernel's default (1), restored, so a trial never inherits the
        # level an earlier trial left in a namespace or the guest.
        self.tcp_loose = DEFAULT_TCP_LOOSE if tcp_loose is None else int(tcp_loose)
        self.dumps = Dumps(self.folder)

    def _host(self, host: str) -> Any:
        from migfw.testbed import placement as pl

        return pl.host_commands(self.bed, host)

    def _each_host(self, action: Any) -> dict[str, Any]:
        """`action(role, host, where)` on both hosts at once (a thread each)."""
        from concurrent.futures import ThreadPoolExecutor

        from migfw.testbed import placement as pl

        def one(role: str, host: str) -> Any:
            where = self._host(host)
            try:
                return action(role, host, where)
            finally:
                pl.close_host(where)

        with ThreadPoolExecutor(max_workers=len(self.roles)) as pool:
            futures = {role: pool.submit(one, role, host) for role, host in self.roles.items()}
            return {role: future.result() for role, future in futures.items()}

    def apply(self, shell: Any) -> dict[str, int | None]:
        """Set the factor's level (None: leave it) everywhere; the values read back. Then
        the VM's entries of earlier trials go from both hosts' tables (`flush_vm`). The
        hosts' part runs in threads beside the guest's."""
        from concurrent.futures import ThreadPoolExecutor

        address = self.bed.vm_address

        def host(role: str, name: str, where: Any) -> tuple[int | None, Any]:
            loose = set_host_tcp_loose(where, self.tcp_loose)
            # The hosts' kernel tables decide: no entry of an earlier trial.
            return loose, flush_vm(where, address) if self.host_dumps else None

        with ThreadPoolExecutor(max_workers=1) as pool:
            hosts = pool.submit(self._each_host, host)
            guest = set_guest_tcp_loose(shell, self.tcp_loose)
            done = hosts.result()
        got = {role: loose for role, (loose, _) in done.items()}
        got["guest"] = guest
        self.dumps.record["tcp_loose"] = got
        if self.host_dumps:
            self.dumps.record["flushed"] = {role: flushed for role, (_, flushed) in done.items()}
        if any(v != self.tcp_loose for v in got.values()):
            raise MigfwError(
                f"nf_conntrack_tcp_loose={self.tcp_loose} did not hold: read back {got}"
            )
        return got

    def restore(self, shell: Any) -> None:
        """Leave the kernel's default behind (a later SSH session or deployment that is not a
        trial - `migfw testbed placement` - must not meet tcp_loose 0: the guest then drops
        its own SSH session's mid-stream packets once a ruleset starts tracking them)."""
        if self.tcp_loose != DEFAULT_TCP_LOOSE:
            self._each_host(lambda r, h, w: set_host_tcp_loose(w, DEFAULT_TCP_LOOSE))
            set_guest_tcp_loose(shell, DEFAULT_TCP_LOOSE)

    def dump(self, moment: str, shell: Any | None = None) -> None:
        """Both hosts' tables and the guest's (a shell of its own unless one is given), all
        at once (each dump records its own time)."""
        from concurrent.futures import ThreadPoolExecutor

        def hosts() -> None:
            if self.host_dumps:
                self._each_host(
                    lambda role, host, where: self.dumps.host(role, where, host, moment)
                )

        with ThreadPoolExecutor(max_workers=1) as pool:
            dumped = pool.submit(hosts)
            self._dump_guest(moment, shell)
            dumped.result()

    def _dump_guest(self, moment: str, shell: Any | None) -> None:
        try:
            if shell is not None:
                self.dumps.guest(shell, moment)
            else:
                from migfw.testbed.deploy import GuestShell

                bed = self.bed
                # Bounded: a guest frozen or gone (its QEMU hung, issue 19) would hold the
                # trial for GuestShell's default 60 s at every moment dumped.
                own_shell = GuestShell(bed.vm_address, bed.ssh_user, bed.ssh_key,
                                       bed.ssh_known_hosts, netns=bed.ssh_netns,
                                       timeout_s=GUEST_DUMP_TIMEOUT_S)  # fmt: skip
                with own_shell as own:
                    self.dumps.guest(own, moment)
        except MigfwError as exc:  # an unreachable guest: the dump says so
            self.dumps._write("guest", moment, f"# {exc}\n",
                              {"t": time.time(), "host": "guest", "rc": 255})  # fmt: skip

    @property
    def record(self) -> dict[str, Any]:
        return self.dumps.record
