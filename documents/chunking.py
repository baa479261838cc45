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


# A part shorter than this (a heading alone, a nearly empty page) is chunked together with the
# part after it: a chunk of three words would cost a model call and match nothing well.
MIN_SECTION_CHARACTERS = 80


def split_sections_into_chunks(
    text: str,
    sections: list[dict] | None,
    *,
    max_tokens: int,
    overlap_tokens: int,
    token_spans: Callable[[str], Spans] | None = None,
) -> list[tuple[str, int | None, str]]:
    """Chunks of `text` as (chunk text, page, heading path). Without `sections` it is
    split_into_chunks with no place; with them each part (a page, the text under a heading)
    is chunked apart, so that no chunk straddles two places and each can be cited.

    `sections` are source_documents.sections: [{"start": offset, "page": n or None,
    "heading": "A › B"}, ...], sorted by start. A part too short to stand alone joins the next
    one, and the joined chunk cites where it begins (its page) and its deepest heading.
    """
    kwargs = {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens, "token_spans": token_spans}
    if not sections:
        return [(chunk, None, "") for chunk in split_into_chunks(text, **kwargs)]
    starts = [min(max(int(section.get("start") or 0), 0), len(text)) for section in sections]
    starts[0] = 0  # text before the first section belongs to it
    chunks: list[tuple[str, int | None, str]] = []
    part_start, page = 0, None
    for number, section in enumerate(sections):
        end = starts[number + 1] if number + 1 < len(sections) else len(text)
        if end < starts[number]:
            continue  # out of order: this part is read with the one before
        if page is None:
            page = section.get("page")
        is_last = number + 1 == len(sections)
        if len(text[part_start:end].strip()) < MIN_SECTION_CHARACTERS and not is_last:
            continue  # joins the next part
        heading = section.get("heading") or ""
        for chunk in split_into_chunks(text[part_start:end], **kwargs):
            chunks.append((chunk, page, heading))
        part_start, page = end, None
    return chunks
