"""PDF files, with pypdf: the text page by page, a section per page, headings from the outline
(bookmarks)."""

from pathlib import Path

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from .assembly import HEADING_SEPARATOR, Block, assemble, one_line
from .parsed import Parsed, ParseError

ENCRYPTED = "encrypted PDF: Sidecar cannot read password-protected files"
NO_TEXT_LAYER = "no text layer (a scanned PDF?): OCR is not supported"


def parse(path: Path, *, max_characters: int | None) -> Parsed:
    # An open file, not the path: given a path, pypdf reads the whole file into memory first.
    with open(path, "rb") as stream:
        try:
            reader = PdfReader(stream)
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise ParseError(ENCRYPTED)
            pages = len(reader.pages)
            headings = _page_headings(reader, pages)
            blocks = (
                Block(reader.pages[index].extract_text(), section=(index + 1, headings[index]))
                for index in range(pages)
            )
            text, sections = assemble(blocks, max_characters)
            title = _title(reader)
        except ParseError:
            raise
        except DependencyError as error:  # AES without the `cryptography` package
            raise ParseError(f"encrypted PDF: reading it needs a library Sidecar lacks ({error})") from error
        except Exception as error:  # pypdf fails on broken bytes in many ways, not only PdfReadError
            raise ParseError(f"not a readable PDF: {_reason(error)}") from error
    if not text:
        raise ParseError(NO_TEXT_LAYER)
    return Parsed(
        title=title,
        text=text,
        sections=sections,
        metadata={"content_type": "application/pdf", "pages": pages},
    )


def _title(reader: PdfReader) -> str:
    title = one_line(str((reader.metadata or {}).get("/Title") or ""))
    # ReportLab writes "untitled" when nobody set a title.
    return "" if title.lower() == "untitled" else title


def _page_headings(reader: PdfReader, pages: int) -> list[str]:
    """Per page, the outline path in force where it begins: that of the first outline entry on
    the page, else that of the last entry on an earlier page."""
    entries = sorted(_outline_entries(reader), key=lambda entry: entry[0])  # stable: outline order
    headings, current, next_entry = [], "", 0
    for page in range(pages):
        in_force, first_here = current, None
        while next_entry < len(entries) and entries[next_entry][0] <= page:
            current = entries[next_entry][1]
            first_here = first_here if first_here is not None else current
            next_entry += 1
        headings.append(first_here if first_here is not None else in_force)
    return headings


def _outline_entries(reader: PdfReader) -> list[tuple[int, str]]:
    """(0-based page, heading path) of each outline entry that points at a page."""
    entries: list[tuple[int, str]] = []

    def walk(items, parents: list[str]) -> None:
        title = None
        for item in items:
            if isinstance(item, list):  # the children of the entry before it
                walk(item, parents + [title] if title is not None else parents)
                continue
            title = one_line(str(item.title or ""))
            page = reader.get_destination_page_number(item)
            if page is not None and page >= 0:
                entries.append((page, HEADING_SEPARATOR.join(parents + [title])))

    try:
        walk(reader.outline, [])
    except Exception:  # a broken outline costs the headings, not the file
        return []
    return entries


def _reason(error: Exception) -> str:
    reason = " ".join(str(error).split()) or type(error).__name__
    return reason if len(reason) <= 200 else reason[:199] + "…"
