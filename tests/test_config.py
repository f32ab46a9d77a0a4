"""One typed config: the schema (workflow/schemas/config.schema.yaml) holds every default;
config/README.md, config/config.yaml and the code's readers agree with it (issue 17)."""

from __future__ import annotations

import re

import yaml
from conftest import REPO

from migfw.config import config_problems, default, schema_defaults
from migfw.testbed.base import cfg_get

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
MISSING = object()


def _value(config: dict, dotted: str) -> object:
    node: object = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def readme_defaults() -> dict[str, object]:
    """config/README.md's `| key | default | meaning |` rows: dotted key -> default as YAML.
    A row may name several keys (`a.b.c`, `d`: siblings of the first; `.e`: the last part
    replaced), with one default for all or one per key (comma-separated)."""
    text = (REPO / "config" / "README.md").read_text()
    found: dict[str, object] = {}
    header = r"^\| key \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\n)+)"
    for table in re.findall(header, text, re.M):
        for row in table.splitlines():
            key_cell, default_cell = (c.strip() for c in row.split("|")[1:3])
            names = re.findall(r"`([^`]+)`", key_cell)
            first = names[0]
            keys = [first] + [
                first.rsplit(".", 1)[0] + (n if n.startswith(".") else "." + n) for n in names[1:]
            ]
            cell = default_cell.replace("`", "")
            parts = [p.strip() for p in re.split(r",\s*(?![^{]*})", cell)]
            values = parts if len(parts) == len(keys) else [cell] * len(keys)
            for key, value in zip(keys, values, strict=True):
                try:
                    found[key] = yaml.safe_load(value)
                except yaml.YAMLError:
                    found[key] = value  # prose, e.g. a computed default
    return found


def test_every_schema_default_is_documented_in_config_readme() -> None:
    documented = readme_defaults()
    defaults = schema_defaults()
    assert len(defaults) >= 40, len(defaults)  # the walk finds the schema's defaults
    wrong = {
        key: (documented.get(key, "(no row)"), value)
        for key, value in defaults.items()
        if key != "testbed.external" and documented.get(key, MISSING) != value
    }
    assert not wrong, f"config/README.md vs schema default: {wrong}"
    # A row claiming a plain default the schema does not declare is a second source of truth.
    undeclared = {
        key: value
        for key, value in documented.items()
        if key not in defaults and value is not None and not isinstance(value, str)
    }
    assert not undeclared, f"config/README.md names defaults the schema lacks: {undeclared}"


def test_the_shipped_config_agrees_with_the_schema_defaults() -> None:
    """config/config.yaml shows the defaults to a reader; each value it sets for a key with a
    schema default is that default (it never silently means something else)."""
    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

    def agrees(shipped_value: object, value: object) -> bool:
        if isinstance(value, dict) and isinstance(shipped_value, dict):  # a block's defaults
            return all(shipped_value.get(k) == v for k, v in value.items())
        return shipped_value in (MISSING, value)

    disagree = {
        key: (_value(shipped, key), value)
        for key, value in schema_defaults().items()
        if not agrees(_value(shipped, key), value)
    }
    assert not disagree, disagree


def test_cfg_get_reads_the_schema_default_for_a_partial_config() -> None:
    """A lab's hand-written config (or a test's dict) names a few keys: the rest are the
    schema's defaults; a key it sets, or sets to null, behaves as before."""
    partial = {"testbed": {"provider": "external", "local": {"prefix": "m43"}}}
    assert cfg_get(partial, "testbed.provider") == "external"
    assert cfg_get(partial, "testbed.local.prefix") == "m43"
    assert cfg_get(partial, "testbed.local.subnet") == "10.231.0.0/24"
    assert cfg_get(partial, "trials.enforcement.blocked_port") == 23
    assert cfg_get({"testbed": {"accelerator": None}}, "testbed.accelerator") == "auto"
    assert cfg_get(partial, "trials.enforcement") is None  # no attacker unless configured
    # A fresh copy each time: a caller editing it never changes the schema's default.
    default("testbed.external")["x"] = 1
    assert default("testbed.external") == {}


def test_snakemake_style_validation_fills_the_defaults_of_a_small_config() -> None:
    """The workflow validates with set_default=True: a config leaving optional keys out is
    complete afterwards, with the schema's values; a bad value is still one line."""
    from snakemake.utils import validate

    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key in ("max_silence_s", "flows"):
        shipped["trials"].pop(key)
    shipped["analysis"].pop("timelines")
    shipped["migration"].pop("stall_timeout_s")
    validate(shipped, str(SCHEMA), set_default=True)
    assert shipped["trials"]["max_silence_s"] == 2.0
    assert shipped["analysis"]["timelines"] == 16
    assert shipped["migration"]["stall_timeout_s"] == 10
    assert shipped["testbed"]["pairs"] == 1 and shipped["testbed"]["lab_in_a_box"] is False
    assert "flows" not in shipped["trials"]  # an optional block stays off when left out
    shipped["analysis"]["timelines"] = -1
    assert config_problems(shipped, SCHEMA) == [
        "analysis.timelines: -1 is less than the minimum of 0 (allowed: 0 to inf)"
    ]
