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
def ftpd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
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
        env = dict(os.environ, PATH=str(bindir), MIGFW_FTP_ROOT=str(root))
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
