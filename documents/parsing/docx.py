"""Word (.docx) files, with python-docx: paragraphs and tables in body order, a section at each
heading (styles "Title", "Heading 1" to "Heading 9")."""

import re
import zipfile
from pathlib import Path

import docx
from docx.table import Table

from .assembly import Block, assemble, joined, nest, one_line
from .parsed import Parsed, ParseError

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# A .docx is a zip: refuse one that would expand far beyond any real document (a zip bomb)
# before python-docx inflates its parts in memory.
MOST_EXPANSION_RATIO = 50
MOST_EXPANDED_BYTES = 200 * 1024 * 1024

_HEADING_STYLE = re.compile(r"heading ([1-9])", re.IGNORECASE)
_TITLE_LEVEL = 0


def parse(path: Path, *, max_characters: int | None) -> Parsed:
    _refuse_zip_bomb(path)
    try:
        document = docx.Document(str(path))
        pieces = list(_pieces(document))
        core_title = one_line(document.core_properties.title or "")
    except Exception as error:  # bad zip, missing parts, broken XML: python-docx raises them all
        raise ParseError(f"not a readable Word (.docx) file: {str(error) or type(error).__name__}") from error
    blocks, heading_path = [], []
    for level, text in pieces:
        if level is None or not text.strip():
            blocks.append(Block(text))
        else:
            heading_path = nest(heading_path, level, one_line(text))
            blocks.append(Block(text, section=(None, joined(heading_path))))
    text, sections = assemble(blocks, max_characters)
    title = core_title or _first_heading(pieces, {_TITLE_LEVEL}) or _first_heading(pieces, range(10))
    return Parsed(title=title, text=text, sections=sections, metadata={"content_type": CONTENT_TYPE})


def _refuse_zip_bomb(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as error:
        raise ParseError(f"not a readable Word (.docx) file: {error}") from error
    if expanded > max(MOST_EXPANSION_RATIO * path.stat().st_size, MOST_EXPANDED_BYTES):
        raise ParseError(f"refused: it would expand to {expanded // 2**20:,} MB (a zip bomb?)")


def _pieces(document):
    """(heading level or None, text) for each paragraph and table row, in body order; the
    "Title" style is level 0, above "Heading 1"."""
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                # A cell spanning several grid columns comes once per column, as the same object.
                spans = row.cells
                cells = [
                    one_line(cell.text) for i, cell in enumerate(spans) if i == 0 or cell is not spans[i - 1]
                ]
                yield None, " | ".join(cell for cell in cells if cell)
        else:
            yield _level(item.style.name if item.style is not None else ""), item.text


def _level(style_name: str) -> int | None:
    if style_name.lower() == "title":
        return _TITLE_LEVEL
    heading = _HEADING_STYLE.fullmatch(style_name)
    return int(heading.group(1)) if heading else None


def _first_heading(pieces, levels) -> str:
    return next((one_line(text) for level, text in pieces if level in levels and text.strip()), "")
