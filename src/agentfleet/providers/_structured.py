"""Structured (JSON) output: asking a model for it, reading it back, and faking it for the sim.

# Design
# ``schema_instruction`` is appended to the system prompt when a task declares an output
# schema (OpenAI's json_object mode even refuses requests whose messages never say
# "JSON"). ``extract_json`` reads a model's answer leniently: bare JSON, a fenced code
# block, or the outermost {...} / [...] span. ``example_from_schema`` builds a value that
# conforms to a JSON Schema from a seeded RNG, for the sim provider; it covers the subset
# workflow schemas use (objects, arrays, scalars, enum/const, $ref into $defs/definitions,
# anyOf/oneOf/allOf) and stays deterministic for a given RNG state.
"""

from __future__ import annotations

import json
import math
import random
import re
from typing import Any

__all__ = ["example_from_schema", "extract_json", "schema_instruction", "with_schema_instruction"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def schema_instruction(schema: dict[str, Any]) -> str:
    """The sentence appended to a system prompt to ask for JSON matching ``schema``."""
    return (
        "Respond with JSON only: a single JSON value, no prose and no code fences, "
        "that conforms to this JSON Schema: " + json.dumps(schema, separators=(",", ":"))
    )


def with_schema_instruction(system: str, schema: dict[str, Any] | None) -> str:
    """``system`` with the JSON instruction appended when there is a schema."""
    if schema is None:
        return system
    instruction = schema_instruction(schema)
    return f"{system}\n\n{instruction}" if system else instruction


def extract_json(text: str) -> Any:
    """Parse the JSON value in a model's answer; raise ``ValueError`` when there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for match in _FENCE.finditer(stripped):
        try:
            return json.loads(match.group(1).strip())
        except ValueError:
            continue
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = stripped.find(opener), stripped.rfind(closer)
        if 0 <= start < end:
            try:
                return json.loads(stripped[start : end + 1])
            except ValueError:
                continue
    raise ValueError(f"no JSON value in the output: {stripped[:200]!r}")


# --- examples for the sim ---------------------------------------------------------------

_FILLER = (
    "analysis", "plan", "result", "design", "module", "review", "test", "metric",
    "summary", "risk", "option", "detail", "update", "change", "finding", "step",
)
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/sim",
    "url": "https://example.com/sim",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
}
_MAX_DEPTH = 8


class _Example:
    """One generation pass: the root schema (for $ref), the RNG and words to echo."""

    def __init__(self, root: dict[str, Any], rng: random.Random, words: tuple[str, ...]) -> None:
        self.root = root
        self.rng = rng
        self.words = words or _FILLER

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
            ref: str = schema["$ref"]
            seen += 1
            if not ref.startswith("#"):
                return {}
            target: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    return {}
                target = target[part]
            schema = target
        return schema

    def value(self, schema: Any, hint: str, index: int, depth: int) -> Any:
        schema = self.resolve(schema)
        if schema is True or not isinstance(schema, dict):
            return self.text(hint, index, {})
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[(self.rng.randrange(len(enum)) + index) % len(enum)]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next(
                    (o for o in options if self.resolve(o) != {"type": "null"}), options[0]
                )
                return self.value(chosen, hint, index, depth)
        if isinstance(schema.get("allOf"), list):
            schema = self.merge(schema)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, hint, depth)
        if kind == "integer":
            return self.integer(schema, index)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.text(hint, index, schema)

    def merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            part = self.resolve(part)
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("allOf"), list):
                part = self.merge(part)
            properties.update(part.get("properties", {}))
            required += [r for r in part.get("required", []) if r not in required]
            for key, value in part.items():
                if key not in ("properties", "required"):
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        names = list(properties) if depth < _MAX_DEPTH else [r for r in required if r in properties]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self.value(properties[name], name, 0, depth + 1)
        for name in required:
            if name not in out:
                extra = schema.get("additionalProperties")
                out[name] = self.value(extra if isinstance(extra, dict) else {}, name, 0, depth + 1)
        return out

    def array(self, schema: dict[str, Any], hint: str, depth: int) -> list[Any]:
        minimum = schema.get("minItems")
        maximum = schema.get("maxItems")
        count = minimum if isinstance(minimum, int) else 3
        if depth >= _MAX_DEPTH:
            count = minimum if isinstance(minimum, int) else 0
        if isinstance(maximum, int):
            count = min(count, maximum)
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft-04 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        if prefix:
            count = max(count, len(prefix)) if not isinstance(maximum, int) else count
        singular = hint[:-1] if hint.endswith("s") and len(hint) > 3 else hint
        out: list[Any] = []
        for i in range(count):
            item_schema = prefix[i] if i < len(prefix) else items
            if item_schema is False:
                break
            out.append(self.value(item_schema, singular or "item", i + 1, depth + 1))
        return out

    def integer(self, schema: dict[str, Any], index: int) -> int:
        low, high = _bounds(schema, integer=True)
        low_i = int(low) if low is not None else 0
        high_i = int(high) if high is not None else low_i + 100
        high_i = max(high_i, low_i)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-low_i // step) * step
            slots = max(0, (high_i - first) // step)
            return first + ((self.rng.randint(0, slots) + index) % (slots + 1)) * step
        span = high_i - low_i + 1
        return low_i + (self.rng.randrange(span) + index) % span

    def number(self, schema: dict[str, Any]) -> float:
        low, high = _bounds(schema, integer=False)
        lo = low if low is not None else 0.0
        hi = high if high is not None else lo + 100.0
        hi = max(hi, lo)
        value = round(self.rng.uniform(lo, hi), 2)
        return min(max(value, lo), hi)

    def text(self, hint: str, index: int, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        if fmt == "uuid":
            bits = self.rng.getrandbits
            return f"{bits(32):08x}-{bits(16):04x}-4{bits(12):03x}-8{bits(12):03x}-{bits(48):012x}"
        label = hint.replace("_", " ").strip() or "value"
        picks = [self.words[self.rng.randrange(len(self.words))] for _ in range(3)]
        value = f"{label} {index}: " if index else f"{label}: "
        value += " ".join(picks)
        max_len = schema.get("maxLength")
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and len(value) < min_len:
            value = (value + " ") * (min_len // (len(value) + 1) + 1)
        if isinstance(max_len, int) and len(value) > max_len:
            value = value[:max_len].rstrip() if max_len else ""
            if isinstance(min_len, int) and len(value) < min_len:
                value = value.ljust(min_len, "x")
        return value


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[float | None, float | None]:
    low: float | None = None
    high: float | None = None
    nudge = 1.0 if integer else 1e-6
    if isinstance(schema.get("minimum"), (int, float)):
        low = float(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) and not isinstance(
        schema.get("exclusiveMinimum"), bool
    ):
        bound = float(schema["exclusiveMinimum"]) + nudge
        low = bound if low is None else max(low, bound)
    if isinstance(schema.get("maximum"), (int, float)):
        high = float(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), (int, float)) and not isinstance(
        schema.get("exclusiveMaximum"), bool
    ):
        bound = float(schema["exclusiveMaximum"]) - nudge
        high = bound if high is None else min(high, bound)
    if integer:
        low = float(math.ceil(low)) if low is not None else None
        high = float(math.floor(high)) if high is not None else None
    return low, high


def example_from_schema(
    schema: dict[str, Any], rng: random.Random, words: tuple[str, ...] = ()
) -> Any:
    """A value conforming to ``schema``, drawn from ``rng``; strings echo ``words``.

    Arrays get ``minItems`` items when given, else 3 (capped by ``maxItems``); objects get
    every declared property.
    """
    return _Example(schema, rng, words).value(schema, "value", 0, 0)
