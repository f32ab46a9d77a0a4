"""`migfw testbed trial --config C --trial-id <experiment>/<slug>-rNN --out DIR`: the trial's
factor levels from its id and the config's experiments (or `--factors JSON`), its host pair,
the testbed's owner lock; migfw.testbed.trial.run_trial does the rest.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import cfg_get, load_config
from migfw.trials.contract import DEFAULT_EXPERIMENT


def resolve_trial(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The trial's experiment, factor levels and repetition: from --factors, or its id and
    the config's experiments (the id alone names the trial; nothing else is needed)."""
    from migfw.trials.contract import parse_trial_id, planned_trials, trial_spec

    try:
        experiment, slug_factors, repetition = parse_trial_id(args.trial_id)
        named = True
    except MigfwError:
        if not (args.factors or args.interval is not None):
            raise
        # A hand-made id outside the contract's naming (tests, a lab's own runs).
        experiment, slug_factors, repetition, named = DEFAULT_EXPERIMENT, {}, 1, False
    if args.factors or not named:
        try:
            factors = json.loads(args.factors or "{}")
        except json.JSONDecodeError as exc:
            raise MigfwError(f"--factors: not JSON ({exc})") from None
        if not isinstance(factors, dict):
            raise MigfwError("--factors: expected a JSON object of factor levels")
        spec = {"experiment": experiment, "repetition": repetition,
                "factors": {**slug_factors, **factors}}  # fmt: skip
    else:
        experiments = cfg.get("experiments") or {}
        spec = trial_spec(experiments, args.trial_id)
        ids = planned_trials(experiments)
        spec["of"] = len(ids)
        spec["index"] = ids.index(args.trial_id) + 1 if args.trial_id in ids else None
    if args.interval is not None:
        spec["factors"] = {**spec["factors"], "interval_s": args.interval}
    if args.repetition is not None:
        spec["repetition"] = args.repetition
    if "interval_s" not in spec["factors"]:
        raise MigfwError(f"trial {args.trial_id}: no interval_s (give --interval or --factors)")
    return spec


def _cmd_trial(args: argparse.Namespace) -> int:
    from migfw.testbed.local import terminate_as_interrupt
    from migfw.testbed.owner import acquire
    from migfw.testbed.trial import run_trial
    from migfw.testbed.trialdir import refuse_finished

    cfg = load_config(args.config)
    refuse_finished(Path(args.out))  # before anything else: a finished trial is immutable
    # Captures are private by default (a lab's hosts have other users): the trial folder 0700,
    # its files 0600, tcpdump's too (it inherits this). docs/testbed.md: sharing results.
    os.umask(0o077)
    spec = resolve_trial(cfg, args)
    factors = dict(spec["factors"])
    interval = float(factors.pop("interval_s"))
    from migfw.testbed.pairs import pair_config, trial_pair

    # The pair the workflow's resource reserved for this trial (round-robin, same function).
    pair = trial_pair(cfg, args.trial_id) if args.pair is None else args.pair
    # None: our Snakemake run owns the testbed
    owner = acquire(pair_config(cfg, pair), "migfw testbed trial")
    try:
        with terminate_as_interrupt():
            meta = run_trial(
                cfg, args.trial_id, interval, args.out, spec["repetition"],
                spec.get("of"), spec.get("index"), spec["experiment"], factors,
                spec.get("lead_in_s"), spec.get("settle_s"), spec.get("attack_rate_hz"),
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


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trial", help="run one live-migration trial and write its folder")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--trial-id", required=True, help="<experiment>/<slug>-rNN")
    parser.add_argument("--out", required=True, help="trial folder (must not hold a trial)")
    parser.add_argument("--factors", help="factor levels as JSON (default: from the config)")
    parser.add_argument("--interval", type=float, default=None, help="probe interval (s)")
    parser.add_argument("--repetition", type=int, default=None)
    parser.add_argument(
        "--pair", type=int, default=None, help="host pair (testbed.pairs); default: the trial's"
    )
    parser.set_defaults(func=_cmd_trial)
