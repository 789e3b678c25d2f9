"""Built-in persona templates an agent can ``extends:``; one YAML file each in ``templates/``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = ["persona", "persona_names"]


@cache
def _load_all() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    root = resources.files("agentfleet.spec") / "templates"
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
            out[entry.name[: -len(".yaml")]] = data
    return out


def persona_names() -> list[str]:
    """The names of all built-in persona templates."""
    return sorted(_load_all())


def persona(name: str) -> dict[str, Any]:
    """A copy of a persona template's agent fields; KeyError names the known ones."""
    data = _load_all().get(name)
    if data is None:
        known = ", ".join(persona_names()) or "none"
        raise KeyError(f"unknown persona template {name!r} (known: {known})")
    agent = data.get("agent", data)
    return {k: v for k, v in agent.items() if k != "name"}
