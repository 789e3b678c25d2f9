"""Prompt templates render in a sandbox: values in, never Python internals out."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.sandbox import SecurityError

from agentfleet.plan import template_env


class TestSandbox:
    def test_values_filters_and_loops_render(self) -> None:
        """What prompts use (variables, filters, loops, tojson) works as before."""
        text = "{% for f in vars.files %}{{ f | upper }} {% endfor %}{{ vars | tojson }}"
        out = template_env().from_string(text).render(vars={"files": ["a.py", "b.py"]})
        assert out == 'A.PY B.PY {"files": ["a.py", "b.py"]}'

    @pytest.mark.parametrize("text", [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ vars.__class__.__init__.__globals__ }}",
        "{{ vars.files.append('x') }}",
    ])
    def test_python_internals_and_mutation_are_refused(self, text: str) -> None:
        """Attribute walks to Python internals, and mutating what a template was given, raise."""
        with pytest.raises((SecurityError, jinja2.UndefinedError)):
            template_env().from_string(text).render(vars={"files": ["a.py"]})
