"""HTML pages: the main content without the page's boilerplate, a section at each heading with
its path, the title, the page's own charset, and pages with nothing to read."""

import pytest

from documents.parsing import ParseError, parse_file

PARAGRAPH = "Sidecar keeps the vector embeddings of every document current as rows change. "

PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sidecar Guide</title>
<script>window.tracking = {{id: "UA-1"}}; function trackClick() {{}}</script></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/pricing">Pricing plans</a></li></ul></nav>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. Accept all cookies.</div>
<main><article>
<h1>Getting started</h1><p>{PARAGRAPH * 2}</p>
<h2>Installation</h2><p>Install it with pip; point DATABASE_URL at the server. {PARAGRAPH}</p>
<ul><li>First step of the installation, written out in words.</li><li>Second step, also in words.</li></ul>
<h3>Proxies</h3><p>Behind a proxy, set HTTPS_PROXY before the worker starts. {PARAGRAPH}</p>
<table><tr><th>Setting</th><th>Default</th></tr><tr><td>BATCH_SIZE</td><td>64</td></tr></table>
<h2>Usage</h2><p>Open the admin and attach a table. {PARAGRAPH}</p>
</article></main>
<footer><p>Copyright 2024 Example Corp. All rights reserved. Privacy policy.</p></footer>
<script>document.querySelector("#cookie-banner").remove();</script>
</body></html>"""


def write(tmp_path, content, name="page.html"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_main_content_without_boilerplate_and_sections_at_headings(tmp_path):
    parsed = parse_file(write(tmp_path, PAGE), name="page.html")

    for boilerplate in ("Pricing plans", "cookies", "Copyright", "tracking", "querySelector"):
        assert boilerplate not in parsed.text
    assert [s.heading for s in parsed.sections] == [
        "Getting started",
        "Getting started › Installation",
        "Getting started › Installation › Proxies",
        "Getting started › Usage",
    ]
    for section in parsed.sections:
        assert parsed.text[section.start :].startswith(section.heading.split(" › ")[-1] + "\n\n")
    assert parsed.sections[0].start == 0
    assert "DATABASE_URL" in parsed.text and "HTTPS_PROXY" in parsed.text  # no Markdown escaping
    assert "First step of the installation, written out in words." in parsed.text
    assert "Setting | Default\n\nBATCH_SIZE | 64" in parsed.text
    assert parsed.title == "Sidecar Guide"
    assert parsed.metadata == {"content_type": "text/html", "encoding": "utf-8"}


def test_without_a_title_element_the_first_heading_is_the_title(tmp_path):
    page = PAGE.replace("<title>Sidecar Guide</title>", "")

    assert parse_file(write(tmp_path, page), name="page.html").title == "Getting started"


def test_a_latin_1_page_is_decoded_with_its_meta_charset(tmp_path):
    page = PAGE.replace(
        '<meta charset="utf-8">', '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
    )
    page = page.replace("Getting started", "Démarrage rapide à l'école")

    parsed = parse_file(write(tmp_path, page.encode("latin-1")), name="page.html")

    assert parsed.sections[0].heading == "Démarrage rapide à l'école"
    assert parsed.metadata["encoding"] == "cp1252"  # what browsers read iso-8859-1 as


def test_a_charset_from_the_http_response_is_used(tmp_path):
    page = PAGE.replace('<meta charset="utf-8">', "").replace("Getting started", "Café crème")

    parsed = parse_file(
        write(tmp_path, page.encode("cp1252"), name="index"),
        name="https://example.com/docs/",
        content_type="text/html; charset=windows-1252",
    )

    assert parsed.sections[0].heading == "Café crème"


def test_a_page_that_is_mostly_script_has_no_readable_text(tmp_path):
    app_shell = "<html><head><title>App</title></head><body><div id=root>Loading the app</div><script>"
    app_shell += "var state = {items: [1, 2, 3]}; render(state);\n" * 500 + "</script></body></html>"

    with pytest.raises(ParseError, match=r"^no readable text: the page is mostly script or markup$"):
        parse_file(write(tmp_path, app_shell), name="app.html")


def test_a_binary_file_named_html_is_not_text(tmp_path):
    with pytest.raises(ParseError, match=r"^not text: "):
        parse_file(write(tmp_path, bytes(range(256)) * 20), name="page.html")
