"""Issue 22's part of the trial-folder contract: factor levels in ids and grids, the
trial.json fields of attackers, flows and conntrack dumps, and the testbed's refusal of
levels it does not apply yet."""

from __future__ import annotations

import copy

import pytest

from migfw.errors import MigfwError
from migfw.trials import attack_contract as ac
from migfw.trials.contract import experiment_problems, validate_trial
from migfw.trials.design import adhoc_spec, experiment_grid, experiment_specs, trial_name

BASE = {
    "trial_id": "attack/vmm-agent-trincoming-d50-pdclosed-ctl0-r03",
    "interval_s": 0.001,
    "target": "10.231.0.10",
    "status": "ok",
    "failure": None,
    "migration": {"start": 1.0, "end": 2.0, "source": "A", "destination": "B"},
}


@pytest.mark.parametrize(
    "factors, slug",
    [
        ({"placement": "vmm-agent", "trigger": "incoming", "agent_delay_ms": 50,
          "port_default": "closed", "nf_conntrack_tcp_loose": 0},
         "vmm-agent-trincoming-d50-pdclosed-ctl0"),
        ({"placement": "vmm-state", "trigger": "pre", "agent_delay_ms": 0,
          "nf_conntrack_tcp_loose": 1}, "vmm-state-trpre-d0-ctl1"),
        ({"placement": "vm", "trigger": None, "nf_conntrack_tcp_loose": 1}, "vm-ctl1"),
        ({"placement": "vmm-agent", "trigger": "resume", "port_default": "open"},
         "vmm-agent-trresume-pdopen"),
    ],
)  # fmt: skip
def test_new_factors_round_trip_through_trial_ids(factors: dict, slug: str) -> None:
    tid = trial_name("attack", factors, 3)
    assert tid == f"attack/{slug}-r03"
    spec = adhoc_spec(tid)
    assert (spec.experiment, spec.repetition) == ("attack", 3)
    assert spec.factors == {k: v for k, v in factors.items() if v is not None}


def test_agent_factors_apply_to_agent_placements_only() -> None:
    spec = {
        "factors": {
            "interval_s": [0.001],
            "placement": ["vm", "vmm", "vmm-agent"],
            "trigger": ["pre", "resume"],
            "agent_delay_ms": [0, 200],
            "port_default": ["open", "closed"],
            "nf_conntrack_tcp_loose": [0, 1],
        },
        "repetitions": 2,
    }
    grid = experiment_grid(spec)
    # vm, vmm: 2 loose levels each; vmm-agent: 2 x 2 x 2 x 2 = 16.
    assert len(grid) == 2 + 2 + 16
    for combo in grid:
        if combo["placement"] != "vmm-agent":
            assert combo["trigger"] is None and combo["agent_delay_ms"] is None
            assert combo["port_default"] is None
        assert combo["nf_conntrack_tcp_loose"] in (0, 1)
    ids = [s.trial_id for s in experiment_specs("attack", spec)]
    assert len(ids) == len(set(ids)) == 40
    assert "attack/vm-ctl0-r01" in ids
    assert "attack/vmm-agent-trpre-d200-pdclosed-ctl1-r02" in ids
    assert experiment_problems({"attack": spec}) == []


def test_unknown_level_text_in_an_id_is_refused() -> None:
    with pytest.raises(MigfwError):
        trial_name("attack", {"placement": "vmm-agent", "trigger": "on Resume"}, 1)


def test_trial_json_takes_the_new_fields() -> None:
    meta = copy.deepcopy(BASE)
    meta["factors"] = {"placement": "vmm-agent", "trigger": "incoming", "agent_delay_ms": 50,
                       "port_default": "closed", "nf_conntrack_tcp_loose": 0,
                       "interval_s": 0.001}  # fmt: skip
    side = {"address": "10.231.0.10", "peer": "10.231.0.67", "host": "B",
            "blocked_port": 23, "allowed_port": 22, "rate_hz": 1000}  # fmt: skip
    meta["attackers"] = {
        "dst_cotenant": side,
        "src_cotenant": {**side, "host": "A"},
        "egress": {**side, "peer": "10.231.0.2", "blocked_port": 25, "clock": "guest"},
    }
    meta["flows"] = {
        "rate_hz": 100,
        "flows": {"established": {"port": 7, "local_port": 40123, "initiative": "prober",
                                  "state_only": True},
                  "guest_first": {"port": 13, "local_port": 40124, "initiative": "guest",
                                  "state_only": True}},
        "temporary_rules": [{"where": "guest", "rule": "x", "added_at": 1.0, "removed_at": 1.2},
                            {"where": "B", "rule": "y", "added_at": 1.0, "removed_at": 1.3}],
        "allow_removed": 1.3,
        "capture": "flows.pcap",
    }  # fmt: skip
    meta["conntrack"] = {"tcp_loose": {"src": 0, "dst": 0, "guest": 0},
                         "dumps": {"dst-resume": {"t": 1.6, "host": "B", "rc": 0}}}  # fmt: skip
    validate_trial(meta)
    assert ac.allow_removed_at(meta) == 1.3
    del meta["flows"]["allow_removed"]
    assert ac.allow_removed_at(meta) == 1.3  # the latest removal of the rules
    assert ac.flow_meta(meta, "guest_first") == {
        "port": 13, "local_port": 40124, "initiative": "guest", "state_only": True}  # fmt: skip
    assert ac.side_meta(meta, "egress")["clock"] == "guest"

    bad = copy.deepcopy(meta)
    bad["attackers"]["dst_cotenant"]["blocked_port"] = 70000
    with pytest.raises(MigfwError, match="attackers/dst_cotenant/blocked_port"):
        validate_trial(bad)
    bad = copy.deepcopy(meta)
    bad["attackers"]["roof"] = side
    with pytest.raises(MigfwError, match="attackers"):
        validate_trial(bad)
    bad = copy.deepcopy(meta)
    bad["factors"]["trigger"] = "later"
    with pytest.raises(MigfwError, match="factors/trigger"):
        validate_trial(bad)
    bad = copy.deepcopy(meta)
    bad["flows"]["flows"]["guest_first"]["initiative"] = "both"
    with pytest.raises(MigfwError, match="initiative"):
        validate_trial(bad)


def test_older_trial_json_reads_as_before() -> None:
    meta = copy.deepcopy(BASE)
    meta["attack"] = {"address": "10.231.0.10", "blocked_port": 23, "allowed_port": 22,
                      "rate_hz": 1000}  # fmt: skip
    rule = {"where": "guest", "handle": 9, "removed_at": 1.25}
    meta["flows"] = {"rate_hz": 100, "stateful": {"port": 21}, "established": {"port": 7},
                     "temporary_rule": rule}  # fmt: skip
    validate_trial(meta)
    assert ac.side_meta(meta, "switch")["blocked_port"] == 23
    assert ac.side_meta(meta, "egress") is None
    assert ac.allow_removed_at(meta) == 1.25
    assert ac.flow_meta(meta, "established") == {
        "port": 7, "local_port": None, "initiative": "prober", "state_only": True}  # fmt: skip
    assert ac.flow_meta(meta, "stateful")["state_only"] is False


def test_file_names() -> None:
    assert ac.side_files("switch") == ("attack.pcap", "attack_sendlog.csv")
    assert ac.side_files("dst_cotenant") == (
        "attack_dst_cotenant.pcap", "attack_dst_cotenant_sendlog.csv")  # fmt: skip
    assert ac.conntrack_file("dst", "resume") == "conntrack/dst-resume.txt"
    with pytest.raises(ValueError):
        ac.conntrack_file("hostC", "end")
    with pytest.raises(ValueError):
        ac.side_files("roof")


def test_testbed_applies_every_contract_level_and_refuses_others(tmp_path) -> None:
    """Every level of issue 22's factors is applied by the testbed now; a level outside the
    contract is still refused in one line before anything is touched."""
    from migfw.testbed.trial import IMPLEMENTED_LEVELS, run_trial

    for name, levels in ac.FACTOR_LEVELS.items():
        assert set(levels) <= set(IMPLEMENTED_LEVELS[name]), name
    for factors in ({"trigger": "later"}, {"port_default": "ajar"},
                    {"nf_conntrack_tcp_loose": 2}):  # fmt: skip
        name = next(iter(factors))
        with pytest.raises(MigfwError, match=f"factor {name}=.* not applied by the testbed"):
            run_trial({}, "attack/x-r01", 0.001, tmp_path / "t",
                      factors={"placement": "vmm-agent", **factors})  # fmt: skip
    assert not (tmp_path / "t").exists()
