"""`migfw craft`: crafted trial folders (migfw.trials.crafted) from the command line - one
trial (`--trial`, its levels from a design sheet row `--spec`, a config's experiments or the
options) or a demo set, with attack data for a placement where one is named or planned.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from migfw.errors import MigfwError
from migfw.testbed.placements import get as get_placement
from migfw.testbed.placements import names as placement_names
from migfw.trials.crafted import (
    CraftedAttack,
    CraftedTrial,
    craft_demo_set,
    craft_placement_trial,
    craft_trial,
    crafted_from,
    crafted_spec,
)
from migfw.trials.design import design_spec, lookup

# Experiments whose crafted trials reproduce the thesis's arm: ICMP probes only, no attack data.
NO_ATTACK_EXPERIMENTS = ("thesis", "default", "demo")


def _attack_placement(spec: CraftedTrial, args: argparse.Namespace) -> tuple[str | None, float]:
    """The placement to craft attack data for: --placement, else the trial's own placement
    factor unless its experiment reproduces the thesis (NO_ATTACK_EXPERIMENTS)."""
    factors = getattr(spec, "factors", None) or {}
    level = factors.get("agent_delay_ms")  # None where the experiment has no delay factor
    delay = float(level) if level is not None else args.agent_delay_ms
    if args.placement:
        return args.placement, args.agent_delay_ms
    if getattr(spec, "experiment", None) in (None, *NO_ATTACK_EXPERIMENTS):
        return None, delay
    return factors.get("placement"), delay


def craft_design_trial(design: str | Path, trial: str, out: str | Path) -> None:
    """Rule crafted_trial: the crafted folder of `trial`, its row of the design sheet
    `design`, written to `out` (with the attack data its placement has, as `migfw craft
    --spec DESIGN --trial ID --out DIR` writes it)."""
    # The command's own defaults for every other option (seed, no --placement, ...).
    commands = argparse.ArgumentParser(prog="migfw").add_subparsers()
    register(commands)
    _cli(commands.choices["craft"].parse_args(["--spec", str(design), "--trial", trial,
                                               "--out", str(out)]))  # fmt: skip


def _cli(args: argparse.Namespace) -> int:
    from migfw.trials.contract import EXPERIMENT_NAME

    if args.experiment is not None and not EXPERIMENT_NAME.match(args.experiment):
        raise MigfwError(f"--experiment {args.experiment!r}: must match {EXPERIMENT_NAME.pattern}")
    if args.repetitions < 1:
        raise MigfwError(f"--repetitions {args.repetitions}: must be at least 1")
    if args.spec and not args.trial:
        raise MigfwError("--spec: name the trial (--trial ID, a row of the design sheet)")
    if args.trial:
        if args.spec:  # the design sheet's row: nothing read back from the id
            spec = crafted_from(lookup(args.spec, args.trial), args.seed)
        elif args.config:
            from migfw.io import read_yaml

            cfg = read_yaml(args.config)
            planned = design_spec((cfg or {}).get("experiments") or {}, args.trial)
            spec = crafted_from(planned, args.seed)
        else:
            factors = None
            if args.intervals_given:
                if len(args.intervals) != 1:
                    raise MigfwError(f"--intervals: one trial ({args.trial}) takes one "
                                     f"interval, got {len(args.intervals)}")  # fmt: skip
                factors = {"interval_s": args.intervals[0]}
            spec = crafted_spec(args.trial, args.seed, factors)
        placement, delay = _attack_placement(spec, args)
        if placement:
            levels = spec.factors or {}
            model = {
                "trigger": args.trigger or levels.get("trigger"),
                "port_default": args.port_default or levels.get("port_default"),
                "tcp_loose": args.tcp_loose if args.tcp_loose is not None
                else levels.get("nf_conntrack_tcp_loose"),
            }  # fmt: skip
            issue22 = (args.issue22 or get_placement(placement).crafted_full_model
                       or any(v is not None for v in model.values()))  # fmt: skip
            attack = CraftedAttack(
                placement,
                delay if get_placement(placement).agent else None,
                vmm_window_ms=args.vmm_window_ms,
                rate_hz=args.rate_hz,
                issue22=issue22,
                open_everywhere=not args.guest_only_allow,
                **model,
            )
            extra = {"experiment": args.experiment} if args.experiment else None
            craft_placement_trial(spec, attack, Path(args.out), extra)
        else:
            craft_trial(spec, Path(args.out))
        print(f"crafted {args.trial} in {args.out}")
        return 0
    attack = None
    if args.placement:
        model = {"trigger": args.trigger, "port_default": args.port_default,
                 "tcp_loose": args.tcp_loose}  # fmt: skip
        attack = CraftedAttack(
            args.placement,
            args.agent_delay_ms if get_placement(args.placement).agent else None,
            vmm_window_ms=args.vmm_window_ms,
            rate_hz=args.rate_hz,
            issue22=args.issue22
            or get_placement(args.placement).crafted_full_model
            or any(v is not None for v in model.values()),
            open_everywhere=not args.guest_only_allow,
            **model,
        )
    ids = craft_demo_set(args.out, args.intervals, args.repetitions, args.seed,
                         args.experiment or "demo", attack)  # fmt: skip
    print(f"crafted {len(ids)} trials in {Path(args.out) / (args.experiment or 'demo')}")
    return 0


class _Given(argparse.Action):
    """Stores the values and remembers that the option was given (not its default)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("craft", help="write crafted trial folders with known losses")
    p.add_argument("--out", required=True)
    p.add_argument("--trial", help="one trial id (e.g. thesis/i0.01-r03) written into --out")
    p.add_argument("--config", help="config whose experiments give the trial's factor levels")
    p.add_argument("--spec", help="design sheet (results/design.tsv) holding --trial's row")
    p.add_argument("--intervals", type=float, nargs="+", default=[0.5, 0.01], action=_Given,
                   help="probe intervals of the demo set; with --trial, its interval when the "
                   "id does not carry one and there is no --config")  # fmt: skip
    p.set_defaults(intervals_given=False)
    p.add_argument("--repetitions", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--placement",
        choices=placement_names(crafted=True),
        help="also write attack data (attack.pcap, attack_sendlog.csv, flows.csv) for this "
        "firewall placement, with known breach windows (truth.json)",
    )
    p.add_argument("--agent-delay-ms", type=float, default=200.0, help="vmm-agent's delay")
    p.add_argument("--vmm-window-ms", type=float, default=0.0, help="vmm's breach window")
    p.add_argument("--rate-hz", type=float, default=1000.0, help="attack probe rate")
    p.add_argument(
        "--issue22",
        action="store_true",
        help="also every attacker side, the "
        "two-sided flows, conntrack dumps (implied by the options below, by their "
        "factors in the trial's experiment, and by vmm-state or both)",
    )
    p.add_argument("--trigger", choices=["pre", "incoming", "resume"])
    p.add_argument("--port-default", choices=["open", "closed"])
    p.add_argument("--tcp-loose", type=int, choices=[0, 1])
    p.add_argument(
        "--guest-only-allow",
        action="store_true",
        help="the flows' temporary allow "
        "rule only in the guest (under host placements they never open)",
    )
    p.add_argument("--experiment", help="experiment name (demo set: its folder and ids, default "
                   "demo; --trial: written into trial.json)")  # fmt: skip
    p.set_defaults(func=_cli)
