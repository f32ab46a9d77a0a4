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
        return f"allowed: {low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
    if error.validator == "type":
        return f"expected type: {error.validator_value}"
    return ""


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
