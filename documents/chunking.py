"""Token-aware chunking: documents longer than the model's input become overlapping chunks.

Chunks are cut at token boundaries found by the provider's own tokenizer (`token_spans`),
so each chunk fits the model without silent truncation. Providers without a local tokenizer
(HTTP APIs) fall back to word boundaries with a conservative tokens-per-word estimate.
"""

import re
from collections.abc import Callable

Spans = list[tuple[int, int]]

# English prose averages about 1.3 tokens per word in WordPiece/BPE vocabularies; 1.5 leaves
# room for code and names, so word-cut chunks still fit.
TOKENS_PER_WORD_ESTIMATE = 1.5
# [CLS]/[SEP] and friends: chunks leave room for the special tokens the model adds.
SPECIAL_TOKENS_MARGIN = 4

_WORD = re.compile(r"\S+")


def word_spans(text: str) -> Spans:
    return [match.span() for match in _WORD.finditer(text)]


def split_into_chunks(
    text: str, *, max_tokens: int, overlap_tokens: int, token_spans: Callable[[str], Spans] | None = None
) -> list[str]:
    """Split `text` into chunks of at most `max_tokens` tokens, consecutive chunks sharing
    `overlap_tokens`. Blank text gives no chunks; text that fits gives itself, unchanged."""
    if not text.strip():
        return []
    budget = max_tokens - SPECIAL_TOKENS_MARGIN
    if token_spans is None:
        token_spans = word_spans
        budget = int(budget / TOKENS_PER_WORD_ESTIMATE)
    # Every token covers at least one character: text this short fits without tokenizing.
    if len(text) <= budget:
        return [text]
    spans = token_spans(text)
    if len(spans) <= budget:
        return [text]
    overlap = min(max(overlap_tokens, 0), budget // 2)
    step = budget - overlap
    chunks = []
    for start in range(0, len(spans), step):
        window = spans[start : start + budget]
        chunks.append(text[window[0][0] : window[-1][1]])
        if start + budget >= len(spans):
            break
    return chunks
