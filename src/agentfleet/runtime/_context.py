"""Context assembly: what a task is sent, how big it is, and what passing everything would cost.

# Design
# A task sees only the upstream outputs it declares in ``inputs`` (the plan enforces
# that templates read nothing else). An output larger than the run's
# ``artifact_threshold`` is stored once in the content-addressed artifact store and
# reaches downstream prompts as an ``ArtifactView``: rendered on its own it is a
# reference (``artifact://sha256/...``) with a short preview, while a template that
# picks a field (``inputs.plan.summary``) still gets that field's value. A task that
# needs the whole text says so with ``context.full``.
#
# Token counts: the provider's reported usage where it gives one; otherwise
# ``estimate_tokens``, the usual ~4 characters per token of English text for
# BPE tokenisers (OpenAI's and Anthropic's published rule of thumb), never below one
# token per 1.3 words so dense text is not under-counted.
#
# The naive baseline, for the report's "context reduction": what a framework that hands
# every task the whole history would send — the task's own system prompt and
# instructions (its template text) plus every output that comes before it in workflow
# order (steps topologically, instances by item), as a sequential group chat would.
# It is computed when the run ends, from the measured output sizes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from .._tokens import estimate_tokens

__all__ = [
    "BLANK",
    "ArtifactView",
    "estimate_tokens",
    "fit_head_tail",
    "make_preview",
    "output_text",
    "whole_history_baseline",
]

_OMITTED = "\n[... {n} characters omitted to fit the token budget ...]\n"


def output_text(output: Any) -> str:
    """The text form of an output: itself if a string, else compact JSON."""
    if isinstance(output, str):
        return output
    if output is None:
        return ""
    if isinstance(output, ArtifactView):
        return output_text(output._data)
    try:
        return json.dumps(output, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(output)


def fit_head_tail(text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` (estimated), keeping its head and tail (2:1) with a marker
    between. Below the marker's own size only the marker is left."""
    if estimate_tokens(text) <= max_tokens:
        return text
    chars = max(0, max_tokens * 4 - len(_OMITTED) - 8)
    marker = estimate_tokens(_OMITTED.format(n=len(text)))
    while True:
        head = chars * 2 // 3
        tail = chars - head
        out = text[:head] + _OMITTED.format(n=len(text) - head - tail) + (text[-tail:] if tail else "")
        used = estimate_tokens(out)
        if used <= max_tokens or chars == 0:
            return out
        # Dense text (many short words) costs more than a token per 4 characters: shrink the kept
        # part in proportion to its overshoot, by at least one character so this ends.
        chars = min(chars - 1, chars * max(0, max_tokens - marker) // max(1, used - marker))


class ArtifactView:
    """A large upstream output as a downstream prompt sees it: a reference and a preview.

    ``str(view)`` is the reference line; attribute and item access reach into the data,
    so templates that pick fields keep working; iteration iterates the data. A field of
    the data wins over the view's own attributes of the same name (``inputs.plan.size``
    is the plan's ``size`` field), as the template's author means it.
    """

    __slots__ = ("_data", "_digest", "_preview", "_size", "_task_id")

    def __init__(self, task_id: str, digest: str, size: int, preview: str, data: Any) -> None:
        self._task_id = task_id
        self._digest = digest
        self._size = size
        self._preview = preview
        self._data = data

    def __getattribute__(self, name: str) -> Any:
        if name[0] != "_":
            data = object.__getattribute__(self, "_data")
            if isinstance(data, dict) and name in data:
                return data[name]
        return object.__getattribute__(self, name)

    @property
    def task_id(self) -> str:
        return self._task_id

    @property
    def digest(self) -> str:
        return self._digest

    @property
    def size(self) -> int:
        """Characters of the output's text."""
        return self._size

    @property
    def preview(self) -> str:
        return self._preview

    @property
    def uri(self) -> str:
        return f"artifact://sha256/{self._digest}"

    @property
    def data(self) -> Any:
        return self._data

    def full_text(self) -> str:
        return output_text(self._data)

    def __json__(self) -> str:
        """What a JSON encoder should write for the view: its reference line, as ``str`` renders it."""
        return str(self)

    def __str__(self) -> str:
        return (f"[output of {self._task_id}: {self._size:,} characters, stored as "
                f"artifact://sha256/{self._digest}; preview follows]\n"
                f"{self._preview}{' ...' if self._size > len(self._preview) else ''}")

    __repr__ = __str__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._data, name)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __contains__(self, item: Any) -> bool:
        return item in self._data

    def __eq__(self, other: object) -> bool:
        return bool(self._data == (other._data if isinstance(other, ArtifactView) else other))

    def __hash__(self) -> int:
        return hash(self._digest)


def make_preview(text: str, chars: int) -> str:
    """The first ``chars`` characters of ``text`` on one line (whitespace collapsed)."""
    flat = " ".join(text[: chars * 2].split())
    return flat[:chars]


class _Blank:
    """Stands in for every input when measuring a task's own instructions: renders as nothing,
    has every field (itself), iterates as empty."""

    __slots__ = ()

    def __getattr__(self, name: str) -> _Blank:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> _Blank:
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""

    __repr__ = __str__


BLANK = _Blank()


def whole_history_baseline(tasks: Sequence[tuple[int, int]]) -> list[int]:
    """Tokens each task would be sent if it received every earlier output in full.

    ``tasks`` are ``(own_tokens, output_tokens)`` in workflow order (steps in topological
    order, instances by item); the result is, per task, its own tokens plus the outputs
    of all tasks before it — what a sequential whole-history chat would send.
    """
    running = 0
    out = []
    for own, produced in tasks:
        out.append(own + running)
        running += produced
    return out
