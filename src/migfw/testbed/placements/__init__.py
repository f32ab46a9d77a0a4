"""Firewall placements, one module each, and the registry every stage reads.

A placement is a `Placement` subclass (base.py) in one module of this package, decorated
with `@register` and named in `MODULES` below: nothing else lists placements. The registry
gives the config check its allowed levels (migfw.trials.contract), the workflow its
wildcard (`deploy_placement`), crafted trials their model (migfw.trials.crafted), the
statistics their order, the report its VMM-level arm, and the trial runner its steps
(migfw.testbed.trial). docs/placements.md: "Adding a placement".

    from migfw.testbed.placements import get, names
    names()                        # ['vm', 'both', 'vmm', ...] in table order
    get("vmm-agent").agent         # facts are class attributes; steps are methods

Importing the registry imports no testbed module (and no libvirt): the placements' module
level imports only this package; their trial steps import the testbed inside the methods,
which only the testbed calls (tests/test_architecture.py).
"""

from __future__ import annotations

import importlib

from migfw.errors import MigfwError
from migfw.testbed.placements.base import Placement, TrialContext

__all__ = ["Placement", "TrialContext", "get", "names", "register", "registered"]

# The placement modules, imported on first use: each registers its class(es).
MODULES = ("vm", "both", "vmm", "vmm_state", "vmm_agent", "ovn", "none")

_REGISTRY: dict[str, type[Placement]] = {}
_LOADED = False


def register(cls: type[Placement]) -> type[Placement]:
    """Class decorator: make `cls` the placement called `cls.name`."""
    if not isinstance(cls.name, str) or not cls.name:
        raise MigfwError(f"placement {cls.__name__}: needs a name")
    known = _REGISTRY.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise MigfwError(f"placement {cls.name}: registered twice ({known.__name__}, "
                         f"{cls.__name__})")  # fmt: skip
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a placement (a test that registered one of its own)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in MODULES:
            importlib.import_module(f"{__name__}.{module}")


def registered() -> list[type[Placement]]:
    """Every placement, in table order (`order`, then name)."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name))


def names(**facts: object) -> list[str]:
    """Placement names in table order; `facts` keeps those whose class attributes match,
    e.g. names(agent=True) -> ['vmm-state', 'vmm-agent']."""
    return [c.name for c in registered()
            if all(getattr(c, k) == v for k, v in facts.items())]  # fmt: skip


def get(name: object) -> type[Placement]:
    """The placement called `name`; a one-line error naming the known ones otherwise."""
    _load()
    try:
        return _REGISTRY[str(name)]
    except KeyError:
        raise MigfwError(f"placement {name!r} is not one of {', '.join(names())} "
                         "(src/migfw/testbed/placements/)") from None  # fmt: skip


def known(name: object) -> bool:
    _load()
    return str(name) in _REGISTRY


def placement_factors() -> dict[str, set[str]]:
    """Factor -> the placements it applies to, for factors that apply to some only (e.g.
    agent_delay_ms: the agent placements); the grid sets them to None elsewhere."""
    out: dict[str, set[str]] = {}
    for cls in registered():
        for factor in cls.factors:
            out.setdefault(factor, set()).add(cls.name)
    return out


def wildcard() -> str:
    """The rules' wildcard constraint for `{placement}`: every registered name."""
    import re

    return "|".join(re.escape(n) for n in sorted(names(), key=len, reverse=True))
