"""Migration settings: the config's `migration` block validated (`migration_settings`), turned
into libvirt flags and VIR_MIGRATE_PARAM_* parameters (`plan`), and the trial.json records of
what was asked for (`requested_record`) and what libvirt and QEMU report in force
(`in_force_record`). Pure logic: no libvirt connection (the live call is migfw.testbed.migrate).
"""

from __future__ import annotations

from typing import Any

from migfw.config import default
from migfw.errors import MigfwError

MODES = ("client", "p2p")
# Level names are slug-safe (they appear in trial ids): `autoconverge`, not auto-converge.
ALGORITHMS = ("precopy", "postcopy", "autoconverge", "multifd", "xbzrle")
ALGORITHM_ALIASES = {"auto-converge": "autoconverge"}
# The QEMU migration capability each non-default algorithm switches on.
ALGORITHM_CAPABILITY = {
    "postcopy": "postcopy-ram",
    "autoconverge": "auto-converge",
    "multifd": "multifd",
    "xbzrle": "xbzrle",
}
# What migrateGetMaxSpeed returns when no cap is set: INT64_MAX bytes/s in MiB/s.
UNLIMITED_MIBPS = 2**63 // 2**20 - 1
# The config schema's `migration` defaults (the one place they live). stall_timeout_s and
# slow_stall_s are the progress watchdog (ProgressWatch): abort after this long without
# progress; flag a finished migration that had a stretch without progress this long.
DEFAULTS: dict[str, Any] = {
    key: default(f"migration.{key}")
    for key in ("mode", "bandwidth_mibps", "max_downtime_ms", "algorithm", "multifd_channels",
                "xbzrle_cache_mib", "stall_timeout_s", "slow_stall_s")
}  # fmt: skip


def validate_settings(mode: str, bandwidth_mibps: float, max_downtime_ms: float) -> None:
    migration_settings(
        {"mode": mode, "bandwidth_mibps": bandwidth_mibps, "max_downtime_ms": max_downtime_ms}
    )


def migration_settings(values: dict[str, Any], where: str = "migration") -> dict[str, Any]:
    """Validated, complete migration settings from a dict (config keys or trial factors).

    Unknown keys are ignored (the dict may hold other factors); a bad value is a one-line
    MigfwError naming `where.key`.
    """
    out = dict(DEFAULTS)
    out.update({k: v for k, v in values.items() if k in DEFAULTS and v is not None})
    if out["mode"] not in MODES:
        raise MigfwError(f"config {where}.mode: {out['mode']!r} is not one of {', '.join(MODES)}")
    out["algorithm"] = ALGORITHM_ALIASES.get(out["algorithm"], out["algorithm"])
    if out["algorithm"] not in ALGORITHMS:
        raise MigfwError(
            f"config {where}.algorithm: {out['algorithm']!r} is not one of {', '.join(ALGORITHMS)}"
        )
    numbers = ("bandwidth_mibps", "max_downtime_ms", "multifd_channels", "xbzrle_cache_mib",
               "stall_timeout_s", "slow_stall_s")  # fmt: skip
    for key in numbers:
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise MigfwError(f"config {where}.{key}: {out[key]!r} is not a number") from None
        if out[key] < 0:
            raise MigfwError(f"config {where}.{key}: {out[key]:g} is negative")
    if out["multifd_channels"] < 1 or out["multifd_channels"] != int(out["multifd_channels"]):
        raise MigfwError(
            f"config {where}.multifd_channels: {out['multifd_channels']:g} is not a whole "
            "number >= 1"
        )
    out["multifd_channels"] = int(out["multifd_channels"])
    if out["stall_timeout_s"] < 1:
        raise MigfwError(
            f"config {where}.stall_timeout_s: {out['stall_timeout_s']:g} s is below 1 s (the "
            "job statistics are sampled every 25 ms; shorter would abort healthy migrations)"
        )
    if not 0 < out["slow_stall_s"] < out["stall_timeout_s"]:
        raise MigfwError(
            f"config {where}.slow_stall_s: {out['slow_stall_s']:g} s must be above 0 and below "
            f"stall_timeout_s ({out['stall_timeout_s']:g} s)"
        )
    return out


def plan(settings: dict[str, Any], lv: Any) -> tuple[int, dict[str, Any]]:
    """libvirt flags and typed parameters (without the URI) for `settings`.

    `lv` is the libvirt module (passed in so this stays testable against its real constants).
    """
    flags = lv.VIR_MIGRATE_LIVE
    params: dict[str, Any] = {}
    if settings["bandwidth_mibps"] > 0:
        params[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = int(settings["bandwidth_mibps"])
    algorithm = settings["algorithm"]
    if algorithm == "postcopy":
        flags |= lv.VIR_MIGRATE_POSTCOPY
        if settings["bandwidth_mibps"] > 0:  # the cap holds after the switch too
            params[lv.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = int(settings["bandwidth_mibps"])
    elif algorithm == "autoconverge":
        flags |= lv.VIR_MIGRATE_AUTO_CONVERGE
    elif algorithm == "multifd":
        flags |= lv.VIR_MIGRATE_PARALLEL
        params[lv.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(settings["multifd_channels"])
    elif algorithm == "xbzrle":
        flags |= lv.VIR_MIGRATE_COMPRESSED
        params[lv.VIR_MIGRATE_PARAM_COMPRESSION] = "xbzrle"
        if settings["xbzrle_cache_mib"] > 0:
            params[lv.VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE] = int(
                settings["xbzrle_cache_mib"] * 1024 * 1024
            )
    return flags, params


def requested_record(settings: dict[str, Any]) -> dict[str, Any]:
    """trial.json `migration.requested`: what was asked for (0 = hypervisor default → null)."""
    return {
        "algorithm": settings["algorithm"],
        "bandwidth_mibps": settings["bandwidth_mibps"] or None,
        "max_downtime_ms": settings["max_downtime_ms"] or None,
        "multifd_channels": settings["multifd_channels"]
        if settings["algorithm"] == "multifd"
        else None,
        "xbzrle_cache_mib": settings["xbzrle_cache_mib"] or None,
    }


def in_force_record(
    max_speed_mibps: float | None,
    max_downtime_ms: float | None,
    qemu_parameters: dict[str, Any] | None,
    qemu_capabilities: dict[str, bool] | None,
    memory_mib: float | None,
    postcopy_started: bool,
) -> dict[str, Any]:
    """trial.json `migration.in_force`: the settings as libvirt and QEMU report them."""
    caps = qemu_capabilities or {}
    qp = qemu_parameters or {}
    algorithm = None
    if qemu_capabilities is not None:
        on = [name for name, cap in ALGORITHM_CAPABILITY.items() if caps.get(cap)]
        algorithm = "+".join(on) if on else "precopy"
    bandwidth = qp.get("max-bandwidth")
    return {
        "algorithm": algorithm,
        "bandwidth_mibps": max_speed_mibps,
        "max_downtime_ms": max_downtime_ms,
        # libvirt sets INT64_MAX bytes/s where no cap was asked for: no limit → null.
        "qemu_max_bandwidth_mibps": bandwidth / 2**20
        if isinstance(bandwidth, int) and bandwidth / 2**20 < UNLIMITED_MIBPS
        else None,
        "qemu_downtime_limit_ms": qp.get("downtime-limit"),
        "multifd_channels": qp.get("multifd-channels") if caps.get("multifd") else None,
        "xbzrle_cache_mib": qp["xbzrle-cache-size"] / 2**20
        if caps.get("xbzrle") and isinstance(qp.get("xbzrle-cache-size"), int)
        else None,
        "memory_mib": memory_mib,
        "postcopy_started": postcopy_started,
        "qemu_capabilities": sorted(k for k, v in caps.items() if v) if caps else None,
    }
