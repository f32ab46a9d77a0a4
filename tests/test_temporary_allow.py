"""The state-only flows' temporary allow at the host layers (migfw.testbed.temporary), for
real in a scratch network namespace: every port goes in with one `nft -f` / one
`iptables-restore` and comes out again the same way, and trial.json's rule text stays what
one call per port wrote (`; `-joined)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from migfw.testbed.ruleset_render import HOST_TABLE, MARK_TO_VM
from migfw.testbed.temporary import COMMENT, HostNftAllow, NwfilterAllow

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ip netns)")
SOURCE = "10.223.9.2"


def _in(ns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, text=True,
                          capture_output=True, check=True).stdout  # fmt: skip


@pytest.fixture
def scratch_ns() -> Iterator[str]:
    name = f"mfwt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_host_nft_allow_adds_and_removes_every_port_at_once(scratch_ns: str) -> None:
    table = (f"table inet {HOST_TABLE} {{\n chain forward {{\n"
             "  type filter hook forward priority 0; policy drop;\n }\n}\n")  # fmt: skip
    _in(scratch_ns, "nft", "-f", "-", stdin=table)
    layer = HostNftAllow(scratch_ns, "A")
    text = layer.add(SOURCE, (7, 8))
    assert text == "; ".join(
        f"inet {HOST_TABLE} forward: meta mark {MARK_TO_VM:#x} ip saddr {SOURCE} "
        f"tcp dport {p} accept" for p in (7, 8)
    )  # fmt: skip
    assert len(layer.handles) == 2
    listing = _in(scratch_ns, "nft", "-a", "list", "chain", "inet", HOST_TABLE, "forward")
    for port, handle in zip((7, 8), layer.handles, strict=True):
        assert f'tcp dport {port} accept comment "{COMMENT}" # handle {handle}' in listing
    layer.remove()
    assert layer.handles == []
    assert COMMENT not in _in(scratch_ns, "nft", "list", "chain", "inet", HOST_TABLE, "forward")


@pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="no iptables-restore")
def test_nwfilter_allow_adds_and_removes_every_port_at_once(scratch_ns: str) -> None:
    for chain in ("FO-vnet9", "FI-vnet9"):
        _in(scratch_ns, "iptables", "-w", "-N", chain)
        _in(scratch_ns, "iptables", "-w", "-A", chain, "-j", "DROP")
    layer = NwfilterAllow(scratch_ns, "B", "vnet9")
    text = layer.add(SOURCE, (7, 8))
    assert text == "; ".join(f"nwfilter chains FO/FI-vnet9: tcp {SOURCE} <-> :{p} accept"
                             for p in (7, 8))  # fmt: skip
    rules = _in(scratch_ns, "iptables", "-w", "-S").splitlines()
    for port in (7, 8):  # on top of each chain, above its DROP
        assert any(r.startswith(f"-A FO-vnet9 -s {SOURCE}/32 -p tcp -m tcp --dport {port} ")
                   and r.endswith("-j ACCEPT") for r in rules)  # fmt: skip
        assert any(r.startswith(f"-A FI-vnet9 -d {SOURCE}/32 -p tcp -m tcp --sport {port} ")
                   and r.endswith("-j RETURN") for r in rules)  # fmt: skip
    assert [r for r in rules if r.startswith("-A FO-vnet9")][-1] == "-A FO-vnet9 -j DROP"
    layer.remove()
    assert COMMENT not in _in(scratch_ns, "iptables", "-w", "-S")
    assert layer.specs == []
