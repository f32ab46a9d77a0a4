"""OVN on the embedded testbed (issue 18): a cloud SDN's firewall beside the others.

    <prefix>-ovn (control):  ovsdb-server (OVN_Northbound + OVN_Southbound, ptcp:6642 on
                             eth0 = subnet .4, on the switch) + ovn-northd
    <prefix>-hostA/B:        ovsdb-server (its own conf.db) + ovs-vswitchd (userspace
                             `netdev` datapath: no kernel module here) + ovn-controller
                             (system-id <prefix>-chassis-A/B, Geneve encap IP = the host's
                             address on mig0, the migration link = the underlay)
        br-int   the integration bridge (ovn-controller's); the VM's tap is plugged here by
                 libvirt itself (<virtualport type='openvswitch'> with iface-id), so libvirt's
                 own migration plugs it on the destination
        br-phys  the provider bridge: localnet port `physnet` <-> veth <-> the host's Linux
                 br0 <-> up0 <-> the switch, where the prober and the attacker are

Why localnet rather than a gateway: a localnet port is how Neutron's provider networks
reach VMs (OpenStack's usual set-up for VMs with addresses on a physical network); the VM
keeps its address on the prober's subnet, the prober and the attacker stay exactly where
they are for every other placement (one hop from both hosts on the same switch), and the
packets between them and the VM leave and enter at the chassis the VM is bound to — the
path whose hand-over a migration exercises. A gateway (router port or l2gateway) would put
a third, fixed chassis between the prober and the VM and route or hairpin every packet
through it: a different path for the `ovn` placement than for the others, and the window
would partly measure the gateway. Geneve still shows: a port bound to two chassis
(multichassis) on a localnet switch has its traffic tunnelled between the chassis.

libvirt runs `ovs-vsctl` when it plugs the tap; each host's libvirtd has its own mount
namespace (migfw.testbed.local) where the host's OVS run directory is bind-mounted on
/run/openvswitch, so that ovs-vsctl reaches the right host's database.

Every daemon is started by `start_ovn` (on demand: the first `ovn` placement, or `migfw
testbed up` for a config that uses it) with its PID recorded in the testbed's state.json;
`LocalTestbed.down` kills them by those PIDs (and by namespace) with everything else. A daemon
that does not come up is one line naming it and its log.

What OVN did during a trial (the Port_Binding monitor, flow installation, conntrack dumps) is
read by migfw.testbed.ovn_observe.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")
SB_PORT = 6642
PHYSNET = "physnet"
INT_BRIDGE = "br-int"
LINUX_BRIDGE = "br0"  # the switch's and each host's Linux bridge (migfw.testbed.local.BRIDGE)
PHYS_BRIDGE = "br-phys"
PHYS_VETH = ("ovsphy0", "ovsphy1")  # in br-phys, in the host's Linux br0
UNDERLAY_BRIDGE = "br-ul"  # holds the Geneve encap IP; its port ul0 is a veth to the other host
UNDERLAY_VETH = "ul0"
SWITCH = "migfw-ls"
LOCALNET_PORT = "migfw-ln"
PORT_GROUP = "pg_migfw"
CONTROL_OFFSET = 4  # the control namespace's address on the testbed subnet
BINARIES = ("ovsdb-server", "ovsdb-tool", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl",
            "ovn-controller", "ovn-northd", "ovn-nbctl", "ovn-sbctl", "ovsdb-client")  # fmt: skip


class OvnSite:
    """Names, paths and addresses of the OVN pieces of one local testbed (no side effects)."""

    def __init__(self, local: Any) -> None:
        self.prefix = local.prefix
        self.run_root = Path(local.run_root)
        self.host_ns = {h: local.ns[h] for h in ("A", "B")}
        self.switch_ns = local.ns["switch"]
        self.control_ns = f"{self.prefix}-ovn"
        # The Geneve underlay: its own /30 right after the migration subnet, on a veth pair
        # between the hosts whose ends sit in an OVS bridge (userspace tunnels leave through
        # an OVS bridge that holds the encap IP: OVS's native tunnelling). The migration
        # stream keeps its own link, so every placement migrates over the same path.
        import ipaddress

        mig = ipaddress.ip_network(f"{local.mig_address['A']}/{local.mig_plen}", strict=False)
        underlay = ipaddress.ip_network(
            f"{mig.network_address + mig.num_addresses}/{mig.prefixlen}"
        )
        hosts = list(underlay.hosts())
        self.underlay = underlay
        self.encap_ip = {"A": str(hosts[0]), "B": str(hosts[1])}
        self.control_address = str(local.subnet.network_address + CONTROL_OFFSET)
        self.plen = local.plen

    # ------------------------------------------------------------------ paths
    def host_root(self, host: str) -> Path:
        return self.run_root / f"host{host}"

    def ovs_rundir(self, host: str) -> Path:
        """Bind-mounted on /run/openvswitch in host's libvirtd (PRIVATE_DIRS)."""
        return self.host_root(host) / "run/openvswitch"

    def ovs_db(self, host: str) -> str:
        return f"unix:{self.ovs_rundir(host) / 'db.sock'}"

    def control_dir(self) -> Path:
        return self.run_root / "ovn-central"

    def central_db(self) -> str:
        """NB and SB, one ovsdb-server, reached over its unix socket from this machine."""
        return f"unix:{self.control_dir() / 'ovn.sock'}"

    def sb_remote(self) -> str:
        return f"tcp:{self.control_address}:{SB_PORT}"

    @property
    def vm_port(self) -> str:
        """The VM's logical switch port name = libvirt's interfaceid = OVS iface-id: a UUID,
        as Neutron's port ids are (libvirt accepts nothing else); fixed per testbed."""
        import uuid

        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"migfw.{self.prefix}.vm-port"))

    def chassis(self, host: str) -> str:
        return f"{self.prefix}-chassis-{host}"

    def host_env(self, host: str) -> dict[str, str]:
        run = self.ovs_rundir(host)
        return {"OVS_RUNDIR": str(run), "OVS_DBDIR": str(run), "OVS_LOGDIR": str(run),
                "OVN_RUNDIR": str(run), "OVN_DBDIR": str(run), "OVN_LOGDIR": str(run)}  # fmt: skip

    def control_env(self) -> dict[str, str]:
        d = str(self.control_dir())
        return {"OVN_RUNDIR": d, "OVN_DBDIR": d, "OVN_LOGDIR": d, "OVS_RUNDIR": d}


# ---------------------------------------------------------------------- commands


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 30,
        check: bool = True, stdin: str | None = None) -> str:  # fmt: skip
    """Run an OVS/OVN client command from this machine (they talk over unix sockets, so
    no namespace is needed); failure -> one line naming the command and its error."""
    import os

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, input=stdin)  # fmt: skip
    except FileNotFoundError:
        raise MigfwError(f"{argv[0]}: command not found (apt-get install openvswitch-switch "
                         "ovn-central ovn-host; scripts/install.sh does)") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        raise MigfwError(f"`{' '.join(argv[:4])} …` timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise MigfwError(
            f"`{' '.join(argv[:4])} …` failed: {lines[-1] if lines else proc.returncode}"
        )
    return proc.stdout


def vsctl(site: OvnSite, host: str, *args: str, timeout: float = 15) -> str:
    return run(["ovs-vsctl", f"--db={site.ovs_db(host)}", f"--timeout={int(timeout)}", *args],
               site.host_env(host), timeout=timeout + 5)  # fmt: skip


def nbctl(site: OvnSite, *args: str) -> str:
    return run(["ovn-nbctl", f"--db={site.central_db()}", "--timeout=15", *args],
               site.control_env())  # fmt: skip


def sbctl(site: OvnSite, *args: str) -> str:
    return run(["ovn-sbctl", f"--db={site.central_db()}", "--timeout=15", *args],
               site.control_env())  # fmt: skip


def appctl(site: OvnSite, host: str, target: str, *args: str, timeout: float = 15) -> str:
    """ovs-appctl to `target` (ovs-vswitchd | ovn-controller) of host `host`."""
    ctl = site.ovs_rundir(host) / f"{target}.ctl"  # --unixctl at start (_daemon_args)
    if not ctl.exists():  # ovn-controller has no --unixctl: <OVN_RUNDIR>/<name>.<pid>.ctl
        ctl = ctl.with_name(f"{target}.{_pidfile(ctl.with_suffix('.pid'))}.ctl")
    return run(["ovs-appctl", "-t", str(ctl), f"--timeout={int(timeout)}", *args],
               site.host_env(host), timeout=timeout + 5)  # fmt: skip


def _pidfile(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        raise MigfwError(f"{path}: no pid file (is the daemon running?)") from None


# ---------------------------------------------------------------------- daemons


def _log_tail(log: Path, stderr: Path) -> str:
    for path in (stderr, log):
        with contextlib.suppress(OSError):
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            bad = [ln for ln in lines if "|ERR|" in ln or "|EMER|" in ln or "error" in ln.lower()]
            if bad or lines:
                return (bad or lines)[-1].strip()
    return "no output"


def _spawn(name: str, netns: str, argv: list[str], env: dict[str, str], workdir: Path,
           state: dict[str, Any], key: str, write_state: Callable[[dict[str, Any]], None],
           ) -> int:  # fmt: skip
    """Start one daemon in `netns` (ip netns exec → env → the daemon: the PID is its own),
    record its PID under `key` before anything else can fail."""
    workdir.mkdir(parents=True, exist_ok=True)
    stderr = workdir / f"{name}.stderr"
    with open(stderr, "ab") as handle:
        try:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "env",
                    *(f"{k}={v}" for k, v in env.items()),
                    *argv,
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise MigfwError(f"{name}: ip not found") from None
    state.setdefault("pids", {})[key] = proc.pid
    write_state(state)
    return proc.pid


def _wait(what: str, ready: Callable[[], bool], pid: int, log: Path, stderr: Path,
          timeout: float = 20) -> None:  # fmt: skip
    """Until `ready()`; a dead daemon or a timeout is one line naming it and its log."""
    from migfw.testbed.procs import pid_alive

    deadline = time.monotonic() + timeout
    while True:
        if not pid_alive(pid):
            raise MigfwError(f"{what} exited at start: {_log_tail(log, stderr)} (log: {log})")
        with contextlib.suppress(MigfwError):
            if ready():
                return
        if time.monotonic() > deadline:
            raise MigfwError(f"{what} not ready after {timeout:.0f} s: "
                             f"{_log_tail(log, stderr)} (log: {log})")  # fmt: skip
        time.sleep(0.1)


def _daemon_args(name: str, rundir: Path, unixctl: bool = True) -> list[str]:
    args = [f"--pidfile={rundir / (name + '.pid')}", f"--log-file={rundir / (name + '.log')}",
            "-vconsole:off"]  # fmt: skip
    return args + [f"--unixctl={rundir / (name + '.ctl')}"] if unixctl else args


def ovn_running(site: OvnSite, state: dict[str, Any]) -> bool:
    from migfw.testbed.procs import pid_alive

    pids = state.get("pids", {})
    return all(pid_alive(pids.get(k), k.split("_")[0]) for k in OVN_KEYS)


def _control_network(site: OvnSite, state: dict[str, Any], write_state: Callable) -> None:
    from migfw.testbed.netns import exists as netns_exists
    from migfw.testbed.procs import sh

    ns = site.control_ns
    if not netns_exists(ns):
        sh(["ip", "netns", "add", ns])
        state.setdefault("namespaces", []).append(ns)
        write_state(state)
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "pO",
            "netns", site.switch_ns])  # fmt: skip
        sh(["ip", "-n", site.switch_ns, "link", "set", "pO", "master", LINUX_BRIDGE, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{site.control_address}/{site.plen}", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
    a, b = site.host_ns["A"], site.host_ns["B"]
    if sh(["ip", "-n", a, "link", "show", UNDERLAY_VETH], check=False).returncode != 0:
        sh(["ip", "link", "add", UNDERLAY_VETH, "netns", a, "type", "veth", "peer", "name",
            UNDERLAY_VETH, "netns", b])  # fmt: skip
        for hns in (a, b):
            sh(["ip", "-n", hns, "link", "set", UNDERLAY_VETH, "up"])
            sh(["ip", "netns", "exec", hns, "ethtool", "-K", UNDERLAY_VETH, "tx", "off"],
               check=False)  # fmt: skip
    for host in ("A", "B"):  # the provider bridge's uplink into the host's Linux br0
        hns = site.host_ns[host]
        if sh(["ip", "-n", hns, "link", "show", PHYS_VETH[0]], check=False).returncode == 0:
            continue
        sh(["ip", "-n", hns, "link", "add", PHYS_VETH[0], "type", "veth", "peer", "name",
            PHYS_VETH[1]])  # fmt: skip
        sh(["ip", "-n", hns, "link", "set", PHYS_VETH[1], "master", LINUX_BRIDGE, "up"])
        sh(["ip", "-n", hns, "link", "set", PHYS_VETH[0], "up"])
        # Userspace datapath: no checksum offload on the veth (OVS would forward the kernel's
        # partial checksums as they are).
        for dev in PHYS_VETH:
            sh(["ip", "netns", "exec", hns, "ethtool", "-K", dev, "tx", "off"], check=False)


def start_control(site: OvnSite, state: dict[str, Any], write_state: Callable) -> None:
    from migfw.testbed.procs import pid_alive

    d = site.control_dir()
    d.mkdir(parents=True, exist_ok=True)
    if not pid_alive(state.get("pids", {}).get("ovsdb-server_central"), "ovsdb-server"):
        for db, schema in (("ovnnb_db.db", NB_SCHEMA), ("ovnsb_db.db", SB_SCHEMA)):
            (d / db).unlink(missing_ok=True)
            run(["ovsdb-tool", "create", str(d / db), str(schema)])
        argv = ["ovsdb-server", str(d / "ovnnb_db.db"), str(d / "ovnsb_db.db"),
                f"--remote=punix:{d / 'ovn.sock'}",
                f"--remote=ptcp:{SB_PORT}:{site.control_address}",
                *_daemon_args("ovn-central", d)]  # fmt: skip
        pid = _spawn("ovn-central", site.control_ns, argv, site.control_env(), d, state,
                     "ovsdb-server_central", write_state)  # fmt: skip
        _wait("ovsdb-server (OVN NB/SB) in " + site.control_ns,
              lambda: bool(nbctl(site, "--no-leader-only", "show") is not None), pid,
              d / "ovn-central.log", d / "ovn-central.stderr")  # fmt: skip
    if not pid_alive(state.get("pids", {}).get("ovn-northd_central"), "ovn-northd"):
        argv = ["ovn-northd", f"--ovnnb-db={site.central_db()}",
                f"--ovnsb-db={site.central_db()}", *_daemon_args("ovn-northd", d)]  # fmt: skip
        pid = _spawn("ovn-northd", site.control_ns, argv, site.control_env(), d, state,
                     "ovn-northd_central", write_state)  # fmt: skip
        _wait("ovn-northd in " + site.control_ns,
              lambda: "active" in appctl_path(d / "ovn-northd.ctl", "status"), pid,
              d / "ovn-northd.log", d / "ovn-northd.stderr")  # fmt: skip


def appctl_path(ctl: Path, *args: str) -> str:
    return run(["ovs-appctl", "-t", str(ctl), "--timeout=5", *args], timeout=10)


def start_host(site: OvnSite, host: str, state: dict[str, Any], write_state: Callable) -> None:
    from migfw.testbed.procs import pid_alive

    rundir, env, ns = site.ovs_rundir(host), site.host_env(host), site.host_ns[host]
    rundir.mkdir(parents=True, exist_ok=True)
    pids = state.setdefault("pids", {})
    if not pid_alive(pids.get(f"ovsdb-server_{host}"), "ovsdb-server"):
        db = rundir / "conf.db"
        db.unlink(missing_ok=True)
        run(["ovsdb-tool", "create", str(db), str(OVS_SCHEMA)])
        argv = ["ovsdb-server", str(db), f"--remote=punix:{rundir / 'db.sock'}",
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                *_daemon_args("ovsdb-server", rundir)]  # fmt: skip
        pid = _spawn("ovsdb-server", ns, argv, env, rundir, state, f"ovsdb-server_{host}",
                     write_state)  # fmt: skip
        _wait(f"ovsdb-server of host {host}",
              lambda: vsctl(site, host, "--no-wait", "init") is not None, pid,
              rundir / "ovsdb-server.log", rundir / "ovsdb-server.stderr")  # fmt: skip
    if not pid_alive(pids.get(f"ovs-vswitchd_{host}"), "ovs-vswitchd"):
        argv = ["ovs-vswitchd", site.ovs_db(host), *_daemon_args("ovs-vswitchd", rundir)]
        pid = _spawn("ovs-vswitchd", ns, argv, env, rundir, state, f"ovs-vswitchd_{host}",
                     write_state)  # fmt: skip
        _wait(f"ovs-vswitchd of host {host}",
              lambda: "ovs-vswitchd" in appctl(site, host, "ovs-vswitchd", "version"), pid,
              rundir / "ovs-vswitchd.log", rundir / "ovs-vswitchd.stderr")  # fmt: skip
        vsctl(site, host,
              "--", "set", "Open_vSwitch", ".",
              f"external_ids:system-id={site.chassis(host)}",
              f"external_ids:hostname={site.chassis(host)}",
              f"external_ids:ovn-remote={site.sb_remote()}",
              "external_ids:ovn-encap-type=geneve",
              f"external_ids:ovn-encap-ip={site.encap_ip[host]}",
              f"external_ids:ovn-bridge-mappings={PHYSNET}:{PHYS_BRIDGE}",
              "external_ids:ovn-bridge-datapath-type=netdev",
              "--", "--may-exist", "add-br", INT_BRIDGE,
              "--", "set", "Bridge", INT_BRIDGE, "datapath_type=netdev", "fail-mode=secure",
              "--", "--may-exist", "add-br", PHYS_BRIDGE,
              "--", "set", "Bridge", PHYS_BRIDGE, "datapath_type=netdev",
              "--", "--may-exist", "add-port", PHYS_BRIDGE, PHYS_VETH[0],
              "--", "--may-exist", "add-br", UNDERLAY_BRIDGE,
              "--", "set", "Bridge", UNDERLAY_BRIDGE, "datapath_type=netdev",
              "--", "--may-exist", "add-port", UNDERLAY_BRIDGE, UNDERLAY_VETH)  # fmt: skip
        from migfw.testbed.procs import sh

        ns_ = site.host_ns[host]
        plen = site.underlay.prefixlen
        sh(["ip", "-n", ns_, "addr", "replace", f"{site.encap_ip[host]}/{plen}", "dev",
            UNDERLAY_BRIDGE])  # fmt: skip
        sh(["ip", "-n", ns_, "link", "set", UNDERLAY_BRIDGE, "up"])
    if not pid_alive(pids.get(f"ovn-controller_{host}"), "ovn-controller"):
        argv = ["ovn-controller", site.ovs_db(host),
                *_daemon_args("ovn-controller", rundir, unixctl=False)]  # fmt: skip
        pid = _spawn("ovn-controller", ns, argv, env, rundir, state, f"ovn-controller_{host}",
                     write_state)  # fmt: skip
        _wait(f"ovn-controller of host {host} (chassis {site.chassis(host)})",
              lambda: site.chassis(host) in sbctl(site, "--columns=name", "list", "Chassis"),
              pid, rundir / "ovn-controller.log", rundir / "ovn-controller.stderr")  # fmt: skip


def disable_zero_snat(site: OvnSite, host: str, timeout: float = 10) -> None:
    """Tell host's ovn-controller that the datapath has no all-zero SNAT, so that its
    `ct_commit` carries no `nat(src)`. With it, OVS 3.1.0's userspace conntrack (Debian 12;
    no newer OVS in bookworm or its backports) keeps a reverse-NAT entry per committed
    connection and aborted ovs-vswitchd on both hosts in the first real trial (`conntrack.c:
    1063: assertion conn->conn_type == CT_CONN_TYPE_DEFAULT failed in conn_update_state()`).
    The all-zero SNAT only avoids tuple clashes between NATed and firewalled sessions; the
    testbed has no NAT. ovn-controller reads the capability from the OVS Datapath row."""
    deadline = time.monotonic() + timeout
    while True:
        uuid = vsctl(site, host, "--columns=_uuid", "--bare", "find", "Datapath").strip()
        if uuid:
            vsctl(site, host, "set", "Datapath", uuid.split()[0], "capabilities:ct_zero_snat=false")
            return
        if time.monotonic() > deadline:
            raise MigfwError(f"host {host}: no OVS Datapath row after {timeout:.0f} s")
        time.sleep(0.1)


def zero_snat(site: OvnSite, host: str) -> str | None:
    """The ct_zero_snat capability ovn-controller of `host` reads (None: no Datapath row)."""
    uuid = vsctl(site, host, "--columns=_uuid", "--bare", "find", "Datapath").strip()
    if not uuid:
        return None
    return vsctl(site, host, "get", "Datapath", uuid.split()[0],
                 "capabilities:ct_zero_snat").strip().strip('"')  # fmt: skip


def start_ovn(local: Any, state: dict[str, Any], write_state: Callable) -> OvnSite:
    """Start (or complete) the OVN pieces of a running local testbed; idempotent."""
    import shutil

    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise MigfwError(
            f"OVN placement: {', '.join(missing)} not installed (apt-get install "
            "openvswitch-switch ovn-central ovn-host; scripts/install.sh does)"
        )
    site = OvnSite(local)
    started = time.monotonic()
    _control_network(site, state, write_state)
    start_control(site, state, write_state)
    for host in ("A", "B"):
        start_host(site, host, state, write_state)
        disable_zero_snat(site, host)
    ensure_logical_switch(site)
    state["ovn"] = {"control_ns": site.control_ns, "chassis": {h: site.chassis(h) for h in "AB"},
                    "encap_ip": site.encap_ip, "sb_remote": site.sb_remote(),
                    "central_db": site.central_db(),
                    "start_s": round(time.monotonic() - started, 2)}  # fmt: skip
    write_state(state)
    return site


OVN_KEYS = ("ovsdb-server_central", "ovn-northd_central") + tuple(
    f"{d}_{h}" for h in ("A", "B") for d in ("ovsdb-server", "ovs-vswitchd", "ovn-controller")
)


def repair_ovn(local: Any, state: dict[str, Any], write_state: Callable) -> list[str]:
    """A testbed whose OVN lost a daemon (killed, or aborted as OVS 3.1.0's conntrack did):
    stop the rest by their recorded PIDs, drop the databases and start OVN afresh (the VM's
    port is plugged again when the VM is re-provisioned; every `ovn` trial loads its port,
    binding and ACLs anew). Returns what it did, [] when OVN is whole or was never started."""
    from migfw.testbed.procs import kill_pid, pid_alive

    if not state.get("ovn"):
        return []
    site = OvnSite(local)
    if ovn_running(site, state):
        return []
    pids = state.setdefault("pids", {})
    dead = [k for k in OVN_KEYS if not pid_alive(pids.get(k), k.split("_")[0])]
    for key in OVN_KEYS:
        pid = pids.pop(key, None)
        if pid_alive(pid, key.split("_")[0]):
            kill_pid(pid)
    import shutil

    for path in (site.control_dir(), site.ovs_rundir("A"), site.ovs_rundir("B")):
        # Empty the run directories, never remove them: each host's libvirtd has its own
        # bind-mounted on /run/openvswitch.
        for child in path.glob("*") if path.exists() else []:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    state.pop("ovn", None)
    write_state(state)
    start_ovn(local, state, write_state)
    return [f"restarted OVN (dead: {', '.join(dead)})"]


# ---------------------------------------------------------------------- logical network


def ensure_logical_switch(site: OvnSite) -> None:
    """One logical switch with a localnet port to the provider network (idempotent)."""
    nbctl(site, "--may-exist", "ls-add", SWITCH,
          "--", "--may-exist", "lsp-add", SWITCH, LOCALNET_PORT,
          "--", "lsp-set-type", LOCALNET_PORT, "localnet",
          "--", "lsp-set-addresses", LOCALNET_PORT, "unknown",
          "--", "lsp-set-options", LOCALNET_PORT, f"network_name={PHYSNET}")  # fmt: skip


def ensure_vm_port(site: OvnSite, mac: str, ip: str, chassis: list[str]) -> None:
    """The VM's logical switch port: its MAC/IP, port security, bound to `chassis`."""
    nbctl(site, "--may-exist", "lsp-add", SWITCH, site.vm_port,
          "--", "lsp-set-addresses", site.vm_port, f"{mac} {ip}",
          "--", "lsp-set-port-security", site.vm_port, f"{mac} {ip}",
          "--", "set", "Logical_Switch_Port", site.vm_port,
          f'options:requested-chassis="{",".join(chassis)}"')  # fmt: skip


def set_requested_chassis(site: OvnSite, chassis: list[str], rarp: bool) -> None:
    """Nova + Neutron OVN's binding change: requested-chassis (and activation-strategy)."""
    args = ["set", "Logical_Switch_Port", site.vm_port,
            f'options:requested-chassis="{",".join(chassis)}"']  # fmt: skip
    if rarp:
        args += ["options:activation-strategy=rarp"]
    else:
        args += [
            "--",
            "remove",
            "Logical_Switch_Port",
            site.vm_port,
            "options",
            "activation-strategy",
        ]
    nbctl(site, *args)


def read_json(text: str) -> Any:
    return json.loads(text) if text.strip() else None
