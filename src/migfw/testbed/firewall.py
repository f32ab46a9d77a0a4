"""The firewall steps placements are made of (migfw.testbed.placements): the guest's
ruleset deployed and verified once per VM instance, packet checks from the prober, the host
agent and the nwfilter observer of a trial, the destination's closed port.

Placements call these from their steps; this module imports no placement (the registry's
modules import it inside their methods).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from migfw.io import write_json
from migfw.testbed.base import Testbed, cfg_get

# The guest deployment of the current VM instance (its UUID, the ruleset's SHA-256, checks).
DEPLOYED = "deployed.json"


def addresses_for(bed: Testbed) -> dict[str, str]:
    from migfw.testbed.ruleset import default_addresses

    return default_addresses(bed.vm_address, bed.prober_address or "", bed.extra.get("subnet"))


def guest_shell(bed: Testbed):  # -> GuestShell
    from migfw.testbed.deploy import GuestShell

    return GuestShell(
        bed.vm_address, bed.ssh_user, bed.ssh_key, bed.ssh_known_hosts, netns=bed.ssh_netns
    )


def vm_instance_id(bed: Testbed) -> str | None:
    """The running domain's UUID: a re-provisioned VM gets a new one (and has no ruleset)."""
    from migfw.testbed.provision import connect, find_vm

    host = find_vm(bed)
    if host is None:
        return None
    conn = connect(bed, host)
    try:
        return conn.lookupByName(bed.vm_name).UUIDString()
    finally:
        conn.close()


def ensure_ruleset(cfg: dict[str, Any], bed: Testbed, log: Any) -> dict[str, Any]:
    """Deploy and verify the ruleset once per VM instance; refuse if any rule misbehaves."""
    from migfw.testbed.deploy import deploy_ruleset, require_rules_ok
    from migfw.testbed.ruleset_render import render_nft

    ruleset_path = cfg_get(cfg, "ruleset")
    rs = _ruleset(cfg)
    addresses = addresses_for(bed)
    nft_text = render_nft(rs, addresses)
    digest = hashlib.sha256(nft_text.encode()).hexdigest()
    instance = vm_instance_id(bed)
    marker = Path(bed.state_dir) / DEPLOYED
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("vm") == instance and done.get("sha256") == digest:
            require_rules_ok(done["checks"])
            return done
    log("deploy", ruleset=str(ruleset_path), sha256=digest)
    with guest_shell(bed) as shell:
        deploy_ruleset(shell, nft_text)
        checks = verify_by_packets(cfg, bed, shell)
    log("verify", checks=len(checks), failed=sum(1 for c in checks if c["ok"] is False))
    done = {"vm": instance, "sha256": digest, "ruleset": str(ruleset_path), "nft": nft_text,
            "checks": checks, "at": time.time()}  # fmt: skip
    write_json(marker, done)
    require_rules_ok(checks)
    return done


def forget_ruleset(bed: Testbed) -> None:
    """The next `ensure_ruleset` deploys and verifies again (the guest is about to change)."""
    (Path(bed.state_dir) / DEPLOYED).unlink(missing_ok=True)


def flush_guest(bed: Testbed, log: Any) -> None:
    with guest_shell(bed) as shell:
        shell.run("nft flush ruleset")
    log("ruleset_flushed")


def _ruleset(cfg: dict[str, Any]) -> Any:
    from migfw.testbed.ruleset import load_ruleset

    return load_ruleset(cfg_get(cfg, "ruleset"))


def verify_by_packets(cfg: dict[str, Any], bed: Testbed, shell: Any = None) -> list[dict[str, Any]]:
    """Every rule checked with packets from the prober's namespace (or the prober host)."""
    from migfw.testbed.deploy import verify_rules

    addresses = addresses_for(bed)
    if bed.extra.get("prober"):  # the packets come from the remote prober host
        from migfw.testbed.remote import remote_verify

        ruleset_path = cfg_get(cfg, "ruleset")
        return remote_verify(bed, ruleset_path, addresses, ftp_path="readme.txt")
    if shell is not None:
        return verify_rules(_ruleset(cfg), addresses, bed.prober_netns, shell,
                            ftp_path="readme.txt")  # fmt: skip
    with guest_shell(bed) as fresh:
        return verify_rules(_ruleset(cfg), addresses, bed.prober_netns, fresh,
                            ftp_path="readme.txt")  # fmt: skip


def blocked_port_answers(cfg: dict[str, Any], bed: Testbed) -> list[dict[str, Any]]:
    """The control's check: the blocked port must answer (nothing filters anywhere)."""
    from migfw.testbed.deploy import probe_tcp
    from migfw.testbed.netns import in_netns

    port = int(cfg_get(cfg, "trials.enforcement.blocked_port"))
    if bed.extra.get("prober"):  # from the prober host, as every other check
        from migfw.testbed.remote import remote_probe_tcp

        observed = remote_probe_tcp(bed, port)
    else:
        with in_netns(bed.prober_netns):
            observed = probe_tcp(bed.prober_address or "", bed.vm_address, port, 1.0)
    return [{"rule": "none", "probe": f"tcp SYN {bed.prober_address} -> {bed.vm_address}:{port}",
             "expected": "answer", "observed": observed,
             "ok": observed.split(" ")[0] == "answer", "deciding_rule": None}]  # fmt: skip


def install_host_nft(cfg: dict[str, Any], bed: Testbed, host: str, folder: Path) -> None:
    """migfw's host nftables for the VM's port on `host` (host_rules.nft in `folder`)."""
    from migfw.testbed import placement as pl
    from migfw.testbed.ruleset_render import render_host_nft

    text = render_host_nft(_ruleset(cfg), addresses_for(bed), str(bed.extra.get("tap", "mfwtap0")))
    (folder / "host_rules.nft").write_text(text)
    where = pl.host_commands(bed, host)
    try:
        pl.install_host_rules(where, text)
    finally:
        pl.close_host(where)


def bind_nwfilter(cfg: dict[str, Any], bed: Testbed, host: str, folder: Path) -> None:
    """The ruleset as libvirt nwfilter on both hosts, referenced by the VM's interface."""
    from migfw.testbed import placement as pl
    from migfw.testbed.ruleset_render import render_nwfilter

    xml = render_nwfilter(_ruleset(cfg), addresses_for(bed))
    (folder / "nwfilter.xml").write_text(xml)
    pl.define_nwfilter(bed, xml)
    pl.set_filterref(bed, host, True)


def _host_hooks(bed: Testbed, agent: Any) -> tuple[dict[str, Any], Any]:
    """Each host's command session (opened now, so an install pays no SSH login), and the
    VM's port on a host: asked of the agent's own libvirt connection to it (external)."""
    from migfw.testbed import placement as pl

    where = {h: pl.host_commands(bed, h) for h in ("A", "B")}
    agent.cleanup.extend(lambda w=w: pl.close_host(w) for w in where.values())
    for w in where.values():
        if isinstance(w, pl.HostSsh):
            w.open()

    def port(host: str) -> str:
        if bed.provider == "local" or host not in agent.conns:
            return str(bed.extra.get("tap", "mfwtap0"))
        return pl.domain_port(agent.conns[host], bed.vm_name) or str(bed.extra.get("tap"))

    return where, port


def start_agent(
    cfg: dict[str, Any],
    bed: Testbed,
    current: str,
    delay_ms: float,
    trigger: str = "resume",
    carry_state: bool = False,
):  # -> EventAgent
    """The host agent of the agent placements (`carry_state`: also copy the VM's conntrack
    entries), listening to both hosts for the trial."""
    from migfw.testbed import placement as pl
    from migfw.testbed.agent import AgentLogic, EventAgent
    from migfw.testbed.ruleset_render import render_host_nft

    rs = _ruleset(cfg)
    addresses = addresses_for(bed)
    hooks: dict[str, Any] = {}
    carry = None
    if carry_state:
        from migfw.testbed.conntrack import carry as copy_state

        def carry(source: str, destination: str) -> dict[str, Any]:
            return copy_state(hooks["where"][source], hooks["where"][destination],
                              bed.vm_address)  # fmt: skip

    logic = AgentLogic(
        current, delay_ms,
        install=lambda host: pl.install_host_rules(
            hooks["where"][host], render_host_nft(rs, addresses, hooks["port"](host))),
        remove=lambda host: pl.remove_host_rules(hooks["where"][host]),
        trigger=trigger, carry=carry,
    )  # fmt: skip
    agent = EventAgent({h: bed.hosts[h].uri for h in ("A", "B")}, bed.vm_name, logic)
    hooks["where"], hooks["port"] = _host_hooks(bed, agent)
    agent.start()
    return agent


def close_destination_port(
    bed: Testbed, destination: str, factors: dict[str, Any], log: Any
) -> dict[str, Any]:
    """`port_default`: `closed` drops every frame of the VM's port on the destination until
    the agent's install (migfw.testbed.temporary.closed_port_nft); `open` leaves it alone."""
    from migfw.testbed import placement as pl
    from migfw.testbed.temporary import closed_port_nft

    level = str(factors.get("port_default") or "open")
    if level != "closed":
        return {"level": level, "closed_at": None}
    where = pl.host_commands(bed, destination)
    try:
        pl.install_host_rules(where, closed_port_nft(pl.port_on(bed, destination)))
    finally:
        pl.close_host(where)
    log("port_closed", host=destination)
    return {"level": level, "closed_at": time.time(), "host": destination}


def start_observer(bed: Testbed, current: str):  # -> EventAgent
    """For nwfilter: watch the destination's nwfilter chains at the migration's events."""
    from migfw.testbed import placement as pl
    from migfw.testbed.agent import EventAgent, FilterObserver

    hooks: dict[str, Any] = {}
    logic = FilterObserver(
        current, lambda h: pl.nwfilter_chains_present(hooks["where"][h], hooks["port"](h))
    )
    agent = EventAgent({h: bed.hosts[h].uri for h in ("A", "B")}, bed.vm_name, logic)  # type: ignore[arg-type]
    hooks["where"], hooks["port"] = _host_hooks(bed, agent)
    agent.start()
    return agent
