"""Probing from a remote host over SSH.

With `testbed.external.prober_host` set, the capture (tcpdump), the prober and its
enforcement probes run on that host over SSH (fabric, pinned host key): `RemoteProbeSession`
starts them in a fresh temporary directory there, stops them, copies the capture and the logs
back and checks each copy against the SHA-256 the prober host computed. The ruleset's packet
checks run there too (`python -m migfw.testbed.remote verify`), because the ruleset's
`remote` address is the prober's.

The clocks of the hosts a trial involves (measured over the same SSH targets) are
migfw.testbed.hostclocks.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migfw.errors import MigfwError
from migfw.io import sha256_file
from migfw.testbed.attacker import AttackSession
from migfw.testbed.prober import ProbeSession

SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")


# ----------------------------------------------------------------------------- SSH targets


def split_destination(dest: str) -> tuple[str, str, int]:
    """'user@host[:port]' -> (user, host, port); user defaults to root."""
    user, _, rest = dest.rpartition("@")
    host, _, port = rest.partition(":")
    if not host:
        raise MigfwError(f"SSH destination {dest!r}: no host")
    try:
        return user or "root", host, int(port or 22)
    except ValueError:
        raise MigfwError(f"SSH destination {dest!r}: port {port!r} is not a number") from None


def libvirt_ssh_target(uri: str) -> dict[str, Any] | None:
    """The SSH login a libvirt URI uses (qemu+ssh/libssh/libssh2), or None for other URIs."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if transport not in SSH_TRANSPORTS:
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if not parts.hostname:
        raise MigfwError(f"libvirt URI {uri}: no host")
    return {
        "user": parts.username or "root",
        "host": parts.hostname,
        "port": parts.port or 22,
        "key": query.get("keyfile"),
        "known_hosts": query.get("known_hosts"),
        "transport": transport,
    }


def open_shell(target: dict[str, Any], timeout_s: float = 20.0):  # -> GuestShell
    """A fabric session with pinned host keys (RejectPolicy) to `target`."""
    from migfw.testbed.deploy import GuestShell

    for key in ("key", "known_hosts"):
        if not target.get(key):
            raise MigfwError(f"ssh {target['host']}: no {key} given (key-only, pinned hosts)")
    shell = GuestShell(target["host"], target["user"], target["key"], target["known_hosts"],
                       port=int(target["port"]), timeout_s=timeout_s)  # fmt: skip
    shell.open()
    return shell


# ------------------------------------------------------------------------ remote probing


class RemoteSh:
    """One long-lived `sh` on a host, over one SSH channel: each command costs a round trip.

    Why not one SSH exec per command: every exec is a new session, and the server runs the
    login shell (`bash -c`), which reads the user's ~/.bashrc first. On this machine root's
    ~/.bashrc runs `pyenv init` - measured 0.55-0.97 s per command (remote prober stop: 10
    commands, 8.9 s). A lab's accounts can be as slow; one shell pays it once.
    Commands run with stdin from /dev/null; their stderr is merged into the output.
    """

    def __init__(self, shell: Any, timeout_s: float = 30.0) -> None:
        self.shell = shell
        self.address = shell.address
        self.chan = shell.conn.client.get_transport().open_session()
        self.chan.settimeout(timeout_s)
        self.chan.exec_command("exec sh")
        self.buf = b""
        self.last_code: int | None = None

    def run(self, cmd: str, check: bool = True, timeout: float = 30.0) -> str:
        marker = f"__migfw_rc_{secrets.token_hex(6)}"
        script = f"{{ {cmd}\n}} </dev/null 2>&1; printf '\\n{marker} %d\\n' $?\n"
        deadline = time.monotonic() + timeout
        needle = f"\n{marker} ".encode()
        try:
            self.chan.sendall(script.encode())
            while True:
                at = self.buf.find(needle)
                if at >= 0 and self.buf.find(b"\n", at + len(needle)) >= 0:
                    break
                if time.monotonic() > deadline:
                    raise MigfwError(f"ssh {self.address}: `{cmd}` timed out after {timeout:.0f} s")
                self.chan.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.chan.recv(65536)
                if not chunk:
                    raise MigfwError(f"ssh {self.address}: shell exited running `{cmd}`")
                self.buf += chunk
        except (OSError, TimeoutError) as exc:
            raise MigfwError(
                f"ssh {self.address}: connection lost running `{cmd}`: {exc}"
            ) from None
        end = self.buf.index(b"\n", at + len(needle))
        out = self.buf[:at].decode(errors="replace")
        code = int(self.buf[at + len(needle) : end])
        self.buf = self.buf[end + 1 :]
        self.last_code = code
        if check and code != 0:
            last = out.strip().splitlines()
            raise MigfwError(f"ssh {self.address}: `{cmd}` exited {code}: "
                             f"{last[-1] if last else 'no output'}")  # fmt: skip
        return out

    def close(self) -> None:
        try:
            self.chan.close()
        except OSError:
            pass


class RemoteProcs:
    """Processes of one session on a remote host: a private temporary directory, each
    process started detached with its output in files, stopped and killed by pid."""

    def __init__(self, target: dict[str, Any], ready_timeout_s: float = 30.0) -> None:
        self.target = target
        self.host = target["host"]
        self.ready_timeout_s = ready_timeout_s
        self.shell: Any = None
        self.sh: RemoteSh | None = None
        self.workdir: str | None = None
        self.pids: dict[str, int] = {}

    def open(self, prefix: str = "migfw-probe") -> str:
        self.shell = open_shell(self.target)
        self.sh = RemoteSh(self.shell)
        self.workdir = self.run(f"mktemp -d /tmp/{prefix}.XXXXXXXX").strip()
        return self.workdir

    def run(self, cmd: str, check: bool = True, timeout: float = 30.0) -> str:
        assert self.sh is not None
        return self.sh.run(cmd, check=check, timeout=timeout)

    def spawn(self, name: str, argv: list[str]) -> int:
        """Start argv detached in the work dir, stdout/stderr to files; return its pid."""
        out = self.run(
            # In a subshell that exits at once: the process is orphaned (its exit is reaped by
            # init, so /proc shows it gone), and $! is its pid (setsid execs the command).
            f"( setsid {shlex.join(argv)} >{self.workdir}/{name}.out"
            f" 2>{self.workdir}/{name}.err </dev/null & echo $! )"
        )
        self.pids[name] = int(out.strip().splitlines()[-1])
        return self.pids[name]

    def alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        if not pid:
            return False
        # A zombie (nobody reaped it yet) has exited too.
        probe = f's=$(cut -d" " -f3 /proc/{pid}/stat 2>/dev/null) && [ "$s" != Z ] && echo y'
        return self.run(probe, check=False).strip() == "y"

    def _last_err(self, name: str) -> str:
        err = self.run(f"tail -n 3 {self.workdir}/{name}.err", check=False).strip()
        return err.splitlines()[-1] if err else "no output"

    def wait_for(self, name: str, stream: str, want: str) -> str:
        """The first line of `name`'s stdout/stderr file containing `want` (a deadline)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            text = self.run(f"cat {self.workdir}/{name}.{stream}", check=False)
            for line in text.splitlines():
                if want in line:
                    return line
            if not self.alive(name):
                raise MigfwError(f"{name} on {self.host} exited: {self._last_err(name)}")
            time.sleep(0.05)
        raise MigfwError(f"{name} on {self.host}: no {want!r} after {self.ready_timeout_s:.0f} s")

    def stop(self, name: str, signal_name: str, want: str | None, timeout_s: float = 15) -> str:
        """Signal `name` and wait until it has exited (and, if `want`, printed a line
        starting with it; that line is returned)."""
        self.run(f"kill -{signal_name} {self.pids[name]}", check=False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive(name):
                if want is None:
                    return ""
                text = self.run(f"cat {self.workdir}/{name}.out", check=False)
                for line in text.splitlines():
                    if line.startswith(want):
                        return line
                raise MigfwError(f"{name} on {self.host} failed: {self._last_err(name)}")
            time.sleep(0.02)
        raise MigfwError(f"{name} on {self.host}: did not stop within {timeout_s:.0f} s")

    def get(self, name: str, local: Path) -> None:
        self.shell.conn.get(f"{self.workdir}/{name}", str(local))

    def fetch(self, files: dict[str, Path]) -> dict[str, str]:
        """Copy each file back; its SHA-256 here must equal the one the remote host computed."""
        out = self.run(f"cd {self.workdir} && sha256sum {' '.join(files)}")
        remote = {name: digest for digest, name in (ln.split() for ln in out.splitlines())}
        copied = {}
        for name, local in files.items():
            self.get(name, local)
            digest = sha256_file(local)
            if digest != remote.get(name):
                raise MigfwError(
                    f"{name} copied from {self.host}: SHA-256 {digest} differs from the "
                    f"remote host's {remote.get(name)}"
                )
            copied[name] = digest
        return copied

    def close(self) -> None:
        """Kill what is left, remove the work dir, close the session (never raises)."""
        if self.shell is not None and self.shell.conn is not None:
            try:
                if self.sh is not None:
                    pids = " ".join(str(p) for p in self.pids.values())
                    if pids:
                        self.run(f"kill -KILL {pids} 2>/dev/null", check=False)
                    if self.workdir and self.workdir.startswith("/tmp/migfw-"):
                        self.run(f"rm -rf {self.workdir}", check=False)
            except MigfwError:
                pass  # the host is gone; nothing of ours can be left running there
            if self.sh is not None:
                self.sh.close()
            self.shell.close()
        self.shell, self.sh = None, None


class _RemoteSession:
    """Mixin: a ProbeSession (or AttackSession) whose tcpdump and sender run on
    `remote['target']` over SSH. The sender's command is the local one with the
    interpreter and file paths moved to the remote host; the files come back by SFTP,
    checked against the SHA-256 the remote host computed."""

    pcap_path: Path
    sendlog_path: Path
    enforcement_log_path: Path
    enforcement: dict[str, Any] | None
    iface: str
    target: str
    interval_s: float
    ready_timeout_s: float
    result: dict[str, Any] | None

    def __init__(self, remote: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        self.exclude_sports = tuple(kwargs.pop("exclude_sports", ()))
        super().__init__(None, *args, **kwargs)  # type: ignore[call-arg]
        self.remote = remote
        self.procs = RemoteProcs(remote["target"], self.ready_timeout_s)
        # The processes live on the remote host: `pids` (what a later run on this machine
        # may kill after a crash) stays empty; these are killed over SSH.
        self.remote_pids = self.procs.pids
        self.copied: dict[str, str] = {}

    @property
    def workdir(self) -> str | None:
        return self.procs.workdir

    def _remote_files(self) -> dict[str, Path]:
        files = {self.pcap_path.name: self._pcap_part, self.sendlog_path.name: self.sendlog_path}
        if self.enforcement:
            files[self.enforcement_log_path.name] = self.enforcement_log_path
        return files

    def _remote_argv(self) -> list[str]:
        moved = {str(self.sendlog_path): f"{self.workdir}/{self.sendlog_path.name}",
                 str(self.enforcement_log_path):
                     f"{self.workdir}/{self.enforcement_log_path.name}"}  # fmt: skip
        argv = [moved.get(a, a) for a in self._command()]  # type: ignore[attr-defined]
        return [self.remote["python"], *argv[1:]]

    def _remote_filter(self) -> str:
        text = self._dump_filter()  # type: ignore[attr-defined]
        if self.exclude_sports:
            # Another session's packets on this host (the attacker's SYNs and their answers
            # when it shares the prober's host): its own capture has them.
            ports = " or ".join(f"tcp port {p}" for p in self.exclude_sports)
            text = f"({text}) and not ({ports})"
        return text

    def start(self) -> None:
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        self._pcap_part = self.pcap_path.with_name(f".{self.pcap_path.name}.part")
        try:
            wd = self.procs.open()
            self.procs.spawn("tcpdump", [
                "tcpdump", "-n", "-Z", "root", "-i", self.iface, "-s", "192", "-B", "16384",
                "-U", "--immediate-mode", "--time-stamp-precision=nano", "-w",
                f"{wd}/{self.pcap_path.name}", self._remote_filter(),
            ])  # fmt: skip
            self.procs.wait_for("tcpdump", "err", "listening on")
            self.procs.spawn("sender", self._remote_argv())
            line = self.procs.wait_for("sender", "out", "READY")
            self.t0_ns = int(line.split()[1])
            self._after_start()
        except BaseException:
            self._kill()
            raise

    def _after_start(self) -> None:
        """More processes beside the sender (RemoteProbeSession: the service requests)."""

    def _before_stop(self) -> None:
        """Stop those first."""

    def stray(self, own_address: str) -> dict[str, Any]:
        """Other probers' traffic in the capture so far (a copy of it, fetched now)."""
        from migfw.testbed.prober import stray_traffic

        self.procs.get(self.pcap_path.name, self._pcap_part)
        return stray_traffic(self._pcap_part, self.target, own_address, self.ident)  # type: ignore[attr-defined]

    def stop(self, linger_s: float = 0.5) -> dict[str, Any]:
        """As ProbeSession.stop: the sender first, `linger_s` for the last answers, then
        tcpdump (SIGINT: with -U and --immediate-mode every packet is already written)."""
        from migfw.testbed.prober import _TCPDUMP_STATS

        if not self.procs.pids.get("sender"):
            raise MigfwError("prober: stop() before start()")
        try:
            self._before_stop()
            line = self.procs.stop("sender", "TERM", "DONE ")
            stats = json.loads(line[5:])
            time.sleep(linger_s)
            self.procs.stop("tcpdump", "INT", None)
            dump_err = self.procs.run(f"cat {self.workdir}/tcpdump.err", check=False)
            summary = {}
            for key, rx in _TCPDUMP_STATS.items():
                m = rx.search(dump_err)
                summary[key] = int(m[1]) if m else None
            self.copied = self.procs.fetch(self._remote_files())
            self._pcap_part.replace(self.pcap_path)
            result = {**stats, **summary, "t0_ns": self.t0_ns, "interval_s": self.interval_s}
            result.update(self._enforcement_summary())  # type: ignore[attr-defined]
            result["copied_sha256"] = self.copied
            self.result = result
            return result
        finally:
            self._kill()

    def _kill(self) -> None:
        self.procs.close()
        if getattr(self, "_pcap_part", None) is not None and self.result is None:
            self._pcap_part.unlink(missing_ok=True)


class RemoteProbeSession(_RemoteSession, ProbeSession):
    """ProbeSession whose tcpdump and prober run on `prober['target']` over SSH."""

    def __init__(
        self, prober: dict[str, Any], *args: Any, service: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(prober, *args, **kwargs)
        # The `service` workload's request generator runs beside the prober, on its host:
        # {"services": ["ftp:21", ...], "rate_hz": R, "log": local service.csv path}.
        self.service = service
        self.service_result: dict[str, Any] | None = None

    def _after_start(self) -> None:
        if self.service:
            from migfw.testbed.service import ServiceSession

            log = f"{self.workdir}/service.csv"
            gen = ServiceSession(None, self.target, self.service["services"],
                                 self.service["rate_hz"], log)  # fmt: skip
            self.procs.spawn("service", [self.remote["python"], *gen.command()[1:]])
            self.procs.wait_for("service", "out", "READY")

    def _before_stop(self) -> None:
        if self.service:  # the load first: it waits for its requests in flight (<= 5 s)
            line = self.procs.stop("service", "TERM", "DONE ")
            self.service_result = json.loads(line[5:])

    def _remote_files(self) -> dict[str, Path]:
        files = super()._remote_files()
        if self.service:
            files["service.csv"] = Path(self.service["log"])
        return files


class RemoteAttackSession(_RemoteSession, AttackSession):
    """AttackSession (attack.pcap, attack_sendlog.csv) on `prober['target']` over SSH."""


class RemoteFlowSession:
    """FlowSession's flows process on a remote host (flows.csv copied back, SHA-256 checked)."""

    def __init__(self, remote: dict[str, Any], target: str, flows: list[str], rate_hz: float,
                 log_path: str | Path, timeout_s: float = 10.0,
                 ready_timeout_s: float = 30.0) -> None:  # fmt: skip
        self.remote, self.target, self.flows = remote, target, list(flows)
        self.rate_hz, self.log_path = float(rate_hz), Path(log_path)
        self.timeout_s = timeout_s
        self.procs = RemoteProcs(remote["target"], ready_timeout_s)
        self.remote_pids = self.procs.pids
        self.connected: dict[str, Any] | None = None
        self.copied: dict[str, str] = {}

    def start(self) -> dict[str, Any]:
        try:
            wd = self.procs.open("migfw-flows")
            cmd = [self.remote["python"], "-m", "migfw.testbed.flows", "--target", self.target,
                   "--rate", repr(self.rate_hz), "--log", f"{wd}/{self.log_path.name}",
                   "--timeout", repr(self.timeout_s)]  # fmt: skip
            for spec in self.flows:
                cmd += ["--flow", spec]
            self.procs.spawn("flows", cmd)
            line = self.procs.wait_for("flows", "out", "READY ")
            self.connected = json.loads(line[line.index("READY ") + 6 :])
            return self.connected
        except BaseException:
            self.kill()
            raise

    def stop(self) -> dict[str, Any]:
        if self.connected is None:
            raise MigfwError("flows: stop() before start()")
        try:
            line = self.procs.stop("flows", "TERM", "DONE ")
            self.copied = self.procs.fetch({self.log_path.name: self.log_path})
            return json.loads(line[5:])
        finally:
            self.kill()

    def kill(self) -> None:
        self.procs.close()


# ---------------------------------------------------------------- ruleset checks, remotely


def remote_verify(
    bed: Any, ruleset_path: str | Path, addresses: dict[str, str], ftp_path: str | None
) -> list[dict[str, Any]]:
    """Run the ruleset's packet checks on the prober host; returns the checks list.

    The guest's SSH key goes along (for the outbound checks the guest starts) into the
    prober's temporary directory, which is removed afterwards.
    """
    prober = bed.extra["prober"]
    shell = open_shell(prober["target"])
    try:
        wd = shell.run("mktemp -d /tmp/migfw-verify.XXXXXXXX").strip()
        try:
            shell.run(f"chmod 700 {wd}")
            shell.upload(Path(ruleset_path).read_text(), f"{wd}/ruleset.yaml")
            shell.upload(Path(bed.ssh_key).read_text(), f"{wd}/guest_key")
            shell.run(f"chmod 600 {wd}/guest_key")
            shell.upload(Path(bed.ssh_known_hosts).read_text(), f"{wd}/guest_known_hosts")
            spec = {"ruleset": f"{wd}/ruleset.yaml", "addresses": addresses,
                    "vm_address": bed.vm_address, "ssh_user": bed.ssh_user,
                    "ssh_key": f"{wd}/guest_key", "known_hosts": f"{wd}/guest_known_hosts",
                    "ftp_path": ftp_path}  # fmt: skip
            shell.upload(json.dumps(spec), f"{wd}/spec.json")
            out = shell.run(
                f"{shlex.quote(prober['python'])} -m migfw.testbed.remote verify {wd}/spec.json",
                timeout=300,
            )
        finally:
            shell.run(f"rm -rf {wd}", check=False)
    finally:
        shell.close()
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise MigfwError(f"remote verify on {prober['target']['host']}: no result") from None


def remote_probe_tcp(bed: Any, port: int, timeout_s: float = 1.0) -> str:
    """One TCP SYN from the prober host to the VM's `port`: 'answer ...' or 'silence'."""
    prober = bed.extra["prober"]
    shell = open_shell(prober["target"])
    try:
        argv = [prober["python"], "-m", "migfw.testbed.remote", "probe-tcp", "--source",
                str(bed.prober_address), "--target", bed.vm_address, "--port", str(int(port)),
                "--timeout", repr(float(timeout_s))]  # fmt: skip
        out = shell.run(shlex.join(argv), timeout=60)
    finally:
        shell.close()
    lines = out.strip().splitlines()
    if not lines:
        raise MigfwError(f"remote probe-tcp on {prober['target']['host']}: no result")
    return lines[-1]


def _cmd_verify(spec_path: str) -> int:
    from migfw.testbed.deploy import GuestShell, verify_rules
    from migfw.testbed.ruleset import load_ruleset

    spec = json.loads(Path(spec_path).read_text())
    rs = load_ruleset(spec["ruleset"])
    with GuestShell(spec["vm_address"], spec["ssh_user"], spec["ssh_key"],
                    spec["known_hosts"]) as shell:  # fmt: skip
        checks = verify_rules(rs, spec["addresses"], None, shell, ftp_path=spec["ftp_path"])
    print(json.dumps(checks))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migfw.testbed.remote")
    sub = parser.add_subparsers(dest="cmd", required=True)
    verify = sub.add_parser("verify", help="run the ruleset's packet checks from this host")
    verify.add_argument("spec")
    probe = sub.add_parser("probe-tcp", help="one TCP SYN to a port: answer or silence")
    probe.add_argument("--source", required=True)
    probe.add_argument("--target", required=True)
    probe.add_argument("--port", type=int, required=True)
    probe.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "probe-tcp":
            from migfw.testbed.deploy import probe_tcp

            print(probe_tcp(args.source, args.target, args.port, args.timeout))
            return 0
        return _cmd_verify(args.spec)
    except MigfwError as exc:
        print(f"migfw remote: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
