"""`migfw testbed cleanup`: remove leftovers of a killed run (also without state.json).

Finds everything by the configured name prefix: network namespaces `<prefix>-*`, every
process living in one of them (QEMU, libvirtd, tcpdump, prober; matched by namespace
inode, never by process name), QEMUs by libvirt's pid files under the runtime directory
(one whose namespace lost its name is not found by inode), and that directory,
/run/migfw/<prefix>, and the lock file /run/migfw/<prefix>.lock of an owner that died (a live
owner's is never touched).
"""

from __future__ import annotations

import argparse
from typing import Any

from migfw.testbed.base import load_config


def leftovers(cfg: dict[str, Any]) -> dict[str, list]:
    """What `cleanup` would remove: namespaces and pids (a dry run)."""
    from migfw.testbed.local import LocalTestbed, list_netns, pids_in_netns
    from migfw.testbed.owner import lock_path
    from migfw.testbed.pairs import all_pair_configs

    found: dict[str, list] = {"namespaces": [], "pids": [], "run_dir": [], "lock": []}
    for pair_cfg in all_pair_configs(cfg):  # every host pair (testbed.pairs)
        bed = LocalTestbed(pair_cfg)
        names = list_netns(bed.prefix)
        found["namespaces"] += names
        found["pids"] += sorted(set(pids_in_netns(names)) | set(bed.qemu_pids()))
        found["run_dir"] += [str(bed.run_root)] if bed.run_root.exists() else []
        found["lock"] += [str(lock_path(pair_cfg))] if lock_path(pair_cfg).exists() else []
    return found


def cleanup(cfg: dict[str, Any], quiet: bool = False) -> list[str]:
    from migfw.testbed.local import LocalTestbed
    from migfw.testbed.owner import remove_stale
    from migfw.testbed.pairs import all_pair_configs

    removed = []
    for pair_cfg in all_pair_configs(cfg):
        removed += LocalTestbed(pair_cfg).down(quiet=quiet)
        lock = remove_stale(pair_cfg)
        if lock is not None:
            removed.append(lock)
            if not quiet:
                print(f"removed {lock}")
    return removed


def _cmd_cleanup(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.dry_run:
        found = leftovers(cfg)
        labels = {"namespaces": "namespace", "pids": "pid", "run_dir": "directory",
                  "lock": "lock file"}  # fmt: skip
        for kind, items in found.items():
            for item in items:
                print(f"would remove {labels[kind]} {item}")
        if not any(found.values()):
            print("cleanup: nothing left over")
        return 0
    removed = cleanup(cfg)
    print(f"cleanup: removed {len(removed)} items")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cleanup", help="remove leftovers of a killed testbed run")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--dry-run", action="store_true", help="only list what would go")
    parser.set_defaults(func=_cmd_cleanup)
