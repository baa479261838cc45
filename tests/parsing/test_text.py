"""Plain text files: the encoding found (UTF-8, UTF-16 with its byte-order mark, Windows
code pages), binary bytes refused, and no sections."""

import pytest

from documents.parsing import ParseError, parse_file

FRENCH = "Le garçon a mangé une crème brûlée — « déjà vu » — près de l'église.\nDeuxième ligne.\n"


def parse(tmp_path, data, name="notes.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return parse_file(path, name=name)


@pytest.mark.parametrize(
    ("encoding", "found"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("cp1252", "cp1252")],
)
def test_text_is_decoded_from_its_encoding(tmp_path, encoding, found):
    parsed = parse(tmp_path, FRENCH.encode(encoding))

    assert parsed.text == FRENCH.rstrip("\n")
    assert parsed.metadata == {"content_type": "text/plain", "encoding": found}
    assert parsed.sections == []
    assert parsed.title == ""


def test_japanese_in_shift_jis_is_decoded(tmp_path):
    text = "日本語のテキストです。これは文字コードのテストです。"

    assert parse(tmp_path, text.encode("shift_jis"), name="notes.text").text == text


def test_control_characters_go_and_paragraph_breaks_stay(tmp_path):
    parsed = parse(
        tmp_path, b"  Title\r\n\r\n\r\n\r\nFirst\x07 para\x1b[0m.   \r\nSecond line.\x0cNext page\tcolumn\n\n"
    )

    assert parsed.text == "  Title\n\nFirst para[0m.\nSecond line.\nNext page\tcolumn"


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 8, b"\x7fELF\x02\x01\x01\x00" + bytes(2000), b"text with a NUL\x00 in it, " * 20],
    ids=["all bytes", "executable", "nul bytes"],
)
def test_binary_bytes_are_not_text(tmp_path, data):
    with pytest.raises(ParseError) as caught:
        parse(tmp_path, data)
    assert str(caught.value) == "not text: the bytes do not decode as text in any encoding (a binary file?)"


def test_an_empty_file_and_a_blank_one_are_refused(tmp_path):
    with pytest.raises(ParseError, match=r"^empty file$"):
        parse(tmp_path, b"")
    with pytest.raises(ParseError, match=r"^no text found$"):
        parse(tmp_path, b" \n\t\r\n  \n")
