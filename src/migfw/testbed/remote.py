"""Probing from a remote host, and the clocks of the hosts a trial involves.

With `testbed.external.prober_host` set, the capture (tcpdump), the prober and its
enforcement probes run on that host over SSH (fabric, pinned host key): `RemoteProbeSession`
starts them in a fresh temporary directory there, stops them, copies the capture and the logs
back and checks each copy against the SHA-256 the prober host computed. The ruleset's packet
checks run there too (`python -m migfw.testbed.remote verify`), because the ruleset's
`remote` address is the prober's.

Clocks: the prober host timestamps the probes, the controller (this machine) timestamps the
migration, the hypervisors run it. `clock_offsets` measures each host's clock against this
machine's NTP-style over an SSH channel - t1 send, remote reads its clock, t4 receive;
offset = t_remote - (t1 + t4) / 2, bounded by +-(t4 - t1) / 2; the sample with the smallest
round trip of several wins - and derives prober - hypervisor offsets, whose error bound is
the sum of the two bounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migfw.errors import MigfwError
from migfw.testbed.prober import ProbeSession, capture_filter

SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")
# Print this host's CLOCK_REALTIME for every line read; `date` where python3 is missing.
CLOCK_LOOP = (
    "python3 -u -c 'import sys, time\nfor _ in sys.stdin: print(time.time_ns(), flush=True)'"
    " 2>/dev/null || while read -r _; do date +%s%N; done"
)


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


# ----------------------------------------------------------------------------------- clocks


def measure_offset(shell: Any, samples: int = 12) -> dict[str, float]:
    """The remote clock minus this machine's (ms), with its bound and the best round trip."""
    chan = shell.conn.client.get_transport().open_session()
    try:
        chan.settimeout(10.0)
        chan.exec_command(CLOCK_LOOP)
        buf = b""
        best: tuple[int, float] | None = None  # (rtt_ns, offset_ns)
        for i in range(samples + 1):
            t1 = time.time_ns()
            chan.sendall(b"\n")
            while b"\n" not in buf:
                chunk = chan.recv(256)
                if not chunk:
                    raise MigfwError(f"ssh {shell.address}: clock reader exited")
                buf += chunk
            t4 = time.time_ns()
            line, _, buf = buf.partition(b"\n")
            if i == 0:
                continue  # the first answer pays for the interpreter's start
            remote = int(line.strip())
            rtt = t4 - t1
            if best is None or rtt < best[0]:
                best = (rtt, remote - (t1 + t4) / 2)
    except (OSError, ValueError, TimeoutError) as exc:
        raise MigfwError(f"ssh {shell.address}: clock measurement failed: {exc}") from None
    finally:
        chan.close()
    assert best is not None
    return {"offset_ms": round(best[1] / 1e6, 4), "error_ms": round(best[0] / 2e6, 4),
            "rtt_ms": round(best[0] / 1e6, 4), "samples": samples}  # fmt: skip


def clock_offsets(bed: Any) -> dict[str, Any]:
    """Offsets of the prober host and each hypervisor against this machine, and prober - each
    hypervisor (error bounds add). Hosts whose libvirt URI is not SSH are left out."""
    result: dict[str, Any] = {"reference": "controller", "at": time.time()}
    targets = {"prober": bed.extra["prober"]["target"]}
    for name, host in bed.hosts.items():
        target = libvirt_ssh_target(host.uri)
        if target:
            targets[name] = target
    for name, target in targets.items():
        shell = open_shell(target)
        try:
            result[name] = measure_offset(shell)
        finally:
            shell.close()
    for name in bed.hosts:
        if name in result:
            result[f"prober-{name}"] = {
                "offset_ms": round(result["prober"]["offset_ms"] - result[name]["offset_ms"], 4),
                "error_ms": round(result["prober"]["error_ms"] + result[name]["error_ms"], 4),
            }
    return result


# ------------------------------------------------------------------------ remote probing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RemoteProbeSession(ProbeSession):
    """ProbeSession whose tcpdump and prober run on `prober['target']` over SSH."""

    def __init__(
        self, prober: dict[str, Any], *args: Any, service: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(None, *args, **kwargs)
        self.remote = prober
        # The `service` workload's request generator runs beside the prober, on its host:
        # {"services": ["ftp:21", ...], "rate_hz": R, "log": local service.csv path}.
        self.service = service
        self.service_result: dict[str, Any] | None = None
        self.shell: Any = None
        self.workdir: str | None = None
        # The processes live on the prober host: `pids` (what a later run on this machine
        # may kill after a crash) stays empty; these are killed over SSH.
        self.remote_pids: dict[str, int] = {}
        self.copied: dict[str, str] = {}

    def _run(self, cmd: str, check: bool = True) -> str:
        return self.shell.run(cmd, check=check, timeout=30)

    def _spawn(self, name: str, argv: list[str]) -> int:
        """Start argv detached in the work dir, stdout/stderr to files; return its pid."""
        out = self._run(
            # A simple command alone goes to the background, so $! is its
            # pid (sh forks once and setsid execs the command) and signals reach it.
            f"setsid {shlex.join(argv)} >{self.workdir}/{name}.out"
            f" 2>{self.workdir}/{name}.err </dev/null & echo $!"
        )
        self.remote_pids[name] = int(out.strip())
        return self.remote_pids[name]

    def _wait_for(self, name: str, stream: str, want: str) -> str:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            text = self._run(f"cat {self.workdir}/{name}.{stream}", check=False)
            for line in text.splitlines():
                if want in line:
                    return line
            if not self._alive(name):
                err = self._run(f"tail -n 3 {self.workdir}/{name}.err", check=False).strip()
                raise MigfwError(f"{name} on {self.remote['target']['host']} exited: "
                                 f"{err.splitlines()[-1] if err else 'no output'}")  # fmt: skip
            time.sleep(0.1)
        raise MigfwError(
            f"{name} on {self.remote['target']['host']}: no {want!r} after "
            f"{self.ready_timeout_s:.0f} s"
        )

    def _alive(self, name: str) -> bool:
        pid = self.remote_pids.get(name)
        if not pid:
            return False
        # A zombie (nobody reaped it yet) has exited too.
        probe = f's=$(cut -d" " -f3 /proc/{pid}/stat 2>/dev/null) && [ "$s" != Z ] && echo y'
        return self._run(probe, check=False) == "y\n"

    def start(self) -> None:
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        self._pcap_part = self.pcap_path.with_name(f".{self.pcap_path.name}.part")
        try:
            self.shell = open_shell(self.remote["target"])
            self.workdir = self._run("mktemp -d /tmp/migfw-probe.XXXXXXXX").strip()
            wd = self.workdir
            self._spawn("tcpdump", [
                "tcpdump", "-n", "-Z", "root", "-i", self.iface, "-s", "192", "-B", "16384",
                "-U", "--immediate-mode", "--time-stamp-precision=nano", "-w",
                f"{wd}/probe.pcap", capture_filter(self.target),
            ])  # fmt: skip
            self._wait_for("tcpdump", "err", "listening on")
            cmd = [self.remote["python"], "-m", "migfw.testbed.prober", "--target",
                   self.target, "--interval", repr(self.interval_s),
                   "--sendlog", f"{wd}/sendlog.csv", "--ident", str(self.ident)]  # fmt: skip
            if self.enforcement:
                cmd += [
                    "--enf-rate", str(self.enforcement["rate_hz"]),
                    "--blocked-port", str(self.enforcement["blocked_port"]),
                    "--allowed-port", str(self.enforcement["allowed_port"]),
                    "--enforcement-log", f"{wd}/enforcement.csv",
                ]  # fmt: skip
            self._spawn("prober", cmd)
            line = self._wait_for("prober", "out", "READY")
            self.t0_ns = int(line.split()[1])
            if self.service:
                from migfw.testbed.service import ServiceSession

                gen = ServiceSession(None, self.target, self.service["services"],
                                     self.service["rate_hz"], f"{wd}/service.csv")  # fmt: skip
                self._spawn("service", [self.remote["python"], *gen.command()[1:]])
                self._wait_for("service", "out", "READY")
        except BaseException:
            self._kill()
            raise

    def stray(self, own_address: str) -> dict[str, Any]:
        """Other probers' traffic in the capture so far (a copy of it, fetched now)."""
        from migfw.testbed.prober import stray_traffic

        self.shell.conn.get(f"{self.workdir}/probe.pcap", str(self._pcap_part))
        return stray_traffic(self._pcap_part, self.target, own_address, self.ident)

    def stop(self, linger_s: float = 0.5) -> dict[str, Any]:
        if not self.remote_pids.get("prober"):
            raise MigfwError("prober: stop() before start()")
        try:
            if self.service:  # the load first: it waits for its requests in flight (<= 5 s)
                self._run(f"kill -TERM {self.remote_pids['service']}")
                self.service_result = json.loads(self._wait_for_exit("service", "DONE ")[5:])
            self._run(f"kill -TERM {self.remote_pids['prober']}")
            line = self._wait_for_exit("prober", "DONE ")
            stats = json.loads(line[5:])
            time.sleep(linger_s)
            self._run(f"kill -INT {self.remote_pids['tcpdump']}", check=False)
            self._wait_for_exit("tcpdump", None)
            dump_err = self._run(f"cat {self.workdir}/tcpdump.err", check=False)
            from migfw.testbed.prober import _TCPDUMP_STATS

            summary = {}
            for key, rx in _TCPDUMP_STATS.items():
                m = rx.search(dump_err)
                summary[key] = int(m[1]) if m else None
            files = {"probe.pcap": self._pcap_part, "sendlog.csv": self.sendlog_path}
            if self.enforcement:
                files["enforcement.csv"] = self.enforcement_log_path
            if self.service:
                files["service.csv"] = Path(self.service["log"])
            self.copied = self._fetch(files)
            self._pcap_part.replace(self.pcap_path)
            result = {**stats, **summary, "t0_ns": self.t0_ns, "interval_s": self.interval_s}
            result.update(self._enforcement_summary())
            result["copied_sha256"] = self.copied
            self.result = result
            return result
        finally:
            self._kill()

    def _wait_for_exit(self, name: str, want: str | None) -> str:
        """Wait until `name` has exited (and, if `want`, printed a line starting with it)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not self._alive(name):
                if want is None:
                    return ""
                text = self._run(f"cat {self.workdir}/{name}.out", check=False)
                for line in text.splitlines():
                    if line.startswith(want):
                        return line
                err = self._run(f"tail -n 3 {self.workdir}/{name}.err", check=False).strip()
                raise MigfwError(f"{name} on {self.remote['target']['host']} failed: "
                                 f"{err.splitlines()[-1] if err else 'no output'}")  # fmt: skip
            time.sleep(0.1)
        raise MigfwError(f"{name} on {self.remote['target']['host']}: did not stop within 15 s")

    def _fetch(self, files: dict[str, Path]) -> dict[str, str]:
        """Copy each file back; its SHA-256 here must equal the one the prober host computed."""
        names = " ".join(files)
        out = self._run(f"cd {self.workdir} && sha256sum {names}")
        remote = {name: digest for digest, name in (ln.split() for ln in out.splitlines())}
        copied = {}
        for name, local in files.items():
            self.shell.conn.get(f"{self.workdir}/{name}", str(local))
            digest = _sha256(local)
            if digest != remote.get(name):
                raise MigfwError(
                    f"{name} copied from {self.remote['target']['host']}: SHA-256 {digest} "
                    f"differs from the prober host's {remote.get(name)}"
                )
            copied[name] = digest
        return copied

    def _kill(self) -> None:
        if self.shell is not None and self.shell.conn is not None:
            try:
                for pid in self.remote_pids.values():
                    self._run(f"kill -KILL {pid} 2>/dev/null", check=False)
                if self.workdir and self.workdir.startswith("/tmp/migfw-probe."):
                    self._run(f"rm -rf {self.workdir}", check=False)
            except MigfwError:
                pass  # the host is gone; nothing of ours can be left running there
            self.shell.close()
        self.shell = None
        if getattr(self, "_pcap_part", None) is not None and self.result is None:
            self._pcap_part.unlink(missing_ok=True)


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
    args = parser.parse_args(argv)
    try:
        return _cmd_verify(args.spec)
    except MigfwError as exc:
        print(f"migfw remote: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
