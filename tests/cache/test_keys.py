"""Cache keys, cacheability and the response JSON helpers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.cache import cache_key, cacheable, response_from_json, response_to_json


def _request(**changes: object) -> ProviderRequest:
    base = ProviderRequest(task_id="t1", agent="writer", model="m1", system="be brief", prompt="hello",
                           max_tokens=100, temperature=0.0, output_schema={"type": "object", "required": ["a"]})
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class TestCacheKey:
    def test_is_a_stable_sha256_hex(self) -> None:
        """The key is 64 hex characters and the same for equal requests."""
        key = cache_key(_request(), provider="sim")
        assert len(key) == 64 and set(key) <= set("0123456789abcdef")
        assert key == cache_key(_request(), provider="sim")

    def test_pinned_value(self) -> None:
        """The key of a fixed request does not drift between versions of the code."""
        assert cache_key(_request(), provider="sim") == (
            "169fda4b7091061c28f2c869d3cfa84a4bdd1597aa6e770cfdda2a3728f03cdb")

    def test_ignores_task_agent_timeout_stream_and_options(self) -> None:
        """Who asks and how the answer is fetched do not change the key."""
        other = _request(task_id="t2", agent="reviewer", timeout=5.0, stream=True, options={"attempt": 3})
        assert cache_key(other, provider="sim") == cache_key(_request(), provider="sim")

    @pytest.mark.parametrize("change", [
        {"model": "m2"}, {"system": "be long"}, {"prompt": "hello!"}, {"max_tokens": 101},
        {"temperature": 0.5}, {"temperature": None}, {"output_schema": None},
        {"output_schema": {"type": "object", "required": ["b"]}},
    ])
    def test_content_changes_the_key(self, change: dict[str, object]) -> None:
        """Each field that decides the answer is part of the key."""
        assert cache_key(_request(**change), provider="sim") != cache_key(_request(), provider="sim")

    def test_provider_is_part_of_the_key(self) -> None:
        """The same request to another provider has another key."""
        assert cache_key(_request(), provider="openai") != cache_key(_request(), provider="sim")

    def test_schema_key_order_and_int_temperature_do_not_matter(self) -> None:
        """Schemas are canonical (sorted keys) and temperature 0 equals 0.0."""
        reordered = _request(output_schema={"required": ["a"], "type": "object"}, temperature=0)
        assert cache_key(reordered, provider="sim") == cache_key(_request(), provider="sim")

    def test_unserialisable_schema_is_a_type_error(self) -> None:
        """A schema that is not JSON names the task."""
        with pytest.raises(TypeError, match="t1"):
            cache_key(_request(output_schema={"x": object()}), provider="sim")


class TestCacheable:
    def test_temperature_zero_is_cacheable(self) -> None:
        """Deterministic requests are cached without opting in."""
        assert cacheable(_request(temperature=0.0), opt_in=False)

    def test_sampling_and_default_temperature_need_opt_in(self) -> None:
        """Temperature above 0, or None (the provider default), is cached only when the task opts in."""
        for temperature in (0.7, None):
            assert not cacheable(_request(temperature=temperature), opt_in=False)
            assert cacheable(_request(temperature=temperature), opt_in=True)


class TestResponseJson:
    def test_round_trip(self) -> None:
        """A response survives to_json -> JSON text -> from_json, without latency or meta."""
        response = ProviderResponse(text="hi", provider="sim", model="m1", tokens_in=3, tokens_out=4,
                                    data={"a": [1, 2]}, latency=1.5, meta={"attempt": 2})
        value = json.loads(json.dumps(response_to_json(response)))
        assert value == {"text": "hi", "data": {"a": [1, 2]}, "tokens_in": 3, "tokens_out": 4, "model": "m1",
                         "provider": "sim"}
        assert response_from_json(value) == ProviderResponse(text="hi", provider="sim", model="m1", tokens_in=3,
                                                             tokens_out=4, data={"a": [1, 2]})

    def test_missing_fields_are_named(self) -> None:
        """A dict without text, model or provider is rejected naming what is missing."""
        with pytest.raises(ValueError, match="model, provider"):
            response_from_json({"text": "x"})
