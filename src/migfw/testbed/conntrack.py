"""Connection-tracking state of a trial (issue 22): dumps, the `nf_conntrack_tcp_loose`
factor, and carrying the VM's entries from the source host to the destination (`vmm-state`).

A host is reached as a network namespace name (local testbed) or any object with
`run(argv, stdin) -> CompletedProcess` (an SSH login, migfw.testbed.placement.HostSsh); the
guest through its shell (`run(command) -> str`). Dumps are conntrack-tools' `conntrack -L`
(`-o extended`) on hosts and `/proc/net/nf_conntrack` in the guest (same line format; the
guest has no conntrack-tools), written as `conntrack/<src|dst|guest>-<moment>.txt`
(migfw.trials.attack_contract.conntrack_file).

Carrying state: `conntrack -L -o save` on the source prints each entry as the arguments of
`conntrack -I`; the VM's entries (either tuple naming its address) are re-created on the
destination by one shell script of `conntrack -I` lines (one exec of the namespace, not one
per entry). An entry that already exists there (an earlier copy) is updated instead.
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
        shell.run(f"echo {int(value)} > {TCP_LOOSE_PROC}")
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


def insert_script(entries: list[list[str]]) -> str:
    """A shell script re-creating `entries` (update where one exists already); prints one
    `ok`/`fail` per entry so the caller counts them."""
    lines = []
    for args in entries:
        quoted = shlex.join(args)
        lines.append(f"if conntrack -I {quoted} 2>/dev/null || conntrack -U {quoted} 2>/dev/null;"
                     " then echo ok; else echo fail; fi")  # fmt: skip
    return "\n".join(lines) + "\n"


def carry(source: Any, destination: Any, address: str) -> dict[str, Any]:
    """Copy the VM's entries from `source` to `destination` now: {t_dump, t_inserted,
    entries, inserted, failed, error}. Never raises: the trial records what happened."""
    record: dict[str, Any] = {"t_start": time.time(), "entries": 0, "inserted": 0, "failed": 0}
    try:
        proc = run_on(source, ["conntrack", "-L", "-o", "save"])
        record["t_dump"] = time.time()
        entries = entries_for(_check(proc, "conntrack -L", source), address)
        record["entries"] = len(entries)
        if entries:
            proc = run_on(destination, ["sh", "-s"], insert_script(entries))
            results = proc.stdout.split()
            record["inserted"] = results.count("ok")
            record["failed"] = results.count("fail")
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
        from migfw.testbed import placement as pl

        out = {}
        for role, host in self.roles.items():
            where = self._host(host)
            try:
                out[role] = action(role, host, where)
            finally:
                pl.close_host(where)
        return out

    def apply(self, shell: Any) -> dict[str, int | None]:
        """Set the factor's level (None: leave it) everywhere; the values read back."""
        got = self._each_host(lambda r, h, w: set_host_tcp_loose(w, self.tcp_loose))
        got["guest"] = set_guest_tcp_loose(shell, self.tcp_loose)
        self.dumps.record["tcp_loose"] = got
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
        """Both hosts' tables and the guest's (a shell of its own unless one is given)."""
        if self.host_dumps:
            self._each_host(lambda role, host, where: self.dumps.host(role, where, host, moment))
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
