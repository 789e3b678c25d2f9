"""Reading JSON out of model answers, and the schema instruction."""

from __future__ import annotations

import pytest

from agentfleet.providers._structured import extract_json, with_schema_instruction


class TestExtractJson:
    @pytest.mark.parametrize("text, value", [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('Here you go:\n```json\n{"a": [1]}\n```\nDone.', {"a": [1]}),
        ('```\n["x"]\n```', ["x"]),
        ('Sure! {"ok": true} Hope that helps.', {"ok": True}),
        ("42", 42),
    ])
    def test_finds_the_value(self, text: str, value: object) -> None:
        """Bare JSON, fenced blocks and embedded objects are all read."""
        assert extract_json(text) == value

    def test_no_json(self) -> None:
        """Prose without JSON raises ValueError quoting the text."""
        with pytest.raises(ValueError, match="no JSON value"):
            extract_json("I cannot do that.")


class TestInstruction:
    def test_appended_to_system(self) -> None:
        """The schema is appended to the system prompt; no schema leaves it alone."""
        assert with_schema_instruction("Be brief.", None) == "Be brief."
        text = with_schema_instruction("Be brief.", {"type": "object"})
        assert text.startswith("Be brief.\n\nRespond with JSON only")
        assert '{"type":"object"}' in text
        assert with_schema_instruction("", {"type": "array"}).startswith("Respond with JSON")
