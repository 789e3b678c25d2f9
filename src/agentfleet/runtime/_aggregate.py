"""Streaming aggregation: fold each result of a fan-out as it arrives.

# Design
# A task with ``aggregate: {over: STEP, fold: ...}`` does not wait for all of STEP's
# instances and then reduce them: the runner feeds every instance's output to the fold
# the moment it finishes, so when the last one lands the reduction is already done and
# the aggregate task finishes (or hands the folded value to its agent) at once. Folds
# see results in completion order; ``index`` is the item's position in the fan-out, so a
# fold that needs item order can use it (``list`` does: its result is in item order).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..errors import SpecError
from ._context import output_text

__all__ = ["BUILTIN_FOLDS", "Aggregator", "resolve_fold"]

Fold = Callable[[Any, Any, int], Any]


def _list(acc: Any, output: Any, index: int) -> Any:
    pairs = acc if isinstance(acc, list) else []
    pairs.append((index, output))
    return pairs


def _concat(acc: Any, output: Any, index: int) -> Any:
    text = output_text(output)  # a str as is, anything else as JSON (not Python's repr)
    return text if not acc else f"{acc}\n\n{text}"


def _merge(acc: Any, output: Any, index: int) -> Any:
    merged = acc if isinstance(acc, dict) else {}
    if isinstance(output, dict):
        merged.update(output)
    else:
        merged[str(index)] = output
    return merged


def _sum(acc: Any, output: Any, index: int) -> Any:
    value = output
    if isinstance(output, str):
        try:
            value = float(output)
        except ValueError:
            raise TypeError(f"fold 'sum' got a non-numeric output: {output[:60]!r}") from None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"fold 'sum' got a {type(output).__name__}, not a number")
    return (acc or 0) + value


def _count(acc: Any, output: Any, index: int) -> Any:
    return (acc or 0) + 1


def _extend(acc: Any, output: Any, index: int) -> Any:
    items = acc if isinstance(acc, list) else []
    items.extend(output if isinstance(output, list) else [output])
    return items


BUILTIN_FOLDS: dict[str, Fold] = {
    "list": _list,
    "concat": _concat,
    "merge": _merge,
    "sum": _sum,
    "count": _count,
    "extend": _extend,
}


def resolve_fold(name: str, *, where: str = "", file: str | None = None, line: int | None = None) -> Fold:
    """A built-in fold by name, or ``module:function`` imported now (a bad path is a SpecError
    naming ``where``, and ``file``/``line`` when given)."""
    if name in BUILTIN_FOLDS:
        return BUILTIN_FOLDS[name]
    if ":" not in name:
        known = ", ".join(BUILTIN_FOLDS)
        raise SpecError(f"unknown fold {name!r}; use one of {known} or 'module:function'",
                        file=file, line=line, field=where or None)
    from ..errors import ProviderConfigError
    from ..providers._python import resolve_callable

    try:
        fn = resolve_callable(name, provider="fold")
    except ProviderConfigError as exc:
        message = str(exc).removeprefix("fold: ").removeprefix("agent '': ")
        raise SpecError(message, file=file, line=line, field=where or None) from None
    return fn  # type: ignore[return-value]


class Aggregator:
    """One running fold: ``add`` each output as it arrives, read ``value`` at the end."""

    __slots__ = ("_acc", "_head", "count", "error", "fold", "name")

    def __init__(self, fold: str, initial: Any = None, *, where: str = "", file: str | None = None,
                 line: int | None = None) -> None:
        self.name = fold
        self.fold = resolve_fold(fold, where=where, file=file, line=line)
        # ``list`` keeps (index, output) pairs to sort at the end; an initial list goes before them.
        self._head: list[Any] = list(initial) if self.fold is _list and isinstance(initial, list) else []
        self._acc = [] if self.fold is _list else copy.deepcopy(initial)
        self.count = 0
        self.error: str | None = None  # the first fold failure; the aggregate task then fails with it

    def add(self, output: Any, index: int) -> None:
        """Fold one result in (called in completion order). A failing fold is remembered, not raised:
        it belongs to the aggregate task, not to the task whose result was being folded."""
        if self.error is not None:
            return
        try:
            self._acc = self.fold(self._acc, output, index)
        except Exception as exc:  # noqa: BLE001 - any fold failure is reported by the aggregate task
            self.error = f"fold {self.name!r} failed on item {index}: {type(exc).__name__}: {exc}"
            return
        self.count += 1

    @property
    def value(self) -> Any:
        """The folded value so far (``list``: any initial items, then the outputs in item order)."""
        if self.fold is _list:
            return [*self._head, *(out for _, out in sorted(self._acc, key=lambda pair: pair[0]))]
        return self._acc
