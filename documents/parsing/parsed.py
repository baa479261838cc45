"""What parsing gives back: the text of one file, where its sections start, and the error for a
file that cannot be read."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    start: int  # character offset in Parsed.text where this section starts
    page: int | None  # 1-based PDF page number, None for formats without pages
    heading: str  # heading path joined with " › " (e.g. "Installation › Proxies"), "" when none


@dataclass
class Parsed:
    title: str  # from the file itself, else "" (the caller falls back to the file name)
    text: str  # clean: no NUL bytes, no control characters but \n and \t, encodes to UTF-8
    sections: list[Section]  # sorted by start, the first at 0; [] when the format has no structure
    metadata: dict = field(default_factory=dict)  # JSON-serialisable; always "content_type"


class ParseError(Exception):
    """A file that cannot be turned into text. str(error) is the reason shown to the operator
    per file, in plain words, e.g. 'encrypted PDF: Sidecar cannot read password-protected files'."""
