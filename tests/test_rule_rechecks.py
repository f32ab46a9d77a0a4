"""The packet checks ask a lost answer again, never a breach (migfw.testbed.deploy).

The probes are replaced by the ruleset's own verdicts (pf evaluator) plus one injected fault
each: this tests the re-check logic above the real probes, which tests/test_deploy.py sends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import migfw.testbed.deploy as deploy
from migfw.testbed.ruleset import Packet, decide, default_addresses, load_ruleset

REPO = Path(__file__).resolve().parents[1]
ADDR = default_addresses("10.231.9.1", "10.231.9.2", "10.231.9.0/24")


REMOTE = ADDR["remote"]


def _probes(monkeypatch, rs, fault) -> list[tuple[str, str, int]]:
    """Probes that answer as the ruleset says, except where `fault(proto, src, port, n)` (n =
    how often this probe was sent before) returns another observation. Returns the sends."""
    sent: list[tuple[str, str, int]] = []

    def probe(proto: str):
        def send(src: str, dst: str, port: int | None = None, timeout_s: float = 0.5) -> str:
            port = port or 0
            n = sent.count((proto, src, port))
            sent.append((proto, src, port))
            pkt = Packet("in", proto, src, dst, 40000, port) if proto != "icmp" else Packet(
                "in", "icmp", src, dst, icmp_type="echo-request")  # fmt: skip
            truth = "answer" if decide(rs, pkt, ADDR) == "pass" else "silence"
            return fault(proto, src, port, n) or truth

        return send

    monkeypatch.setattr(deploy, "probe_tcp", probe("tcp"))
    monkeypatch.setattr(deploy, "probe_udp", probe("udp"))
    monkeypatch.setattr(deploy, "probe_icmp_echo", lambda s, d, t=0.5: probe("icmp")(s, d))
    monkeypatch.setattr(deploy, "probe_ftp", lambda *a: ("answer", "1800 bytes"))
    monkeypatch.setattr(deploy, "RECHECK_PAUSE_S", 0.0)
    return sent


def _baseline(monkeypatch, rs) -> list[tuple[str, str, int]]:
    """The sends of a run without faults (the plan probes some packets for several rules)."""
    sent = _probes(monkeypatch, rs, lambda *a: None)
    deploy.verify_rules(rs, ADDR, None, None)
    return list(sent)


def _check(checks: list[dict], proto: str, port: int) -> dict:
    return next(c for c in checks if c["probe"].startswith(proto) and f"{REMOTE} ->" in c[
        "probe"] and c["probe"].endswith(f":{port}"))  # fmt: skip


def test_a_lost_answer_is_asked_again_and_passes(monkeypatch) -> None:
    rs = load_ruleset(REPO / "config" / "ruleset.yaml")
    base = _baseline(monkeypatch, rs)
    # S5 passes udp/5000 from the remote: its first datagram goes unanswered.
    sent = _probes(monkeypatch, rs, lambda proto, src, port, n: "silence" if (
        proto, src, port, n) == ("udp", REMOTE, 5000, 0) else None)  # fmt: skip
    checks = deploy.verify_rules(rs, ADDR, None, None)
    deploy.require_rules_ok(checks)
    assert _check(checks, "udp", 5000)["observed"] == "answer"
    key = ("udp", REMOTE, 5000)
    assert sent.count(key) == base.count(key) + 1  # asked once more, alone
    assert len(sent) == len(base) + 1  # nothing else asked again


def test_an_answer_that_never_comes_fails_after_the_rechecks(monkeypatch) -> None:
    rs = load_ruleset(REPO / "config" / "ruleset.yaml")
    base = _baseline(monkeypatch, rs)
    sent = _probes(monkeypatch, rs, lambda proto, src, port, n: "silence" if (
        proto, src, port) == ("udp", REMOTE, 5000) else None)  # fmt: skip
    checks = deploy.verify_rules(rs, ADDR, None, None)
    with pytest.raises(deploy.RulesetMisbehaves, match="5000: expected answer"):
        deploy.require_rules_ok(checks)
    key = ("udp", REMOTE, 5000)
    assert sent.count(key) == base.count(key) * (1 + deploy.RECHECKS)


def test_a_breach_is_never_asked_again(monkeypatch) -> None:
    rs = load_ruleset(REPO / "config" / "ruleset.yaml")
    base = _baseline(monkeypatch, rs)
    # S4 blocks telnet (tcp/23): an answer there is a breach, kept as observed.
    sent = _probes(monkeypatch, rs, lambda proto, src, port, n: "answer" if (
        proto, src, port) == ("tcp", REMOTE, 23) else None)  # fmt: skip
    checks = deploy.verify_rules(rs, ADDR, None, None)
    with pytest.raises(deploy.RulesetMisbehaves, match=":23: expected silence"):
        deploy.require_rules_ok(checks)
    assert sent == base
