"""The embedded local testbed: two "hypervisor hosts" as network namespaces on this machine.

Topology (names start with `testbed.local.prefix`, default `mfw`):

    mfw-remote:   eth0 10.231.0.2 ──┐
    mfw-attacker: eth0 10.231.0.3 ──┤
    mfw-hostA: br0 (.251) + tap ────┼── mfw-switch: br0 (pR, pX, pA, pB)
    mfw-hostB: br0 (.252) + tap ────┘
    mfw-hostA mig0 10.231.1.1/30 ─── mfw-hostB mig0 10.231.1.2/30   (migration stream)

The attacker sits on the switch, one hop from both hosts' uplinks: the migration direction
alternates, so "next to the destination" is the switch for every trial (the VM's port is
reached through whichever host's uplink its MAC was last learned on). Its kernel's own RSTs
to the blocked port are dropped by an nftables rule (ATTACKER_NFT); it knows the VM's MAC
(permanent neighbour entry).

Each host runs its own libvirtd inside its namespace and a private mount namespace, so the
two daemons have separate /etc/libvirt, /run/libvirt, /var/lib/libvirt ... and host UUIDs
and can migrate to each other. Every pid and name is recorded in state.json so that
`down` and `cleanup` remove exactly what was made.

With `testbed.lab_in_a_box: true` the testbed is also a lab the external provider can drive
(migfw.testbed.lab): hostA, hostB and remote each run an OpenSSH server, and this machine
gets an uplink `<prefix>-up` (.1) on the switch - a controller on the lab's network.

Size: most of it is one class, LocalTestbed, whose up, down, cleanup and repair share the
state.json record of every pid and name they made; split apart, that record would be kept in
several places and `cleanup` could miss what another part made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migfw.config import SUBNET_KEYS
from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed.base import HostInfo, Testbed, cfg_get, read_state, state_dir
from migfw.testbed.procs import kill_pid, pid_alive, sh  # noqa: F401 - also imported from here

RUN_ROOT = Path("/run/migfw")
# run/openvswitch: the host's own OVS run directory (migfw.testbed.ovn), so the ovs-vsctl
# that libvirt runs to plug an OVS port reaches this host's database.
PRIVATE_DIRS = ["etc/libvirt", "run/libvirt", "var/lib/libvirt", "var/cache/libvirt",
                "var/log/libvirt", "run/openvswitch"]  # fmt: skip
BRIDGE = "br0"
TAP = "mfwtap0"  # same name on both hosts, so the domain XML migrates unchanged
VM_MAC = "52:54:00:e7:00:0a"
SETTLE_S = 3.0  # after killing a hung QEMU, before looking at its daemon again


ATTACKER_NFT = """table inet migfw_attacker {{
  chain output {{
    type filter hook output priority 0; policy accept;
    ip daddr {vm} tcp dport {blocked} tcp flags & rst == rst drop comment "attacker kernel RSTs"
  }}
}}
"""


def _nft(netns: str, script: str) -> None:
    """Load an nftables script inside `netns` (one line on failure)."""
    try:
        proc = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    except FileNotFoundError as exc:
        raise MigfwError("command not found: nft") from exc
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()
        raise MigfwError(f"nft in {netns} failed: {last[-1] if last else proc.returncode}")


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def list_netns(prefix: str) -> list[str]:
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(f"{prefix}-"))


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(Path("/run/netns", name)).st_ino
    except OSError:
        return None


def pids_in_netns(names: list[str]) -> list[int]:
    """Processes whose network namespace is one of `names` (precise, by namespace inode)."""
    inodes = {i for i in (netns_inode(n) for n in names) if i is not None}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except OSError:
            continue
    return sorted(found)


def _proc_state(pid: int | None) -> str:
    """' (state T: stopped)' etc. from /proc, for the repair's record; '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, TypeError):
        return ""
    code = stat.rsplit(")", 1)[1].split()[0]
    names = {"T": "stopped", "t": "traced", "D": "uninterruptible sleep", "Z": "zombie"}
    return f" (state {code}: {names[code]})" if code in names else ""


def _wait_gone(pid: int | None, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # type: ignore[arg-type]
        time.sleep(0.05)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so `finally` blocks clean up on kill too."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave handlers alone
        old = {}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class LocalTestbed:
    """Creates, reports and removes the embedded testbed described in the module doc."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.prefix = str(cfg_get(cfg, "testbed.local.prefix"))
        # Checked by migfw.config.network_problems (load_config and the Snakemake config
        # check): private IPv4, room for the offsets below, disjoint.
        subnet = ipaddress.ip_network(cfg_get(cfg, SUBNET_KEYS[0]))
        mig = ipaddress.ip_network(cfg_get(cfg, SUBNET_KEYS[1]))
        base = subnet.network_address
        self.plen = subnet.prefixlen
        self.subnet = subnet
        self.prober_address = str(base + 2)
        self.attacker_address = str(base + 3)
        self.vm_address = str(base + 10)
        self.host_address = {"A": str(base + 251), "B": str(base + 252)}
        mig_hosts = list(mig.hosts())
        self.mig_address = {"A": str(mig_hosts[0]), "B": str(mig_hosts[1])}
        self.mig_plen = mig.prefixlen
        self.state_dir = state_dir(cfg).resolve()
        # The image and the package cache are content-addressed, so several testbeds (a test's
        # and the user's) can share them; state.json is per testbed.
        self.guest_dir = Path(cfg_get(cfg, "testbed.guest_dir") or self.state_dir / "guest")
        self.guest_dir = self.guest_dir.resolve()
        self.run_root = RUN_ROOT / self.prefix
        self.ns = {
            "A": f"{self.prefix}-hostA",
            "B": f"{self.prefix}-hostB",
            "remote": f"{self.prefix}-remote",
            "switch": f"{self.prefix}-switch",
            "attacker": f"{self.prefix}-attacker",
        }
        self.vm_name = f"{self.prefix}-target"
        self.lab = bool(cfg_get(cfg, "testbed.lab_in_a_box"))
        self.controller_address = str(base + 1)

    def vm_shape(self) -> dict[str, Any]:
        """What the VM is made of; a change re-provisions it (hosts stay)."""
        from migfw.testbed.provision import EMULATOR

        # A relative path is the repository's (run from its root), e.g. .qemu-backports/…
        # `system`: the system's QEMU (Debian 12: 7.2); config.yaml's default is QEMU
        # 10 from backports (scripts/install.sh).
        chosen = cfg_get(self.cfg, "testbed.guest.emulator")
        emulator = str(Path(EMULATOR if chosen == "system" else chosen).absolute())
        if not os.access(emulator, os.X_OK):
            raise MigfwError(
                f"config testbed.guest.emulator: {emulator} is not an executable (for "
                ".qemu-backports/qemu-system-x86_64 run bash scripts/install.sh; `system` "
                "selects the system's QEMU)"
            )
        return {
            "memory_mib": int(cfg_get(self.cfg, "testbed.guest.memory_mib")),
            "vcpus": int(cfg_get(self.cfg, "testbed.guest.vcpus")),
            "emulator": emulator,
        }

    # ------------------------------------------------------------------ paths
    def host_root(self, host: str) -> Path:
        return self.run_root / f"host{host}"

    def socket_path(self, host: str) -> Path:
        return self.host_root(host) / "sock" / "libvirt-sock"

    def uri(self, host: str) -> str:
        return f"qemu+unix:///system?socket={self.socket_path(host)}"

    # ------------------------------------------------------------------ state
    def _write_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_dir / "state.json", state)

    def status(self) -> dict[str, Any]:
        state = read_state(self.state_dir) or {}
        report: dict[str, Any] = {"up": False, "state_file": str(self.state_dir / "state.json")}
        if not state:
            report["reason"] = "no testbed recorded"
            return report
        missing = [n for n in state.get("namespaces", []) if not netns_exists(n)]
        dead = [k for k, p in state.get("pids", {}).items()
                if not pid_alive(p, k.split("_")[0])]  # fmt: skip
        hung = [f"libvirtd_{h}" for h in self.unresponsive_daemons(state)
                if f"libvirtd_{h}" not in dead]  # fmt: skip
        report.update(namespaces_missing=missing, daemons_dead=dead, daemons_unresponsive=hung)
        if missing or dead or hung or state.get("phase") != "up":
            report["reason"] = "incomplete testbed (run `migfw testbed down` or `up`)"
            return report
        from migfw.testbed.provision import find_vm

        bed = Testbed.from_dict(state["testbed"])
        where = find_vm(bed)
        report.update(vm_host=where, accelerator=bed.accelerator, up=True)
        return report

    # ------------------------------------------------------------------ up
    def up(self) -> Testbed:
        from migfw.testbed.provision import ensure_vm

        state = read_state(self.state_dir)
        if state and state.get("phase") == "up":
            status = self.status()
            broken = status.get("daemons_dead") or status.get("daemons_unresponsive")
            if broken and not status.get("namespaces_missing"):
                # A daemon died or hangs (a hypervisor fault): restart it, keep the rest.
                self.repair()
                status = self.status()
                state = read_state(self.state_dir) or state
            # A testbed without the lab's SSH servers is rebuilt when the config asks for them.
            if status["up"] and (state.get("lab") is not None or not self.lab):
                bed = Testbed.from_dict(state["testbed"])
                wanted = self.vm_shape()
                if {k: bed.extra.get(k) for k in wanted} != wanted:
                    # The config asks for another VM size: replace the VM, keep the hosts.
                    from migfw.testbed.provision import destroy_vm

                    print(f"testbed: VM shape changed to {wanted}; re-provisioning the VM")
                    destroy_vm(bed)
                    bed.extra.update(wanted)
                ensure_vm(bed)
                state["testbed"] = bed.to_dict()
                self._write_state(state)
                return bed
        # Anything half-made by an earlier (killed) run goes first.
        self.down(quiet=True)
        from migfw.testbed.preflight import require_local

        require_local(self.cfg)
        state = {"provider": "local", "prefix": self.prefix, "phase": "starting",
                 "namespaces": [], "pids": {}, "created_at": time.time()}  # fmt: skip
        self._write_state(state)
        try:
            with terminate_as_interrupt():
                bed = self._up(state)
                ensure_vm(bed)
                state["vm_boot_s"] = bed.extra.get("last_boot_s")
                self._write_state(state)
        except BaseException:
            self.down(quiet=True)
            raise
        return bed

    def _up(self, state: dict[str, Any]) -> Testbed:
        from migfw.testbed.accel import detect_accelerator
        from migfw.testbed.guest import build_image

        guest_dir = self.guest_dir
        manifest = build_image(
            guest_dir,
            guest_dir.parent / "cache",
            str(cfg_get(self.cfg, "testbed.guest.kernel_package")),
            [self.vm_address],
        )
        accel = detect_accelerator(
            str(cfg_get(self.cfg, "testbed.accelerator")),
            guest_dir / "vmlinuz",
            guest_dir / "initramfs.img",
            guest_dir,
            manifest["input_hash"],
        )
        state["accelerator"] = accel
        self._make_network(state)
        for host in ("A", "B"):
            self._start_libvirtd(host, state)
        for host in ("A", "B"):
            self._wait_socket(host, state)
        if self.lab:
            from migfw.testbed.lab import start_lab_ssh

            state["lab"] = start_lab_ssh(self, state, self._write_state, pid_alive)
        bed = Testbed(
            provider="local",
            hosts={
                h: HostInfo(name=h, uri=self.uri(h), migration_uri=f"tcp://{self.mig_address[h]}")
                for h in ("A", "B")
            },
            vm_name=self.vm_name,
            vm_address=self.vm_address,
            prober_netns=self.ns["remote"],
            prober_iface="eth0",
            prober_address=self.prober_address,
            ssh_user="root",
            ssh_key=str(guest_dir / "id_ed25519"),
            ssh_known_hosts=str(self._known_hosts(guest_dir)),
            ssh_netns=self.ns["remote"],
            accelerator=accel["used"],
            state_dir=str(self.state_dir),
            extra={
                "kernel": str(guest_dir / "vmlinuz"),
                "initrd": str(guest_dir / "initramfs.img"),
                "guest_manifest": str(guest_dir / "manifest.json"),
                "cmdline": f"console=ttyS0 migfw.ip={self.vm_address}/{self.plen}",
                **self.vm_shape(),
                "bridge": BRIDGE,
                "tap": TAP,
                "mac": VM_MAC,
                "serial_log": "/var/log/libvirt/qemu/migfw-serial.log",
                "host_roots": {h: str(self.host_root(h)) for h in ("A", "B")},
                "subnet": str(self.subnet),
                "other_address": str(self.subnet.network_address + 99),
                "attacker_netns": self.ns["attacker"],
                "attacker_iface": "eth0",
                "attacker_address": self.attacker_address,
                "accelerator_detection": accel,
            },
        )
        state["testbed"] = bed.to_dict()
        state["phase"] = "up"
        self._write_state(state)
        return bed

    def _known_hosts(self, guest_dir: Path) -> Path:
        """This testbed's own pin of the guest's host key at this VM's address: the image's
        known_hosts is shared by every testbed using the image (other pairs, other prefixes)
        and names only the address of whichever built it last."""
        line = (guest_dir / "known_hosts").read_text().split("\n", 1)[0]
        path = self.state_dir / "guest_known_hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{self.vm_address} {line.split(None, 1)[1]}\n")
        return path

    def _make_network(self, state: dict[str, Any]) -> None:
        ns = self.ns
        for name in ns.values():
            sh(["ip", "netns", "add", name])
            state["namespaces"].append(name)
            self._write_state(state)
            sh(["ip", "-n", name, "link", "set", "lo", "up"])
            # IPv6 off: no router solicitations or DAD noise in the captures.
            for key in ("all", "default"):
                sh(["ip", "netns", "exec", name, "sysctl", "-qw",
                    f"net.ipv6.conf.{key}.disable_ipv6=1"])  # fmt: skip
        sw = ns["switch"]
        sh(["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
            "forward_delay", "0"])  # fmt: skip
        sh(["ip", "-n", sw, "link", "set", BRIDGE, "up"])
        links = {"A": ("up0", "pA"), "B": ("up0", "pB"), "remote": ("eth0", "pR"),
                 "attacker": ("eth0", "pX")}  # fmt: skip
        for side, (inner, port) in links.items():
            sh(["ip", "link", "add", inner, "netns", ns[side], "type", "veth", "peer", "name",
                port, "netns", sw])  # fmt: skip
            sh(["ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up"])
            sh(["ip", "-n", ns[side], "link", "set", inner, "up"])
        sh(["ip", "-n", ns["remote"], "addr", "add", f"{self.prober_address}/{self.plen}",
            "dev", "eth0"])  # fmt: skip
        sh(["ip", "-n", ns["attacker"], "addr", "add", f"{self.attacker_address}/{self.plen}",
            "dev", "eth0"])  # fmt: skip
        # The attacker's SYNs come from a raw socket; its kernel answers every SYN-ACK (no
        # socket of its own) with a RST. On the blocked port these are dropped, so what the
        # VM sees there is only probes; on the allowed port they stay: without them the
        # guest's half-open connections fill its SYN queue and it stops answering (measured:
        # 0 of 3983 allowed probes answered), which would fake an outage.
        blocked = int(cfg_get(self.cfg, "trials.enforcement.blocked_port"))
        _nft(ns["attacker"], ATTACKER_NFT.format(vm=self.vm_address, blocked=blocked))
        # The VM's MAC never changes (a migration moves it): a permanent neighbour entry, so
        # no probe waits in (or is dropped from) the ARP queue while resolution runs.
        sh(["ip", "-n", ns["attacker"], "neigh", "replace", self.vm_address, "lladdr", VM_MAC,
            "dev", "eth0", "nud", "permanent"])  # fmt: skip
        if self.lab:
            # The controller's uplink: this machine joins the lab network like a lab's
            # management host; the link dies with the switch namespace.
            up = f"{self.prefix}-up"
            sh(["ip", "link", "add", up, "type", "veth", "peer", "name", "pC", "netns", sw])
            sh(["ip", "-n", sw, "link", "set", "pC", "master", BRIDGE, "up"])
            sh(["ip", "addr", "add", f"{self.controller_address}/{self.plen}", "dev", up])
            sh(["ip", "link", "set", up, "up"])
        for host in ("A", "B"):
            n = ns[host]
            sh(["ip", "-n", n, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                "forward_delay", "0"])  # fmt: skip
            sh(["ip", "-n", n, "link", "set", "up0", "master", BRIDGE])
            sh(["ip", "-n", n, "addr", "add", f"{self.host_address[host]}/{self.plen}",
                "dev", BRIDGE])  # fmt: skip
            sh(["ip", "-n", n, "link", "set", BRIDGE, "up"])
        sh(["ip", "link", "add", "mig0", "netns", ns["A"], "type", "veth", "peer", "name", "mig0",
            "netns", ns["B"]])  # fmt: skip
        for host in ("A", "B"):
            sh(["ip", "-n", ns[host], "addr", "add",
                f"{self.mig_address[host]}/{self.mig_plen}", "dev", "mig0"])  # fmt: skip
            sh(["ip", "-n", ns[host], "link", "set", "mig0", "up"])

    def _write_libvirt_config(self, host: str) -> Path:
        root = self.host_root(host)
        # root only: the daemons' sockets, logs and the guest's console live below it.
        self.run_root.mkdir(parents=True, exist_ok=True)
        self.run_root.chmod(0o700)
        for rel in PRIVATE_DIRS:
            (root / rel).mkdir(parents=True, exist_ok=True)
            Path("/", rel).mkdir(parents=True, exist_ok=True)  # bind-mount targets
        (root / "sock").mkdir(parents=True, exist_ok=True)
        (root / "var/log/libvirt/qemu").mkdir(parents=True, exist_ok=True)
        host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"migfw.{self.prefix}.host{host}")
        etc = root / "etc/libvirt"
        (etc / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{root / "sock"}"\n'
            # Every socket root's only: the read-only one defaults to 0777 (any local user
            # could list the domains and read their XML and job statistics).
            'unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\n'
            'unix_sock_ro_perms = "0700"\nunix_sock_admin_perms = "0700"\n'
            f'host_uuid = "{host_uuid}"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
        )
        mig = self.mig_address[host]
        (etc / "qemu.conf").write_text(
            'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
            'security_driver = "none"\ncgroup_controllers = [ ]\nnamespaces = [ ]\n'
            'stdio_handler = "file"\n'
            f'migration_address = "{mig}"\nmigration_host = "{mig}"\n'
            # p2p: the source daemon's own connection to the destination ends like ours
            # (migfw.testbed.provision) when the destination stops answering.
            "keepalive_interval = 3\nkeepalive_count = 3\n"
        )
        (etc / "libvirt.conf").write_text("")
        return root

    def _start_libvirtd(self, host: str, state: dict[str, Any]) -> None:
        root = self._write_libvirt_config(host)
        binds = " ".join(f"mount --bind {root / rel} /{rel} &&" for rel in PRIVATE_DIRS)
        script = (
            f"{binds} exec libvirtd --config /etc/libvirt/libvirtd.conf "
            f"--pid-file {root / 'libvirtd.pid'}"
        )
        log = open(root / "libvirtd.stderr", "ab")  # noqa: SIM115 - handed to the daemon
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns[host],
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        # ip, unshare and sh all exec, so this pid is libvirtd's.
        state["pids"][f"libvirtd_{host}"] = proc.pid
        self._write_state(state)

    def _wait_socket(self, host: str, state: dict[str, Any], timeout: float = 20) -> None:
        import libvirt

        from migfw.testbed.provision import PING_TIMEOUT_S, NoAnswer, open_libvirt

        deadline = time.monotonic() + timeout
        pid = state["pids"][f"libvirtd_{host}"]
        last = ""
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                err = (self.host_root(host) / "libvirtd.stderr").read_text().strip()
                raise MigfwError(
                    f"libvirtd for host {host} exited: {err.splitlines()[-1] if err else '?'}"
                )
            if self.socket_path(host).exists():
                try:
                    conn = open_libvirt(self.uri(host), PING_TIMEOUT_S, keepalive=False)
                    conn.close()
                    return
                except (libvirt.libvirtError, NoAnswer) as exc:
                    last = str(exc)
            time.sleep(0.2)
        raise MigfwError(f"libvirtd for host {host} not answering after {timeout} s: {last}")

    # ------------------------------------------------------------------ repair
    def vm_pid(self, host: str) -> int | None:
        """The QEMU process of the VM on `host`, from libvirt's own pid file (None if absent)."""
        path = self.host_root(host) / "run/libvirt/qemu" / f"{self.vm_name}.pid"
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def unresponsive_daemons(self, state: dict[str, Any] | None = None) -> list[str]:
        """Hosts whose libvirtd is alive (by its recorded PID) but answers no new connection
        within PING_TIMEOUT_S (stopped, hung)."""
        from migfw.testbed.provision import libvirtd_answers

        state = state if state is not None else read_state(self.state_dir) or {}
        hosts = []
        for host in ("A", "B"):
            pid = state.get("pids", {}).get(f"libvirtd_{host}")
            if pid_alive(pid, "libvirtd") and self.socket_path(host).exists():
                if libvirtd_answers(self.uri(host)) is not None:
                    hosts.append(host)
        return hosts

    def repair(self) -> list[str]:
        """Restart every libvirtd whose recorded PID is dead or does not answer (killed by
        that PID first), then kill the VM's QEMU where it does not answer (its domain is then
        gone and the caller re-provisions it); one MigfwError line if it cannot.

        The namespaces, bridges and the other daemon stay; a restarted daemon finds the
        domains it still has (QEMU outlives its daemon) from libvirt's own status files.
        """
        state = read_state(self.state_dir)
        if not state or state.get("phase") != "up":
            raise MigfwError(f"testbed {self.prefix}: nothing to repair in {self.state_dir}")
        missing = [n for n in state.get("namespaces", []) if not netns_exists(n)]
        if missing:
            raise MigfwError(f"testbed {self.prefix}: namespaces gone ({', '.join(missing)})")
        done = self._restart_daemons(state)
        killed = self.kill_unresponsive_qemus()
        if killed:
            done += killed
            # libvirt 9.0's daemon can crash (SIGSEGV, seen twice, 1.2 s after the QEMU of an
            # outgoing migration died under a pending call): let it settle, look again.
            self._settle(state)
            done += self._restart_daemons(read_state(self.state_dir) or state)
        return done

    def _settle(self, state: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Wait until each daemon has noticed its dead QEMU (the domain inactive) or died,
        then SETTLE_S more."""
        import libvirt

        from migfw.testbed.provision import NoAnswer, open_libvirt

        deadline = time.monotonic() + timeout_s
        for host in ("A", "B"):
            while time.monotonic() < deadline:
                if not pid_alive(state["pids"].get(f"libvirtd_{host}"), "libvirtd"):
                    break
                try:
                    conn = open_libvirt(self.uri(host), 2.0, keepalive=False)
                    try:
                        active = [d.name() for d in conn.listAllDomains()]
                    finally:
                        conn.close()
                except (libvirt.libvirtError, NoAnswer):
                    break
                if self.vm_name not in active or self.vm_pid(host) is not None:
                    break
                time.sleep(0.2)
        time.sleep(SETTLE_S)

    def _restart_daemons(self, state: dict[str, Any]) -> list[str]:
        """Restart each libvirtd that is dead or does not answer (killed by PID first)."""
        done = []
        hung = self.unresponsive_daemons(state)
        for host in ("A", "B"):
            key = f"libvirtd_{host}"
            old = state["pids"].get(key)
            if host in hung:
                why = f"PID {old} did not answer{_proc_state(old)}, killed"
                # Stopped or hung: SIGKILL works on a stopped process too.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old, signal.SIGKILL)
                _wait_gone(old)
            elif pid_alive(old, "libvirtd"):
                continue
            else:
                why = f"PID {old} dead"
            with contextlib.suppress(OSError):
                self.socket_path(host).unlink()  # the dead daemon's socket
            try:
                self._start_libvirtd(host, state)
            except OSError as exc:
                raise MigfwError(f"host {host}: cannot restart libvirtd: {exc}") from exc
            self._wait_socket(host, state)
            new = state["pids"][key]
            done.append(f"restarted libvirtd of host {host} ({why}, now {new})")
        from migfw.testbed.ovn import repair_ovn  # placement ovn's daemons, when started

        done += repair_ovn(self, state, self._write_state)
        return done

    def kill_unresponsive_qemus(self) -> list[str]:
        """Kill (by libvirt's pid file) the VM's QEMU on a host where it does not answer a
        monitor query within PING_TIMEOUT_S, e.g. stopped mid-migration."""
        from migfw.testbed.provision import qemu_answers

        killed = []
        for host in ("A", "B"):
            pid = self.vm_pid(host)
            if pid is None:
                continue
            problem = qemu_answers(self.uri(host), self.vm_name)
            if problem is None:
                continue
            state_note = _proc_state(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
            killed.append(f"killed QEMU PID {pid} on host {host}: {problem}{state_note}")
        return killed

    def stray_qemus(self, keep: int) -> list[int]:
        """QEMUs of this testbed other than `keep` (the VM): left by a failed migration, e.g.
        an incoming QEMU whose daemon died (the restarted daemon does not know it)."""
        found = set(self.qemu_pids())
        found |= {p for p in pids_in_netns([self.ns["A"], self.ns["B"]])
                  if pid_alive(p, "qemu-system")}  # fmt: skip
        return sorted(found - {keep})

    def qemu_pids(self) -> list[int]:
        """Every live QEMU libvirt recorded under our runtime dir (pid files), any host."""
        found = []
        for path in self.run_root.glob("host*/run/libvirt/qemu/*.pid"):
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid_alive(pid, "qemu-system"):
                found.append(pid)
        return found

    # ------------------------------------------------------------------ down
    def down(self, quiet: bool = False) -> list[str]:
        """Remove everything recorded in state.json plus anything named with our prefix."""
        removed: list[str] = []
        state = read_state(self.state_dir) or {}
        if state.get("testbed"):
            with contextlib.suppress(Exception):
                from migfw.testbed.provision import destroy_vm

                removed += destroy_vm(Testbed.from_dict(state["testbed"]))
        names = sorted(set(state.get("namespaces", [])) | set(list_netns(self.prefix)))
        # QEMUs by libvirt's pid files too: one in a namespace whose name is gone (or whose
        # daemon died) is not found by namespace.
        pids = set(state.get("pids", {}).values()) | set(pids_in_netns(names))
        pids |= set(self.qemu_pids())
        for pid in sorted(pids):
            if pid_alive(pid):
                kill_pid(pid)
                removed.append(f"pid {pid}")
        for name in names:
            # A namespace may still be pinned by a process that just died; retry briefly.
            for _ in range(20):
                if sh(["ip", "netns", "delete", name], check=False).returncode == 0:
                    removed.append(f"netns {name}")
                    break
                if not netns_exists(name):
                    break
                time.sleep(0.1)
        up = f"{self.prefix}-up"
        if Path("/sys/class/net", up).exists():  # normally gone with the switch namespace
            sh(["ip", "link", "delete", up], check=False)
            removed.append(f"link {up}")
        if self.run_root.exists():
            shutil.rmtree(self.run_root, ignore_errors=True)
            removed.append(str(self.run_root))
        lab_dir = self.state_dir / "lab"
        if lab_dir.exists():
            shutil.rmtree(lab_dir, ignore_errors=True)
            removed.append(str(lab_dir))
        for path in (self.state_dir / "deployed.json", self.state_dir / "unrepaired.json",
                     self.state_dir / "state.json"):  # fmt: skip
            if path.exists():
                path.unlink()
                removed.append(str(path))
        if not quiet:
            for item in removed:
                print(f"removed {item}")
        return removed
