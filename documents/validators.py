"""Validation of document input, shared by the model, the admin and the shell.

PostgreSQL would reject a NUL byte or invalid UTF-8 with a driver error mid-transaction;
checking first turns that into a ValidationError that names the field and the problem,
and nothing is written.
"""

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


def validate_json_object(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            'Metadata must be a JSON object like {"source": "wiki"}, not %(kind)s.',
            code="not_object",
            params={"kind": type(value).__name__},
        )
