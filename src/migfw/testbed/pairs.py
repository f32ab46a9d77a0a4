"""Host pairs: several independent (host A, host B, VM) sets, one migration per pair at a time.

Local provider: `testbed.pairs: N` builds N testbeds. Pair 0 is the configured one; pair k
(k >= 1) gets the prefix `<prefix><k>`, both subnets moved up by k * 2 * (size of
`testbed.local.subnet`) and its own state directory `<state_dir>/pair<k>` (the guest image
is shared). External provider: `testbed.external.pairs` is a list of mappings, each
overriding the `testbed.external` keys (URIs, domain, vm_address, ...) for its pair; without
it there is one pair. With `lab_in_a_box`, external pair k's hosts are local pair k, brought
up with SSH servers like pair 0 (its entry names their addresses and keys). The workflow
gives each pair its own Snakemake resource (`pair<k>=1`, profiles/default), so trials of
different pairs run at once and never two on one pair.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.base import cfg_get, state_dir

MAX_PAIRS = 16  # resources pair0 .. pair15 are declared in profiles/default


def pair_count(cfg: dict[str, Any]) -> int:
    """How many pairs the config describes (1 unless `pairs` says otherwise)."""
    if cfg_get(cfg, "testbed.provider") == "external":
        listed = cfg_get(cfg, "testbed.external.pairs")
        if listed is None:
            return 1
        if not isinstance(listed, list) or not listed:
            raise MigfwError("config testbed.external.pairs: must be a non-empty list of mappings")
        count = len(listed)
        key = "testbed.external.pairs"
    else:
        count = cfg_get(cfg, "testbed.pairs")
        key = "testbed.pairs"
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PAIRS:
        raise MigfwError(f"config {key}: {count!r} pairs; allowed 1 to {MAX_PAIRS}")
    return count


def _shift(net: str, by: int) -> str:
    network = ipaddress.ip_network(net)
    return f"{network.network_address + by}/{network.prefixlen}"


def pair_config(cfg: dict[str, Any], pair: int) -> dict[str, Any]:
    """The config of pair `pair` (0-based): pair 0 is `cfg` itself."""
    count = pair_count(cfg)
    if not 0 <= pair < count:
        raise MigfwError(f"--pair {pair}: the config has {count} pair(s) (0 to {count - 1})")
    if pair == 0 and cfg_get(cfg, "testbed.provider") != "external":
        return cfg
    out = copy.deepcopy(cfg)
    testbed = out.setdefault("testbed", {})
    if cfg_get(cfg, "testbed.provider") == "external":
        listed = cfg_get(cfg, "testbed.external.pairs")
        if listed is not None:
            entry = listed[pair]
            if not isinstance(entry, dict):
                raise MigfwError(f"config testbed.external.pairs[{pair}]: must be a mapping")
            testbed["external"] = {**testbed.get("external", {}), **entry}
            testbed["external"].pop("pairs", None)
        if pair and cfg_get(cfg, "testbed.lab_in_a_box"):
            # The lab in a box: pair k's hosts are the local pair k (prefix, subnets and
            # state dir as `testbed.pairs` derives them); its entry names their addresses.
            _local_pair(out, cfg, pair)
        elif pair:
            testbed["state_dir"] = str(state_dir(cfg) / f"pair{pair}")
        return out
    _local_pair(out, cfg, pair)
    return out


def _local_pair(out: dict[str, Any], cfg: dict[str, Any], pair: int) -> None:
    """Pair `pair`'s local testbed in `out`: prefix+k, subnets moved up, state dir pair<k>."""
    testbed = out.setdefault("testbed", {})
    local = testbed.setdefault("local", {})
    subnet = ipaddress.ip_network(str(cfg_get(cfg, "testbed.local.subnet")))
    by = pair * 2 * subnet.num_addresses
    local["prefix"] = f"{cfg_get(cfg, 'testbed.local.prefix')}{pair}"
    local["subnet"] = _shift(str(subnet), by)
    local["migration_subnet"] = _shift(str(cfg_get(cfg, "testbed.local.migration_subnet")), by)
    base = state_dir(cfg)
    testbed["state_dir"] = str(base / f"pair{pair}")
    testbed["guest_dir"] = str(Path(cfg_get(cfg, "testbed.guest_dir") or base / "guest"))


def all_pair_configs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pair's config; local pairs whose networks overlap are one error line."""
    from migfw.config import network_problems

    configs = [pair_config(cfg, k) for k in range(pair_count(cfg))]
    lab = cfg_get(cfg, "testbed.lab_in_a_box")
    if cfg_get(cfg, "testbed.provider") != "external" or lab:
        for k, c in enumerate(configs[1:], start=1):
            problems = network_problems(c)
            if problems:
                raise MigfwError(f"config testbed.pairs: pair {k}: {problems[0]}")
        seen: list[tuple[int, ipaddress.IPv4Network]] = []
        for k, c in enumerate(configs):
            for key in ("subnet", "migration_subnet"):
                net = ipaddress.ip_network(str(cfg_get(c, f"testbed.local.{key}")))
                clash = next((j for j, other in seen if other.overlaps(net)), None)
                if clash is not None:
                    raise MigfwError(
                        f"config testbed.pairs: pair {k}'s {key} {net} overlaps pair {clash}'s "
                        "networks (pairs move both subnets up by twice the subnet's size)"
                    )
                seen.append((k, net))
    return configs
