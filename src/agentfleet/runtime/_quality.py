"""Output checks: JSON schema, a validator function and a reviewer's score, with feedback.

# Design
# A task's output passes, in order, its ``output_schema``, its ``validator``
# (``module:function``, sync or async, given the output and the task id) and its
# ``review`` (another agent scores it 0-10 against the task's instructions). A failure
# raises ``OutputInvalid`` naming the check; the runner then redoes the task with the
# rejection and its previous answer appended to the prompt, at most
# ``validation_retries`` times. Schemas and validator paths are checked when the runner
# is built, so a typo is an error with file and line before the run starts.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema

from .._types import ProviderResponse
from ..errors import OutputInvalid, ProviderConfigError, SpecError
from ..plan import Plan, Step
from ._prompt import parse_output

__all__ = ["REVIEW_SCHEMA", "OutputChecks", "feedback_prompt", "parse_score"]

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["score", "reason"],
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 10},
        "reason": {"type": "string"},
    },
}

_REVIEW_SYSTEM = (
    "You review the work of another agent. Score how well the answer fulfils the instructions "
    "(0 = useless or wrong, 10 = complete and correct). Be strict and specific. "
    'Answer only with JSON: {"score": <0-10>, "reason": "<one or two sentences>"}.'
)

Validator = Callable[..., Any]


class OutputChecks:
    """The compiled checks of every step of a plan."""

    def __init__(self, plan: Plan) -> None:
        spec = plan.spec
        self._schemas: dict[str, jsonschema.protocols.Validator] = {}
        self._validators: dict[str, Validator] = {}
        for sid, step in plan.steps.items():
            task = step.spec
            if task is None:
                continue
            if task.output_schema:
                cls = jsonschema.validators.validator_for(task.output_schema)
                try:
                    cls.check_schema(task.output_schema)
                except jsonschema.SchemaError as exc:
                    file, line = spec.locate("tasks", step.index, "output_schema")
                    raise SpecError(f"invalid JSON schema: {exc.message}", file=file, line=line,
                                    field=f"tasks[{step.index}].output_schema") from None
                self._schemas[sid] = cls(task.output_schema)
            if task.validator:
                from ..providers._python import resolve_callable

                try:
                    self._validators[sid] = resolve_callable(task.validator, agent=sid, provider="validator")
                except ProviderConfigError as exc:
                    file, line = spec.locate("tasks", step.index, "validator")
                    message = str(exc).removeprefix("validator: ").removeprefix(f"agent {sid!r}: ")
                    raise SpecError(message, file=file, line=line,
                                    field=f"tasks[{step.index}].validator") from None

    def has_checks(self, step: Step) -> bool:
        return step.id in self._validators or (step.spec is not None and step.spec.review is not None)

    def parse(self, step_id: str, response: ProviderResponse) -> Any:
        """The output of a response: its data or text, checked against the step's schema."""
        validator = self._schemas.get(step_id)
        if validator is None:
            return response.data if response.data is not None else response.text
        data = response.data
        if data is None:
            try:
                data = parse_output(response.text)
            except ValueError:
                snippet = response.text[:120].replace("\n", " ")
                raise OutputInvalid(f"output is not JSON but the task declares an output_schema: {snippet!r}",
                                    provider=response.provider, retryable=False) from None
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(root)"
            raise OutputInvalid(f"output does not match output_schema at {where}: {first.message}",
                                provider=response.provider, retryable=False)
        return data

    async def validate(self, step_id: str, task_id: str, output: Any) -> None:
        """Run the step's validator: None/True accept; False, a message or an exception reject."""
        fn = self._validators.get(step_id)
        if fn is None:
            return
        try:
            verdict = fn(output, task_id) if _takes_two(fn) else fn(output)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as exc:  # noqa: BLE001 - a validator says "no" by raising, too
            detail = str(exc) or type(exc).__name__  # a bare ``assert`` has no message
            raise OutputInvalid(f"validator rejected the output: {detail}", provider="validator",
                                retryable=False) from None
        if verdict is None or verdict is True:
            return
        reason = verdict if isinstance(verdict, str) and verdict.strip() else f"returned {verdict!r}"
        raise OutputInvalid(f"validator rejected the output: {reason}", provider="validator", retryable=False)


def _takes_two(fn: Validator) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def review_request(instructions: str, output: Any, criteria: str) -> tuple[str, str]:
    """(system, prompt) asking a reviewer to score ``output`` against ``instructions``."""
    answer = output if isinstance(output, str) else json.dumps(output, indent=1, default=str)
    extra = f"\nReview criteria: {criteria}\n" if criteria else ""
    prompt = (f"Instructions the agent was given:\n{instructions}\n{extra}\n"
              f"The agent's answer:\n{answer}\n\nScore the answer from 0 to 10.")
    return _REVIEW_SYSTEM, prompt


_VALUE = r"(10(?:\.0+)?|\d(?:\.\d+)?)"  # 0-10
_OUT_OF_TEN = re.compile(rf"(?<![\d.]){_VALUE}\s*(?:/|out\s+of)\s*10(?![\d.])", re.IGNORECASE)
_LABELLED = re.compile(rf"\bscore\b[\"'\s:=]*(?:of\s+|is\s+)?{_VALUE}(?![\d.])", re.IGNORECASE)
_NUMBER = re.compile(rf"(?<![\d.]){_VALUE}(?![\d.])")


def parse_score(response: ProviderResponse) -> tuple[float | None, str]:
    """The score (clamped to 0-10) and reason of a review answer; (None, why) if it has none.

    JSON ``{"score": N}`` first; in free text, an "N/10" (or "N out of 10"), then a number
    labelled "score", then the first number from 0 to 10 ("2 issues ... 7/10" is 7, not 2).
    """
    data = response.data
    if data is None:
        try:
            data = parse_output(response.text)
        except ValueError:
            data = None
    if isinstance(data, dict):
        score = data.get("score")
        if isinstance(score, str):
            try:
                score = float(score.strip().removesuffix("/10"))
            except ValueError:
                score = None
        if isinstance(score, (int, float)) and not isinstance(score, bool) and score == score:  # not NaN
            return max(0.0, min(10.0, float(score))), str(data.get("reason", ""))
    text = response.text or ""
    for pattern in (_OUT_OF_TEN, _LABELLED, _NUMBER):
        match = pattern.search(text)
        if match:
            return float(match.group(1)), text.strip()[:300]
    return None, "the reviewer's answer has no score"


def feedback_prompt(prompt: str, error: str, previous: Any) -> str:
    """The task's prompt again, with why its last answer was rejected and that answer."""
    shown = previous if isinstance(previous, str) else json.dumps(previous, default=str)
    if len(shown) > 4000:
        shown = shown[:4000] + " ..."
    return (f"{prompt}\n\n---\nYour previous answer was rejected: {error}\n"
            f"Previous answer:\n{shown}\n---\nAnswer again, fixing exactly that problem.")
