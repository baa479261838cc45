"""Byte counts as operators read them in refusal messages ("2.1 GB", "500 MB")."""

UNITS = (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024))


def readable_size(n: int) -> str:
    for unit, size in UNITS:
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
