"""The Python builder: the same workflows as YAML, written in code.

    wf = Workflow("triage", max_parallel=8)
    wf.agent("dev", extends="developer", max_concurrency=4)
    wf.task("plan", agent="dev", prompt="Plan {{ vars.goal }}")
    wf.task("do", agent="dev", map=["a", "b"], inputs=["plan"], prompt="{{ item }}: {{ inputs.plan }}")
    spec = wf.build()

Agent keyword arguments that are not AgentSpec fields go to ``options`` (so
``function=my_callable`` reaches the python provider). ``build()`` validates exactly
as the YAML loader does and raises the same SpecError.
"""

from __future__ import annotations

from typing import Any

from ._loader import validate_data
from ._models import AgentSpec, SettingsSpec, WorkflowSpec
from ._templates import persona

__all__ = ["Workflow"]

_AGENT_FIELDS = set(AgentSpec.model_fields)
_SETTINGS_FIELDS = set(SettingsSpec.model_fields)


class Workflow:
    """Collects agents and tasks; ``build()`` returns a validated WorkflowSpec."""

    def __init__(self, name: str = "workflow", *, description: str = "", vars: dict[str, Any] | None = None,
                 **settings: Any) -> None:
        unknown = set(settings) - _SETTINGS_FIELDS
        if unknown:
            raise TypeError(f"unknown workflow setting(s): {', '.join(sorted(unknown))}")
        self.name = name
        self.description = description
        self.vars = dict(vars or {})
        self.settings = settings
        self.agents: dict[str, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.hooks: dict[str, Any] = {}

    def agent(self, name: str, **fields: Any) -> str:
        """Declare an agent; returns its name for use in ``task(agent=...)``."""
        data: dict[str, Any] = {}
        base = fields.pop("extends", None)
        if base is not None:
            data.update(persona(base))
        options = dict(data.get("options", {}))
        for key, value in fields.items():
            if key in _AGENT_FIELDS:
                if key == "options":
                    options.update(value)
                else:
                    data[key] = value
            else:
                options[key] = value
        data["options"] = options
        data["name"] = name
        self.agents[name] = data
        return name

    def task(self, id: str, *, agent: str, prompt: str = "", **fields: Any) -> str:
        """Add a task; returns its id for use in ``depends_on`` and ``inputs``."""
        self.tasks.append({"id": id, "agent": agent, "prompt": prompt, **fields})
        return id

    def hook(self, event: str, target: str) -> None:
        """Add a lifecycle hook (``module:function`` or a shell command) for ``event``."""
        self.hooks.setdefault(event, []).append(target)

    def build(self) -> WorkflowSpec:
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "vars": self.vars,
            "settings": self.settings,
            "agents": self.agents,
            "tasks": self.tasks,
            "hooks": self.hooks,
        }
        return validate_data(data, file=f"<workflow {self.name}>")
