"""Token counts for providers whose tokenizer we don't have (the HTTP ones).

These are *estimates*, good enough to budget tokens per minute and to size chunks with a
margin; they are not what the service bills. English text with a BPE or WordPiece tokenizer
averages about 4 characters per token (OpenAI's rule of thumb); code, numbers and most other
languages use more tokens per character, so budgets built on this should keep headroom.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def estimate_token_counts(texts: list[str]) -> list[int]:
    """About one token per 4 characters, at least 1 for non-empty text."""
    return [math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts]


def distribute_total(total: int, estimates: list[int]) -> list[int]:
    """Split a batch's true token total over its texts in proportion to their estimates.

    APIs such as OpenAI's report only ``usage.prompt_tokens`` for the whole batch. The shares
    are whole numbers that add up to exactly ``total`` (largest remainders get the leftover
    tokens), so per-text counts summed over a batch match what the service counted.
    """
    if not estimates:
        return []
    weights = [max(estimate, 1) for estimate in estimates]  # an empty text still gets a share
    weight_sum = sum(weights)
    exact = [total * weight / weight_sum for weight in weights]
    shares = [math.floor(value) for value in exact]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[:leftover]:
        shares[i] += 1
    return shares
