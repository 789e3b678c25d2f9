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
# every task the full history would send — the task's own system prompt and
# instructions (its template text) plus every output finished before the task started.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ArtifactView",
    "HistoryMeter",
    "estimate_tokens",
    "fit_head_tail",
    "output_text",
]

_OMITTED = "\n[... {n} characters omitted to fit the token budget ...]\n"


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: ~4 characters per token, at least one per 1.3 words."""
    if not text:
        return 0
    by_chars = math.ceil(len(text) / 4)
    by_words = math.ceil(len(text.split()) * 1.3)
    return max(by_chars, by_words)


def output_text(output: Any) -> str:
    """The text form of an output: itself if a string, else compact JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, ArtifactView):
        return output.full_text()
    try:
        return json.dumps(output, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(output)


def fit_head_tail(text: str, max_tokens: int) -> str:
    """``text`` cut to about ``max_tokens``, keeping its head and tail (2:1) with a marker between."""
    if estimate_tokens(text) <= max_tokens:
        return text
    budget = max(0, max_tokens * 4 - len(_OMITTED) - 8)
    head = budget * 2 // 3
    tail = budget - head
    cut = len(text) - head - tail
    return text[:head] + _OMITTED.format(n=cut) + (text[-tail:] if tail else "")


class ArtifactView:
    """A large upstream output as a downstream prompt sees it: a reference and a preview.

    ``str(view)`` is the reference line; attribute and item access reach into the data,
    so templates that pick fields keep working; iteration iterates the data.
    """

    __slots__ = ("_data", "_fetch", "digest", "preview", "size", "task_id")

    def __init__(self, task_id: str, digest: str, size: int, preview: str, data: Any,
                 fetch: Callable[[], Any] | None = None) -> None:
        self.task_id = task_id
        self.digest = digest
        self.size = size
        self.preview = preview
        self._data = data
        self._fetch = fetch

    @property
    def uri(self) -> str:
        return f"artifact://sha256/{self.digest}"

    @property
    def data(self) -> Any:
        return self._data

    def full_text(self) -> str:
        return output_text(self._data)

    def __str__(self) -> str:
        return (f"[output of {self.task_id}: {self.size:,} characters, stored as {self.uri}; preview follows]\n"
                f"{self.preview}{' ...' if self.size > len(self.preview) else ''}")

    __repr__ = __str__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        data = self._data
        if isinstance(data, dict) and name in data:
            return data[name]
        return getattr(data, name)

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, item: Any) -> bool:
        return item in self._data

    def __eq__(self, other: object) -> bool:
        return bool(self._data == (other._data if isinstance(other, ArtifactView) else other))

    def __hash__(self) -> int:
        return hash(self.digest)


def make_preview(text: str, chars: int) -> str:
    """The first ``chars`` characters of ``text`` on one line (whitespace collapsed)."""
    flat = " ".join(text[: chars * 2].split())
    return flat[:chars]


@dataclass(slots=True)
class HistoryMeter:
    """Running total of output tokens finished so far: the naive baseline's history."""

    tokens: int = 0
    outputs: int = 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens
        self.outputs += 1

    def naive(self, own_tokens: int) -> int:
        """Tokens a task would be sent if it received every earlier output in full."""
        return own_tokens + self.tokens
