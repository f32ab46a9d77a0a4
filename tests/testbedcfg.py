"""What the real-testbed tests share: when they can run, and a config for their own testbed
(own prefix and subnets, short lead-in and settle, state in a temporary folder)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def skip_reason(commands: tuple[str, ...] = ()) -> str | None:
    """Why a real-testbed test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces, libvirtd)"
    for cmd in ("qemu-system-x86_64", "libvirtd", "tcpdump", "ip", "nft", *commands):
        # sshd lives in /usr/sbin, which a non-login PATH may lack
        if shutil.which(cmd) is None and not Path("/usr/sbin", cmd).exists():
            return f"{cmd} not installed"
    for module in ("libvirt", "fabric", "scapy"):
        try:
            __import__(module)
        except ImportError:
            return f"python module {module} missing"
    return None


def local_config(
    prefix: str, state: Path, subnet: str | None = None, migration_subnet: str | None = None
) -> dict[str, Any]:
    """The default config pointed at a testbed of the test's own (guest image shared)."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ruleset"] = str(REPO / "config" / "ruleset.yaml")
    cfg["testbed"]["provider"] = "local"
    cfg["testbed"]["local"]["prefix"] = prefix
    if subnet:
        cfg["testbed"]["local"].update(subnet=subnet, migration_subnet=migration_subnet)
    cfg["testbed"]["state_dir"] = str(state)
    cfg["testbed"]["guest_dir"] = str(REPO / "results" / "testbed" / "guest")
    cfg["trials"]["lead_in_s"] = 2.0
    cfg["trials"]["settle_s"] = 2.0
    # MIGFW_TEST_EMULATOR=.qemu-backports/qemu-system-x86_64 runs them on another QEMU.
    if os.environ.get("MIGFW_TEST_EMULATOR"):
        emulator = Path(os.environ["MIGFW_TEST_EMULATOR"])
        cfg["testbed"]["guest"]["emulator"] = str(
            emulator if emulator.is_absolute() else REPO / emulator
        )
    return cfg


def own_net(variable: str, default: str) -> tuple[str, str, str]:
    """(prefix, subnet, migration subnet) of a test's own testbed; `variable` overrides it
    as "prefix,subnet,migration_subnet" so parallel sessions never share one."""
    prefix, subnet, migration = (os.environ.get(variable) or default).split(",")
    return prefix, subnet, migration


@contextmanager
def local_testbed(
    net: tuple[str, str | None, str | None], state: Path, needs: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """The config of a local testbed of the test's own, taken down whatever the test did;
    skips the test where a real testbed cannot run (`needs`: extra commands)."""
    reason = skip_reason(needs)
    if reason:
        pytest.skip(reason)
    from migfw.testbed.local import LocalTestbed

    prefix, subnet, migration = net
    cfg = local_config(prefix, state, subnet, migration)
    try:
        yield cfg
    finally:
        LocalTestbed(cfg).down(quiet=True)
