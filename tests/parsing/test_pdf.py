"""PDF files: text page by page, a section per page with its outline heading, and the PDFs that
cannot be read (encrypted, scanned, broken) each with its own reason."""

import os

import pytest
from pypdf import PdfWriter
from reportlab.pdfgen import canvas

from documents.parsing import ParseError, parse_file

# page -> outline entries that start on it: (title, level), level 0 = chapter
OUTLINE = {
    1: [("Introduction", 0)],
    2: [("Installation", 0)],
    3: [("Proxies", 1)],
    5: [("Usage", 0), ("Basics", 1)],
    6: [("Advanced", 1), ("Tuning", 2)],
}


def make_pdf(path, pages=7, outline=None, title=None):
    pdf = canvas.Canvas(str(path))
    if title:
        pdf.setTitle(title)
    for page in range(1, pages + 1):
        for index, (heading, level) in enumerate((outline or {}).get(page, [])):
            key = f"p{page}-{index}"
            pdf.bookmarkPage(key)
            pdf.addOutlineEntry(heading, key, level)
        pdf.drawString(72, 720, f"This is page {page} of the manual.")
        pdf.drawString(72, 700, "It has a second line of text.")
        pdf.showPage()
    pdf.save()
    return path


def test_pages_become_sections_with_the_outline_heading_in_force(tmp_path):
    parsed = parse_file(make_pdf(tmp_path / "manual.pdf", outline=OUTLINE), name="manual.pdf")

    assert [(s.page, s.heading) for s in parsed.sections] == [
        (1, "Introduction"),
        (2, "Installation"),
        (3, "Installation › Proxies"),
        (4, "Installation › Proxies"),  # no entry on page 4: the one before it is still in force
        (5, "Usage"),  # the first entry on the page, where the page begins
        (6, "Usage › Advanced"),
        (7, "Usage › Advanced › Tuning"),
    ]
    for section in parsed.sections:
        assert parsed.text[section.start :].startswith(f"This is page {section.page} of the manual.")
    assert parsed.sections[0].start == 0
    assert "\n\nThis is page 2" in parsed.text
    assert parsed.metadata == {"content_type": "application/pdf", "pages": 7}


def test_without_an_outline_every_page_is_a_section_without_heading(tmp_path):
    parsed = parse_file(make_pdf(tmp_path / "plain.pdf", pages=3), name="plain.pdf")

    assert [(s.page, s.heading) for s in parsed.sections] == [(1, ""), (2, ""), (3, "")]


def test_title_comes_from_the_metadata(tmp_path):
    assert parse_file(make_pdf(tmp_path / "a.pdf", title="Operator's Manual"), name="a.pdf").title == (
        "Operator's Manual"
    )
    assert parse_file(make_pdf(tmp_path / "b.pdf"), name="b.pdf").title == ""  # ReportLab's "untitled"


def test_a_pdf_without_text_is_refused_as_scanned(tmp_path):
    pdf = canvas.Canvas(str(tmp_path / "scan.pdf"))
    for _ in range(2):
        pdf.rect(72, 72, 400, 600, fill=1)
        pdf.circle(300, 400, 100)
        pdf.showPage()
    pdf.save()

    with pytest.raises(ParseError, match=r"^no text layer \(a scanned PDF\?\): OCR is not supported$"):
        parse_file(tmp_path / "scan.pdf", name="scan.pdf")


def encrypt(source, target, user_password, algorithm="AES-256"):
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="owner secret", algorithm=algorithm)
    writer.write(target)
    return target


@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
def test_a_password_protected_pdf_is_refused(tmp_path, algorithm):
    locked = encrypt(make_pdf(tmp_path / "plain.pdf"), tmp_path / "locked.pdf", "secret", algorithm)

    with pytest.raises(ParseError) as caught:
        parse_file(locked, name="locked.pdf")
    assert str(caught.value) == "encrypted PDF: Sidecar cannot read password-protected files"


def test_a_pdf_encrypted_with_an_empty_password_is_read(tmp_path):
    restricted = encrypt(make_pdf(tmp_path / "plain.pdf", pages=2), tmp_path / "restricted.pdf", "")

    parsed = parse_file(restricted, name="restricted.pdf")

    assert parsed.text.startswith("This is page 1 of the manual.")
    assert parsed.metadata["pages"] == 2


def test_broken_bytes_are_not_a_readable_pdf(tmp_path):
    whole = make_pdf(tmp_path / "whole.pdf").read_bytes()
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(whole[: len(whole) // 3])
    noise = tmp_path / "noise.pdf"
    noise.write_bytes(os.urandom(5000))

    for path in (truncated, noise):
        with pytest.raises(ParseError, match=r"^not a readable PDF: \S"):
            parse_file(path, name=path.name)


def test_text_past_max_characters_is_refused(tmp_path):
    path = make_pdf(tmp_path / "long.pdf", pages=20)

    with pytest.raises(
        ParseError, match=r"^the text has at least [\d,]+ characters, more than the 500 allowed"
    ):
        parse_file(path, name="long.pdf", max_characters=500)
    assert parse_file(path, name="long.pdf", max_characters=100_000).metadata["pages"] == 20
