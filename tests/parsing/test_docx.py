"""Word files: paragraphs and tables in body order, a section at each heading with its path, the
title, and the files that are not Word files or would expand into a zip bomb."""

import zipfile

import docx
import pytest

from documents.parsing import ParseError, parse_file
from documents.parsing.docx import MOST_EXPANDED_BYTES


def make_docx(path, core_title=None):
    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    document.add_paragraph("Sidecar Handbook", style="Title")
    document.add_paragraph("Before any heading.")
    document.add_heading("Installation", level=1)
    document.add_paragraph("Install it with pip.")
    document.add_heading("Proxies", level=2)
    document.add_paragraph("Set HTTPS_PROXY first.")
    table = document.add_table(rows=2, cols=3)
    for row, values in zip(
        table.rows, [("Setting", "Default", "Unit"), ("BATCH_SIZE", "64", "rows")], strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("After the table.")
    document.add_heading("Usage", level=1)
    document.add_paragraph("Attach a table.")
    document.save(path)
    return path


def test_paragraphs_and_tables_in_order_with_sections_at_headings(tmp_path):
    parsed = parse_file(make_docx(tmp_path / "handbook.docx"), name="handbook.docx")

    assert parsed.text == (
        "Sidecar Handbook\n\nBefore any heading.\n\nInstallation\n\nInstall it with pip.\n\n"
        "Proxies\n\nSet HTTPS_PROXY first.\n\nSetting | Default | Unit\n\nBATCH_SIZE | 64 | rows\n\n"
        "After the table.\n\nUsage\n\nAttach a table."
    )
    assert [s.heading for s in parsed.sections] == [
        "Sidecar Handbook",
        "Sidecar Handbook › Installation",
        "Sidecar Handbook › Installation › Proxies",
        "Sidecar Handbook › Usage",
    ]
    for section in parsed.sections:
        assert parsed.text[section.start :].startswith(section.heading.split(" › ")[-1])
    assert parsed.metadata == {
        "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    }


def test_title_from_core_properties_else_the_title_paragraph(tmp_path):
    assert (
        parse_file(make_docx(tmp_path / "a.docx", "Official Title"), name="a.docx").title == "Official Title"
    )
    assert parse_file(make_docx(tmp_path / "b.docx"), name="b.docx").title == "Sidecar Handbook"


def test_a_corrupt_docx_is_not_a_readable_word_file(tmp_path):
    garbage = tmp_path / "garbage.docx"
    garbage.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    not_word = tmp_path / "other.docx"
    with zipfile.ZipFile(not_word, "w") as archive:
        archive.writestr("hello.txt", "a zip, but no Word document inside")

    for path in (garbage, not_word):
        with pytest.raises(ParseError, match=r"^not a readable Word \(\.docx\) file: \S"):
            parse_file(path, name=path.name)


def test_a_docx_that_would_expand_to_a_zip_bomb_is_refused_before_reading(tmp_path):
    bomb = make_docx(tmp_path / "bomb.docx")
    zeros = bytes(2**20)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("word/media/padding.bin", "w", force_zip64=True) as member:
            for _ in range(MOST_EXPANDED_BYTES // len(zeros) + 10):
                member.write(zeros)

    with pytest.raises(ParseError, match=r"^refused: it would expand to 2\d\d MB"):
        parse_file(bomb, name="bomb.docx")
