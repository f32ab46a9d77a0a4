"""Guest image: a diskless Linux VM built only from Debian packages.

`migfw testbed image --out results/testbed/guest/` writes vmlinuz, initramfs.img, the SSH
client key, the guest's (pinned) host key, known_hosts and manifest.json. Packages are
fetched with `apt-get download` into a cache and unpacked with `dpkg-deb -x` (the host's
/boot and package database are never touched). The image is rebuilt only when an input
changes: package versions, the init/FTP scripts, the module list or the keys.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import atomic_write, sha256_file, write_json
from migfw.scratch import scratch

RESOURCES = Path(__file__).resolve().parents[3] / "resources"
GUEST_RESOURCES = RESOURCES / "guest"
BUILDER_VERSION = "3"  # 3: migfw-syn (the egress attacker) and migfw-hold (tcp/8)
READY_MARKER = "MIGFW-READY"

# Debian packages the guest is made of (the kernel meta-package is resolved to its image).
USER_PACKAGES = [
    "busybox-static",
    "nftables",
    "libnftables1",
    "dropbear-bin",
    "openssh-sftp-server",
]
# Kernel modules loaded at boot (dependencies are added from modprobe --show-depends).
MODULES = [
    "virtio_pci",
    "virtio_net",
    "nf_tables",
    "nft_ct",
    "nft_limit",
    "nft_log",
    "nf_log_syslog",
    "nft_reject_inet",
    "nft_reject_ipv4",
    "nf_conntrack_ftp",
]
# Binaries copied from the unpacked packages, with their shared libraries (ldd).
BINARIES = {
    "usr/sbin/nft": "usr/sbin/nft",
    "usr/sbin/dropbear": "usr/sbin/dropbear",
    "usr/lib/openssh/sftp-server": "usr/lib/openssh/sftp-server",
}
HOST_KEY = "dropbear_ed25519_host_key"
CLIENT_KEY = "id_ed25519"


def _run(cmd: list[str], **kwargs: Any) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    except FileNotFoundError as exc:
        raise MigfwError(f"guest image: command not found: {cmd[0]}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise MigfwError(f"guest image: {' '.join(cmd[:3])} failed: {err[-1] if err else '?'}")
    return proc.stdout


def candidate_versions(packages: list[str]) -> dict[str, str]:
    """The versions apt would download (local package lists, no network), in one call."""
    out = _run(["apt-cache", "show", "--no-all-versions", *packages])
    found = {}
    for stanza in out.split("\n\n"):
        name = re.search(r"^Package: (\S+)", stanza, re.M)
        version = re.search(r"^Version: (\S+)", stanza, re.M)
        if name and version:
            found[name.group(1)] = version.group(1)
    missing = [p for p in packages if p not in found]
    if missing:
        raise MigfwError(f"guest image: apt knows no version of package {', '.join(missing)}")
    return {p: found[p] for p in packages}


def resolve_kernel_package(meta: str) -> str:
    """linux-image-cloud-amd64 → linux-image-6.1.0-NN-cloud-amd64 (its Depends)."""
    out = _run(["apt-cache", "show", "--no-all-versions", meta])
    match = re.search(r"^Depends: .*?(linux-image-[0-9][^\s,]*)", out, re.M)
    return match.group(1) if match else meta


def deb_filename(package: str, version: str) -> str:
    return f"{package}_{version.replace(':', '%3a')}_amd64.deb"


def download(packages: dict[str, str], cache: Path) -> dict[str, Path]:
    """apt-get download each package=version into `cache` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p, v in packages.items() if not (cache / deb_filename(p, v)).exists()]
    if missing:
        _run(["apt-get", "download", *[f"{p}={packages[p]}" for p in missing]], cwd=cache)
    paths = {p: cache / deb_filename(p, v) for p, v in packages.items()}
    for package, path in paths.items():
        if not path.exists():
            raise MigfwError(f"guest image: apt-get download left no {path.name} for {package}")
    return paths


def host_lib_owners(paths: list[str]) -> dict[str, str]:
    """'package=version' of the host packages that ship these shared libraries."""
    if not paths:
        return {}
    # usrmerge: dpkg may know a library under /lib although ldd reports /usr/lib or vice versa.
    variants = {}
    for path in paths:
        real = os.path.realpath(path)
        for v in (
            path,
            real,
            real.replace("/usr/lib/", "/lib/", 1),
            path.replace("/lib/", "/usr/lib/", 1),
        ):
            variants.setdefault(v, path)
    proc = subprocess.run(["dpkg", "-S", *variants], capture_output=True, text=True)
    owners: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        package, _, where = line.partition(": ")
        if where in variants:
            owners.setdefault(variants[where], package.split(":")[0].strip())
    versions = {}
    for package in sorted(set(owners.values())):
        versions[package] = _run(["dpkg-query", "-W", "-f=${Version}", package]).strip()
    return {p: f"{owners[p]}={versions[owners[p]]}" if p in owners else "unknown" for p in paths}


def shared_libs(binary: Path, extra_libdir: Path) -> list[str]:
    """Absolute paths of the libraries `binary` needs (extracted packages first)."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(extra_libdir))
    out = _run(["ldd", str(binary)], env=env)
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(match.group(1))
    return libs


def ensure_keys(out: Path) -> dict[str, str]:
    """Create the SSH client key and the guest host key once; reuse them afterwards."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    client = out / CLIENT_KEY
    if not client.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        with atomic_write(client, "wb") as handle:
            handle.write(pem)
        os.chmod(client, 0o600)
        with atomic_write(out / f"{CLIENT_KEY}.pub") as handle:
            handle.write(pub.decode() + " migfw\n")
    host = out / HOST_KEY
    if not host.exists():
        tmp = out / f".{HOST_KEY}.tmp"
        tmp.unlink(missing_ok=True)
        _run(["dropbearkey", "-t", "ed25519", "-f", str(tmp)])
        os.chmod(tmp, 0o600)
        os.replace(tmp, host)
    host_pub = ""
    for line in _run(["dropbearkey", "-y", "-f", str(host)]).splitlines():
        if line.startswith("ssh-"):
            host_pub = " ".join(line.split()[:2])
    client_pub = (out / f"{CLIENT_KEY}.pub").read_text().strip()
    return {"client_pub": client_pub, "host_pub": host_pub}


def write_known_hosts(out: Path, addresses: list[str], host_pub: str) -> Path:
    path = out / "known_hosts"
    with atomic_write(path) as handle:
        for address in addresses:
            handle.write(f"{address} {host_pub}\n")
    return path


def plan(kernel_meta: str) -> dict[str, str]:
    """package → version for everything the image is built from."""
    kernel = resolve_kernel_package(kernel_meta)
    return candidate_versions([kernel, *USER_PACKAGES])


def input_hash(packages: dict[str, str], keys: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(packages, sort_keys=True).encode())
    digest.update(json.dumps(MODULES).encode())
    digest.update(json.dumps(BINARIES, sort_keys=True).encode())
    digest.update(json.dumps(keys, sort_keys=True).encode())
    digest.update(BUILDER_VERSION.encode())
    for name in sorted(os.listdir(GUEST_RESOURCES)):
        digest.update(name.encode())
        digest.update((GUEST_RESOURCES / name).read_bytes())
    return digest.hexdigest()


def _module_order(tree: Path, kver: str) -> list[str]:
    _run(["depmod", "-b", str(tree), kver])
    order: list[str] = []
    for module in MODULES:
        out = _run(["modprobe", "-d", str(tree), "-S", kver, "--show-depends", module])
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                rel = "/" + os.path.relpath(parts[1], tree)
                if rel not in order:
                    order.append(rel)
    return order


def build_dirty(target: Path, source: str = "dirty.c") -> str:
    """Compile a guest program of resources/guest/ (the memory-dirtying workload dirty.c, the
    egress attacker syn.c) statically with the host's Debian gcc; returns the compiler's
    version line (recorded in the manifest)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise MigfwError("guest image: gcc not found (install.sh installs gcc and libc6-dev)")
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [gcc, "-static", "-O2", "-Wall", "-o", str(target), str(GUEST_RESOURCES / source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MigfwError(f"guest image: compiling resources/guest/{source} failed: {last}")
    return _run([gcc, "--version"]).splitlines()[0]


def _copy(src: Path, root: Path, dest: str) -> None:
    target = root / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), target)


# Files in the image folder that hold key material: the initramfs carries the guest's SSH
# host private key. Readable by root only, like the folder itself.
SECRET_FILES = ("initramfs.img", HOST_KEY, CLIENT_KEY)


def restrict(out: Path) -> None:
    """The image folder 0700 and its secret files 0600 (also fixes an older, looser build)."""
    os.chmod(out, 0o700)
    for name in SECRET_FILES:
        if (out / name).exists():
            os.chmod(out / name, 0o600)


def build_image(out: Path, cache: Path, kernel_meta: str, vm_addresses: list[str]) -> dict:
    """Build (or reuse) the guest image in `out`; returns the manifest."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    restrict(out)
    keys = ensure_keys(out)
    write_known_hosts(out, vm_addresses, keys["host_pub"])
    packages = plan(kernel_meta)
    wanted = input_hash(packages, keys)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        files_ok = all(
            (out / name).exists() and sha256_file(out / name) == digest
            for name, digest in old.get("files", {}).items()
        )
        if old.get("input_hash") == wanted and files_ok:
            old["cached"] = True
            return old
    started = time.monotonic()
    debs = download(packages, cache)
    with scratch("guest") as tmp:
        tree = Path(tmp) / "tree"
        root = Path(tmp) / "root"
        for deb in debs.values():
            _run(["dpkg-deb", "-x", str(deb), str(tree)])
        kvers = sorted(os.listdir(tree / "lib" / "modules"))
        if len(kvers) != 1:
            raise MigfwError(f"guest image: expected one kernel in the packages, found {kvers}")
        kver = kvers[0]
        modules = _module_order(tree, kver)
        for mod in modules:
            _copy(tree / mod.lstrip("/"), root, mod)
        libs: dict[str, str] = {}
        host_libs: list[str] = []
        extra = tree / "usr" / "lib" / "x86_64-linux-gnu"
        for src, dest in BINARIES.items():
            _copy(tree / src, root, dest)
            for lib in shared_libs(tree / src, extra):
                if lib.startswith(str(tree)):
                    rel = "/" + os.path.relpath(lib, tree)
                    _copy(Path(lib), root, rel)
                    libs[rel] = "from packages"
                else:
                    _copy(Path(lib), root, lib)
                    host_libs.append(lib)
        libs.update(host_lib_owners(sorted(set(host_libs))))
        # Debian's dropbear looks for the SFTP subsystem at /usr/lib/sftp-server.
        (root / "usr/lib/sftp-server").symlink_to("/usr/lib/openssh/sftp-server")
        _copy(tree / "bin" / "busybox", root, "/bin/busybox")
        applets = _run([str(tree / "bin" / "busybox"), "--list-full"]).split()
        for applet in applets:
            link = root / applet
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
        # The guest's own files.
        _copy(GUEST_RESOURCES / "init", root, "/init")
        _copy(GUEST_RESOURCES / "inittab", root, "/etc/inittab")
        _copy(GUEST_RESOURCES / "ftpd", root, "/usr/sbin/migfw-ftpd")
        _copy(GUEST_RESOURCES / "hold", root, "/usr/sbin/migfw-hold")
        _copy(GUEST_RESOURCES / "ftp-readme.txt", root, "/srv/ftp/readme.txt")
        compiler = build_dirty(root / "usr/bin/migfw-dirty")
        build_dirty(root / "usr/bin/migfw-syn", "syn.c")  # the egress attacker (issue 22)
        _copy(out / HOST_KEY, root, f"/etc/dropbear/{HOST_KEY}")
        files = {
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            "etc/group": "root:x:0:\nnogroup:x:65534:\n",
            "etc/shells": "/bin/sh\n",
            "etc/migfw/modules.list": "".join(f"{m}\n" for m in modules),
            "root/.ssh/authorized_keys": keys["client_pub"] + "\n",
            "srv/www/index.html": "migfw guest\n",
        }
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        os.chmod(root / "root", 0o700)
        os.chmod(root / "root" / ".ssh", 0o700)
        os.chmod(root / "root/.ssh/authorized_keys", 0o600)
        for rel in ("init", "usr/sbin/migfw-ftpd", "usr/sbin/migfw-hold"):
            os.chmod(root / rel, 0o755)
        for rel in ("proc", "sys", "dev", "tmp", "run", "var/log"):
            (root / rel).mkdir(parents=True, exist_ok=True)
        names = sorted(
            os.path.relpath(os.path.join(d, n), root)
            for d, dirs, fs in os.walk(root)
            for n in dirs + fs
        )
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible", "-R", "0:0"],
            input=("\n".join(names) + "\n").encode(),
            capture_output=True,
            cwd=root,
            check=False,
        )
        if cpio.returncode != 0:
            raise MigfwError(f"guest image: cpio failed: {cpio.stderr.decode().strip()}")
        with atomic_write(out / "initramfs.img", "wb") as handle:
            handle.write(gzip.compress(cpio.stdout, compresslevel=6, mtime=0))
        os.chmod(out / "initramfs.img", 0o600)  # it holds the host private key
        with atomic_write(out / "vmlinuz", "wb") as handle:
            handle.write((tree / "boot" / f"vmlinuz-{kver}").read_bytes())
    manifest = {
        "input_hash": wanted,
        "builder_version": BUILDER_VERSION,
        "kernel_version": kver,
        "packages": packages,
        "shared_libraries": libs,
        "modules": modules,
        "workload_compiler": compiler,
        "files": {
            name: sha256_file(out / name)
            for name in ("vmlinuz", "initramfs.img", HOST_KEY, CLIENT_KEY)
        },
        "initramfs_bytes": (out / "initramfs.img").stat().st_size,
        "host_key": keys["host_pub"],
        "built_at": time.time(),
        "build_seconds": round(time.monotonic() - started, 2),
        "cached": False,
    }
    write_json(manifest_path, manifest)
    restrict(out)
    return manifest


def default_vm_addresses(cfg: dict) -> list[str]:
    import ipaddress

    from migfw.testbed.base import cfg_get

    subnet = ipaddress.ip_network(cfg_get(cfg, "testbed.local.subnet"))
    return [str(subnet.network_address + 10)]


def build_guest_image(
    config: str | Path, out: str | Path, cache: str | Path = "results/testbed/cache"
) -> None:
    """Rule guest_image: the guest's kernel and initramfs from Debian packages into `out`
    (manifest.json names each file with its SHA-256), packages cached in `cache`."""
    from migfw.testbed.base import cfg_get, load_config

    cfg = load_config(config)
    kernel_meta = cfg_get(cfg, "testbed.guest.kernel_package")
    out = Path(out)
    manifest = build_image(out, Path(cache), kernel_meta, default_vm_addresses(cfg))
    state = "cached" if manifest.get("cached") else f"built in {manifest['build_seconds']} s"
    print(
        f"guest image {out}: kernel {manifest['kernel_version']}, initramfs "
        f"{manifest['initramfs_bytes'] / 1e6:.1f} MB, {state}"
    )


def _cmd_image(args: argparse.Namespace) -> int:
    build_guest_image(args.config, args.out, args.cache)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("image", help="build the guest kernel + initramfs from Debian packages")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--out", default="results/testbed/guest")
    parser.add_argument("--cache", default="results/testbed/cache")
    parser.set_defaults(func=_cmd_image)
