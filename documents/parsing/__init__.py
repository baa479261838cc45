"""The parsing layer: one file in, its text and structure out, so Sidecar can embed PDF, HTML,
Markdown, Word and text files. Pure: no Django models or settings; limits come as arguments.

    parsed = parse_file(path, name="guide.pdf", max_characters=2_000_000)
    parsed.title, parsed.text, parsed.sections  # Section(start, page, heading)

Every file that cannot be read raises ParseError, whose message is the reason to show.
"""

from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from . import docx, html, markdown, pdf, text
from .parsed import Parsed, ParseError, Section

__all__ = [
    "SUPPORTED",
    "ParseError",
    "Parsed",
    "Section",
    "content_type_for",
    "parse_file",
    "supported_types",
]

_FORMATS = [  # (what operators call it, content type, extensions, parser)
    ("PDF", "application/pdf", (".pdf",), pdf.parse),
    ("HTML", "text/html", (".html", ".htm"), html.parse),
    ("Markdown", "text/markdown", (".md", ".markdown"), markdown.parse),
    ("Word", docx.CONTENT_TYPE, (".docx",), docx.parse),
    ("text", "text/plain", (".txt", ".text"), text.parse),
]
SUPPORTED: dict[str, str] = {
    extension: kind for _, kind, extensions, _ in _FORMATS for extension in extensions
}
_PARSERS = {kind: parser for _, kind, _, parser in _FORMATS}
_ALIASES = {"application/xhtml+xml": "text/html", "text/x-markdown": "text/markdown"}


def supported_types() -> str:
    """'PDF (.pdf), HTML (.html, .htm), ...' for error messages."""
    return ", ".join(f"{label} ({', '.join(extensions)})" for label, _, extensions, _ in _FORMATS)


def content_type_for(name: str, declared: str | None = None) -> str | None:
    """The content type to parse `name` (a file name or URL) as: from its extension, else from a
    declared HTTP or S3 content type ("text/html; charset=utf-8" gives "text/html"), else None."""
    return SUPPORTED.get(_extension(name)) or _known_type(declared)


def parse_file(
    path, *, name: str, content_type: str | None = None, max_characters: int | None = None
) -> Parsed:
    """Parse the file at `path` (local disk). `name` is its name or URL, for the type and messages;
    a supported `content_type` (from an HTTP response, say) wins over the extension, and its
    charset is used for text that does not say its own. Raises ParseError for every file that
    cannot be read (OSError still, when the file itself cannot be opened), including text longer
    than `max_characters`."""
    path = Path(path)
    kind = _known_type(content_type) or content_type_for(name)
    if kind is None:
        offered = _extension(name) or _media_type(content_type) or "(no file extension)"
        raise ParseError(f"unsupported type {offered}: supported are {supported_types()}")
    if path.stat().st_size == 0:
        raise ParseError("empty file")
    options = {"charset": _charset(content_type)} if kind.startswith("text/") else {}
    parsed = _PARSERS[kind](path, max_characters=max_characters, **options)
    if not parsed.text.strip():
        raise ParseError("no text found")
    return parsed


def _extension(name: str) -> str:
    if "://" in name:
        name = unquote(urlsplit(name).path)
    return PurePosixPath(name).suffix.lower()


def _known_type(declared: str | None) -> str | None:
    media_type = _media_type(declared)
    media_type = _ALIASES.get(media_type, media_type)
    return media_type if media_type in _PARSERS else None


def _media_type(declared: str | None) -> str:
    return (declared or "").split(";", 1)[0].strip().lower()


def _charset(declared: str | None) -> str | None:
    """The charset parameter of a Content-Type header, read by the standard library's parser
    (quoting and case included)."""
    if not declared:
        return None
    header = Message()
    header["Content-Type"] = declared
    return header.get_content_charset()
