"""OVN placement pieces (issue 18): the ACL rendering, the Port_Binding monitor's parsing,
the domain XML's OVS port, and the real OVN daemons in a testbed's namespaces."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.testbed import ovn, ovn_acl, ovn_observe
from migfw.testbed.provision import render_domain_xml, virtualport_xml
from migfw.testbed.ruleset import ruleset_from_data

ADDRESSES = {"target": "10.9.0.10", "remote": "10.9.0.2", "net": "10.9.0.0/24",
             "other": "10.9.0.99"}  # fmt: skip


def _rs(rules: list[dict]) -> object:
    return ruleset_from_data({"version": 1, "name": "t", "rules": rules})


def test_acls_keep_pf_order_and_directions() -> None:
    # pf: last match wins unless quick. Worked by hand: the quick SSH pass first (2000), then
    # the non-quick rules in reverse file order: S2 block http from remote (1999), S1 pass
    # 21,80 from net (1998), D1 block in (1997). `any` gives both directions at one priority.
    rs = _rs([
        {"id": "D1", "action": "block", "direction": "in"},
        {"id": "S1", "action": "pass", "direction": "in", "proto": "tcp", "src": "net",
         "dst": "target", "dport": [21, 80]},
        {"id": "S2", "action": "block", "direction": "in", "proto": "tcp", "src": "remote",
         "dst": "target", "dport": 80},
        {"id": "Q", "action": "pass", "direction": "any", "quick": True, "proto": "udp",
         "dport": "5000:5010"},
        {"id": "L", "action": "pass", "direction": "any", "quick": True, "iface": "lo"},
    ])  # fmt: skip
    acls = ovn_acl.render_acls(rs, ADDRESSES)
    got = [(a.name, a.direction, a.priority, a.action) for a in acls]
    assert got == [
        ("Q", "to-lport", 2000, "allow-related"),
        ("Q", "from-lport", 2000, "allow-related"),
        ("S2", "to-lport", 1999, "drop"),
        ("S1", "to-lport", 1998, "allow-related"),
        ("D1", "to-lport", 1997, "drop"),
        ("pf-default", "to-lport", 2, "allow-related"),
        ("default-drop", "to-lport", 1, "drop"),
        ("pf-default", "from-lport", 2, "allow-related"),
        ("default-drop", "from-lport", 1, "drop"),
    ]
    by = {(a.name, a.direction): a.match for a in acls}
    assert by[("S1", "to-lport")] == (
        "outport == @pg_migfw && ip4 && ip4.src == 10.9.0.0/24 && ip4.dst == 10.9.0.10"
        " && tcp && tcp.dst == {21, 80}"
    )
    assert by[("Q", "from-lport")] == (
        "inport == @pg_migfw && ip4 && udp && (udp.dst >= 5000 && udp.dst <= 5010)"
    )
    assert by[("D1", "to-lport")] == "outport == @pg_migfw && ip4"  # ARP is never filtered


def test_acl_icmp_mixed_ports_and_script() -> None:
    rs = _rs([
        {"id": "P1", "action": "pass", "direction": "in", "proto": "icmp", "dst": "target",
         "icmp_type": "echo-request"},
        {"id": "M", "action": "block", "direction": "in", "proto": "tcp",
         "dport": [22, "100:200"], "src": ["remote", "other"]},
    ])  # fmt: skip
    acls = ovn_acl.render_acls(rs, ADDRESSES)
    assert acls[0].match == (
        "outport == @pg_migfw && ip4 && ip4.src == {10.9.0.2, 10.9.0.99} && tcp"
        " && (tcp.dst == 22 || (tcp.dst >= 100 && tcp.dst <= 200))"
    )
    assert (
        acls[1].match
        == "outport == @pg_migfw && ip4 && ip4.dst == 10.9.0.10 && icmp4 && icmp4.type == 8"
    )
    script = ovn_acl.nbctl_script(acls, "port-uuid")
    # One transaction: the old group (and with it its ACLs) goes, the new one is made.
    assert script[:7] == ["--if-exists", "destroy", "Port_Group", "pg_migfw", "--", "pg-add",
                          "pg_migfw"]  # fmt: skip
    assert script.count("create") == len(acls) and "log=false" in script
    assert f"match={json.dumps(acls[0].match)}" in script


BINDING_LINE = (
    '{"data":[["d7b0","initial","c927",["uuid","498f"],["set",[]],["uuid","498f"],'
    '["map",[["requested-chassis","m-chassis-A"]]],true],["493e","initial","migfw-ln",'
    '["set",[]],["set",[]],["set",[]],["map",[["network_name","physnet"]]],false]],'
    '"headings":["row","action","logical_port","chassis","additional_chassis",'
    '"requested_chassis","options","up"]}'
)  # a real `ovsdb-client monitor --format=json` line, uuids shortened


def test_binding_rows_and_transitions() -> None:
    rows = ovn_observe.binding_rows(BINDING_LINE, "c927")
    assert len(rows) == 1
    names = {"498f": "m-chassis-A", "77aa": "m-chassis-B"}
    st = ovn_observe.binding_state(rows[0], names)
    assert st == {"chassis": "m-chassis-A", "additional_chassis": [],
                  "requested_chassis": "m-chassis-A", "activation_strategy": None,
                  "additional_chassis_activated": None, "up": True}  # fmt: skip
    update = ('{"data":[["d7b0","old",null,null,["set",[]],null,["map",[]],null],'
              '["d7b0","new","c927",["uuid","498f"],["uuid","77aa"],["uuid","498f"],'
              '["map",[["activation-strategy","rarp"],["additional-chassis-activated",'
              '"m-chassis-B"],["requested-chassis","m-chassis-A,m-chassis-B"]]],true]],'
              '"headings":["row","action","logical_port","chassis","additional_chassis",'
              '"requested_chassis","options","up"]}')  # fmt: skip
    st2 = ovn_observe.binding_state(ovn_observe.binding_rows(update, "c927")[0], names)
    assert st2["additional_chassis"] == ["m-chassis-B"]
    assert st2["additional_chassis_activated"] == "m-chassis-B"
    trans = ovn_observe.transitions([(1.0, st), (1.5, st), (2.0, st2)])
    assert [t["t"] for t in trans] == [1.0, 2.0]  # the repeated state is no transition


def test_domain_xml_ovs_port() -> None:
    assert virtualport_xml(None) == ""
    with pytest.raises(MigfwError, match="not a UUID"):
        virtualport_xml("migfw-vm")
    params = {"name": "v", "kernel": "/k", "initrd": "/i", "cmdline": "c", "bridge": "br-int",
              "tap": "t0", "mac": "52:54:00:00:00:01", "serial_log": "/s", "memory_mib": 128,
              "vcpus": 1, "virtualport_id": "6d696766-772d-4f56-9e00-000000000018"}  # fmt: skip
    xml = render_domain_xml(params)
    assert "<virtualport type='openvswitch'><parameters interfaceid='6d696766-" in xml
    assert "csum='off'" in xml  # the userspace datapath forwards partial checksums as they are
    assert "virtualport" not in render_domain_xml({**params, "virtualport_id": None})


# ------------------------------------------------------------------ real daemons

NEEDS = ("ovsdb-server", "ovs-vswitchd", "ovn-controller", "ovn-northd", "ethtool")


def _skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces)"
    missing = [b for b in NEEDS if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    return f"{', '.join(missing)} not installed" if missing else None


@pytest.fixture
def bare_testbed(tmp_path: Path):
    """A local testbed's namespaces and links (no libvirtd, no VM) under its own prefix."""
    reason = _skip()
    if reason:
        pytest.skip(reason)
    from testbedcfg import local_config

    from migfw.testbed.local import LocalTestbed

    cfg = local_config("mfo", tmp_path / "state", "10.236.0.0/24", "10.236.1.0/30")
    bed = LocalTestbed(cfg)
    bed.down(quiet=True)
    state = {"provider": "local", "prefix": bed.prefix, "phase": "starting",
             "namespaces": [], "pids": {}}  # fmt: skip
    bed._write_state(state)
    try:
        bed._make_network(state)
        yield bed, state
    finally:
        bed.down(quiet=True)


def test_ovn_daemons_start_tunnel_and_go(bare_testbed) -> None:
    from migfw.testbed.local import list_netns, pid_alive, pids_in_netns

    bed, state = bare_testbed
    site = ovn.start_ovn(bed, state, bed._write_state)
    daemons = ("ovsdb-server", "ovs-vswitchd", "ovn-controller")
    keys = {"ovsdb-server_central", "ovn-northd_central"} | {
        f"{d}_{h}" for h in "AB" for d in daemons
    }
    assert keys <= set(state["pids"])
    assert ovn.ovn_running(site, state)
    # The testbed's status knows each recorded daemon by the name before "_" (its binary).
    assert not bed.status().get("daemons_dead")
    names = set(ovn_observe.chassis_names(site).values())
    assert names == {site.chassis("A"), site.chassis("B")}
    # Each chassis made a Geneve tunnel to the other's encap IP on the underlay bridge.
    for host, other in (("A", "B"), ("B", "A")):
        ifaces = ovn.vsctl(site, host, "--format=json", "--columns=type,options", "list",
                           "Interface")  # fmt: skip
        assert f'"remote_ip","{site.encap_ip[other]}"' in ifaces.replace(" ", "")
    # Idempotent: a second start starts nothing new.
    before = dict(state["pids"])
    ovn.start_ovn(bed, state, bed._write_state)
    assert state["pids"] == before
    recorded = list(state["pids"].values())
    bed.down(quiet=True)
    assert not any(pid_alive(p) for p in recorded)
    assert not list_netns(bed.prefix) and not pids_in_netns([site.control_ns])
    assert not bed.run_root.exists()


def test_ovn_failed_start_is_one_line(bare_testbed, monkeypatch) -> None:
    bed, state = bare_testbed
    real = ovn._daemon_args

    def broken(name: str, rundir: Path, unixctl: bool = True) -> list[str]:
        # A pid file it cannot create: the real daemon gives up at start.
        args = real(name, rundir, unixctl)
        if name == "ovn-northd":
            args[0] = "--pidfile=/nonexistent-migfw/ovn-northd.pid"
        return args

    monkeypatch.setattr(ovn, "_daemon_args", broken)
    started = time.monotonic()
    with pytest.raises(MigfwError) as err:
        ovn.start_ovn(bed, state, bed._write_state)
    message = str(err.value)
    assert "\n" not in message and message.startswith("ovn-northd in mfo-ovn exited at start")
    assert "nonexistent-migfw" in message and "ovn-northd.log" in message
    assert time.monotonic() - started < 15


def test_attack_window_rows_per_ovn_binding_with_outages() -> None:
    import pandas as pd

    from migfw.measure.attackstats import attack_window_table
    from migfw.paper.compare import _placement_label

    rows = []
    for placement, binding, outages in (
        ("vm", None, [700.0, 710.0, 690.0]),
        ("ovn", "multichassis", [800.0, 810.0, 790.0]),
        ("ovn", "rebind", [3000.0, 3200.0, 3100.0]),
    ):
        for o in outages:
            rows.append({"status": "ok", "experiment": "placement", "placement": placement,
                         "ovn_binding": binding, "blocked_sent": 100, "blocked_answered": 0,
                         "breach_window_ms": 0.0, "breaches_total_ms": 0.0,
                         "established_survived": False, "stateful_flow_survived": True,
                         "probe_outage_ms": o, "resume_to_first_reply_ms": o - 700,
                         "allowed_sent": 10, "allowed_answered": 5})  # fmt: skip
    table = attack_window_table(pd.DataFrame(rows), resamples=999, seed=1)
    assert list(zip(table["placement"], table["ovn_binding"], strict=True)) == [
        ("vm", ""), ("ovn", "multichassis"), ("ovn", "rebind")]  # fmt: skip
    rebind = table.iloc[2]
    # Hand-worked: mean 3100, SD 100, t CI 3100 ± t(0.975, 2)·100/√3 = 3100 ± 248.414
    assert rebind["probe_outage_ms_mean"] == pytest.approx(3100.0)
    assert rebind["probe_outage_ms_ci_t_low"] == pytest.approx(3100 - 248.414, abs=1e-2)
    assert rebind["resume_to_first_reply_ms_mean"] == pytest.approx(2400.0)
    assert rebind["allowed_answered_pct"] == pytest.approx(50.0)
    assert rebind["diff_vs_vm_ms"] == 0.0  # no breach on either side
    assert _placement_label(rebind) == "ovn (rebind)"


def test_timeline_draws_the_geneve_underlay_and_the_binding(tmp_path: Path) -> None:
    import pcapcraft as pc

    from migfw.measure.figures import timeline_figure
    from migfw.trials.crafted import CraftedTrial, craft_trial

    spec = CraftedTrial("placement/ovn-r01", 0.01, seed=3)
    craft_trial(spec, tmp_path)
    meta = json.loads((tmp_path / "trial.json").read_text())
    start = meta["migration"]["start"]
    # 37 echo requests to the VM and 5 to another host, each inside Geneve between the hosts.
    packets = []
    for i, dst in enumerate([spec.target] * 37 + ["10.231.0.99"] * 5):
        inner = pc.ether(pc.icmp4(spec.prober, dst, 8, spec.ident, i))
        packets.append(
            (int((start + 0.01 * i) * 1e9), pc.frame(1, pc.underlay(17, pc.geneve(inner))))
        )
    pc.write_pcap(tmp_path / "underlay.pcap", packets)
    names = {"A": "c-A", "B": "c-B"}
    base = {"additional_chassis": [], "requested_chassis": "c-A", "activation_strategy": None,
            "additional_chassis_activated": None, "up": True}  # fmt: skip
    meta["ovn"] = {"binding": "multichassis", "chassis": names, "port_binding": [
        {**base, "t": start - 1, "chassis": "c-A"},
        {**base, "t": start + 0.1, "chassis": "c-A", "additional_chassis": ["c-B"]},
        {**base, "t": start + 0.2, "chassis": "c-A", "additional_chassis": ["c-B"],
         "additional_chassis_activated": "c-B"},
        {**base, "t": start + 0.5, "chassis": "c-B"},
    ]}  # fmt: skip
    (tmp_path / "trial.json").write_text(json.dumps(meta))
    timeline_figure(tmp_path, tmp_path / "t.png")
    svg = (tmp_path / "t.svg").read_text()
    assert "37 echoes tunnelled between the hosts" in svg  # only those to the VM
    assert "activated" in svg and "bound B" in svg and "extra B" in svg


def test_a_killed_ovn_daemon_is_repaired(bare_testbed) -> None:
    from migfw.testbed.local import kill_pid, pid_alive

    bed, state = bare_testbed
    site = ovn.start_ovn(bed, state, bed._write_state)
    assert ovn.repair_ovn(bed, state, bed._write_state) == []  # whole: nothing to do
    victim = state["pids"]["ovn-controller_B"]
    others = [p for k, p in state["pids"].items() if k != "ovn-controller_B"]
    kill_pid(victim)  # a fault, injected by the recorded PID
    assert not ovn.ovn_running(site, state)
    done = ovn.repair_ovn(bed, state, bed._write_state)
    assert done == ["restarted OVN (dead: ovn-controller_B)"]
    assert ovn.ovn_running(site, state) and not any(pid_alive(p) for p in others)
    assert set(ovn_observe.chassis_names(site).values()) == {site.chassis("A"), site.chassis("B")}
    assert ovn.zero_snat(site, "B") == "false"


OVS_DUMP = "\n".join(
    [  # real lines of a trial's ovs-src-before.txt / ovs-dst-end.txt
        "tcp,orig=(src=10.218.0.2,dst=10.218.0.10,sport=58306,dport=7),reply=(src=10.218.0.10,"
        "dst=10.218.0.2,sport=7,dport=58306),zone=1,mark=1,protoinfo=(state=ESTABLISHED)",
        "icmp,orig=(src=10.218.0.2,dst=10.218.0.10,id=33472,type=8,code=0),reply=(src=10.218.0.10,"
        "dst=10.218.0.2,id=33472,type=0,code=0),zone=1",
        "tcp,orig=(src=10.218.0.10,dst=10.218.0.2,sport=7,dport=47252),reply=(src=10.218.0.2,"
        "dst=10.218.0.10,sport=47252,dport=7),zone=1,protoinfo=(state=TIME_WAIT)",
    ]
)


def test_ovs_conntrack_dump_reads_as_a_conntrack_listing() -> None:
    from migfw.measure.flowstate import flow_entry, parse_conntrack

    listing = ovn_observe.ovs_to_listing(OVS_DUMP)
    lines = listing.splitlines()
    assert lines[1] == (
        "tcp 6 0 ESTABLISHED src=10.218.0.2 dst=10.218.0.10 sport=58306 dport=7 "
        "src=10.218.0.10 dst=10.218.0.2 sport=7 dport=58306 mark=1 zone=1"
    )
    entries = parse_conntrack(listing)
    assert [(e["proto"], e["state"]) for e in entries] == [
        ("tcp", "ESTABLISHED"), ("icmp", None), ("tcp", "TIME_WAIT")]  # fmt: skip
    assert flow_entry(entries, "10.218.0.10", 7, 58306) == "ESTABLISHED:prober"
    assert flow_entry(entries, "10.218.0.10", 7, 47252) == "TIME_WAIT:guest"
    assert ovn_observe.ovs_to_listing("garbage\n").splitlines()[1:] == []


def _trace(db: str, src: tuple[str, str], port: int, ct: str) -> bool:
    """ovn-trace: is a TCP packet from `src` (lsp, ip) to the VM's `port`, conntrack saying
    `ct` at every ct_next, delivered to the VM's port?"""
    import subprocess

    inport, ip = src
    mac = {"pr": "52:54:00:00:00:02", "at": "52:54:00:00:00:03"}[inport]
    flow = (f'inport == "{inport}" && eth.src == {mac} && eth.dst == 52:54:00:00:00:0a && '
            f"ip4.src == {ip} && ip4.dst == 10.231.0.10 && ip.ttl == 64 && tcp && "
            f"tcp.src == 40000 && tcp.dst == {port}")  # fmt: skip
    out = subprocess.run(["ovn-trace", f"--db={db}", "--minimal", *[f"--ct={ct}"] * 3, "sw",
                          flow], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return 'output("vm")' in out


def test_state_only_flows_keep_state_as_an_established_only_acl(tmp_path: Path) -> None:
    """Issue 22 under ovn: the state-only flows connect under a temporary allow, which is
    then swapped for an ACL admitting only conntrack-established packets of that flow. Truth
    worked out by hand from config/ruleset.yaml (no rule passes tcp/7, tcp/8 or tcp/23 from
    anyone; S1/F1 pass tcp/21 from the prober; D1 blocks the rest) and OVN's ACL semantics
    (original-direction packets of an established connection meet the ACLs again), checked
    by ovn-trace on the logical flows a real ovn-northd compiled from the real ACLs."""
    import subprocess

    from migfw.testbed.ruleset import default_addresses, load_ruleset

    source = "10.231.0.2"
    keep = ovn_acl.keep_state(source, 7)
    assert keep.match == ("outport == @pg_migfw && ip4 && ip4.src == 10.231.0.2 && tcp && "
                          "tcp.dst == 7 && ct.est")  # fmt: skip
    assert (keep.direction, keep.priority, keep.action) == ("to-lport", 2001, "allow-related")
    assert ovn_acl.temporary_allow(source, 7).match + " && ct.est" == keep.match
    swap = ovn_acl.swap_script(["u1"], [keep])
    assert swap[0] == "--id=@keep0" and swap[-6:] == ["--", "remove", "Port_Group",
                                                      "pg_migfw", "acls", "u1"]  # fmt: skip
    # The refusal check's probe: a listening and a closed loopback port both answer.
    import socket

    from migfw.testbed.ovn_placement import syn_answers

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            closed = spare.getsockname()[1]  # bound, not listening: RST
            got = syn_answers(None, "127.0.0.1", "127.0.0.1", [port, closed], 2.0)
    assert got == {str(port): "answer", str(closed): "answer"}
    missing = [b for b in ("ovsdb-server", "ovsdb-tool", "ovn-northd", "ovn-nbctl", "ovn-trace")
               if shutil.which(b) is None]  # fmt: skip
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    db = f"unix:{tmp_path}/db.sock"
    for name, schema in (("nb.db", ovn.NB_SCHEMA), ("sb.db", ovn.SB_SCHEMA)):
        subprocess.run(["ovsdb-tool", "create", str(tmp_path / name), str(schema)], check=True)

    def common(name: str) -> list[str]:
        return [
            "--no-chdir",
            f"--unixctl={tmp_path}/{name}.ctl",
            f"--log-file={tmp_path}/{name}.log",
        ]

    server = subprocess.Popen(["ovsdb-server", *common("db"),
                               f"--remote=p{db}", str(tmp_path / "nb.db"),
                               str(tmp_path / "sb.db")])  # fmt: skip
    northd = None
    try:
        for _ in range(100):
            if (tmp_path / "db.sock").exists():
                break
            time.sleep(0.05)
        northd = subprocess.Popen(["ovn-northd", *common("northd"),
                                   f"--ovnnb-db={db}", f"--ovnsb-db={db}"])  # fmt: skip

        def nbctl(*args: str) -> None:
            subprocess.run(["ovn-nbctl", f"--db={db}", "--timeout=20", *args], check=True,
                           capture_output=True)  # fmt: skip

        nbctl("ls-add", "sw")
        for lsp, mac, ip in (("vm", "52:54:00:00:00:0a", "10.231.0.10"),
                             ("pr", "52:54:00:00:00:02", source),
                             ("at", "52:54:00:00:00:03", "10.231.0.3")):  # fmt: skip
            nbctl("lsp-add", "sw", lsp, "--", "lsp-set-addresses", lsp, f"{mac} {ip}")
        rs = load_ruleset("config/ruleset.yaml")
        acls = ovn_acl.render_acls(rs, default_addresses("10.231.0.10", source))
        prober, attacker = ("pr", source), ("at", "10.231.0.3")
        # (src, port, conntrack state) -> delivered, per stage of the lead-in
        cases = [(prober, 7, "new"), (prober, 7, "est"), (prober, 8, "est"),
                 (prober, 9, "est"), (attacker, 7, "est"), (prober, 21, "new"),
                 (prober, 23, "new"), (attacker, 23, "est")]  # fmt: skip
        truth = {
            # the ruleset alone: nothing reaches 7/8 - not even established packets (the
            # grid's 0/20: removing the allow cut the flows); FTP passes
            "rules": [False, False, False, False, False, True, False, False],
            # + the temporary allow for 7 and 8 from the prober: new and established pass
            "temporary": [True, True, True, False, False, True, False, False],
            # the allow swapped for keep_state: established flows of 7/8 from the prober
            # only; a new connection to 7 is refused; the attacker's tcp/7 and tcp/23 stay
            # blocked even as `est`
            "keep_state": [False, True, True, False, False, True, False, False],
        }
        for stage, expected in truth.items():
            extra = {
                "rules": [],
                "keep_state": [ovn_acl.keep_state(source, p) for p in (7, 8)],
                "temporary": [ovn_acl.temporary_allow(source, p) for p in (7, 8)],
            }[stage]
            nbctl(*ovn_acl.nbctl_script(acls, "vm"))
            for i, acl in enumerate(extra):
                nbctl(*acl.nbctl(ovn_acl.PORT_GROUP, f"x{i}")[1:])
            nbctl("--wait=sb", "sync")
            got = [_trace(db, src, port, ct) for src, port, ct in cases]
            assert got == expected, (stage, list(zip(cases, got, strict=True)))
    finally:
        for proc in (northd, server):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
