"""The guest's FTP server (resources/guest/ftpd), run for real: Debian's busybox (the one
the guest image is built from) runs it under `nc -ll -e` in a fresh network namespace and a
real ftplib client talks to it from another namespace over a veth pair.

Security (issue 9, item 6): anonymous only for real, no FTP bounce, no path outside its folder.
"""

from __future__ import annotations

import ftplib
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from nethelpers import linked_pair

from migfw.testbed.netns import in_netns, netns_argv

FTPD = REPO / "resources" / "guest" / "ftpd"
SERVER, CLIENT, OTHER = "10.233.9.1", "10.233.9.2", "10.233.9.3"
README = b"migfw guest test file\n"
SECRET = b"outside the FTP folder\n"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("busybox") is None,
    reason="needs root (network namespaces) and busybox",
)


@pytest.fixture()
def ftpd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """The server in a namespace; `indirect` parameters are extra environment (limits)."""
    busybox = shutil.which("busybox")
    assert busybox
    # A PATH of busybox applets, as in the guest (nc, usleep, readlink, awk, ...).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in subprocess.run(
        [busybox, "--list"], capture_output=True, text=True
    ).stdout.split():
        (bindir / applet).symlink_to(busybox)
    script = tmp_path / "migfw-ftpd"
    script.write_text(FTPD.read_text().replace("#!/bin/sh", f"#!{busybox} sh", 1))
    script.chmod(0o755)
    root = tmp_path / "srv"
    root.mkdir()
    (root / "readme.txt").write_bytes(README)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "sub").mkdir()
    with linked_pair(SERVER, CLIENT, 24, extra_remote_addrs=(OTHER,), prefix="mfch") as (g, r):
        env = dict(os.environ, PATH=str(bindir), MIGFW_FTP_ROOT=str(root),
                   MIGFW_FTP_SESSIONS=str(tmp_path / "sessions"),
                   **getattr(request, "param", {}))  # fmt: skip
        argv = netns_argv(g, [busybox, "nc", "-ll", "-p", "21", "-e", str(script)])
        argv[0] = shutil.which(argv[0]) or argv[0]  # the host's ip, not busybox's
        server = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 10
            while True:  # wait until the listener accepts
                try:
                    with in_netns(r), socket.create_connection((SERVER, 21), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            request.node.ftpd_pgid = server.pid
            yield r, root
        finally:
            os.killpg(server.pid, 15)  # our own process group: nc and its sessions
            server.wait(timeout=10)


def _connect(netns: str) -> ftplib.FTP:
    with in_netns(netns):
        ftp = ftplib.FTP(timeout=10, source_address=(CLIENT, 0))
        ftp.connect(SERVER, 21)
    return ftp


def _retr(ftp: ftplib.FTP, netns: str, name: str) -> bytes:
    buf = io.BytesIO()
    with in_netns(netns):
        ftp.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


def test_anonymous_login_and_download_both_modes(ftpd) -> None:
    netns, _ = ftpd
    for passive in (False, True):
        ftp = _connect(netns)
        assert ftp.login().startswith("230")
        ftp.set_pasv(passive)
        assert _retr(ftp, netns, "readme.txt") == README
        assert _retr(ftp, netns, "/readme.txt") == README  # "/" is the FTP root
        with in_netns(netns):
            assert "readme.txt" in ftp.nlst()
        ftp.quit()


def test_other_user_fails_at_pass_and_stays_logged_out(ftpd) -> None:
    netns, _ = ftpd
    ftp = _connect(netns)
    assert ftp.sendcmd("USER anonymous").startswith("331")
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.sendcmd("USER root")
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.sendcmd("PASS x")
    for command in ("PASV", "RETR readme.txt", "SIZE readme.txt", "CWD /", "PORT 10,233,9,2,4,1"):
        with pytest.raises(ftplib.error_perm, match="^530"):
            ftp.sendcmd(command)
    # Logging in as anonymous afterwards still works, and a later USER root logs out again.
    assert ftp.login().startswith("230")
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.sendcmd("USER root")
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.sendcmd("RETR readme.txt")
    ftp.close()


def test_active_mode_only_to_the_clients_own_address(ftpd) -> None:
    netns, _ = ftpd
    # A listener on another address the guest could reach: the bounce target.
    with in_netns(netns):
        victim = socket.socket()
        victim.bind((OTHER, 0))
        victim.listen(1)
        victim.settimeout(1.0)
    port = victim.getsockname()[1]
    try:
        ftp = _connect(netns)
        ftp.login()
        h = OTHER.replace(".", ",")
        for command in (
            f"PORT {h},{port // 256},{port % 256}",
            f"EPRT |1|{OTHER}|{port}|",
            f"PORT {CLIENT.replace('.', ',')},0,21",  # own address, privileged port
            "PORT 999,1,1,1,1,1",
            "PORT 1,2,3",
            "PORT a,b,c,d,e,f",
        ):
            with pytest.raises(ftplib.error_perm, match="^50[14]"):
                ftp.sendcmd(command)
        with pytest.raises(ftplib.error_perm, match="^522"):
            ftp.sendcmd(f"EPRT |2|::1|{port}|")
        # No data mode was accepted, so RETR has nowhere to go, and the victim saw nothing.
        with pytest.raises(ftplib.error_temp, match="^425"):
            ftp.sendcmd("RETR readme.txt")
        with pytest.raises(socket.timeout):
            victim.accept()
        # The client's own address (what ftplib sends) still works.
        ftp.set_pasv(False)
        assert _retr(ftp, netns, "readme.txt") == README
        ftp.quit()
    finally:
        victim.close()


@pytest.mark.parametrize(
    "name",
    ["../secret.txt", "/../secret.txt", "sub/../readme.txt", "..", ".", "sub", "link.txt",
     "/etc/passwd", "../../../../etc/passwd", "readme.txt/"],
)  # fmt: skip
def test_no_path_outside_the_folder(ftpd, name) -> None:
    netns, root = ftpd
    ftp = _connect(netns)
    ftp.login()
    ftp.set_pasv(False)
    with pytest.raises(ftplib.error_perm, match="^550"):
        _retr(ftp, netns, name)
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.sendcmd(f"SIZE {name}")
    with pytest.raises(ftplib.error_perm, match="^550"):
        ftp.sendcmd("CWD ..")
    assert ftp.sendcmd("SIZE readme.txt") == f"213 {len(README)}"
    ftp.quit()


# ------------------------------------------------------------------ bounded (issue 19, item 6)

LIMITS = {"MIGFW_FTP_MAX_SESSIONS": "4", "MIGFW_FTP_MAX_PER_CLIENT": "3", "MIGFW_FTP_IDLE_S": "60"}
IDLE = {"MIGFW_FTP_IDLE_S": "2"}


def _open(netns: str, source: str) -> tuple[socket.socket, bytes]:
    """A raw control connection from `source`, and the server's first line."""
    with in_netns(netns):
        sock = socket.create_connection((SERVER, 21), timeout=10, source_address=(source, 0))
    return sock, sock.makefile("rb").readline()


def _sessions(pgid: int) -> int:
    """Live session shells of the server (its process group; the listener is `nc`)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"migfw-ftpd") for part in cmd) and b"nc" not in cmd[:2]:
            count += 1
    return count


@pytest.mark.parametrize("ftpd", [LIMITS], indirect=True)
def test_sessions_are_bounded_in_total_and_per_client(ftpd, request) -> None:
    netns, _ = ftpd
    time.sleep(0.3)  # the fixture's own probe connection has gone
    opened = [_open(netns, CLIENT) for _ in range(3)]
    assert all(line.startswith(b"220") for _, line in opened), opened
    sock, line = _open(netns, CLIENT)  # a 4th from the same address
    assert line.startswith(b"421 Too many connections"), line
    sock.close()
    other, line = _open(netns, OTHER)  # another address: room for one more in total
    assert line.startswith(b"220"), line
    sock, line = _open(netns, OTHER)
    assert line.startswith(b"421"), line  # the total is full
    sock.close()
    # 40 more at once (the case was 150 idle connections): none stays, memory bounded.
    with in_netns(netns):
        flood = [socket.create_connection((SERVER, 21), timeout=10) for _ in range(40)]
    answers = [s.makefile("rb").readline() for s in flood]
    assert [a for a in answers if not a.startswith(b"421")] == [], answers
    time.sleep(0.5)  # the refused ones have exited
    assert _sessions(request.node.ftpd_pgid) == 4
    for s in flood:
        s.close()
    # A freed slot is taken again.
    opened[0][0].close()
    deadline = time.monotonic() + 5
    while True:
        sock, line = _open(netns, CLIENT)
        sock.close()
        if line.startswith(b"220") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert line.startswith(b"220"), line
    for s, _ in opened[1:]:
        s.close()
    other.close()


@pytest.mark.parametrize("ftpd", [IDLE], indirect=True)
def test_idle_sessions_are_closed_busy_ones_are_not(ftpd) -> None:
    netns, _ = ftpd
    idle, line = _open(netns, CLIENT)
    assert line.startswith(b"220")
    busy = _connect(netns)  # logged in, one NOOP every 0.5 s for twice the idle time
    busy.login()
    began = time.monotonic()
    reader = idle.makefile("rb")
    idle.settimeout(6)
    closing = reader.readline()
    waited = time.monotonic() - began
    assert closing.startswith(b"421 Idle for 2 s"), closing
    assert 1.5 <= waited <= 4.5, waited
    assert reader.readline() == b""  # and the connection is closed
    while time.monotonic() - began < 4:
        with in_netns(netns):
            assert busy.voidcmd("NOOP").startswith("200")
        time.sleep(0.5)
    busy.quit()
    idle.close()
