"""Config checks with messages a user can act on: the key, the value, and what is allowed."""

from __future__ import annotations

import copy
import ipaddress
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The embedded testbed's addresses (migfw.testbed.local.LocalTestbed): offsets from the
# testbed subnet's network address (prober, VM, "other", host A, host B), and two hosts in
# the migration subnet. Keep in step with LocalTestbed.__init__.
TESTBED_OFFSETS = (2, 10, 99, 251, 252)
MIGRATION_HOSTS = 2
# Test traffic stays inside private space: the testbed never uses a routable address.
PRIVATE_V4 = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
SUBNET_KEYS = ("testbed.local.subnet", "testbed.local.migration_subnet")
# The one schema: types, allowed values and every default (`default:`); the workflow
# validates with it (workflow/rules/common.smk) and code reads defaults from it (cfg_get).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_node(dotted: str) -> dict[str, Any]:
    """The schema of key `a.b.c` ($refs followed); KeyError names a key the schema lacks."""
    schema = _schema()
    node: dict[str, Any] = schema
    for part in dotted.split("."):
        node = _deref(node, schema.get("$defs", {}))
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"{dotted}: not a key of {SCHEMA_PATH.name}")
        node = props[part]
    return node


def default(dotted: str) -> Any:
    """The schema's default for key `a.b.c` (a fresh copy), None when it declares none."""
    return copy.deepcopy(schema_node(dotted).get("default"))


def schema_defaults() -> dict[str, Any]:
    """Every key the schema gives a default, dotted, with that default (config/README.md's
    tables are checked against these)."""
    schema = _schema()
    found: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, sub in _deref(node, schema.get("$defs", {})).get("properties", {}).items():
            if "default" in sub:
                found[prefix + name] = sub["default"]
            walk(sub, f"{prefix}{name}.")

    walk(schema, "")
    return found


def _allowed(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "enum":
        return "allowed: " + ", ".join(map(str, error.validator_value))
    if error.validator == "additionalProperties":
        keys = sorted(schema.get("properties", {}))
        return "allowed keys: " + ", ".join(keys)
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        low = "-inf" if low is None else low
        high = "inf" if high is None else high
        return f"allowed: {low} to {high}"
    if error.validator == "type":
        return f"expected type: {error.validator_value}"
    if error.validator == "pattern" and "description" in schema:
        return f"expected {schema['description']}"
    return ""


def _deref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _coerce(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    for part in schema.get("allOf", []):  # e.g. levels: a list ref plus the item type
        schema = {**_deref(part, defs), **schema} if "items" not in part else {**schema, **part}
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if isinstance(value, dict) and ("properties" in schema or "additionalProperties" in schema):
        props = schema.get("properties", {})
        other = schema.get("additionalProperties")
        other = other if isinstance(other, dict) else None
        return {
            k: _coerce(v, props[k], defs)
            if k in props
            else (_coerce(v, other, defs) if other is not None else v)
            for k, v in value.items()
        }
    if isinstance(value, list) and "items" in schema:
        return [_coerce(v, schema["items"], defs) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if "boolean" in kinds and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "null" in kinds and text.lower() in ("null", "none", "~"):
            return None
        for number_type, cast in (("integer", int), ("number", float)):
            if number_type in kinds:
                try:
                    return cast(text)
                except ValueError:
                    pass
    return value


def coerce_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Snakemake's --config passes nested values as text; give them the schema's types."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    return _coerce(config, schema, schema.get("$defs", {}))


def config_problems(config: dict[str, Any], schema_path: str | Path) -> list[str]:
    """One line per problem, e.g. 'testbed.accelerator: 'xen' is not one of … (allowed: …)'."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    bad_keys = set()
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        bad_keys.add(key)
        allowed = _allowed(error)
        message = error.message
        if error.validator == "pattern" and "description" in (error.schema or {}):
            message = f"{error.instance!r} is not valid"  # a long regex helps nobody
        problems.append(f"{key}: {message}" + (f" ({allowed})" if allowed else ""))
    problems += [p for p in network_problems(config) if p.split(":", 1)[0] not in bad_keys]
    problems += [p for p in watchdog_problems(config) if p.split(":", 1)[0] not in bad_keys]
    return problems


def watchdog_problems(config: dict[str, Any]) -> list[str]:
    """migration.slow_stall_s must be below migration.stall_timeout_s."""
    timeout = _get(config, "migration.stall_timeout_s")
    slow = _get(config, "migration.slow_stall_s")
    numbers = (int, float)
    if isinstance(timeout, numbers) and isinstance(slow, numbers) and not slow < timeout:
        return [f"migration.slow_stall_s: {slow:g} s must be below stall_timeout_s ({timeout:g} s)"]
    return []


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """The value at `a.b.c`, or None when a level is missing or null."""
    return _get(config, dotted)


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def network_problems(config: dict[str, Any]) -> list[str]:
    """One line per bad testbed subnet: not an IPv4 network, host bits set, not private
    (RFC 1918), too small for the testbed's addresses, or overlapping the other subnet."""
    problems = []
    nets: dict[str, ipaddress.IPv4Network] = {}
    for key, need in zip(SUBNET_KEYS, (max(TESTBED_OFFSETS) + 2, MIGRATION_HOSTS + 2), strict=True):
        value = _get(config, key)
        if value is None:
            nets[key] = ipaddress.IPv4Network(DEFAULT_SUBNETS[key])
            continue
        text = str(value).strip()
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            net = None
        if net is None or "/" not in text:
            problems.append(
                f"{key}: {text!r} is not an IPv4 network in CIDR form (e.g. 10.231.0.0/24)"
            )
            continue
        if net.version != 4:
            problems.append(f"{key}: {text!r} is IPv6; the local testbed is IPv4 only")
            continue
        if str(net.network_address) != text.split("/")[0]:
            problems.append(f"{key}: {text!r} has host bits set (the network is {net})")
            continue
        if not any(net.subnet_of(p) for p in PRIVATE_V4):
            problems.append(
                f"{key}: {text!r} is not private address space "
                "(allowed: inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)"
            )
            continue
        if net.num_addresses < need:
            longest = 32 - (need - 1).bit_length()
            problems.append(
                f"{key}: {text!r} is too small for the testbed's addresses "
                f"(needs /{longest} or shorter)"
            )
            continue
        nets[key] = net
    if len(nets) == 2:
        subnet, mig = (nets[k] for k in SUBNET_KEYS)
        if subnet.overlaps(mig):
            problems.append(
                f"{SUBNET_KEYS[1]}: {mig} overlaps {SUBNET_KEYS[0]} {subnet} "
                "(they must be disjoint)"
            )
    return problems


# What LocalTestbed uses when a key is absent (the schema's defaults).
DEFAULT_SUBNETS = {key: default(key) for key in SUBNET_KEYS}
