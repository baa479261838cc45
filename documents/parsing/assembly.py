"""Shared by the formats: clean extracted text and put the pieces of one file together into its
text and sections, stopping as soon as the text is longer than the caller allows."""

import re
from collections.abc import Iterable
from typing import NamedTuple

from .parsed import ParseError, Section

HEADING_SEPARATOR = " › "

# Form feeds (PDF page ends), vertical tabs and Unicode line separators read as line breaks.
_LINE_BREAKS = re.compile(r"\r\n?|[\v\f\x85\u2028\u2029]")
# C0/C1 controls but \t and \n, a stray byte-order mark, and lone surrogates (from bytes decoded
# with surrogateescape), none of which UTF-8 text columns or embedding models want.
_UNWANTED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")
_TRAILING_SPACE = re.compile(r"[^\S\n]+(?=\n|\Z)")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Text fit to store and embed: line breaks as \\n, no control characters, no trailing
    spaces, at most one blank line in a row (paragraph breaks stay), no blank lines at the ends.
    Indentation stays: it carries meaning in code and Markdown."""
    text = _LINE_BREAKS.sub("\n", text)
    text = _UNWANTED.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")


def one_line(text: str) -> str:
    """A heading or title on one line, spaces collapsed."""
    return " ".join(clean_text(text).split())


class Block(NamedTuple):
    """A piece of a file's text; `section` = (page, heading) when a new section starts here."""

    text: str
    section: tuple[int | None, str] | None = None


def assemble(blocks: Iterable[Block], max_characters: int | None) -> tuple[str, list[Section]]:
    """Join the cleaned blocks with blank lines. Blank blocks are left out, with the section they
    would start. Raises ParseError once the text grows past `max_characters`, without reading
    the remaining blocks (for a PDF, without extracting the remaining pages)."""
    pieces: list[str] = []
    sections: list[Section] = []
    length = 0
    for block in blocks:
        text = clean_text(block.text)
        if not text:
            continue
        start = length + 2 if pieces else 0
        if block.section is not None:
            page, heading = block.section
            sections.append(Section(start=start, page=page, heading=heading))
        pieces.append(text)
        length = start + len(text)
        if max_characters is not None and length > max_characters:
            raise ParseError(
                f"the text has at least {length:,} characters, more than the {max_characters:,} "
                "allowed for one file"
            )
    if sections and sections[0].start > 0:
        sections.insert(0, Section(start=0, page=None, heading=""))
    return "\n\n".join(pieces), sections


def nest(path: list[tuple[int, str]], level: int, title: str) -> list[tuple[int, str]]:
    """The heading path after a heading at `level` (1 = top): headings at the same or a deeper
    level end where it starts."""
    return [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]


def joined(path: list[tuple[int, str]]) -> str:
    return HEADING_SEPARATOR.join(title for _, title in path)
