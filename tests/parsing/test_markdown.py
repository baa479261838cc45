"""Markdown files: kept as written, a section at each heading (ATX and setext, not '#' lines in
code), the heading path by level, and front matter left out but its title kept."""

from documents.parsing import parse_file

GUIDE = """\
---
title: "The Sidecar Guide"
tags: [embeddings, postgres]
---

Read this first.

# Guide

Sidecar keeps embeddings current.

Install
-------

```sh
# install it (a comment, not a heading)
pip install sidecar
```

    # indented code, not a heading either

### Proxies ###

Set HTTPS_PROXY.

> # A heading inside a quote belongs to the quote

## Usage

Attach a table.

Reference
=========

The settings.
"""


def parse(tmp_path, source, name="guide.md"):
    path = tmp_path / name
    path.write_bytes(source.encode("utf-8") if isinstance(source, str) else source)
    return parse_file(path, name=name)


def test_sections_start_at_each_heading_with_its_path(tmp_path):
    parsed = parse(tmp_path, GUIDE)

    assert [s.heading for s in parsed.sections] == [
        "",
        "Guide",
        "Guide › Install",
        "Guide › Install › Proxies",
        "Guide › Usage",
        "Reference",
    ]
    starts = [parsed.text[s.start :].split("\n", 1)[0] for s in parsed.sections]
    assert starts == ["Read this first.", "# Guide", "Install", "### Proxies ###", "## Usage", "Reference"]
    assert all(s.page is None for s in parsed.sections)


def test_the_text_is_the_source_as_written_without_front_matter(tmp_path):
    parsed = parse(tmp_path, GUIDE)

    assert parsed.text.startswith("Read this first.\n\n# Guide\n\nSidecar keeps embeddings current.")
    assert "```sh\n# install it (a comment, not a heading)\npip install sidecar\n```" in parsed.text
    assert "    # indented code, not a heading either" in parsed.text
    assert "tags:" not in parsed.text
    assert parsed.title == "The Sidecar Guide"
    assert parsed.metadata == {"content_type": "text/markdown", "encoding": "utf-8"}


def test_without_front_matter_the_first_heading_is_the_title_and_offsets_hold(tmp_path):
    source = "# Notes\r\n\r\nFirst.\r\n\r\n## Later\r\n\r\nSecond.\r\n"

    parsed = parse(tmp_path, source, name="notes.markdown")

    assert parsed.title == "Notes"
    assert parsed.text == "# Notes\n\nFirst.\n\n## Later\n\nSecond."
    assert [(s.start, s.heading) for s in parsed.sections] == [(0, "Notes"), (17, "Notes › Later")]


def test_a_file_without_headings_has_no_sections(tmp_path):
    parsed = parse(tmp_path, "Just a paragraph,\nover two lines.\n")

    assert parsed.sections == []
    assert parsed.title == ""


def test_a_latin_1_file_is_decoded(tmp_path):
    parsed = parse(
        tmp_path, "# Café\n\nLe garçon a mangé une crème brûlée près de l'église.\n".encode("cp1252")
    )

    assert parsed.title == "Café"
    assert "crème brûlée" in parsed.text
