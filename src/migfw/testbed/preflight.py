"""`migfw testbed preflight`: everything the testbed needs, each problem on one line."""

from __future__ import annotations

import argparse
import importlib
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import cfg_get, load_config, state_dir

COMMANDS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "libvirtd": "libvirt-daemon-driver-qemu",
    "ip": "iproute2",
    "tcpdump": "tcpdump",
    "nft": "nftables",
    "unshare": "util-linux",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "cpio": "cpio",
    "depmod": "kmod",
    "modprobe": "kmod",
    "dropbearkey": "dropbear-bin",
}
# The lab in a box (testbed.lab_in_a_box) also runs SSH servers; libvirt's SSH transports
# reach a daemon's socket given by socket= through nc on the host.
LAB_COMMANDS = {"sshd": "openssh-server", "ssh-keygen": "openssh-client", "nc": "netcat-openbsd"}
MODULES = {"libvirt": "libvirt-python", "fabric": "fabric", "scapy": "scapy"}


def problems(cfg: dict[str, Any], check_kvm: bool = True) -> list[str]:
    """All reasons the local testbed cannot run here (empty list: good to go)."""
    found = []
    if os.geteuid() != 0:
        found.append("not root: the local testbed creates namespaces and runs libvirtd (use sudo)")
    if not Path("/dev/net/tun").exists():
        found.append("no /dev/net/tun: QEMU cannot create the VM's tap device (modprobe tun)")
    for cmd, package in COMMANDS.items():
        if shutil.which(cmd) is None:
            found.append(f"command {cmd} not found (apt-get install {package})")
    for module, package in MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            found.append(f"python module {module} not importable (pip install {package})")
    if cfg_get(cfg, "testbed.lab_in_a_box"):
        for cmd, package in LAB_COMMANDS.items():
            if shutil.which(cmd) is None:
                found.append(f"command {cmd} not found (apt-get install {package})")
    accel = cfg_get(cfg, "testbed.accelerator")
    if accel not in ("auto", "kvm", "tcg"):
        found.append(f"config testbed.accelerator: {accel!r} is not auto, kvm or tcg")
    elif accel == "kvm" and check_kvm:
        guest = state_dir(cfg) / "guest"
        if not Path("/dev/kvm").exists():
            found.append("config testbed.accelerator is kvm but /dev/kvm does not exist")
        elif (guest / "vmlinuz").exists() and (guest / "initramfs.img").exists():
            from migfw.testbed.accel import try_kvm

            ok, reason = try_kvm(guest / "vmlinuz", guest / "initramfs.img")
            if not ok:
                found.append(f"config testbed.accelerator is kvm but KVM does not work: {reason}")
    return found


def ensure_libvirt_qemu_user() -> bool:
    """libvirtd's QEMU driver refuses to start without a libvirt-qemu user (Debian's
    libvirt-daemon-system package makes it; the bare daemon package does not). True if made."""
    try:
        pwd.getpwnam("libvirt-qemu")
        return False
    except KeyError:
        pass
    from migfw.testbed.netns import run

    run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
        "/usr/sbin/nologin", "libvirt-qemu"])  # fmt: skip
    print("testbed: created system user libvirt-qemu (needed by libvirtd's QEMU driver)")
    return True


def require_local(cfg: dict[str, Any]) -> None:
    """Raise the first problem as a MigfwError (the full list comes from `preflight`)."""
    found = problems(cfg, check_kvm=False)
    if found:
        more = f" (+{len(found) - 1} more: run `migfw testbed preflight`)" if len(found) > 1 else ""
        raise MigfwError(f"preflight: {found[0]}{more}")
    ensure_libvirt_qemu_user()


def run_preflight(config: str | Path) -> int:
    """Rule testbed_preflight: one `preflight: ...` line per problem (root, /dev/net/tun,
    commands, Python modules, KVM) for the testbed `config` asks for; 2 if there is any."""
    cfg = load_config(config)
    local = cfg_get(cfg, "testbed.provider") == "local"
    if not local and not cfg_get(cfg, "testbed.lab_in_a_box"):
        found = [p for p in problems(cfg, check_kvm=False) if "python module" in p]
    else:
        found = problems(cfg)
    for line in found:
        print(f"preflight: {line}")
    if not found:
        try:
            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            print("preflight: note: `migfw testbed up` will create system user libvirt-qemu")
        print("preflight: ok")
    return 2 if found else 0


def _cmd_preflight(args: argparse.Namespace) -> int:
    return run_preflight(args.config)


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "preflight", help="check root, tun, commands and modules for the testbed"
    )
    parser.add_argument("--config", default="config/config.yaml")
    parser.set_defaults(func=_cmd_preflight)
