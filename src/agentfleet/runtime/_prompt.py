"""Prompt assembly: a task sees only the upstream outputs it declares in ``inputs``.

Templates are compiled once per step; a prompt without template syntax is used as is,
so no-op benchmark tasks pay nothing for rendering.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from ..plan import Plan, template_env

__all__ = ["PromptBook", "parse_output"]


class PromptBook:
    """Compiled prompt and system templates of a plan."""

    def __init__(self, plan: Plan) -> None:
        env = template_env()
        self._vars = plan.spec.vars
        self._prompts: dict[str, jinja2.Template | str] = {}
        for sid, step in plan.steps.items():
            text = step.spec.prompt if step.spec is not None else ""
            self._prompts[sid] = env.from_string(text) if ("{{" in text or "{%" in text) else text
        self._systems: dict[str, jinja2.Template | str] = {}
        for name, agent in plan.spec.agents.items():
            text = agent.system
            self._systems[name] = env.from_string(text) if ("{{" in text or "{%" in text) else text

    def static_prompt(self, step_id: str) -> str | None:
        """The prompt of a step whose text has no template syntax, else None."""
        template = self._prompts[step_id]
        return template if isinstance(template, str) else None

    def static_system(self, agent: str) -> str | None:
        """An agent's system prompt when it has no template syntax, else None."""
        template = self._systems[agent]
        return template if isinstance(template, str) else None

    def prompt(self, step_id: str, *, task: str, agent: str, inputs: dict[str, Any], item: Any = None,
               index: int | None = None) -> str:
        template = self._prompts[step_id]
        if isinstance(template, str):
            return template
        return template.render(vars=self._vars, inputs=inputs, item=item, index=index, task=task, agent=agent)

    def render_text(self, text: str, **names: Any) -> str:
        """Render a one-off template (a memory key, say) with the run's vars and ``names``."""
        if "{{" not in text and "{%" not in text:
            return text
        return template_env().from_string(text).render(vars=self._vars, **names)

    def system(self, agent: str, *, task: str) -> str:
        template = self._systems[agent]
        if isinstance(template, str):
            return template
        return template.render(vars=self._vars, agent=agent, task=task)


def parse_output(text: str) -> Any:
    """Parse JSON from a model's answer, tolerating a Markdown code fence around it."""
    body = text.strip()
    if body.startswith("```"):
        first_newline = body.find("\n")
        body = body[first_newline + 1 :] if first_newline != -1 else body[3:]
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        start = min((i for i in (body.find("{"), body.find("[")) if i != -1), default=-1)
        if start == -1:
            raise
        return json.JSONDecoder().raw_decode(body, start)[0]
