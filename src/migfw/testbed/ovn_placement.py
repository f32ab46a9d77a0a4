"""Placement `ovn`: the ruleset as OVN ACLs, the VM's port moved as Nova + Neutron OVN move it.

Before a trial (`setup`): the OVN daemons run (migfw.testbed.ovn, started on demand), the VM's
NIC is an Open vSwitch port on br-int (libvirt's `<virtualport type='openvswitch'>` with the
logical port's UUID as iface-id: a VM on the Linux bridge is re-provisioned for it, and back
for the other placements), its logical switch port is bound to the VM's host, the ACLs are
loaded (`ovn-nbctl --wait=hv sync`: both chassis have the flows), the guest's own ruleset is
flushed, and every rule is checked with packets from the prober, as for every placement.

During the migration (`OvnTrial`), the factor `ovn_binding`:
- `multichassis` - Nova + Neutron OVN since multi-chassis port bindings (OVN 22.09): before
  migrating, `requested-chassis=<src>,<dst>` and `activation-strategy=rarp` (the destination
  claims the port as additional chassis when libvirt plugs the tap, installs its flows, and
  keeps the port blocked until the VM's own RARP; then sets `additional-chassis-activated`);
  after the migration `requested-chassis=<dst>` alone.
- `rebind` - before multi-chassis: the port stays bound to the source during the migration
  and is bound to the destination only after the VM resumed there (when the migration call
  returns, as Nova's post-live-migration step updates the binding).
Recorded in trial.json `ovn`: the NB changes with their times, the SB Port_Binding's
transitions (chassis, additional chassis, activation) stamped as the monitor saw them, each
host's OVS Interface `ovn-installed-ts` (when its ovn-controller had the port's flows), the
conntrack of both hosts' userspace datapaths (`ovs-appctl dpctl/dump-conntrack`) before the
migration, right after it and at the end (conntrack/), and the Geneve underlay capture
(underlay.pcap: what the chassis tunnel to each other).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed, cfg_get, read_state
from migfw.testbed.placements import get

BINDINGS = ("multichassis", "rebind")
DEFAULT_BINDING = "multichassis"
LINUX_BRIDGE = "br0"


def _local(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from migfw.testbed.local import LocalTestbed

    local = LocalTestbed(cfg)
    state = read_state(local.state_dir)
    if not state or state.get("phase") != "up":
        raise MigfwError(f"placement ovn: testbed {local.prefix} is not up")
    return local, state


def site_for(cfg: dict[str, Any], start: bool = True) -> Any:
    """The testbed's OvnSite, its daemons started first when `start`."""
    from migfw.testbed import ovn

    local, state = _local(cfg)
    if start and not ovn.ovn_running(ovn.OvnSite(local), state):
        return ovn.start_ovn(local, state, local._write_state)
    return ovn.OvnSite(local)


def on_ovs(bed: Testbed) -> bool:
    return bool(bed.extra.get("virtualport_id"))


def ensure_nic(cfg: dict[str, Any], bed: Testbed, placement: str, log: Any) -> bool:
    """The VM's NIC where `placement` needs it: an OVS port on br-int for `ovn`, the Linux
    bridge for the others. libvirt cannot move a running interface between the two (live
    update: "unable to change config on 'bridge' network type"), so the VM is booted anew
    on host A. Returns True when it did so."""
    want = get(placement).nic == "ovs"
    if bed.provider != "local" or on_ovs(bed) == want:
        if want and bed.provider != "local":
            raise MigfwError("placement ovn: needs the local provider (an OVN of its own)")
        return False
    from migfw.testbed import ovn
    from migfw.testbed.provision import destroy_vm, ensure_vm

    started = time.monotonic()
    if want:
        site = site_for(cfg)
        # Bound to A, where the new VM boots (libvirt plugs it while it starts).
        ovn.ensure_vm_port(site, bed.extra["mac"], bed.vm_address, [site.chassis("A")])
        bed.extra.update(bridge=ovn.INT_BRIDGE, virtualport_id=site.vm_port)
    else:
        bed.extra.update(bridge=LINUX_BRIDGE, virtualport_id=None)
    destroy_vm(bed)
    ensure_vm(bed)
    local, state = _local(cfg)
    state["testbed"] = bed.to_dict()
    local._write_state(state)
    (Path(bed.state_dir) / "deployed.json").unlink(missing_ok=True)
    log("nic_moved", to=bed.extra["bridge"], boot_s=round(time.monotonic() - started, 2))
    return True


def place_cotenants(cfg: dict[str, Any], bed: Testbed, placement: str, log: Any) -> None:
    """Issue 22's co-tenant attackers (migfw.testbed.cotenant) where the VM's neighbours are:
    under `ovn` another tenant's VM is another logical switch port on the host's br-int
    (its port `co0` an OVS port with its own iface-id, bound to its host), so what it sends
    the VM is delivered on that chassis by OVN and meets the ACLs there; under the other
    placements `co0` is on the host's Linux bridge, beside the VM's tap. Moves only what is
    not where it should be."""
    if bed.provider != "local" or not float(cfg_get(cfg, "trials.enforcement.rate_hz") or 0):
        return
    import uuid

    from migfw.testbed import cotenant, ovn
    from migfw.testbed.procs import sh

    local, _ = _local(cfg)
    want = get(placement).nic == "ovs"
    if not want and not (_local(cfg)[1].get("ovn")):
        return  # OVN never ran: the co-tenants are where cotenant.ensure puts them
    made = cotenant.ensure(local)
    site = site_for(cfg) if want else ovn.OvnSite(local)
    for host, info in made.items():
        hns = local.ns[host]
        ports = ovn.vsctl(site, host, "list-ports", ovn.INT_BRIDGE).split()
        on_ovs = cotenant.PORT in ports
        if on_ovs == want:
            continue
        if want:
            name = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"migfw.{local.prefix}.cotenant-{host}"))
            mac = sh(
                ["ip", "-n", info["netns"], "-br", "link", "show", info["iface"]]
            ).stdout.split()[2]
            ovn.nbctl(site, "--may-exist", "lsp-add", ovn.SWITCH, name,
                      "--", "lsp-set-addresses", name, f"{mac} {info['address']}",
                      "--", "set", "Logical_Switch_Port", name,
                      f'options:requested-chassis="{site.chassis(host)}"')  # fmt: skip
            sh(["ip", "-n", hns, "link", "set", cotenant.PORT, "nomaster"])
            for ns_, dev in ((hns, cotenant.PORT), (info["netns"], info["iface"])):
                # The userspace datapath forwards partial checksums as they are.
                sh(["ip", "netns", "exec", ns_, "ethtool", "-K", dev, "tx", "off"], check=False)
            iface_id = f"external_ids:iface-id={name}"
            ovn.vsctl(site, host, "--may-exist", "add-port", ovn.INT_BRIDGE, cotenant.PORT,
                      "--", "set", "Interface", cotenant.PORT, iface_id)  # fmt: skip
        else:
            ovn.vsctl(site, host, "--if-exists", "del-port", ovn.INT_BRIDGE, cotenant.PORT)
            sh(["ip", "-n", hns, "link", "set", cotenant.PORT, "master", LINUX_BRIDGE, "up"])
        log("cotenant_moved", host=host, to=ovn.INT_BRIDGE if want else LINUX_BRIDGE)


def bound_where(site: Any) -> dict[str, bool]:
    """Which host's chassis the VM's Port_Binding names (main or additional) now."""
    import json

    from migfw.testbed import ovn, ovn_observe

    names = ovn_observe.chassis_names(site)
    out = ovn.sbctl(site, "--format=json", "--columns=chassis,additional_chassis", "find",
                    "Port_Binding", f"logical_port={site.vm_port}")  # fmt: skip
    rows = json.loads(out)["data"]
    bound: set[str] = set()
    for row in rows:
        for cell in row:
            value = ovn_observe._ovsdb_value(cell)
            bound |= {names.get(v, v) for v in (value if isinstance(value, list) else [value])}
    return {h: site.chassis(h) in bound for h in ("A", "B")}


def setup(cfg: dict[str, Any], bed: Testbed, current: str, log: Any, partial: Path) -> dict:
    """ACLs on the VM's port group, bound to `current`; checked by packets (module doc)."""
    from migfw.testbed import ovn, ovn_acl
    from migfw.testbed.base import cfg_get
    from migfw.testbed.deploy import GuestShell, verify_rules
    from migfw.testbed.ruleset import default_addresses, load_ruleset

    site = site_for(cfg)
    for host in ("A", "B"):  # ovs-vswitchd may have written its capabilities back
        if ovn.zero_snat(site, host) != "false":
            ovn.disable_zero_snat(site, host)
            log("ovn_zero_snat_disabled", host=host)
    rs = load_ruleset(cfg_get(cfg, "ruleset"))
    addresses = default_addresses(bed.vm_address, bed.prober_address or "", bed.extra.get("subnet"))
    acls = ovn_acl.render_acls(rs, addresses)
    (partial / "ovn_acls.txt").write_text(ovn_acl.render_text(acls))
    ovn.ensure_vm_port(site, bed.extra["mac"], bed.vm_address, [site.chassis(current)])
    ovn.set_requested_chassis(site, [site.chassis(current)], rarp=False)
    ovn_acl.apply_acls(site, acls)
    ovn.nbctl(site, "--wait=hv", "--timeout=30", "sync")  # both chassis installed the flows
    log("ovn_acls_installed", acls=len(acls), host=current)
    guest = (bed.vm_address, bed.ssh_user, bed.ssh_key, bed.ssh_known_hosts)
    with GuestShell(*guest, netns=bed.ssh_netns) as shell:
        shell.run("nft flush ruleset")
        log("ruleset_flushed")
        checks = verify_rules(rs, addresses, bed.prober_netns, shell, ftp_path="readme.txt")
    log("verify", placement="ovn", checks=len(checks),
        failed=sum(1 for c in checks if c["ok"] is False))  # fmt: skip
    where = {**bound_where(site), "guest": False}
    if not where[current] or where[bed.other(current)]:
        raise MigfwError(f"placement ovn: the VM's port is bound to {where}, not host {current}")
    return {"checks": checks, "where": where}


def conntrack_dump(site: Any, host: str) -> str:
    from migfw.testbed import ovn

    try:
        return ovn.appctl(site, host, "ovs-vswitchd", "dpctl/dump-conntrack")
    except MigfwError as exc:
        return f"# dpctl/dump-conntrack failed: {exc}\n"


def syn_answers(netns: str | None, source: str, target: str, ports: list[int],
                timeout_s: float) -> dict[str, str]:  # fmt: skip
    """A new connection (one SYN) from `source` to each port at once: {port: 'answer' (SYN-ACK
    or RST) | 'silence'} after at most `timeout_s` (deploy.probe_tcp, one thread per port
    since setns is per thread, as verify_rules runs its probes)."""
    from concurrent.futures import ThreadPoolExecutor

    from migfw.testbed.deploy import probe_tcp
    from migfw.testbed.netns import in_netns

    def one(port: int) -> str:
        with in_netns(netns):
            return probe_tcp(source, target, int(port), timeout_s)

    with ThreadPoolExecutor(max_workers=max(1, len(ports))) as pool:
        return {str(p): answer for p, answer in zip(ports, pool.map(one, ports), strict=True)}


NEW_CONNECTION_TIMEOUT_S = 1.0


class TemporaryAcl:
    """The state-only flows' temporary allow at the OVN layer (ovn_acl.temporary_allow, above
    every rule), added while they connect. At removal it is swapped, in one transaction, for
    an established-only ACL per port (ovn_acl.keep_state: OVN's form of a stateful firewall's
    `keep state`, which stays for the trial), and a new connection from the same source to
    each port must then be refused - once both datapaths revalidated their cached flows -:
    a SYN from the prober gets no answer in 1 s, else the trial fails (the kept ACL would
    admit what the rules block). `remove()` returns what stays (trial.json
    flows.temporary_rules[].kept) and starts that check in a thread, so its 1 s of silence
    overlaps the attackers' start and the lead-in; `confirm()` (before the migration) waits
    for it, fills `kept.new_connection` and raises if a SYN was answered."""

    def __init__(self, site: Any, where: str, bed: Testbed | None = None,
                 folder: Path | None = None) -> None:  # fmt: skip
        self.site, self.where, self.bed, self.folder = site, where, bed, folder
        self.flows: list[tuple[str, int]] = []
        self.check: Any = None  # (thread, kept, result) of the pending SYN refusal check

    def add(self, source: str, ports: tuple[int, ...]) -> str:
        from migfw.testbed import ovn, ovn_acl

        acls = [ovn_acl.temporary_allow(source, p) for p in ports]
        script = [a for i, acl in enumerate(acls)
                  for a in acl.nbctl(ovn_acl.PORT_GROUP, f"tmp{i}")]  # fmt: skip
        ovn.nbctl(self.site, "--wait=hv", *script[1:])  # one transaction, every port
        self.flows += [(source, int(p)) for p in ports]
        return "; ".join(f"ovn acl to-lport {a.priority} {a.match} allow-related" for a in acls)

    def remove(self) -> dict[str, Any] | None:
        from migfw.testbed import ovn, ovn_acl

        uuids = ovn.nbctl(self.site, "--bare", "--columns=_uuid", "find", "ACL",
                          f"name={ovn_acl.TEMPORARY_NAME}").split()  # fmt: skip
        flows, self.flows = self.flows, []
        keep = [ovn_acl.keep_state(source, port) for source, port in flows]
        if not uuids and not keep:
            return None
        ovn.nbctl(self.site, "--wait=hv", *ovn_acl.swap_script(uuids, keep))
        # --wait=hv means the chassis have the new OpenFlow flows; the userspace datapath's
        # cached flows follow when its revalidators ran (a new SYN once still met the
        # temporary allow's cached flow 55 ms after the swap): wait for them on both hosts.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:  # both hosts at once
            list(pool.map(lambda h: ovn.appctl(self.site, h, "ovs-vswitchd", "revalidator/wait"),
                          ("A", "B")))  # fmt: skip
        at = time.time()
        if self.folder is not None and keep:
            with (self.folder / "ovn_acls.txt").open("a") as fh:
                fh.write("# kept from the state-only flows' temporary allow on (issue 22)\n")
                fh.write(ovn_acl.render_text(keep).split("\n", 1)[1])
        kept: dict[str, Any] = {
            "rule": "; ".join(f"ovn acl to-lport {a.priority} {a.match} {a.action}" for a in keep),
            "at": at, "new_connection": None}  # fmt: skip
        if keep and self.bed is not None:
            import threading

            bed, source, ports = self.bed, flows[0][0], [p for _, p in flows]
            result: dict[str, Any] = {}

            def check() -> None:
                try:
                    result["answers"] = syn_answers(bed.prober_netns, source, bed.vm_address,
                                                    ports, NEW_CONNECTION_TIMEOUT_S)  # fmt: skip
                except BaseException as exc:  # noqa: BLE001 - raised by confirm()
                    result["error"] = exc

            thread = threading.Thread(target=check, name="migfw-ovn-syn-check", daemon=True)
            thread.start()
            self.check = (thread, kept, result, source)
        return kept

    def confirm(self) -> None:
        """Wait for the SYN refusal check `remove()` started; raise if a SYN was answered."""
        if self.check is None:
            return
        (thread, kept, result, source), self.check = self.check, None
        thread.join()
        if "error" in result:
            raise result["error"]
        answers = result["answers"]
        kept["new_connection"] = answers
        if any(v != "silence" for v in answers.values()):
            raise MigfwError(f"placement ovn: the established-only ACL admits a new "
                             f"connection from {source}: {answers}")  # fmt: skip


class OvnTrial:
    """The binding steps around one migration, the SB monitor, conntrack dumps, the underlay
    capture; `stop()` returns trial.json's `ovn` object."""

    def __init__(self, cfg: dict[str, Any], bed: Testbed, source: str, destination: str,
                 binding: str, partial: Path, log: Any) -> None:  # fmt: skip
        if binding not in BINDINGS:
            raise MigfwError(f"factor ovn_binding: {binding!r} is not one of {', '.join(BINDINGS)}")
        self.site = site_for(cfg, start=False)
        self.cfg = cfg
        self.bed, self.src, self.dst, self.binding = bed, source, destination, binding
        self.partial, self.log = partial, log
        self.steps: list[dict[str, Any]] = []
        self.dumps: dict[str, Any] = {}
        self.monitor: Any = None
        self.capture: subprocess.Popen | None = None
        (partial / "conntrack").mkdir(exist_ok=True)

    def temporary_acl(self) -> TemporaryAcl:
        return TemporaryAcl(self.site, self.src, self.bed, self.partial)

    def _dump(self, moment: str) -> None:
        """OVS's own dump (ovs-<role>-<moment>.txt) and the same entries as a `conntrack -L`
        listing under the contract's name (<role>-<moment>.txt, docs/attack_window.md)."""
        from concurrent.futures import ThreadPoolExecutor

        from migfw.testbed.ovn_observe import ovs_to_listing

        def dump(host: str) -> tuple[float, str]:
            return time.time(), conntrack_dump(self.site, host)

        roles = (("src", self.src), ("dst", self.dst))
        with ThreadPoolExecutor(max_workers=2) as pool:  # both hosts at once
            dumps = list(pool.map(dump, [host for _, host in roles]))
        for (role, host), (t, text) in zip(roles, dumps, strict=True):
            (self.partial / "conntrack" / f"ovs-{role}-{moment}.txt").write_text(text)
            (self.partial / "conntrack" / f"{role}-{moment}.txt").write_text(ovs_to_listing(text))
            self.dumps[f"{role}-{moment}"] = {"t": t, "host": host,
                                              "rc": 1 if text.startswith("# ") else 0}  # fmt: skip

    def _request(self, step: str, hosts: list[str], rarp: bool) -> None:
        from migfw.testbed import ovn

        t0 = time.time()
        ovn.set_requested_chassis(self.site, [self.site.chassis(h) for h in hosts], rarp)
        self.steps.append({"step": step, "t": t0, "done_t": time.time(),
                           "requested_chassis": [self.site.chassis(h) for h in hosts],
                           "activation_strategy": "rarp" if rarp else None})  # fmt: skip
        self.log("ovn_binding", binding_step=step, hosts=hosts, rarp=rarp)

    def start(self) -> OvnTrial:
        from migfw.testbed import ovn, ovn_observe
        from migfw.testbed.netns import netns_argv

        self.monitor = ovn_observe.BindingMonitor(
            self.site, self.partial / "port_binding.jsonl"
        ).start()
        self.capture = subprocess.Popen(
            netns_argv(
                self.site.host_ns[self.src],
                [
                    "tcpdump",
                    "-i",
                    ovn.UNDERLAY_VETH,
                    "-U",
                    "-n",
                    "-w",
                    str(self.partial / "underlay.pcap"),
                    "udp port 6081",
                ],
            ),  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def migrate(self, do_migrate: Any) -> dict[str, Any]:
        """Nova's sequence around libvirt's migration (module doc)."""
        self._dump("before")  # after the lead-in (the temporary allow is gone by then)
        if self.binding == "multichassis":
            self._request("before_migration", [self.src, self.dst], rarp=True)
        try:
            result = do_migrate()
        finally:
            self._dump("resume")
            # After the migration (or its failure): the port is bound where the VM runs.
            from migfw.testbed.provision import find_vm

            where = find_vm(self.bed) or self.src
            self._request("after_migration", [where], rarp=False)
        return result

    def stop(self) -> dict[str, Any]:
        from migfw.testbed import ovn_observe
        from migfw.testbed.local import kill_pid

        self._dump("end")
        report = self.monitor.stop() if self.monitor is not None else {}
        from migfw.testbed.local import LocalTestbed

        # OVS 3.1.0's userspace conntrack has aborted ovs-vswitchd mid-trial (assertion in
        # conn_update_state): the trial says which daemon died.
        dead = LocalTestbed(self.cfg).status().get("daemons_dead") or []
        if self.capture is not None:
            kill_pid(self.capture.pid, grace=2.0)
        dumps = sorted(p.name for p in (self.partial / "conntrack").glob("*.txt"))
        installed = {}
        for host in ("A", "B"):
            try:
                installed[host] = ovn_observe.flow_install(self.site, host)
            except MigfwError as exc:
                installed[host] = {"host": host, "error": str(exc)}
        return {"binding": self.binding, "port": self.site.vm_port,
                "chassis": {h: self.site.chassis(h) for h in ("A", "B")},
                "steps": self.steps, "port_binding": report.get("transitions", []),
                "monitor_errors": report.get("errors", []),
                "flow_install": installed, "underlay_pcap": "underlay.pcap",
                "daemons_dead": dead, "conntrack": {"dumps": self.dumps},
                "conntrack_dumps": dumps}  # fmt: skip
