"""Deploy over real SSH and verify the rules with real packets - no VM needed.

A "guest" network namespace runs dropbear (key-only, host key pinned) and an anonymous FTP
server (pyftpdlib); a "remote" namespace, joined by a veth pair, plays the prober. The
ruleset is loaded into the guest namespace's own nftables over SSH.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nethelpers import canonical_listing, linked_pair

from migfw.errors import MigfwError
from migfw.testbed.deploy import (
    GuestShell,
    RulesetMisbehaves,
    deploy_ruleset,
    diff_rulesets,
    read_ruleset,
    require_rules_ok,
    verify_rules,
)
from migfw.testbed.netns import in_netns, netns_argv
from migfw.testbed.ruleset import default_addresses, load_ruleset
from migfw.testbed.ruleset_render import render_nft

REPO = Path(__file__).resolve().parents[1]
GUEST, REMOTE = "10.231.9.1", "10.231.9.2"
ADDR = default_addresses(GUEST, REMOTE, "10.231.9.0/24")  # other = 10.231.9.254
FTP_FILE = b"migfw ftp payload " * 100  # 1800 bytes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or not all(shutil.which(c) for c in ("dropbear", "dropbearkey", "ssh-keygen", "nft", "ip"))
    or __import__("importlib").util.find_spec("pyftpdlib") is None,
    reason="needs root, dropbear, ssh-keygen, nft, ip and pyftpdlib",
)


def _wait_port(netns: str, addr: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with in_netns(netns), socket.socket() as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((addr, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{addr}:{port} did not come up")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp / "id"], check=True)
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", tmp / "hostkey"], capture_output=True)
    pub = subprocess.run(["dropbearkey", "-y", "-f", tmp / "hostkey"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    hostline = next(ln for ln in pub.splitlines() if ln.startswith("ssh-"))
    (tmp / "known_hosts").write_text(f"{GUEST} {' '.join(hostline.split()[:2])}\n")
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    (home / ".ssh" / "authorized_keys").write_text((tmp / "id.pub").read_text())
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    srv = tmp / "srv"
    srv.mkdir()
    (srv / "payload.txt").write_bytes(FTP_FILE)
    procs: list[subprocess.Popen] = []
    with linked_pair(GUEST, REMOTE, 24, extra_remote_addrs=(ADDR["other"],)) as (g, r):
        try:
            # dropbear reads root's authorized_keys: give it a private /root (mount ns).
            sh = f"mount --bind {home} /root && exec dropbear -F -E -s -p {GUEST}:22 " \
                 f"-r {tmp / 'hostkey'} -P {tmp / 'dropbear.pid'}"  # fmt: skip
            procs.append(subprocess.Popen(netns_argv(g, ["unshare", "-m", "sh", "-c", sh]),
                         stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            ftpd = [sys.executable, "-m", "pyftpdlib", "-i", GUEST, "-p", "21", "-d", str(srv)]
            procs.append(subprocess.Popen(netns_argv(g, ftpd), stderr=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            _wait_port(r, GUEST, 22)
            _wait_port(r, GUEST, 21)
            yield {"guest": g, "remote": r, "tmp": tmp}
        finally:
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)


def _shell(lab, **kw) -> GuestShell:
    tmp = lab["tmp"]
    kw.setdefault("known_hosts_path", tmp / "known_hosts")
    return GuestShell(GUEST, "root", tmp / "id", netns=lab["remote"], timeout_s=10, **kw)


def test_shell_runs_commands_inside_the_guest_namespace(lab) -> None:
    with _shell(lab) as shell:
        out = shell.run("ip -o -4 addr show dev g0")
    assert f"{GUEST}/24" in out


def test_upload_falls_back_to_cat_without_sftp(lab, tmp_path: Path) -> None:
    import paramiko

    def no_sftp(*args, **kwargs):
        raise paramiko.SSHException("subsystem request failed")

    remote_file = tmp_path / "uploaded.txt"
    with _shell(lab) as shell:
        shell.upload("via sftp\n", str(remote_file))
        assert remote_file.read_text() == "via sftp\n"
        shell.conn.put = no_sftp
        shell.upload("via cat\n", str(remote_file))
        assert shell.run(f"cat {remote_file}") == "via cat\n"


def test_shell_refuses_unknown_or_changed_host_key(lab, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(MigfwError, match="host key not pinned"):
        _shell(lab, known_hosts_path=empty).open()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k"], check=True
    )
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{GUEST} {(tmp_path / 'k.pub').read_text().split()[0]} "
                     f"{(tmp_path / 'k.pub').read_text().split()[1]}\n")  # fmt: skip
    with pytest.raises(MigfwError, match="host key differs"):
        _shell(lab, known_hosts_path=wrong).open()


def test_shell_gives_up_with_one_line_when_nothing_answers(lab) -> None:
    shell = GuestShell("10.231.9.77", "root", lab["tmp"] / "id", lab["tmp"] / "known_hosts",
                       netns=lab["remote"], timeout_s=1.5)  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(MigfwError, match=r"not reachable after 2 s") as info:
        shell.open()
    assert time.monotonic() - t0 < 15 and "\n" not in str(info.value)


def test_deploy_read_back_verify_and_catch_a_broken_rule(lab) -> None:
    rs = load_ruleset(REPO / "config" / "ruleset.yaml")
    text = render_nft(rs, ADDR)
    with _shell(lab) as shell:
        shell.run("nft flush ruleset")
        deploy_ruleset(shell, text)
        deploy_ruleset(shell, text)  # redeploying replaces, never duplicates
        live = read_ruleset(shell)
        assert diff_rulesets(canonical_listing(text), live) == []
        assert live.count('comment "S4"') == 1

        checks = verify_rules(rs, ADDR, lab["remote"], shell)
        for c in checks:
            print(f"{c['rule']:3} {c['probe']:45} expected={c['expected']:8} "
                  f"observed={c['observed']} ok={c['ok']}")  # fmt: skip
        require_rules_ok(checks)
        by = {(c["rule"], c["probe"]): c for c in checks}
        probed = [c for c in checks if c["ok"] is not None]
        assert len(probed) >= 15 and all(c["ok"] for c in probed)
        # Hand-checked expectations for the enforcement ports and the relations.
        assert by[("S4", f"tcp SYN {REMOTE} -> {GUEST}:23")]["observed"] == "silence"
        assert by[("D5", f"tcp SYN {REMOTE} -> {GUEST}:22")]["observed"] == "answer"
        assert by[("S1", f"tcp SYN {ADDR['other']} -> {GUEST}:80")]["observed"] == "answer"
        assert by[("S2", f"tcp SYN {REMOTE} -> {GUEST}:80")]["observed"] == "silence"
        assert by[("S6", f"udp datagram {REMOTE} -> {GUEST}:5005")]["observed"] == "silence"
        assert by[("S5", f"udp datagram {REMOTE} -> {GUEST}:5000")]["observed"] == "answer"
        ftp = by[("F1", f"ftp login+RETR {REMOTE} -> {GUEST}:21")]
        assert ftp["ok"] and f"({len(FTP_FILE)} bytes)" in ftp["observed"]
        assert {c["rule"] for c in checks if c["ok"] is None} == {"D2", "D4"}

        # Break the deployment: drop rule S4 (telnet block) in the guest.
        handles = shell.run("nft -a list chain inet migfw input")
        handle = next(ln.split("# handle ")[1] for ln in handles.splitlines() if '"S4"' in ln)
        shell.run(f"nft delete rule inet migfw input handle {handle}")
        changed = diff_rulesets(live, read_ruleset(shell))
        assert len(changed) == 1 and changed[0].startswith("-") and '"S4"' in changed[0]
        broken = verify_rules(rs, ADDR, lab["remote"], shell)
        with pytest.raises(RulesetMisbehaves) as info:
            require_rules_ok(broken)
        msg = str(info.value)
        print(msg)
        assert "\n" not in msg and "S4 tcp SYN" in msg and ":23: expected silence" in msg
        # S3 (pass telnet from remote) is no longer shadowed: that is the breach.
        assert sum(not c["ok"] for c in broken if c["ok"] is not None) == 2

        # The upload goes to a private folder, never a fixed path: a file planted at the old
        # fixed name (by another user of a shared host) is neither read nor touched, and the
        # folder is gone afterwards.
        planted = Path("/tmp/migfw-ruleset.nft")
        planted.write_text("flush ruleset\n")
        try:
            before_tmp = set(Path("/tmp").glob("migfw-ruleset.*"))
            deploy_ruleset(shell, text)
            assert diff_rulesets(canonical_listing(text), read_ruleset(shell)) == []
            assert planted.read_text() == "flush ruleset\n"
            assert set(Path("/tmp").glob("migfw-ruleset.*")) == before_tmp
        finally:
            planted.unlink()
        handles = shell.run("nft -a list chain inet migfw input")
        handle = next(ln.split("# handle ")[1] for ln in handles.splitlines() if '"S4"' in ln)
        shell.run(f"nft delete rule inet migfw input handle {handle}")

        # A ruleset nft rejects is refused before anything is loaded.
        with pytest.raises(MigfwError, match=r"rejects the ruleset: line \d+"):
            deploy_ruleset(shell, text.replace("tcp dport 23", "tcp dport 23 bogus", 1))
        assert diff_rulesets(read_ruleset(shell), live)  # still the broken one, untouched
        shell.run("nft flush ruleset")


def test_require_rules_ok_refuses_when_nothing_was_probed() -> None:
    with pytest.raises(RulesetMisbehaves, match="unverified"):
        require_rules_ok([{"rule": "D2", "probe": "-", "expected": "-", "observed": "skip",
                           "ok": None}])  # fmt: skip
