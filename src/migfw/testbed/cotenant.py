"""Co-tenant attackers (issue 22): a namespace on each host's bridge, beside the VM's port.

    <prefix>-coA: eth0 <base+5> ── co0 in <prefix>-hostA's br0 (the VM's tap is there too)
    <prefix>-coB: eth0 <base+6> ── co0 in <prefix>-hostB's br0

A trial names them by the migration's direction: the one on the destination host's bridge is
`dst_cotenant` (another tenant's traffic reaching a VM the moment it lands, Neutron bug
1734320), the one on the source's is `src_cotenant` (the host the VM leaves). Each sends the
switch attacker's SYN probes (migfw.testbed.attacker) from its own source-port base
(migfw.trials.attack_contract.probe_sport) and captures on its own veth.

They are made on demand (`ensure`), so a testbed brought up before them gains them, and are
recorded in state.json's namespaces, so `migfw testbed down`/`cleanup` removes them. Like the
switch attacker, each drops its kernel's RSTs to the blocked port (those would reach the VM
as probes it never sent) and knows the VM's MAC (a permanent neighbour entry).
"""

from __future__ import annotations

from typing import Any

from migfw.testbed.base import read_state

OFFSET = {"A": 5, "B": 6}  # address = subnet base + offset
IFACE = "eth0"
PORT = "co0"  # the co-tenant's port on the host's bridge


def add_namespace_on_bridge(
    local: Any, ns: str, iface: str, port: str, bridge_ns: str, address: str
) -> None:
    """A new namespace `ns` (recorded in state.json for down/cleanup, IPv6 off) whose `iface`
    is a veth into the testbed bridge in `bridge_ns` (the peer named `port`), at `address`."""
    from migfw.testbed.local import BRIDGE, sh

    sh(["ip", "netns", "add", ns])
    state = read_state(local.state_dir) or {}
    if state:
        state.setdefault("namespaces", []).append(ns)
        local._write_state(state)
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    for key in ("all", "default"):
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])
    sh(["ip", "link", "add", iface, "netns", ns, "type", "veth", "peer", "name", port,
        "netns", bridge_ns])  # fmt: skip
    sh(["ip", "-n", bridge_ns, "link", "set", port, "master", BRIDGE, "up"])
    sh(["ip", "-n", ns, "addr", "add", f"{address}/{local.plen}", "dev", iface])
    sh(["ip", "-n", ns, "link", "set", iface, "up"])


def names(local: Any) -> dict[str, str]:
    return {h: f"{local.prefix}-co{h}" for h in ("A", "B")}


def ensure(local: Any) -> dict[str, dict[str, Any]]:
    """Make the two co-tenant namespaces if missing; {host: {netns, iface, address}}."""
    from migfw.testbed.base import cfg_get
    from migfw.testbed.local import (
        ATTACKER_NFT,
        VM_MAC,
        _nft,
        netns_exists,
        sh,
    )

    out = {}
    blocked = int(cfg_get(local.cfg, "trials.enforcement.blocked_port"))
    for host, ns in names(local).items():
        address = str(local.subnet.network_address + OFFSET[host])
        out[host] = {"netns": ns, "iface": IFACE, "address": address}
        if netns_exists(ns):
            continue
        add_namespace_on_bridge(local, ns, IFACE, PORT, local.ns[host], address)
        _nft(ns, ATTACKER_NFT.format(vm=local.vm_address, blocked=blocked))
        sh(["ip", "-n", ns, "neigh", "replace", local.vm_address, "lladdr", VM_MAC,
            "dev", IFACE, "nud", "permanent"])  # fmt: skip
    return out


def sides_for(local: Any, source: str, destination: str) -> dict[str, dict[str, Any]]:
    """{dst_cotenant, src_cotenant: {netns, iface, address, host}} for one migration."""
    made = ensure(local)
    return {"dst_cotenant": {**made[destination], "host": destination},
            "src_cotenant": {**made[source], "host": source}}  # fmt: skip
