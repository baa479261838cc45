"""HTML pages, with trafilatura: the main content without navigation, footers and banners, a
section at each heading."""

import re
from pathlib import Path

import trafilatura
from lxml import etree

from . import text
from .assembly import Block, assemble, joined, nest, one_line
from .parsed import Parsed, ParseError

NO_READABLE_TEXT = "no readable text: the page is mostly script or markup"

# Where a page declares its charset: <meta charset="..."> or <meta http-equiv=... content="...;
# charset=...">, within the first bytes as browsers look for it.
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_PRESCAN_BYTES = 4096
# Too little text from this much markup: the page is an application shell, not a document.
_FEWEST_CHARACTERS = 200
_MOST_MARKUP_PER_CHARACTER = 100

_BLOCKS = ("head", "p", "item", "row", "code", "quote")
_NOT_INLINE = {*_BLOCKS, "list", "table"}


def parse(path: Path, *, max_characters: int | None, charset: str | None = None) -> Parsed:
    data = path.read_bytes()
    markup, encoding = text.decode(data, charset or _meta_charset(data))
    tree = trafilatura.load_html(markup)
    extracted = tree is not None and trafilatura.extract(
        tree, output_format="xml", include_formatting=True, include_tables=True, favor_recall=True
    )
    if not extracted:
        raise ParseError(NO_READABLE_TEXT)
    try:
        main = etree.fromstring(extracted).find("main")
    except etree.XMLSyntaxError as error:
        raise ParseError(f"not readable HTML: {error}") from error
    blocks = list(_blocks(main))
    page_text, sections = assemble(blocks, max_characters)
    if len(page_text) < _FEWEST_CHARACTERS and len(page_text) * _MOST_MARKUP_PER_CHARACTER < len(markup):
        raise ParseError(NO_READABLE_TEXT)
    headings = [block.text for block in blocks if block.section is not None]
    title = one_line(tree.findtext(".//title") or "") or (one_line(headings[0]) if headings else "")
    metadata = {"content_type": "text/html", "encoding": encoding}
    return Parsed(title=title, text=page_text, sections=sections, metadata=metadata)


def _meta_charset(data: bytes) -> str | None:
    found = _META_CHARSET.search(data[:_PRESCAN_BYTES])
    return found.group(1).decode("ascii") if found else None


def _blocks(main):
    """trafilatura's XML as blocks: paragraphs, list items, table rows (cells joined with " | "),
    code, and headings (<head rend="h2">) that start sections."""
    path: list[tuple[int, str]] = []
    for line_break in main.iter("lb"):
        line_break.text = "\n"
    for element in main.iter(*_BLOCKS):
        if element.tag == "head":
            title = one_line(_own_text(element))
            path = nest(path, _level(element), title)
            yield Block(title, section=(None, joined(path)))
        elif element.tag == "row":
            cells = (one_line("".join(cell.itertext())) for cell in element.iter("cell"))
            yield Block(" | ".join(cell for cell in cells if cell))
        elif next(element.iterancestors("cell"), None) is None:  # a cell's text is in its row
            yield Block(_own_text(element))


def _own_text(element) -> str:
    """The element's text with its inline children (bold, links), without nested blocks, which
    come as blocks of their own."""
    parts = [element.text or ""]
    for child in element:
        if child.tag not in _NOT_INLINE:
            parts.extend(child.itertext())
        parts.append(child.tail or "")
    return "".join(parts)


def _level(head) -> int:
    rend = head.get("rend") or ""
    return int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 2
