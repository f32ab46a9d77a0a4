"""Host firewall commands the placements (migfw.testbed.placements, one module each) are
built from: migfw's host nftables tables, libvirt nwfilter definitions and bindings, and
looking where rules are.

Every placement is checked with real packets before a trial (verify_rules from the prober's
namespace) and by looking where rules are: in the guest, on host A, on host B.

The host commands (`nft`, `iptables -S`) run in the host's namespace (local provider) or,
for the external provider, on the host over SSH with the login of its `qemu+*ssh://` URI
(`HostSsh`); nwfilter is defined through the hosts' libvirt connections either way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed
from migfw.testbed.netns import netns_argv
from migfw.testbed.ruleset_render import HOST_TABLE, NWFILTER_NAME, explain_nft_error


def host_netns(bed: Testbed, host: str) -> str:
    """The network namespace of hypervisor host `host` (local provider only)."""
    if bed.provider != "local":
        raise MigfwError(
            f"placement: host-level firewalls need the local provider ({bed.provider})"
        )
    prefix = bed.vm_name.rsplit("-target", 1)[0]
    return f"{prefix}-host{host}"


class HostSsh:
    """Commands on a hypervisor host over SSH (external provider): one session, one shell,
    opened on first use (migfw.testbed.remote.RemoteSh)."""

    def __init__(self, name: str, target: dict[str, Any]) -> None:
        self.name, self.target = name, target
        self.shell: Any = None
        self.sh: Any = None

    def __str__(self) -> str:
        return f"host {self.name} ({self.target['user']}@{self.target['host']})"

    def open(self) -> HostSsh:
        from migfw.testbed.remote import RemoteSh, open_shell

        if self.sh is None:
            self.shell = open_shell(self.target)
            self.sh = RemoteSh(self.shell)
            self.sh.run("true")  # the login shell's start-up is paid here, not by a command
        return self

    def run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        import shlex

        self.open()
        cmd = shlex.join(argv)
        if stdin is not None:
            cmd = f"printf %s {shlex.quote(stdin)} | {cmd}"
        out = self.sh.run(cmd, check=False)
        rc = int(self.sh.last_code)
        return subprocess.CompletedProcess(argv, rc, out, out if rc else "")  # stderr merged

    def close(self) -> None:
        if self.sh is not None:
            self.sh.close()
            self.shell.close()
        self.sh = self.shell = None


def host_commands(bed: Testbed, host: str) -> str | HostSsh:
    """Where host `host`'s firewall commands run: its namespace (local provider) or an SSH
    login to it (external: the login of its libvirt URI, which must be qemu+ssh/libssh)."""
    if bed.provider == "local":
        return host_netns(bed, host)
    from migfw.testbed.remote import libvirt_ssh_target

    target = libvirt_ssh_target(bed.hosts[host].uri)
    if target is None:
        raise MigfwError(
            f"host {host}: host firewalls need an SSH login to the host; its libvirt URI "
            f"{bed.hosts[host].uri} is not qemu+ssh/libssh"
        )
    return HostSsh(host, target)


def close_host(where: str | HostSsh) -> None:
    if isinstance(where, HostSsh):
        where.close()


def _run(where: str | HostSsh, argv: list[str], stdin: str | None = None):
    if isinstance(where, HostSsh):
        return where.run(argv, stdin)
    try:
        return subprocess.run(netns_argv(where, argv), input=stdin, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except FileNotFoundError:
        raise MigfwError(f"{argv[0]}: command not found") from None


def _nft(where: str | HostSsh, args: list[str], stdin: str | None = None):
    return _run(where, ["nft", *args], stdin)


def install_host_rules(netns: str | HostSsh, text: str) -> None:
    """Load the host ruleset (atomic: one `nft -f` transaction) in the host's namespace."""
    proc = _nft(netns, ["-f", "-"], text)
    if proc.returncode != 0:
        raise MigfwError(f"host rules in {netns}: {explain_nft_error(proc.stderr, text)}")


def remove_host_rules(netns: str | HostSsh) -> None:
    """Delete our host tables in one transaction (absent tables are fine)."""
    text = "".join(
        f"table {fam} {HOST_TABLE}\ndelete table {fam} {HOST_TABLE}\n" for fam in ("bridge", "inet")
    )
    proc = _nft(netns, ["-f", "-"], text)
    if proc.returncode != 0:
        raise MigfwError(f"removing host rules in {netns}: {proc.stderr.strip()}")


def host_rules_present(netns: str | HostSsh) -> bool:
    """True if our inet host table has rules other than the base ones in this namespace."""
    proc = _nft(netns, ["list", "table", "inet", HOST_TABLE])
    return proc.returncode == 0 and "comment" in proc.stdout


def nwfilter_bound(bed: Testbed, host: str) -> bool:
    """True if the host's libvirtd has a binding of our filter to the VM's port."""
    from migfw.testbed.provision import connect

    conn = connect(bed, host)
    try:
        for binding in conn.listAllNWFilterBindings(0):
            if binding.filterName() == NWFILTER_NAME:
                return True
        return False
    finally:
        conn.close()


def nwfilter_chains_present(netns: str | HostSsh, port: str) -> bool:
    """True if nwfilter's iptables chains for `port` exist in the host's namespace."""
    try:
        proc = _run(netns, ["iptables", "-w", "-S"])
    except MigfwError:
        return False
    return proc.returncode == 0 and f"-{port}" in proc.stdout


def domain_port(conn: Any, vm_name: str) -> str | None:
    """The VM's tap device on the host of `conn` (its live XML's interface target)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(conn.lookupByName(vm_name).XMLDesc(0))
    target = root.find("./devices/interface/target")
    return None if target is None else target.get("dev")


def port_on(bed: Testbed, host: str) -> str:
    """The VM's bridge port on `host`: fixed for the local testbed (the same tap name on both
    hosts); asked of the host's libvirtd for the external provider (a lab's libvirt may name
    it vnetN, per host)."""
    if bed.provider == "local":
        return str(bed.extra.get("tap", "mfwtap0"))
    from migfw.testbed.provision import connect

    conn = connect(bed, host)
    try:
        port = domain_port(conn, bed.vm_name)
    finally:
        conn.close()
    if not port:
        raise MigfwError(f"host {host}: VM {bed.vm_name} has no interface target (tap) in its XML")
    return port


def define_nwfilter(bed: Testbed, xml: str) -> None:
    """Define (or redefine) the filter on both hosts' libvirtds with libvirt-python."""
    import libvirt

    from migfw.testbed.provision import connect

    for host in ("A", "B"):
        conn = connect(bed, host)
        try:
            text = xml
            try:
                # A redefinition must name the filter's UUID (libvirt refuses it otherwise).
                uuid = conn.nwfilterLookupByName(NWFILTER_NAME).UUIDString()
                text = xml.replace("chain='root'>", f"chain='root'>\n  <uuid>{uuid}</uuid>", 1)
            except libvirt.libvirtError:
                pass  # not defined yet
            conn.nwfilterDefineXML(text)
        except libvirt.libvirtError as exc:
            raise MigfwError(f"host {host}: nwfilter define failed: {exc}") from exc
        finally:
            conn.close()


def set_filterref(bed: Testbed, host: str, enabled: bool) -> None:
    """Add or remove `<filterref>` on the running VM's interface (live device update)."""
    import xml.etree.ElementTree as ET

    import libvirt

    from migfw.testbed.provision import connect

    conn = connect(bed, host)
    try:
        dom = conn.lookupByName(bed.vm_name)
        root = ET.fromstring(dom.XMLDesc(0))
        iface = root.find("./devices/interface")
        if iface is None:
            raise MigfwError(f"VM {bed.vm_name}: no interface in its domain XML")
        ref = iface.find("filterref")
        if (ref is not None) == enabled and (not enabled or ref.get("filter") == NWFILTER_NAME):
            return
        if ref is not None:
            iface.remove(ref)
        if enabled:
            ET.SubElement(iface, "filterref", {"filter": NWFILTER_NAME})
        try:
            dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)  # fmt: skip
        except libvirt.libvirtError as exc:
            raise MigfwError(f"host {host}: cannot update the VM's filterref: {exc}") from exc
    finally:
        conn.close()


def where_rules(bed: Testbed, guest_has_rules: bool) -> dict[str, bool]:
    """Where a firewall is in force now: guest, host A, host B (nft tables or nwfilter)."""
    port = str(bed.extra.get("tap", "mfwtap0"))
    out: dict[str, bool] = {}
    for host in ("A", "B"):
        where = host_commands(bed, host)
        try:
            out[host] = host_rules_present(where) or nwfilter_chains_present(where, port)
        finally:
            close_host(where)
    out["guest"] = guest_has_rules
    return out


def hosts_reachable(bed: Testbed) -> bool:
    """Can the hosts' firewalls be set up and looked at? Local: always; external: when both
    libvirt URIs are SSH logins (qemu+ssh/libssh)."""
    if bed.provider == "local":
        return True
    from migfw.testbed.remote import libvirt_ssh_target

    return all(libvirt_ssh_target(h.uri) is not None for h in bed.hosts.values())


def require_where(placement: str, want: dict[str, bool], current: str,
                  seen: dict[str, bool]) -> None:  # fmt: skip
    """Refuse in one line when rules are not where `placement` wants them (`want`:
    Placement.expected_where) with the VM on host `current`."""
    wrong = [k for k in ("A", "B", "guest") if seen.get(k) != want[k]]
    if wrong:
        parts = [f"{k}: {'present' if seen.get(k) else 'absent'}" for k in wrong]
        raise MigfwError(
            f"placement {placement} (VM on host {current}): rules in the wrong place: "
            + ", ".join(parts)
        )


def write_text(path: Path, text: str) -> None:
    from migfw.io import atomic_write

    with atomic_write(path) as handle:
        handle.write(text)
