"""Plain text files, and the decoding of bytes to text that HTML and Markdown share."""

import codecs
import re
from pathlib import Path

import charset_normalizer

from .assembly import Block, assemble
from .parsed import Parsed, ParseError

NOT_TEXT = "not text: the bytes do not decode as text in any encoding (a binary file?)"

_BOMS = [  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # ESC (\x1b) is left for ANSI colours
_MOST_CONTROLS_IN_TEXT = 0.05
# Labels that mean windows-1252 in practice (and in browsers, per the WHATWG encoding standard).
_WINDOWS_1252_LABELS = {"iso8859-1", "ascii"}


def parse(path: Path, *, max_characters: int | None, charset: str | None = None) -> Parsed:
    text, encoding = decode(path.read_bytes(), charset)
    text, _ = assemble([Block(text)], max_characters)
    return Parsed(
        title="", text=text, sections=[], metadata={"content_type": "text/plain", "encoding": encoding}
    )


def decode(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """The text of `data` and the name of its encoding: a byte-order mark decides, then valid
    UTF-8, then the `declared` charset, then charset-normalizer's guess. Raises ParseError when
    the bytes look binary."""
    text, encoding = _decode(data, declared)
    if "\x00" in text and not encoding.startswith(("utf-16", "utf-32")):
        raise ParseError(NOT_TEXT)
    _, controls = _CONTROLS.subn("", text)
    if controls > len(text) * _MOST_CONTROLS_IN_TEXT:
        raise ParseError(NOT_TEXT)
    return text, encoding


def _decode(data: bytes, declared: str | None) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _attempt(data, encoding) or _guess(data)
    # Valid UTF-8 beyond ASCII is almost never another encoding by chance, while pages that
    # declare latin-1 and are written in UTF-8 are common: UTF-8 wins over the declaration.
    return _attempt(data, "utf-8") or (declared and _attempt(data, declared)) or _guess(data)


def _attempt(data: bytes, encoding: str) -> tuple[str, str] | None:
    try:
        name = codecs.lookup(encoding).name
        if name in _WINDOWS_1252_LABELS:
            name = "cp1252"
        return data.decode(name), name
    except (LookupError, UnicodeDecodeError):
        return None


def _guess(data: bytes) -> tuple[str, str]:
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(NOT_TEXT)
    # charset-normalizer ranks the Latin code pages by statistics that short Western texts do not
    # settle (a French paragraph came out as Baltic cp1257): the most common one wins a near tie.
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + 0.1:
            return _attempt(data, "cp1252") or (str(best), best.encoding)
    return str(best), codecs.lookup(best.encoding).name
