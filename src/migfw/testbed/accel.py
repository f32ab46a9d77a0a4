"""Accelerator choice: try KVM for real (boot the guest briefly), else fall back to TCG.

Some machines expose /dev/kvm but cannot run guests with it (nested or paravirtualised
CPUs: QEMU aborts or the guest hangs), so opening the device is not enough. `auto` boots the
guest kernel under `-accel kvm` with the CPU model the domain will use and waits for the
init's ready marker; without it within the timeout, TCG is used and the reason recorded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.scratch import scratch

QEMU = "qemu-system-x86_64"


def qemu_version(binary: str | None = None) -> str:
    try:
        out = subprocess.run([binary or QEMU, "--version"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return "missing"
    return out.splitlines()[0].strip() if out else "unknown"


def try_kvm(kernel: Path, initrd: Path, timeout: float = 10.0) -> tuple[bool, str]:
    """(works, reason): boot the guest under KVM and wait for the ready marker."""
    from migfw.testbed.guest import READY_MARKER

    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    with scratch("kvm") as tmp:
        serial = Path(tmp) / "serial.log"
        proc = subprocess.Popen(
            [
                QEMU,
                "-accel",
                "kvm",
                "-machine",
                "pc",
                "-m",
                "128",
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-serial",
                f"file:{serial}",
                "-kernel",
                str(kernel),
                "-initrd",
                str(initrd),
                "-append",
                "console=ttyS0 panic=-1",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout:
                if serial.exists() and READY_MARKER in serial.read_text(errors="replace"):
                    return True, f"guest booted under KVM in {time.monotonic() - started:.1f} s"
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    return False, f"qemu -accel kvm exited: {err[-1] if err else proc.returncode}"
                time.sleep(0.1)
            return False, f"guest did not boot under KVM within {timeout:.0f} s"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def detect_accelerator(
    mode: str, kernel: Path, initrd: Path, cache_dir: Path, image_hash: str
) -> dict[str, Any]:
    """Return {"requested", "used", "kvm_ok", "reason"}; cached per QEMU/kernel/image."""
    if mode not in ("auto", "kvm", "tcg"):
        raise MigfwError(f"config testbed.accelerator: {mode!r} is not auto, kvm or tcg")
    if mode == "tcg":
        return {"requested": "tcg", "used": "tcg", "kvm_ok": None, "reason": "configured"}
    key = {"qemu": qemu_version(), "host_kernel": platform.release(), "image": image_hash}
    cache = cache_dir / "accel.json"
    result = None
    if cache.exists():
        try:
            old = json.loads(cache.read_text())
            if old.get("key") == key:
                result = old["result"]
        except (json.JSONDecodeError, KeyError):
            result = None
    if result is None:
        ok, reason = try_kvm(kernel, initrd)
        result = {"kvm_ok": ok, "reason": reason, "tested_at": time.time()}
        write_json(cache, {"key": key, "result": result})
    if mode == "kvm" and not result["kvm_ok"]:
        raise MigfwError(
            f"config testbed.accelerator is kvm but KVM does not work: {result['reason']}"
        )
    used = "kvm" if result["kvm_ok"] else "tcg"
    return {"requested": mode, "used": used, **result}
