"""The lab in a box: the local testbed's namespaces as SSH-reachable hosts for `external`.

With `testbed.lab_in_a_box: true` the local provider (migfw.testbed.local) also starts one
OpenSSH server per host namespace (hostA, hostB and remote, the prober's host), each with its
own config and host key in that host's private directory under /run/migfw/<prefix>/, and
key-only logins. The client key and the pinned host keys are generated per testbed into
`<state_dir>/lab/` (id_ed25519, known_hosts); config/lab-in-a-box.yaml names them and the
hosts' addresses in `qemu+ssh://` URIs, and the external provider does the rest - it never
looks into a namespace.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def _keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair at `path`; returns the public key line."""
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if proc.returncode != 0:
        raise MigfwError(f"ssh-keygen {path}: {proc.stderr.strip() or 'failed'}")
    return Path(f"{path}.pub").read_text().strip()


def sshd_config(address: str, host_key: Path, authorized_keys: Path, pid_file: Path) -> str:
    """Key-only root logins on one address; nothing read from the system's /etc/ssh."""
    return "\n".join([
        f"ListenAddress {address}",
        "Port 22",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the key files live in a shared state dir, not in ~/.ssh
        "UseDNS no",
        "MaxStartups 50",
        "MaxSessions 50",
        "LogLevel ERROR",
        f"Subsystem sftp {SFTP_SERVER}",
        "",
    ])  # fmt: skip


def start_lab_ssh(
    bed: Any,
    state: dict[str, Any],
    write_state: Callable[[dict[str, Any]], None],
    pid_alive: Callable[[int], bool],
) -> dict[str, Any]:
    """Generate the keys, start sshd in hostA, hostB and remote; return what the config needs.

    `bed` is the LocalTestbed being brought up (its names, addresses and directories).
    """
    if not Path(SSHD).exists():
        raise MigfwError(f"{SSHD} not found: the lab in a box needs openssh-server")
    lab_dir = bed.state_dir / "lab"
    lab_dir.mkdir(parents=True, exist_ok=True)
    client_key = lab_dir / "id_ed25519"
    public = _keygen(client_key, f"migfw-{bed.prefix}-controller")
    authorized = lab_dir / "authorized_keys"
    authorized.write_text(public + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    addresses = {"A": bed.host_address["A"], "B": bed.host_address["B"],
                 "remote": bed.prober_address}  # fmt: skip
    known = []
    for host, address in addresses.items():
        root = bed.run_root / ("remote" if host == "remote" else f"host{host}") / "ssh"
        root.mkdir(parents=True, exist_ok=True)
        host_key = root / "ssh_host_ed25519_key"
        host_public = _keygen(host_key, f"migfw-{bed.prefix}-{host}")
        known.append(f"{address} {' '.join(host_public.split()[:2])}")
        config = root / "sshd_config"
        config.write_text(sshd_config(address, host_key, authorized, root / "sshd.pid"))
        log = open(root / "sshd.log", "ab")  # noqa: SIM115 - handed to the daemon
        proc = subprocess.Popen(
            ["ip", "netns", "exec", bed.ns[host], SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        state["pids"][f"sshd_{host}"] = proc.pid  # ip exec()s sshd: this pid is sshd's
        write_state(state)
    (lab_dir / "known_hosts").write_text("\n".join(known) + "\n")
    for host, address in addresses.items():
        _wait_listening(bed.ns[host], address, state["pids"][f"sshd_{host}"], pid_alive)
    return {
        "ssh_key": str(client_key),
        "known_hosts": str(lab_dir / "known_hosts"),
        "controller_address": bed.controller_address,
        "hosts": addresses,
        "sockets": {h: str(bed.socket_path(h)) for h in ("A", "B")},
    }


def _wait_listening(netns: str, address: str, pid: int, alive: Callable, timeout: float = 10):
    """Until sshd accepts TCP connections on address:22 (checked inside its namespace)."""
    import socket

    from migfw.testbed.netns import in_netns

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise MigfwError(f"sshd in {netns} exited (see its sshd.log under /run/migfw)")
        with in_netns(netns), socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, 22)) == 0:
                return
        time.sleep(0.1)
    raise MigfwError(f"sshd in {netns} not listening on {address}:22 after {timeout:.0f} s")
