"""The design sheet (migfw.trials.design): one expansion of the config's experiments into typed
trial specs, the only place a trial id is decoded, and the sheet the testbed and the crafted
generator read by id."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.trials import design
from migfw.trials.design import TrialSpec, expand_design, read_design, write_design

REPO = Path(__file__).resolve().parents[1]

# A small config: two experiments planned (one off), two host pairs.
EXPERIMENTS = {
    "a": {
        "factors": {"interval_s": [0.5, 0.01], "placement": ["vm", "vmm-agent"],
                    "agent_delay_ms": [200]},
        "repetitions": 2,
    },
    "off": {"enabled": False, "factors": {"interval_s": [0.5]}, "repetitions": 3},
    "c": {"factors": {"interval_s": [0.1]}, "repetitions": 1, "lead_in_s": 3.0},
}  # fmt: skip

# Worked out by hand: placement outermost, then agent_delay_ms (null beside vm, which has no
# agent), then the interval; the id names the varying factors and agent_delay_ms where it
# applies; `c` varies nothing, so its id names the interval. Trial k runs on pair (k-1) mod 2.
# `-` is an empty cell; pi, pdi: the factors the id names (in_id).
HEAD = ("trial_id experiment repetition index of pair direction lead_in_s settle_s "
        "attack_rate_hz in_id placement agent_delay_ms interval_s")  # fmt: skip
BY_HAND = """
a/vm-i0.5-r01 a 1 1 9 0 away - - - pi vm n/a 0.5
a/vm-i0.5-r02 a 2 2 9 1 away - - - pi vm n/a 0.5
a/vm-i0.01-r01 a 1 3 9 0 away - - - pi vm n/a 0.01
a/vm-i0.01-r02 a 2 4 9 1 away - - - pi vm n/a 0.01
a/vmm-agent-d200-i0.5-r01 a 1 5 9 0 away - - - pdi vmm-agent 200 0.5
a/vmm-agent-d200-i0.5-r02 a 2 6 9 1 away - - - pdi vmm-agent 200 0.5
a/vmm-agent-d200-i0.01-r01 a 1 7 9 0 away - - - pdi vmm-agent 200 0.01
a/vmm-agent-d200-i0.01-r02 a 2 8 9 1 away - - - pdi vmm-agent 200 0.01
c/i0.1-r01 c 1 9 9 0 away 3.0 - - interval_s vm - 0.1
"""  # fmt: skip


def _tsv(text: str) -> str:
    short = {"-": "", "pi": "placement,interval_s", "pdi": "placement,agent_delay_ms,interval_s"}
    rows = [HEAD.split()] + [line.split() for line in text.strip().splitlines()]
    return "".join("\t".join(short.get(c, c) for c in row) + "\n" for row in rows)


def test_the_sheet_equals_the_one_worked_out_by_hand(tmp_path: Path) -> None:
    specs = expand_design(EXPERIMENTS, pairs=2)
    path = tmp_path / "design.tsv"
    write_design(specs, path)
    assert path.read_text() == _tsv(BY_HAND)
    # Read back typed: the same specs, floats stay floats, ints ints, n/a is None.
    back = read_design(path)
    assert back == specs
    levels = back[4].factors
    assert levels == {"placement": "vmm-agent", "agent_delay_ms": 200, "interval_s": 0.5}
    assert type(levels["agent_delay_ms"]) is int and type(levels["interval_s"]) is float
    assert back[0].factors["agent_delay_ms"] is None
    assert "agent_delay_ms" not in back[8].factors  # experiment c does not set it
    assert (back[8].lead_in_s, back[8].settle_s, back[8].cell) == (3.0, None, "c/i0.1")


def test_a_spec_refuses_an_unregistered_placement_and_a_bad_sheet(tmp_path: Path) -> None:
    with pytest.raises(MigfwError, match="placement 'ebpf' not registered"):
        TrialSpec("x/ebpf-r01", "x", 1, (("placement", "ebpf"),))
    path = tmp_path / "design.tsv"
    path.write_text(_tsv(BY_HAND).replace("\t0.01\n", "\tfast\n", 1))
    with pytest.raises(MigfwError, match=r"design.tsv: line 4: interval_s 'fast' is not a number"):
        read_design(path)
    path.write_text("trial\tfoo\n")
    with pytest.raises(MigfwError, match="not a design sheet"):
        read_design(path)


def _trial_args(**given: object) -> argparse.Namespace:
    values = {"spec": None, "factors": None, "interval": None, "repetition": None, "pair": None,
              "trial_id": None, **given}  # fmt: skip
    return argparse.Namespace(**values)


def test_the_testbed_and_the_crafted_generator_never_decode_a_planned_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migfw.testbed.trialcli import resolve_trial
    from migfw.trials.craftcli import _cli, register

    sheet = tmp_path / "design.tsv"
    write_design(expand_design(EXPERIMENTS, pairs=2), sheet)

    def no_decoding(trial_id: str) -> None:
        raise AssertionError(f"decoded {trial_id}")

    monkeypatch.setattr(design, "_decode", no_decoding)
    cfg = {"experiments": {}}  # the sheet alone gives the spec
    spec = resolve_trial(cfg, _trial_args(spec=str(sheet), trial_id="a/vmm-agent-d200-i0.01-r02"))
    assert spec == read_design(sheet)[7] and spec.pair == 1
    assert resolve_trial(cfg, _trial_args(spec=str(sheet), trial_id="c/i0.1-r01", pair=3)).pair == 3
    with pytest.raises(MigfwError, match="not in the design sheet"):
        resolve_trial(cfg, _trial_args(spec=str(sheet), trial_id="a/vm-i0.5-r03"))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "crafted"
    args = parser.parse_args(["craft", "--spec", str(sheet), "--trial", "c/i0.1-r01", "--out",
                              str(out)])  # fmt: skip
    assert _cli(args) == 0 and (out / "trial.json").exists()


def test_a_trial_named_by_hand_is_decoded_by_the_design_module() -> None:
    spec = design.adhoc_spec("lab/vmm-agent-d50-i0.01-r03")
    assert (spec.experiment, spec.repetition, spec.placement) == ("lab", 3, "vmm-agent")
    assert spec.factors == {"placement": "vmm-agent", "agent_delay_ms": 50, "interval_s": 0.01}
    loose = design.adhoc_spec("t3", {"interval_s": 0.01}, strict=False)
    assert (loose.experiment, loose.repetition, loose.interval_s) == ("default", 1, 0.01)
    with pytest.raises(MigfwError, match="expected <experiment>/<slug>-r<NN>"):
        design.adhoc_spec("t3", {"interval_s": 0.01})


# Decoding a trial id: the decoder, splitting off the repetition, reading factor codes back.
DECODING = [
    re.compile(r"\bparse_trial_id\b"),
    re.compile(r"\b_decode\("),
    re.compile(r"""rpartition\(\s*["']-r["']"""),
    re.compile(r"\bFACTOR_CODES\b"),
]


def decoding_lines(source: str) -> list[str]:
    """The lines of `source` (comments left out) that decode a trial id."""
    found = []
    for line in source.splitlines():
        code = line.split("#", 1)[0]
        if any(p.search(code) for p in DECODING):
            found.append(line.strip())
    return found


def test_no_trial_id_is_decoded_outside_the_design_module() -> None:
    home = REPO / "src/migfw/trials/design.py"
    # The patterns find the decoding where it lives (so they can find it elsewhere).
    assert len(decoding_lines(home.read_text())) >= 3
    assert decoding_lines("    experiment, factors, rep = parse_trial_id(tid)\n")
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "scripts").rglob("*.py"),
             *(REPO / "workflow").rglob("*.smk"), REPO / "Snakefile"]  # fmt: skip
    offenders = {
        str(f.relative_to(REPO)): lines
        for f in files
        if f != home and (lines := decoding_lines(f.read_text()))
    }
    assert offenders == {}, "trial ids decoded outside migfw.trials.design"
