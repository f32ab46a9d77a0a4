"""`migfw testbed trial --config C --spec results/design.tsv --trial-id ID --out DIR`: the
trial's spec is its row of the design sheet (migfw.trials.design): experiment, repetition,
host pair, every factor level; without --spec the config's experiments are expanded the same
way, and a trial named by hand takes `--factors JSON` / `--interval`. The testbed's owner
lock here; migfw.testbed.trial.run_trial does the rest.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import cfg_get, load_config
from migfw.trials.design import TrialSpec


def resolve_trial(cfg: dict[str, Any], args: argparse.Namespace) -> TrialSpec:
    """The trial's spec: its design-sheet row (--spec), else the config's design, else (a
    trial named by hand) --factors and --interval; --interval, --repetition and --pair
    override."""
    from migfw.testbed.pairs import pair_count
    from migfw.trials.design import adhoc_spec, design_spec, lookup

    if args.spec and args.factors:
        raise MigfwError("--factors: the design sheet (--spec) gives the trial's levels")
    if args.spec:
        spec = lookup(args.spec, args.trial_id)
    elif args.factors or args.interval is not None:
        try:
            factors = json.loads(args.factors or "{}")
        except json.JSONDecodeError as exc:
            raise MigfwError(f"--factors: not JSON ({exc})") from None
        if not isinstance(factors, dict):
            raise MigfwError("--factors: expected a JSON object of factor levels")
        spec = adhoc_spec(args.trial_id, factors, strict=False)
    else:
        spec = design_spec(cfg.get("experiments") or {}, args.trial_id, pair_count(cfg))
    if args.interval is not None:
        spec = spec.replace(factors={**spec.factors, "interval_s": args.interval})
    if args.repetition is not None:
        spec = spec.replace(repetition=args.repetition)
    if args.pair is not None:
        spec = spec.replace(pair=args.pair)
    if spec.interval_s is None:
        raise MigfwError(f"trial {args.trial_id}: no interval_s (give --interval or --factors)")
    return spec


def run_design_trial(config: str | Path, design: str | Path, trial_id: str, out: str | Path) -> int:
    """Rule trial: the trial `trial_id` of the design sheet `design` (its row: levels, pair)
    run on the testbed of `config` into folder `out`; 1 if the migration failed (a result:
    status failed in trial.json)."""
    from migfw.trials.design import lookup

    return run_folder(config, out, lambda cfg: lookup(design, trial_id))


def run_folder(
    config: str | Path, out: str | Path, spec_of: Callable[[dict[str, Any]], TrialSpec]
) -> int:
    """One trial into folder `out`, its spec `spec_of(config)`; see run_design_trial."""
    from migfw.testbed.local import terminate_as_interrupt
    from migfw.testbed.owner import acquire
    from migfw.testbed.trial import run_trial
    from migfw.testbed.trialdir import refuse_finished

    cfg = load_config(config)
    refuse_finished(Path(out))  # before anything else: a finished trial is immutable
    # Captures are private by default (a lab's hosts have other users): the trial folder 0700,
    # its files 0600, tcpdump's too (it inherits this). docs/testbed.md: sharing results.
    os.umask(0o077)
    spec = spec_of(cfg)
    factors = spec.factors
    interval = float(factors.pop("interval_s"))
    from migfw.testbed.pairs import pair_config

    # The pair the workflow's resource reserved for this trial (the design sheet's).
    pair = spec.pair
    # None: our Snakemake run owns the testbed
    owner = acquire(pair_config(cfg, pair), "migfw testbed trial")
    try:
        with terminate_as_interrupt():
            meta = run_trial(
                cfg, spec.trial_id, interval, out, spec.repetition, spec.of, spec.index,
                spec.experiment, factors, spec.lead_in_s, spec.settle_s, spec.attack_rate_hz,
                pair=pair,
            )  # fmt: skip
    except KeyboardInterrupt:
        # An interrupted run leaves nothing behind: the partial trial moved aside (run_trial),
        # no prober (ProbeSession killed it) and, on the local provider, no testbed.
        if cfg_get(cfg, "testbed.provider") == "local":
            from migfw.testbed.local import LocalTestbed
            from migfw.testbed.pairs import pair_config

            LocalTestbed(pair_config(cfg, pair)).down(quiet=True)
        raise
    finally:
        if owner is not None:
            owner.release()
    # A failed migration is a result (status failed in trial.json), not a command error.
    return 0 if meta else 1


def _cmd_trial(args: argparse.Namespace) -> int:
    return run_folder(args.config, args.out, lambda cfg: resolve_trial(cfg, args))


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trial", help="run one live-migration trial and write its folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--trial-id", required=True, help="<experiment>/<slug>-rNN")
    parser.add_argument("--spec", help="design sheet (results/design.tsv) holding the trial's row")
    parser.add_argument("--out", required=True, help="trial folder (must not hold a trial)")
    parser.add_argument("--factors", help="factor levels as JSON (default: from the config)")
    parser.add_argument("--interval", type=float, default=None, help="probe interval (s)")
    parser.add_argument("--repetition", type=int, default=None)
    parser.add_argument(
        "--pair", type=int, default=None, help="host pair (testbed.pairs); default: the trial's"
    )
    parser.set_defaults(func=_cmd_trial)
