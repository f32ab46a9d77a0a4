"""After a failed migration the testbed repairs itself so a run goes on: dead daemons
restarted (local), the VM found on either host or re-provisioned, stray QEMUs killed by PID.
"""

from __future__ import annotations

from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed


def recover(cfg: dict[str, Any], bed: Testbed) -> dict[str, Any]:
    """After a failed migration: restart dead daemons (local), then one running VM again.

    Raises MigfwError (one line) when the testbed cannot be repaired.
    """
    from migfw.testbed.provision import ensure_vm

    repaired: list[str] = []
    if bed.provider == "local":
        from migfw.testbed.local import LocalTestbed

        repaired = LocalTestbed(cfg).repair()
    earlier_boot = bed.extra.pop("last_boot_s", None)
    try:
        where = ensure_vm(bed)  # sets last_boot_s only when it booted a new VM
    except MigfwError:
        if bed.provider != "local":
            raise
        # A daemon that died during the repair itself (libvirt 9.0 after a killed QEMU):
        # once more, then give up in one line.
        repaired += LocalTestbed(cfg).repair()
        where = ensure_vm(bed)
    reprovisioned = "last_boot_s" in bed.extra
    if not reprovisioned and earlier_boot is not None:
        bed.extra["last_boot_s"] = earlier_boot
    if bed.provider == "local":
        from migfw.testbed.local import LocalTestbed, kill_pid

        local = LocalTestbed(cfg)
        keep = local.vm_pid(where)
        for pid in local.stray_qemus(keep) if keep else []:
            kill_pid(pid)
            repaired.append(f"killed QEMU PID {pid} left by the failed migration")
    return {"repaired": repaired, "vm_host": where, "reprovisioned": reprovisioned}


def reprovision(bed: Testbed) -> dict[str, Any]:
    """Destroy the unreachable VM wherever it runs and boot a new one (local provider)."""
    from migfw.testbed.provision import destroy_vm, ensure_vm

    destroy_vm(bed)
    where = ensure_vm(bed)
    return {"vm_host": where, "reprovisioned": True,
            "reason": "guest unreachable after the trial"}  # fmt: skip
