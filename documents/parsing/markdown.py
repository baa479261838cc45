"""Markdown files, kept as written (Markdown reads well as it is); markdown-it-py finds the
headings, so '#' lines in code blocks do not count. A front matter block is left out."""

import re
from pathlib import Path

from markdown_it import MarkdownIt

from . import text
from .assembly import Block, assemble, joined, nest, one_line
from .parsed import Parsed

# Jekyll/Hugo front matter: YAML between --- lines or TOML between +++ lines, at the very top.
_FRONT_MATTER_FENCES = {"---": ("---", "..."), "+++": ("+++",)}
_FRONT_MATTER_TITLE = re.compile(r"""^title\s*[:=]\s*["']?(.*?)["']?\s*$""", re.MULTILINE)
_LINE_BREAKS = re.compile(r"\r\n?")
_BREAKS = {"softbreak": " ", "hardbreak": " "}  # a heading written over two lines


def parse(path: Path, *, max_characters: int | None, charset: str | None = None) -> Parsed:
    source, encoding = text.decode(path.read_bytes(), charset)
    # markdown-it counts lines after turning \r\n and \r into \n; so must the offsets here.
    lines = _LINE_BREAKS.sub("\n", source).split("\n")
    front_matter, lines = _split_front_matter(lines)
    headings = _headings("\n".join(lines))
    blocks = [Block("\n".join(lines[: headings[0][0] if headings else len(lines)]))]
    path_so_far: list[tuple[int, str]] = []
    for index, (line, level, title) in enumerate(headings):
        end = headings[index + 1][0] if index + 1 < len(headings) else len(lines)
        path_so_far = nest(path_so_far, level, title)
        blocks.append(Block("\n".join(lines[line:end]), section=(None, joined(path_so_far))))
    body, sections = assemble(blocks, max_characters)
    found = _FRONT_MATTER_TITLE.search(front_matter)
    title = one_line(found.group(1)) if found else ""
    title = title or (headings[0][2] if headings else "")
    metadata = {"content_type": "text/markdown", "encoding": encoding}
    return Parsed(title=title, text=body, sections=sections, metadata=metadata)


def _split_front_matter(lines: list[str]) -> tuple[str, list[str]]:
    closing = _FRONT_MATTER_FENCES.get(lines[0].strip()) if lines else None
    if closing:
        for index in range(1, len(lines)):
            if lines[index].strip() in closing:
                return "\n".join(lines[1:index]), lines[index + 1 :]
    return "", lines


def _headings(source: str) -> list[tuple[int, int, str]]:
    """(first line, level, title) of each heading at the top level of the document: ATX (#) and
    setext (underlined) ones, not those in block quotes or lists."""
    tokens = MarkdownIt("commonmark").parse(source)
    found = []
    for token, inline in zip(tokens, tokens[1:], strict=False):
        if token.type == "heading_open" and token.level == 0 and token.map:
            words = "".join(_BREAKS.get(child.type, child.content) for child in inline.children or [])
            found.append((token.map[0], int(token.tag[1]), one_line(words)))
    return found
