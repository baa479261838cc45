"""The parsing API every source calls: which files it takes, how it names the ones it does not,
the size limit, and clean text whatever the file held."""

import pytest

from documents.parsing import SUPPORTED, ParseError, content_type_for, parse_file, supported_types
from documents.parsing.assembly import clean_text

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_supported_types_for_messages():
    assert (
        supported_types()
        == "PDF (.pdf), HTML (.html, .htm), Markdown (.md, .markdown), Word (.docx), text (.txt, .text)"
    )
    assert SUPPORTED[".htm"] == "text/html" and SUPPORTED[".docx"] == DOCX


@pytest.mark.parametrize(
    ("name", "declared", "expected"),
    [
        ("Report.PDF", None, "application/pdf"),
        ("notes.markdown", "application/octet-stream", "text/markdown"),
        ("https://example.com/docs/guide.htm?lang=en#top", None, "text/html"),
        ("https://example.com/docs/", "text/html; charset=UTF-8", "text/html"),
        ("s3://bucket/key-without-extension", DOCX, DOCX),
        ("README", "Text/Plain", "text/plain"),
        ("photo.png", "image/png", None),
        ("archive", None, None),
    ],
)
def test_content_type_from_the_extension_else_the_declared_type(name, declared, expected):
    assert content_type_for(name, declared) == expected


def test_an_unsupported_type_is_named_with_what_is_supported(tmp_path):
    path = write(tmp_path, "photo.png", b"\x89PNG\r\n")

    with pytest.raises(ParseError) as caught:
        parse_file(path, name="photo.png")
    assert str(caught.value) == f"unsupported type .png: supported are {supported_types()}"
    with pytest.raises(ParseError, match=r"^unsupported type image/png: supported are PDF"):
        parse_file(path, name="https://example.com/image", content_type="image/png")


def test_a_declared_content_type_wins_over_the_extension(tmp_path):
    path = write(
        tmp_path, "page.txt", b"<html><head><title>Served as HTML</title></head><body><p>Hi</p></body></html>"
    )

    assert parse_file(path, name="page.txt").text.startswith("<html>")
    assert parse_file(path, name="page.txt", content_type="text/html").title == "Served as HTML"
    assert parse_file(path, name="page.txt", content_type="application/octet-stream").metadata == {
        "content_type": "text/plain",
        "encoding": "utf-8",
    }


@pytest.mark.parametrize("name", ["empty.pdf", "empty.html", "empty.md", "empty.docx", "empty.txt"])
def test_an_empty_file_of_any_type_is_refused_as_empty(tmp_path, name):
    with pytest.raises(ParseError, match=r"^empty file$"):
        parse_file(write(tmp_path, name, b""), name=name)


@pytest.mark.parametrize("name", ["long.txt", "long.md", "long.html"])
def test_text_longer_than_max_characters_is_refused(tmp_path, name):
    body = "<html><body><article>" + "<p>A sentence about embeddings, long enough to keep.</p>" * 200
    path = write(tmp_path, name, (body + "</article></body></html>").encode())

    with pytest.raises(ParseError) as caught:
        parse_file(path, name=name, max_characters=1000)
    assert str(caught.value).startswith("the text has at least ")
    assert "characters, more than the 1,000 allowed for one file" in str(caught.value)
    assert parse_file(path, name=name, max_characters=100_000).text


def test_parsed_text_is_always_clean(tmp_path):
    dirty = (
        "Title\x01\x02\r\nbody\u2028second\ufeff line \x85third\x9b end\t\x0b\nThe last line is long enough."
    )
    path = write(tmp_path, "dirty.md", dirty.encode("utf-8"))

    parsed = parse_file(path, name="dirty.md")

    assert parsed.text == "Title\nbody\nsecond line\nthird end\n\nThe last line is long enough."


def test_clean_text_removes_nul_bytes_and_lone_surrogates_and_keeps_indentation():
    assert clean_text("caf\udce9 au\x00 lait") == "caf au lait"
    assert clean_text("\n\n    indented code\n\n\n\nnext   \n") == "    indented code\n\nnext"
