"""Checks shared by the HTTP providers: what goes in, and turning JSON rows into a float32 matrix.

A service that answers 200 with the wrong shape will answer the same way next time, so every
problem here is a *permanent* EmbeddingError whose message says exactly what came back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import EmbeddingError

_NUMBER_TYPES = frozenset({float, int})  # json gives int for "1"; bool (true/false) is refused


def check_texts(texts: list[str], max_batch_size: int) -> None:
    """Refuse what the caller got wrong before anything is sent."""
    if not isinstance(texts, list):
        raise EmbeddingError(f"expected a list of strings, got {type(texts).__name__}", kind="permanent")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbeddingError(f"text {index} is {type(text).__name__}, not str", kind="permanent")
    if len(texts) > max_batch_size:
        # A caller bug, not the documents' fault: don't dead-letter them for it.
        raise ValueError(
            f"embed() got {len(texts)} texts; this provider takes at most {max_batch_size} per call"
        )


def vectors_from_rows(rows: list, name: Callable[[int], str]) -> np.ndarray:
    """A C-contiguous float32 (len(rows), dims) array from JSON lists of numbers.

    ``name(i)`` says where row i came from in the response (``data[3].embedding``), for the
    message. Counts, dimensions and NaN are left to :func:`validate_result`, which reports
    them the same way for every provider.
    """
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            hint = " (base64? the request asked for floats)" if isinstance(row, str) else ""
            raise EmbeddingError(
                f"{name(i)} is {_json_type(row)}, not a list of numbers{hint}", kind="permanent"
            )
        odd = {type(value) for value in row} - _NUMBER_TYPES
        if odd:
            found = ", ".join(sorted(_json_type_name(t) for t in odd))
            raise EmbeddingError(f"{name(i)} holds {found}, not only numbers", kind="permanent")
    lengths = {len(row) for row in rows}
    if len(lengths) > 1:
        raise EmbeddingError(
            f"vectors have different lengths ({', '.join(str(n) for n in sorted(lengths))})", kind="permanent"
        )
    return np.ascontiguousarray(rows, dtype=np.float32)


def _json_type(value: object) -> str:
    return _json_type_name(type(value))


def _json_type_name(kind: type) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(kind, kind.__name__)
