"""Load the ruleset into the guest over SSH (fabric), read it back, and prove every rule's
effect with real packets sent from the prober's side.

SSH is key-only with a pinned host key: a host not in the given known_hosts file is refused.
"""

from __future__ import annotations

import difflib
import ftplib
import hashlib
import io
import re
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.netns import in_netns
from migfw.testbed.ruleset import (
    Packet,
    Rule,
    Ruleset,
    check_addresses,
    decide,
    deciding_rule,
)
from migfw.testbed.ruleset_render import explain_nft_error

# The ruleset goes into a private folder made per deployment (mktemp -d: mode 0700, a name
# nobody can guess or create first), never a fixed path another user of the host could swap.
REMOTE_RULESET_DIR = "/tmp/migfw-ruleset.XXXXXXXX"
RECHECKS = 2  # a silence where an answer is due is asked again this often, alone
RECHECK_PAUSE_S = 1.0  # the ICMP rate limit's refill (net.ipv4.icmp_ratelimit, 1 s)
_PRIVATE_DIR = re.compile(r"^/tmp/migfw-ruleset\.[A-Za-z0-9]{8}$")


class RulesetMisbehaves(MigfwError):
    """The firewall in the guest does not do what the ruleset says."""


class GuestShell:
    """An SSH session to the guest (fabric.Connection), opened from inside `netns`.

    Retries until the guest's SSH answers or `timeout_s` passes; never uses passwords.
    """

    def __init__(
        self,
        address: str,
        user: str,
        key_path: str | Path,
        known_hosts_path: str | Path,
        netns: str | None = None,
        port: int = 22,
        timeout_s: float = 60.0,
    ) -> None:
        self.address, self.user, self.port, self.netns = address, user, port, netns
        self.key_path, self.known_hosts_path = Path(key_path), Path(known_hosts_path)
        self.timeout_s = timeout_s
        self.conn: Any = None
        self.last_result: Any = None  # the last run()'s invoke Result (exit code, stderr)

    def __enter__(self) -> GuestShell:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        import fabric
        import paramiko

        for path, what in ((self.key_path, "SSH key"), (self.known_hosts_path, "known_hosts")):
            if not path.is_file():
                raise MigfwError(f"{path}: {what} file not found")
        deadline = time.monotonic() + self.timeout_s
        last = "no attempt"
        while True:
            client = paramiko.SSHClient()
            client.load_host_keys(str(self.known_hosts_path))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            conn = fabric.Connection(
                self.address,
                user=self.user,
                port=self.port,
                connect_timeout=5,
                connect_kwargs={
                    "key_filename": str(self.key_path),
                    "look_for_keys": False,
                    "allow_agent": False,
                    "banner_timeout": 10,
                    "auth_timeout": 10,
                },
            )
            conn.client = client  # pinned keys + RejectPolicy instead of fabric's AutoAdd
            try:
                with in_netns(self.netns):  # the socket is born (and stays) in the namespace
                    conn.open()
                self.conn = conn
                return
            except paramiko.BadHostKeyException:
                raise MigfwError(
                    f"ssh {self.address}: host key differs from {self.known_hosts_path}"
                ) from None
            except paramiko.SSHException as exc:
                if "not found in known_hosts" in str(exc):
                    raise MigfwError(
                        f"ssh {self.address}: host key not pinned in {self.known_hosts_path}"
                    ) from None
                if isinstance(exc, paramiko.AuthenticationException):
                    raise MigfwError(
                        f"ssh {self.user}@{self.address}: key {self.key_path} refused"
                    ) from None
                last = str(exc) or type(exc).__name__
            except (OSError, EOFError) as exc:
                last = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            conn.close()
            if time.monotonic() > deadline:
                raise MigfwError(
                    f"ssh {self.address}:{self.port}: not reachable after {self.timeout_s:.0f} s"
                    f" ({last})"
                )
            time.sleep(0.5)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, cmd: str, check: bool = True, timeout: float = 60.0) -> str:
        """Run `cmd` in the guest, return stdout; non-zero exit -> one-line MigfwError."""
        if self.conn is None:
            raise MigfwError(f"ssh {self.address}: not connected")
        import paramiko
        from invoke.exceptions import CommandTimedOut

        try:
            result = self.conn.run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False)
        except CommandTimedOut:
            raise MigfwError(
                f"ssh {self.address}: `{cmd}` timed out after {timeout:.0f} s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise MigfwError(
                f"ssh {self.address}: connection lost running `{cmd}`: {exc}"
            ) from None
        self.last_result = result
        if check and result.exited != 0:
            reason = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise MigfwError(
                f"ssh {self.address}: `{cmd}` exited {result.exited}: "
                f"{reason[0] if reason else 'no output'}"
            )
        return result.stdout

    def upload(self, text: str, remote_path: str) -> None:
        if self.conn is None:
            raise MigfwError(f"ssh {self.address}: not connected")
        import paramiko

        try:
            self.conn.put(io.BytesIO(text.encode()), remote_path)
            return
        except (paramiko.SSHException, OSError, EOFError):
            pass  # no SFTP subsystem in the guest: stream the file through `cat` instead
        result = self.conn.run(
            f"cat > {remote_path}", hide=True, warn=True, timeout=30, in_stream=io.StringIO(text)
        )
        if result.exited != 0:
            why = (result.stderr.strip().splitlines() or ["failed"])[0]
            raise MigfwError(f"ssh {self.address}: cannot write {remote_path}: {why}")


# ------------------------------------------------------------------ deploy and read back


def deploy_ruleset(shell: GuestShell, nft_text: str) -> None:
    """Upload into a private folder, check with `nft -c -f`, make sure the file is still the
    one uploaded (SHA-256), load that same file with `nft -f` (one atomic transaction), and
    remove the folder."""
    folder = shell.run(f"umask 077 && mktemp -d {REMOTE_RULESET_DIR}").strip()
    if not _PRIVATE_DIR.match(folder):
        raise MigfwError(f"guest {shell.address}: mktemp -d gave {folder!r}, not a private folder")
    path = f"{folder}/ruleset.nft"
    digest = hashlib.sha256(nft_text.encode()).hexdigest()
    try:
        shell.upload(nft_text, path)
        shell.run(f"nft -c -f {path} 2>&1", check=False)
        if shell.last_result.exited != 0:
            raise MigfwError(
                f"guest {shell.address} rejects the ruleset: "
                f"{explain_nft_error(shell.last_result.stdout, nft_text)}"
            )
        found = shell.run(f"sha256sum {path}").split()[0]
        if found != digest:
            raise MigfwError(f"guest {shell.address}: {path} changed after it was checked "
                             f"(sha256 {found}, uploaded {digest}); not loaded")  # fmt: skip
        shell.run(f"nft -f {path}")
    finally:
        shell.run(f"rm -rf {folder}", check=False)


_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_HANDLE = re.compile(r"\s*# handle \d+")


def normalise_listing(text: str) -> str:
    """`nft list ruleset` output without counters values, handles or blank lines."""
    lines = []
    for line in text.splitlines():
        line = _HANDLE.sub("", _COUNTER.sub("counter", line)).rstrip()
        if line.strip():
            lines.append(line)
    return "\n".join(lines) + "\n"


def read_ruleset(shell: GuestShell) -> str:
    """The guest's whole ruleset as `nft -s list ruleset` prints it, normalised."""
    return normalise_listing(shell.run("nft -s list ruleset"))


def diff_rulesets(before: str, after: str) -> list[str]:
    """Changed lines (unified diff, no context, no headers); empty list = identical."""
    diff = difflib.unified_diff(
        normalise_listing(before).splitlines(), normalise_listing(after).splitlines(), n=0
    )
    return [ln for ln in diff if not ln.startswith(("---", "+++", "@@"))]


# --------------------------------------------------------------------------- probing


def _bind_source(sock: socket.socket, src: str) -> str | None:
    try:
        sock.bind((src, 0))
    except OSError:
        return f"source {src} is not configured in the prober namespace"
    return None


def probe_tcp(src: str, dst: str, port: int, timeout: float) -> str:
    """'answer' (SYN-ACK or RST came back), 'silence', or 'skip: reason'."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if err := _bind_source(sock, src):
            return f"skip: {err}"
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
            return "answer"
        except ConnectionRefusedError:
            return "answer"
        except TimeoutError:
            return "silence"
        except OSError as exc:  # e.g. EHOSTUNREACH from an ICMP error
            return f"answer ({exc.strerror})"


def probe_udp(src: str, dst: str, port: int, timeout: float) -> str:
    """'answer' (a reply or ICMP port unreachable), 'silence', or 'skip: reason'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if err := _bind_source(sock, src):
            return f"skip: {err}"
        sock.settimeout(timeout)
        sock.connect((dst, port))
        try:
            sock.send(b"migfw verify\n")
            sock.recv(2048)
            return "answer"
        except ConnectionRefusedError:
            return "answer"
        except TimeoutError:
            return "silence"


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe_icmp_echo(src: str, dst: str, timeout: float, ident: int = 0x6D66) -> str:
    """Send one ICMP echo request from a raw socket; 'answer' if the echo reply comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        if err := _bind_source(sock, src):
            return f"skip: {err}"
        seq = int(time.monotonic() * 1000) & 0xFFFF
        body = b"migfw-verify"
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        csum = _icmp_checksum(header + body)
        sock.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq) + body, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (peer, _) = sock.recvfrom(2048)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if peer == dst and typ == 0 and rid == ident and rseq == seq:
                return "answer"
        return "silence"


def probe_ftp(src: str, dst: str, timeout: float, path: str | None) -> tuple[str, str]:
    """Anonymous login and RETR in active mode (the data connection is outbound from the
    guest, so pf's/nftables' state for outbound traffic carries it)."""
    ftp = ftplib.FTP(timeout=max(timeout, 3.0), source_address=(src, 0))
    try:
        ftp.connect(dst, 21)
        ftp.login()  # anonymous
        ftp.set_pasv(False)
        if path is None:
            names = [n for n in ftp.nlst() if not n.endswith("/")]
            if not names:
                return "silence", "anonymous login ok but no file to RETR"
            path = names[0]
        buf = io.BytesIO()
        ftp.retrbinary(f"RETR {path}", buf.write)
        ftp.quit()
        return "answer", f"login + RETR {path} ({len(buf.getvalue())} bytes)"
    except (OSError, EOFError, ftplib.Error) as exc:
        return "silence", f"FTP failed: {type(exc).__name__}: {str(exc).strip()[:80]}"
    finally:
        ftp.close()


# ------------------------------------------------------------------------ verify_rules


def _ports_for(rule: Rule) -> list[int]:
    if not rule.dport:
        return [1, 25]  # no ports in the rule: two probes show its effect
    out: list[int] = []
    for lo, hi in rule.dport:
        out += [lo, hi] if hi != lo else [lo]
    return out


def _candidates(rule: Rule, addresses: dict[str, str]) -> list[Packet]:
    protos = ["tcp", "udp", "icmp"] if rule.proto == "any" else [rule.proto]
    out = []
    for src in (addresses["remote"], addresses["other"]):
        for proto in protos:
            if proto == "icmp":
                out.append(Packet("in", "icmp", src, addresses["target"], icmp_type="echo-request"))
            else:
                for port in _ports_for(rule):
                    out.append(Packet("in", proto, src, addresses["target"], 40000, port))
    return out


def plan_checks(rs: Ruleset, addresses: dict[str, str]) -> list[tuple[Rule, Packet | None, str]]:
    """For every rule: the inbound packet(s) that show its effect (or why there is none).

    Prefer packets the rule itself decides; a shadowed or redundant rule gets a packet
    from its own match space and is expected to show the verdict of the rule that wins.
    Ports at both ends of each range are probed so overlapping ranges are covered.
    """
    plan: list[tuple[Rule, Packet | None, str]] = []
    alone = {r.id: Ruleset(r.id, (r,)) for r in rs.rules}
    for rule in rs.rules:
        if rule.direction == "out":
            plan.append((rule, None, "outbound"))
            continue
        if rule.iface == "lo":
            plan.append((rule, None, "skip: loopback only, unreachable from the remote side"))
            continue
        own = [
            p for p in _candidates(rule, addresses) if deciding_rule(alone[rule.id], p, addresses)
        ]
        if not own:
            plan.append((rule, None, "skip: needs a spoofed source the remote cannot answer to"))
            continue
        decided = [p for p in own if deciding_rule(rs, p, addresses) == rule]
        chosen: list[Packet] = []
        for pkt in decided or own[:1]:
            key = (pkt.proto, pkt.dport)
            if key not in {(c.proto, c.dport) for c in chosen}:
                chosen.append(pkt)
        for pkt in chosen:
            plan.append((rule, pkt, ""))
    return plan


def _describe(pkt: Packet) -> str:
    if pkt.proto == "icmp":
        return f"icmp echo-request {pkt.src} -> {pkt.dst}"
    kind = "SYN" if pkt.proto == "tcp" else "datagram"
    return f"{pkt.proto} {kind} {pkt.src} -> {pkt.dst}:{pkt.dport}"


def verify_rules(
    rs: Ruleset,
    addresses: dict[str, str],
    netns: str | None,
    shell: GuestShell | None,
    timeout_s: float = 0.5,
    ftp_path: str | None = None,
) -> list[dict[str, Any]]:
    """Send real packets from the prober namespace for every rule's expected effect.

    Returns one dict per check: rule, probe, expected, observed, ok (None = not probed).
    Expected verdicts come from the pf evaluator (`decide`); pass = an answer comes back
    (SYN-ACK/RST, UDP reply/ICMP unreachable, echo reply), block = silence.
    """
    check_addresses(addresses)
    checks: list[dict[str, Any]] = []

    def add(rule: Rule, probe: str, expected: str, observed: str, verdict: Rule | None) -> None:
        if observed.startswith("skip"):
            ok = None
        else:
            ok = observed.split(" ")[0] == expected
        checks.append({
            "rule": rule.id, "probe": probe, "expected": expected, "observed": observed,
            "ok": ok, "deciding_rule": verdict.id if verdict else None,
        })  # fmt: skip

    plan = plan_checks(rs, addresses)
    # The inbound probes run at once, each in its own thread (setns is per thread) with its
    # own socket: a silence costs one timeout in all instead of one per probe (24 checks
    # took ~5 s one after another). Outbound and FTP checks use the guest's shell: in order.
    from concurrent.futures import ThreadPoolExecutor

    def observe(pkt: Packet) -> str:
        with in_netns(netns):
            if pkt.proto == "tcp":
                return probe_tcp(pkt.src, pkt.dst, pkt.dport, timeout_s)
            if pkt.proto == "udp":
                return probe_udp(pkt.src, pkt.dst, pkt.dport, timeout_s)
            return probe_icmp_echo(pkt.src, pkt.dst, timeout_s)

    inbound = [pkt for _, pkt, _ in plan if pkt is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(inbound)))) as pool:
        observed_all = dict(zip(map(id, inbound), pool.map(observe, inbound), strict=True))
    # A silence where an answer is due is asked again, alone, after a pause: a burst of probes
    # at once can lose a datagram or meet the kernel's ICMP rate limit (6 port-unreachables
    # per peer, then one a second), and a default run stopped on one such UDP check. An
    # answer where silence is due is never asked again: that is a breach.
    for pkt in inbound:
        due = decide(rs, pkt, addresses) == "pass"
        for _ in range(RECHECKS):
            if not (due and observed_all[id(pkt)].startswith("silence")):
                break
            time.sleep(RECHECK_PAUSE_S)
            observed_all[id(pkt)] = observe(pkt)
    ftp_done = False
    for rule, pkt, why in plan:
        if pkt is None:
            if why == "outbound":
                _verify_outbound(rule, rs, addresses, netns, shell, add)
            else:
                add(rule, "-", "-", why, None)
            continue
        expected = "answer" if decide(rs, pkt, addresses) == "pass" else "silence"
        observed = observed_all[id(pkt)]
        add(rule, _describe(pkt), expected, observed, deciding_rule(rs, pkt, addresses))
        # The thesis's FTP check: a real anonymous login and download, once.
        if pkt.proto == "tcp" and pkt.dport == 21 and pkt.src == addresses["remote"]:
            if not ftp_done and expected == "answer":
                with in_netns(netns):
                    obs, detail = probe_ftp(pkt.src, pkt.dst, timeout_s, ftp_path)
                add(rule, f"ftp login+RETR {pkt.src} -> {pkt.dst}:21", "answer",
                    f"{obs} ({detail})", deciding_rule(rs, pkt, addresses))  # fmt: skip
                ftp_done = True
    return checks


def _verify_outbound(rule, rs, addresses, netns, shell, add) -> None:  # noqa: ANN001
    """Outbound rules: the guest starts a flow to the remote (needs the SSH shell)."""
    target, remote = addresses["target"], addresses["remote"]
    if shell is None:
        add(rule, "-", "-", "skip: outbound checks need the guest shell", None)
        return
    if rule.proto in ("icmp", "any"):
        pkt = Packet("out", "icmp", target, remote, icmp_type="echo-request")
        expected = "answer" if decide(rs, pkt, addresses) == "pass" else "silence"
        shell.run(f"busybox ping -c 1 -W 2 {remote}", check=False)
        observed = "answer" if shell.last_result.exited == 0 else "silence"
        add(rule, f"guest: ping {target} -> {remote}", expected, observed,
            deciding_rule(rs, pkt, addresses))  # fmt: skip
    if rule.proto in ("tcp", "any"):
        accepted: list[bool] = []

        def accept_one(lsock: socket.socket) -> None:
            try:
                conn, _ = lsock.accept()
                conn.close()  # closing makes the guest's nc exit
                accepted.append(True)
            except OSError:
                pass

        with in_netns(netns), socket.socket() as lsock:
            lsock.bind((remote, 0))
            lsock.listen(4)
            lsock.settimeout(3.0)
            port = lsock.getsockname()[1]
            waiter = threading.Thread(target=accept_one, args=(lsock,), daemon=True)
            waiter.start()
            pkt = Packet("out", "tcp", target, remote, 40000, port)
            expected = "answer" if decide(rs, pkt, addresses) == "pass" else "silence"
            shell.run(f"busybox timeout 3 busybox nc {remote} {port} </dev/null", check=False)
            waiter.join(4.0)
        observed = "answer" if accepted else "silence"
        add(rule, f"guest: tcp connect {target} -> {remote}:{port}", expected, observed,
            deciding_rule(rs, pkt, addresses))  # fmt: skip


def require_rules_ok(checks: list[dict[str, Any]]) -> None:
    """Refuse (RulesetMisbehaves, one line) unless every probed check came out as expected."""
    probed = [c for c in checks if c["ok"] is not None]
    failed = [c for c in probed if not c["ok"]]
    if not probed:
        raise RulesetMisbehaves("no rule could be probed: the firewall is unverified")
    if failed:
        parts = [
            f"{c['rule']} {c['probe']}: expected {c['expected']}, got {c['observed']}"
            for c in failed[:3]
        ]
        more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
        raise RulesetMisbehaves(
            f"{len(failed)} of {len(probed)} rule checks failed: " + "; ".join(parts) + more
        )
