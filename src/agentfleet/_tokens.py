"""The token estimator used wherever a provider does not report usage.

About 4 characters per token of English text for BPE tokenisers (the rule of thumb
OpenAI and Anthropic publish), and never fewer than 1.3 tokens per word, so dense text
(code, identifiers, short words) is not under-counted. Exact counts need the model's
own tokenizer; the provider's reported usage always wins where there is one.
"""

from __future__ import annotations

import math

__all__ = ["estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: ~4 characters per token, at least 1.3 per word."""
    if not text:
        return 0
    by_chars = math.ceil(len(text) / 4)
    by_words = math.ceil(len(text.split()) * 1.3)
    return max(by_chars, by_words)
