"""Validation of document input, shared by the model, the admin and the shell.

PostgreSQL would reject a NUL byte or invalid UTF-8 with a driver error mid-transaction;
checking first turns that into a ValidationError that names the field and the problem,
and nothing is written.
"""

import math
import re

from django.core.exceptions import ValidationError


def validate_clean_text(value) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValidationError("Text must be a string, not raw bytes; decode it as UTF-8 first.", code="bytes")
    if not isinstance(value, str):
        return
    position = value.find("\x00")
    if position != -1:
        raise ValidationError(
            "Text contains a NUL byte (\\x00) at character %(position)s; PostgreSQL cannot store it. "
            "Remove it or replace it before saving.",
            code="nul_byte",
            params={"position": position},
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            "Text is not valid UTF-8: character %(position)s is %(char)r (undecodable input bytes or a "
            "lone surrogate). Decode the source with the right encoding before saving.",
            code="invalid_utf8",
            params={"position": exc.start, "char": value[exc.start]},
        ) from None


# Deeper metadata is refused: Python's JSON encoder recurses once per level and would fail
# with a RecursionError (a 500) somewhere near 1,000 levels; no real metadata nests this deep.
MAX_METADATA_DEPTH = 32


def validate_json_object(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            'Metadata must be a JSON object like {"source": "wiki"}, not %(kind)s.',
            code="not_object",
            params={"kind": type(value).__name__},
        )
    # Every key and string inside must be storable too (PostgreSQL's jsonb refuses \u0000 and
    # lone surrogates with a driver error): walk it without recursion, so depth is checked
    # before anything recurses.
    pending = [(value, 1, "metadata")]
    while pending:
        node, depth, path = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValidationError(
                "Metadata nests deeper than %(most)s levels (at %(path)s); flatten it.",
                code="too_deep",
                params={"most": MAX_METADATA_DEPTH, "path": path[:200]},
            )
        if isinstance(node, dict):
            for key, child in node.items():
                _check_json_string(key, f"{path} key {key!r}"[:200])
                pending.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(node, list | tuple):
            pending.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            _check_json_string(node, path)
        elif isinstance(node, float) and not math.isfinite(node):
            # json.loads reads NaN and Infinity (and 1e999 as Infinity); JSON and jsonb do not.
            raise ValidationError(
                "Metadata at %(where)s is %(value)s, which JSON cannot hold; use a number or null.",
                code="not_finite",
                params={"where": path[:200], "value": node},
            )


def _check_json_string(text, where: str) -> None:
    if not isinstance(text, str):
        return
    try:
        validate_clean_text(text)
    except ValidationError as exc:
        raise ValidationError(
            "Metadata at %(where)s: %(problem)s",
            code=exc.code,
            params={"where": where[:200], "problem": exc.messages[0]},
        ) from None


SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"


def validate_source_name(value) -> None:
    """A source's name is typed in commands and URLs (`source resync NAME`, `?source=NAME`):
    lowercase letters, digits, '-' and '_'."""
    if not isinstance(value, str) or not re.fullmatch(SOURCE_NAME_PATTERN, value):
        raise ValidationError(
            "A source name is 1 to 100 lowercase letters, digits, '-' or '_', starting with a letter "
            "or digit (for example 'blog-posts'); got %(value)r.",
            code="source_name",
            params={"value": value},
        )
