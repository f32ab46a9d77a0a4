"""After a failed migration the testbed repairs itself so a run goes on: dead daemons
restarted (local), the VM found on either host or re-provisioned, stray QEMUs killed by PID.
"""

from __future__ import annotations

from pathlib import Path
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


class LoginAhead:
    """A guest login made in a daemon thread while the probes stop (after the migration and
    the settle: nothing of the trial changes the guest's path any more); `take()` waits for
    it and returns the open shell, or raises what the login raised."""

    def __init__(self, bed: Testbed) -> None:
        import threading

        from migfw.testbed.firewall import guest_shell

        self.shell = guest_shell(bed)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._open, name="migfw-login-ahead", daemon=True)
        self.thread.start()

    def _open(self) -> None:
        try:
            self.shell.open()
        except BaseException as exc:  # noqa: BLE001 - raised by take()
            self.error = exc

    def take(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.shell


def after_migration(
    cfg: dict[str, Any],
    bed: Testbed,
    partial: Path,
    log: Any,
    result: dict[str, Any],
    source: str,
    before: str,
    load: dict[str, Any],
    extras: Any,
    clocks: dict[str, Any],
    ahead: LoginAhead | None = None,
) -> dict[str, Any]:
    """After the probes stopped: the guest's console, the repair after a failed migration,
    then the guest's ruleset and workload report (a guest that no longer answers is
    replaced). `ahead`: a login made while the probes stopped, used unless the migration
    failed (the repair may replace the VM). Returns failure, recovery, repair_error, after,
    diff, identical, console, workload."""
    from migfw.testbed import workload
    from migfw.testbed.deploy import diff_rulesets, read_ruleset
    from migfw.testbed.firewall import guest_shell
    from migfw.testbed.provision import guest_console

    failure, mig = result["failure"], result["migration"]
    # Read the guest's console before any repair re-provisions the VM (which empties it):
    # where it ran after the migration, i.e. the destination unless the migration failed.
    console = guest_console(bed, source if mig.get("hypervisor") is None else bed.other(source))
    if console is not None:
        (partial / "console.log").write_text(console[0])
        log("console", **console[1])
    recovery, repair_error = None, None
    if clocks:
        from migfw.testbed.hostclocks import clock_offsets

        clocks["end"] = clock_offsets(bed)
        log("clock", **clocks["end"])
    if failure:
        # A hypervisor fault is an outcome: repair the testbed so the run goes on.
        try:
            recovery = recover(cfg, bed)
            log("recovered", **recovery)
        except MigfwError as exc:
            repair_error = str(exc)
            recovery = {"error": repair_error}
            log("repair_failed", error=repair_error)
    after, diff, identical = None, None, None
    load_record: dict[str, Any] = {"name": load["workload"], "report": None}
    try:
        if repair_error:
            raise MigfwError("testbed not repaired")
        if ahead is not None and not failure:
            shell = ahead.take()
        else:
            shell = guest_shell(bed)
            shell.open()
        try:
            after = read_ruleset(shell)
            load_record = workload.stop(shell, load)
            extras.restore(shell)  # nf_conntrack_tcp_loose back to the kernel's 1
        finally:
            shell.close()
        diff = diff_rulesets(before, after)
        identical = not diff
        (partial / "ruleset_after.nft").write_text(after)
    except MigfwError as exc:
        log("ruleset_after_failed", error=str(exc))
        if not failure:
            failure = f"cannot read the ruleset after migration: {exc}"
        if not repair_error and bed.provider == "local":
            # A guest that no longer answers is as good as gone: replace it, so the
            # next trial starts from a fresh VM (and re-deploys its ruleset).
            try:
                recovery = {**(recovery or {}), **reprovision(bed)}
                log("reprovisioned", **recovery)
            except MigfwError as exc2:
                repair_error = str(exc2)
                recovery = {**(recovery or {}), "error": repair_error}
                log("repair_failed", error=repair_error)
    return {"failure": failure, "recovery": recovery, "repair_error": repair_error,
            "after": after, "diff": diff, "identical": identical,
            "console": console[1] if console is not None else None,
            "workload": load_record}  # fmt: skip
