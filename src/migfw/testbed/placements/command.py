"""`migfw testbed placement --placement P --out F.json`: deploy one placement on the running
testbed and record its packet checks (the DAG's `deploy_placement` evidence); each trial
deploys and verifies its placement again. Not a placement: the registry never imports it,
and its testbed imports are inside the function.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from migfw.errors import MigfwError
from migfw.scratch import scratch
from migfw.testbed.placements import TrialContext, get, names


def deploy_placement(config: str | Path, placement: str, out: str | Path) -> None:
    """Rule deploy_placement: the ruleset deployed where `placement` puts it on the testbed
    of `config`, proved with packets; the rules and checks written to `out` (JSON)."""
    import time

    from migfw.io import write_json
    from migfw.testbed.base import load_config
    from migfw.testbed.ovn_placement import ensure_nic
    from migfw.testbed.owner import acquire
    from migfw.testbed.providers import ensure_up
    from migfw.testbed.provision import find_vm
    from migfw.testbed.trialdir import EventLog

    try:
        cls = get(placement)
    except MigfwError as exc:
        raise MigfwError(f"--placement: {exc}") from None
    cfg = load_config(config)
    owner = acquire(cfg, "migfw testbed placement")  # None: our Snakemake run owns it
    try:
        bed = ensure_up(cfg)
        ensure_nic(cfg, bed, cls.name, lambda *a, **k: None)
        current = find_vm(bed)
        if current is None:
            raise MigfwError(f"VM {bed.vm_name} is not running on exactly one host")
        with scratch("placement") as tmp:
            log = EventLog(Path(tmp) / "events.jsonl")
            plc = cls(TrialContext(cfg, bed, current, log, Path(tmp)))
            try:
                fw = plc.deploy()
            finally:
                log.close()
            rendered = {p.name: p.read_text() for p in Path(tmp).iterdir()
                        if p.suffix in (".nft", ".xml")}  # fmt: skip
        plc.after_trial()  # e.g. the control leaves no lasting change
    finally:
        if owner is not None:
            owner.release()
    failed = sum(1 for c in fw["checks"] if c["ok"] is False)
    write_json(out, {"placement": cls.name, "vm_host": current,
                          "rules_where": fw["where"], "checks": fw["checks"],
                          "rendered": rendered, "at": time.time()})  # fmt: skip
    probed = sum(1 for c in fw["checks"] if c["ok"] is not None)
    print(f"placement {cls.name} on host {current}: {probed - failed}/{probed} packet "
          f"checks as expected; rules at {fw['where']}")  # fmt: skip


def _cmd_placement(args: argparse.Namespace) -> int:
    deploy_placement(args.config, args.placement, args.out)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    place = sub.add_parser("placement", help="deploy a firewall placement and verify it")
    place.add_argument("--config", default="config/config.yaml")
    place.add_argument("--placement", required=True, help=" | ".join(names()))
    place.add_argument("--out", required=True, help="JSON evidence: rules and packet checks")
    place.set_defaults(func=_cmd_placement)
