"""Connection-tracking helpers (migfw.testbed.conntrack): parsing `conntrack -L -o save`
entries, and - for real, in namespaces made here - carrying a flow's state from one stateful
firewall to another, the mechanism of placement `vmm-state`.

The real test builds two routers h1, h2 between a client and a server (addresses on lo, so a
route change moves the flow from one router to the other, as a migration moves a VM from one
host's firewall to the other's). Both routers drop everything in forward except
`ct state established,related`; h1 admits the flow's SYN through a temporary rule that is
removed before the move. Without carrying, the moved flow's packets are dropped by h2 (no
entry); after `carry(h1, h2, server)` they pass on the carried state alone.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from migfw.testbed.conntrack import (
    carry,
    delete_text,
    entries_for,
    flush_vm,
    is_control,
    load_text,
    set_host_tcp_loose,
)
from migfw.testbed.netns import in_netns

SAVE = """\
-A -t 431999 -u SEEN_REPLY,ASSURED -s 10.223.0.2 -d 10.223.0.10 -r 10.223.0.10 -q 10.223.0.2 \
-p tcp --sport 51000 --dport 7 --reply-port-src 7 --reply-port-dst 51000 --state ESTABLISHED
-A -t 29 -s 10.223.0.3 -d 10.223.0.99 -r 10.223.0.99 -q 10.223.0.3 -p udp --sport 1 --dport 2 \
--reply-port-src 2 --reply-port-dst 1
-A -t 100 -u SEEN_REPLY -s 10.223.0.10 -d 10.223.0.99 -r 10.223.0.99 -q 10.223.0.10 -p tcp \
--sport 43025 --dport 25 --reply-port-src 25 --reply-port-dst 43025 --state SYN_SENT
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
"""


def test_entries_for_keeps_only_the_address_in_either_tuple() -> None:
    got = entries_for(SAVE, "10.223.0.10")
    assert [e[e.index("--sport") + 1] for e in got] == ["51000", "43025"]
    assert all(e[0] != "-A" for e in got)
    assert entries_for(SAVE, "10.223.0.1") == []  # a prefix of .10 is not .10
    # One `conntrack -R` line per entry, as saved (worked by hand from SAVE's lines 1 and 3).
    assert load_text(got).splitlines() == [
        "-A -t 431999 -u SEEN_REPLY,ASSURED -s 10.223.0.2 -d 10.223.0.10 -r 10.223.0.10 "
        "-q 10.223.0.2 -p tcp --sport 51000 --dport 7 --reply-port-src 7 --reply-port-dst "
        "51000 --state ESTABLISHED",
        "-A -t 100 -u SEEN_REPLY -s 10.223.0.10 -d 10.223.0.99 -r 10.223.0.99 -q 10.223.0.10 "
        "-p tcp --sport 43025 --dport 25 --reply-port-src 25 --reply-port-dst 43025 "
        "--state SYN_SENT",
    ]
    # Deleting: the original tuple only (no timeout, status or state to match).
    assert delete_text(got).splitlines() == [
        "-D -s 10.223.0.2 -d 10.223.0.10 -p tcp --sport 51000 --dport 7",
        "-D -s 10.223.0.10 -d 10.223.0.99 -p tcp --sport 43025 --dport 25",
    ]
    ssh_in = ["-s", "10.223.0.2", "-d", "10.223.0.10", "-p", "tcp", "--sport", "40000",
              "--dport", "22"]  # fmt: skip
    ssh_out = ["-s", "10.223.0.10", "-d", "10.223.0.2", "-p", "tcp", "--sport", "22",
               "--dport", "40000"]  # fmt: skip
    udp_22 = ["-s", "10.223.0.2", "-d", "10.223.0.10", "-p", "udp", "--sport", "1",
              "--dport", "22"]  # fmt: skip
    assert is_control(ssh_in, "10.223.0.10") and is_control(ssh_out, "10.223.0.10")
    assert not is_control(udp_22, "10.223.0.10") and not is_control(ssh_in, "10.223.0.2")
    assert not any(is_control(e, "10.223.0.10") for e in got)


def _sh(*argv: str, netns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    subprocess.run(cmd, check=True, capture_output=True, text=True)


FIREWALL = """table inet carrytest {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
  }
}
"""


@contextmanager
def two_routers() -> Iterator[dict[str, str]]:
    """cl -- h1 -- sv and cl -- h2 -- sv; yields the namespace names; always removed."""
    tag = uuid.uuid4().hex[:5]
    ns = {k: f"mct{tag}-{k}" for k in ("cl", "sv", "h1", "h2")}
    made: list[str] = []
    try:
        for name in ns.values():
            _sh("ip", "netns", "add", name)
            made.append(name)
            _sh("ip", "link", "set", "lo", "up", netns=name)
        links = [("cl", "h1", 201), ("cl", "h2", 202), ("sv", "h1", 203), ("sv", "h2", 204)]
        for end, router, net in links:
            a, b = f"{end}{router}", f"{router}{end}"
            _sh("ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns[router],
                netns=ns[end])  # fmt: skip
            _sh("ip", "addr", "add", f"10.223.{net}.2/30", "dev", a, netns=ns[end])
            _sh("ip", "addr", "add", f"10.223.{net}.1/30", "dev", b, netns=ns[router])
            _sh("ip", "link", "set", a, "up", netns=ns[end])
            _sh("ip", "link", "set", b, "up", netns=ns[router])
        _sh("ip", "addr", "add", "10.223.211.1/32", "dev", "lo", netns=ns["cl"])
        _sh("ip", "addr", "add", "10.223.210.1/32", "dev", "lo", netns=ns["sv"])
        for router, (to_cl, to_sv) in (("h1", (201, 203)), ("h2", (202, 204))):
            n = ns[router]
            _sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=n)
            _sh("ip", "route", "add", "10.223.211.1/32", "via", f"10.223.{to_cl}.2", netns=n)
            _sh("ip", "route", "add", "10.223.210.1/32", "via", f"10.223.{to_sv}.2", netns=n)
            subprocess.run(["ip", "netns", "exec", n, "nft", "-f", "-"], input=FIREWALL,
                           check=True, text=True)  # fmt: skip
        yield ns
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], check=False)


def _route_via(ns: dict[str, str], router: str) -> None:
    net_cl, net_sv = (201, 203) if router == "h1" else (202, 204)
    _sh("ip", "route", "replace", "10.223.210.1/32", "via", f"10.223.{net_cl}.1",
        "src", "10.223.211.1", netns=ns["cl"])  # fmt: skip
    _sh("ip", "route", "replace", "10.223.211.1/32", "via", f"10.223.{net_sv}.1",
        "src", "10.223.210.1", netns=ns["sv"])  # fmt: skip


def _echo(client: socket.socket, server: socket.socket, data: bytes, wait_s: float) -> bool:
    """Client sends `data`; the server echoes it; True if the client got it back in time."""
    client.sendall(data)
    server.settimeout(wait_s)
    try:
        got = server.recv(64)
    except TimeoutError:
        return False
    server.sendall(got)
    client.settimeout(wait_s)
    try:
        return client.recv(64) == data
    except TimeoutError:
        return False


@pytest.mark.parametrize("carried", [True, False])
def test_carry_moves_a_flow_between_stateful_firewalls(carried: bool) -> None:
    if subprocess.run(["which", "conntrack"], capture_output=True).returncode != 0:
        pytest.skip("conntrack-tools not installed")
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces)")
    with two_routers() as ns:
        for router in ("h1", "h2"):
            # Loose pick-up would let h2 adopt the moved flow on its own: off, so only the
            # carried entry can admit it.
            assert set_host_tcp_loose(ns[router], 0) == 0
        _route_via(ns, "h1")
        _sh("nft", "insert", "rule", "inet", "carrytest", "forward", "tcp", "dport", "7",
            "accept", netns=ns["h1"])  # fmt: skip
        with in_netns(ns["sv"]):
            listener = socket.socket()
            listener.bind(("10.223.210.1", 7))
            listener.listen(1)
        with in_netns(ns["cl"]):
            client = socket.create_connection(("10.223.210.1", 7), timeout=5)
        server, _ = listener.accept()
        try:
            assert _echo(client, server, b"open", 2.0)
            _sh("nft", "flush", "chain", "inet", "carrytest", "forward", netns=ns["h1"])
            _sh("nft", "add", "rule", "inet", "carrytest", "forward", "ct", "state",
                "established,related", "accept", netns=ns["h1"])  # fmt: skip
            assert _echo(client, server, b"state-only", 2.0)  # on h1's entry alone
            # Stale entries of the server on h2 (an earlier trial's) and its SSH session's:
            # the flush takes the first two, in one `conntrack -R`, and keeps the third.
            for sport, dport in ((1000, 7), (1001, 8), (1002, 22)):
                _sh("conntrack", "-I", "-p", "tcp", "-s", "10.223.211.1", "-d", "10.223.210.1",
                    "--sport", str(sport), "--dport", str(dport), "--state", "ESTABLISHED",
                    "-t", "300", netns=ns["h2"])  # fmt: skip
            flushed = flush_vm(ns["h2"], "10.223.210.1")
            assert (flushed["deleted"], flushed["kept"], "error" in flushed) == (2, 1, False)
            left = subprocess.run(["ip", "netns", "exec", ns["h2"], "conntrack", "-L"],
                                  capture_output=True, text=True).stdout  # fmt: skip
            assert "dport=22 " in left and "dport=7 " not in left and "dport=8 " not in left
            if carried:
                record = carry(ns["h1"], ns["h2"], "10.223.210.1")
                assert record["entries"] >= 1 and record["inserted"] == record["entries"]
                assert record["failed"] == 0 and "error" not in record
                assert record["method"] == "conntrack -R"
                again = carry(ns["h1"], ns["h2"], "10.223.210.1")  # already there: kept
                assert again["inserted"] == again["entries"] and "error" not in again
            _route_via(ns, "h2")
            moved = _echo(client, server, b"moved", 1.5)
            assert moved is carried
        finally:
            for s in (client, server, listener):
                s.close()
