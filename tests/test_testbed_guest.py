"""The guest image is built from Debian packages, holds what the VM needs, and is rebuilt
only when an input changes. Uses apt-get download (Debian's archive) and dpkg-deb."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    for cmd in ("apt-get", "apt-cache", "dpkg-deb", "cpio", "depmod", "modprobe", "dropbearkey"):
        if shutil.which(cmd) is None:
            pytest.skip(f"{cmd} not installed")
    from migfw.errors import MigfwError
    from migfw.testbed.guest import build_image

    base = tmp_path_factory.mktemp("guest")
    out, cache = base / "guest", base / "cache"
    try:
        manifest = build_image(out, cache, "linux-image-cloud-amd64", ["10.231.0.10"])
    except MigfwError as exc:
        if "download" in str(exc):
            pytest.skip(f"Debian archive not reachable: {exc}")
        raise
    return out, cache, manifest


def _listing(initramfs: Path) -> set[str]:
    data = gzip.decompress(initramfs.read_bytes())
    names = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True)
    return set(names.stdout.decode().split())


def test_image_contents_match_the_packages(built) -> None:
    out, cache, manifest = built
    # Versions in the manifest are those of the .deb files actually unpacked.
    for package, version in manifest["packages"].items():
        debs = list(cache.glob(f"{package}_*.deb"))
        assert len(debs) == 1, package
        field = subprocess.run(["dpkg-deb", "-f", str(debs[0]), "Version"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        assert field.stdout.strip() == version
    assert any(p.startswith("linux-image-6") for p in manifest["packages"])
    names = _listing(out / "initramfs.img")
    for needed in ("init", "bin/busybox", "usr/sbin/nft", "usr/sbin/dropbear",
                   "usr/lib/openssh/sftp-server", "usr/sbin/migfw-ftpd", "etc/inittab",
                   "root/.ssh/authorized_keys", "etc/dropbear/dropbear_ed25519_host_key",
                   "srv/ftp/readme.txt", "etc/migfw/modules.list"):  # fmt: skip
        assert needed in names, needed
    assert any(n.endswith("/libnftables.so.1") for n in names)
    for module in manifest["modules"]:
        assert module.lstrip("/") in names
    wanted = {"virtio_net.ko", "nf_tables.ko", "nft_reject_inet.ko", "nft_ct.ko"}
    assert wanted <= {Path(m).name for m in manifest["modules"]}
    # Dependencies come before the modules that need them (insmod order).
    order = [Path(m).name for m in manifest["modules"]]
    assert order.index("nfnetlink.ko") < order.index("nf_tables.ko")
    assert order.index("virtio.ko") < order.index("virtio_net.ko")
    size = (out / "initramfs.img").stat().st_size
    assert 2e6 < size < 10e6 and manifest["initramfs_bytes"] == size


def test_keys_and_known_hosts(built) -> None:
    out, _, manifest = built
    pub = subprocess.run(["dropbearkey", "-y", "-f", str(out / "dropbear_ed25519_host_key")],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    host_key = next(" ".join(ln.split()[:2]) for ln in pub.splitlines() if ln.startswith("ssh-"))
    assert (out / "known_hosts").read_text() == f"10.231.0.10 {host_key}\n"
    assert manifest["host_key"] == host_key
    assert (out / "id_ed25519").stat().st_mode & 0o077 == 0  # private key not readable by others
    assert (out / "id_ed25519.pub").read_text().startswith("ssh-ed25519 ")


def test_rebuilt_only_when_an_input_changes(built) -> None:
    from migfw.testbed.guest import build_image

    out, cache, manifest = built
    again = build_image(out, cache, "linux-image-cloud-amd64", ["10.231.0.10"])
    assert again["cached"] is True and again["input_hash"] == manifest["input_hash"]
    # A new host key is a new input: the image is rebuilt with it.
    (out / "dropbear_ed25519_host_key").unlink()
    rebuilt = build_image(out, cache, "linux-image-cloud-amd64", ["10.231.0.10"])
    assert rebuilt["cached"] is False and rebuilt["input_hash"] != manifest["input_hash"]
    assert json.loads((out / "manifest.json").read_text())["input_hash"] == rebuilt["input_hash"]
    # A damaged output file is noticed too.
    (out / "initramfs.img").write_bytes(b"broken")
    fixed = build_image(out, cache, "linux-image-cloud-amd64", ["10.231.0.10"])
    assert fixed["cached"] is False and (out / "initramfs.img").stat().st_size > 2e6


def test_key_material_is_readable_by_root_only(built) -> None:
    """The initramfs holds the guest's SSH host private key: it and its folder are root-only,
    and no key file anywhere in the output has a group or other permission bit."""
    import os
    import stat

    from migfw.testbed.guest import build_image

    out, cache, _ = built

    def loose() -> list[str]:
        found = []
        if stat.S_IMODE(out.stat().st_mode) & 0o077:
            found.append(f"{out} {oct(out.stat().st_mode)}")
        for path in out.rglob("*"):
            if path.name in ("known_hosts", "manifest.json", "vmlinuz") or path.suffix == ".pub":
                continue  # public: host and client public keys, the kernel
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                found.append(f"{path} {oct(path.stat().st_mode)}")
        return found

    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "initramfs.img").stat().st_mode) == 0o600
    assert loose() == []
    # A folder from an older build (0755, 0644 image) is tightened on the next (cached) call.
    os.chmod(out, 0o755)
    os.chmod(out / "initramfs.img", 0o644)
    os.chmod(out / "dropbear_ed25519_host_key", 0o644)
    build_image(out, cache, "linux-image-cloud-amd64", ["10.231.0.10"])
    assert loose() == []
