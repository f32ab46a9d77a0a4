"""Config checks with messages a user can act on: the key, the value, and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml


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
    return ""


def _coerce(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {
            k: _coerce(v, props.get(k, {}), defs) if k in props else v for k, v in value.items()
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
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        allowed = _allowed(error)
        problems.append(f"{key}: {error.message}" + (f" ({allowed})" if allowed else ""))
    return problems
