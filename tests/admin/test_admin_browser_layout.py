"""Every Sidecar admin page at 400 px and 1,400 px wide, light and dark (tests/browser.py), with
data that stresses the layout (tests/admin/sidecar_pages.py): the page never scrolls sideways
(a wide table scrolls inside its own box), no text wraps one or two letters to a line, and the
dashboard's chart bars stand out from the page. A screenshot of each goes to screenshot_dir as
PAGE-WIDTH-SCHEME.png."""

import pytest

from console.admin import import_uploads
from tests.admin import sidecar_pages
from tests.browser import docs_screenshot, logged_in_page

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = (400, 1400)
SCHEMES = ("light", "dark")
# The admin guide's narrow and dark pictures (`make docs-screenshots`), beside its 1,280 px ones.
DOCS_SHOWS = {(400, "light"): "narrow", (1400, "dark"): "dark"}

# Text nodes of more than 3 characters laid out in at least one line per 2 characters: "F r e s h".
LETTER_WRAPPED = """() => {
  const labels = 'th, td, label, dt, dd, a, button, h1, h2, h3, p, li, summary, caption';
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent;
    const trimmed = text.trim();
    const element = node.parentElement && node.parentElement.closest(labels);
    if (trimmed.length <= 3 || !element || !element.checkVisibility({visibilityProperty: true})) continue;
    const range = document.createRange();
    const start = text.indexOf(trimmed);
    range.setStart(node, start);
    range.setEnd(node, start + trimmed.length);
    const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
    if (lines.size >= trimmed.length / 2) found.push(`<${element.tagName.toLowerCase()}> ${trimmed.slice(0, 60)}`);
  }
  return found;
}"""

# Words (no space inside) of 4 to 60 characters that break over more than two lines in a table
# column: a model name or a worker id squeezed ("sentence- / transformers/all- / MiniLM-L6- / ...").
SPLIT_WORDS = """() => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement && node.parentElement.closest('th, td');
    if (!element || !element.checkVisibility({visibilityProperty: true})) continue;
    for (const word of node.textContent.matchAll(/\\S+/g)) {
      if (word[0].length < 4 || word[0].length > 60) continue;
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 2) found.push(`<${element.tagName.toLowerCase()}> ${word[0]} (${lines.size} lines)`);
    }
  }
  return found;
}"""

# What sticks out past the viewport's right edge (outside any scrolling box), outermost first.
STICKING_OUT = """width => {
  const clipped = element => {
    for (let up = element.parentElement; up && up !== document.body; up = up.parentElement)
      if (getComputedStyle(up).overflowX !== 'visible') return true;
    return false;
  };
  const name = element => element.tagName.toLowerCase() + (element.id ? '#' + element.id : '') +
    [...element.classList].map(c => '.' + c).join('');
  return [...document.body.querySelectorAll('*')]
    .filter(element => element.getBoundingClientRect().right > width + 1 && !clipped(element))
    .filter(element => element.parentElement.getBoundingClientRect().right <= width + 1)
    .slice(0, 3).map(element => `${name(element)} (${Math.round(element.getBoundingClientRect().width)} px)`);
}"""

# The right edge of the text that has no space to break at, wherever it is shown.
UNBROKEN_TEXT_RIGHT = """prefix => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let right = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.textContent.includes(prefix)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const rect of range.getClientRects()) right = Math.max(right, rect.right);
  }
  return right;
}"""

# The contrast of each chart bar's fill against the background it is drawn on (WCAG's ratio).
BAR_CONTRASTS = """() => {
  const rgb = value => (value.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = c => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  const background = element => {
    for (; element; element = element.parentElement) {
      const colour = rgb(getComputedStyle(element).backgroundColor);
      if (colour.length === 3 || colour[3] > 0) return colour;
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll('svg.sidecar-chart rect.bar')].map(bar => {
    const [a, b] = [luminance(rgb(getComputedStyle(bar).fill)), luminance(background(bar))];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  });
}"""


@pytest.fixture
def seeded(seeded_config, fresh_search_caches, settings, tmp_path, monkeypatch):
    settings.SOURCE_UPLOAD_DIR = tmp_path / "uploads"
    monkeypatch.setattr(import_uploads, "upload_dir", lambda: tmp_path)
    return sidecar_pages.seed()


def layout_problems(page, width: int) -> list[str]:
    problems = []
    page_width = page.evaluate("() => document.documentElement.scrollWidth")
    if page_width > width + 1:
        culprits = ", ".join(page.evaluate(STICKING_OUT, width))
        problems.append(f"the page is {page_width} px wide, it scrolls sideways: {culprits}")
    problems += [f"wraps letter by letter: {text}" for text in page.evaluate(LETTER_WRAPPED)]
    if width >= 1400:
        problems += [f"a word breaks over lines: {text}" for text in page.evaluate(SPLIT_WORDS)]
    # On a wide screen a long error message wraps where it is; only a narrow one may need to
    # scroll a table to read it.
    right = page.evaluate(UNBROKEN_TEXT_RIGHT, sidecar_pages.UNBROKEN_ERROR[:30])
    if width >= 1400 and right > width + 1:
        problems.append(f"a long error message runs to {right:.0f} px instead of wrapping")
    return problems


@pytest.mark.parametrize("name", sidecar_pages.PAGES)
def test_the_page_fits_400_and_1400_px_in_light_and_dark(
    browser, live_server, superuser, seeded, screenshot_dir, name
):
    problems = []
    for scheme in SCHEMES:
        page = logged_in_page(browser, live_server, superuser, color_scheme=scheme)
        try:
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                sidecar_pages.PAGES[name](page, seeded)
                page.wait_for_load_state("load")
                problems += [f"{width} px, {scheme}: {problem}" for problem in layout_problems(page, width)]
                page.screenshot(path=str(screenshot_dir / f"{name}-{width}-{scheme}.png"), full_page=True)
                if name in ("dashboard", "settings") and (width, scheme) in DOCS_SHOWS:
                    docs_screenshot(
                        page, f"{name}-{DOCS_SHOWS[width, scheme]}", {"width": width, "height": 800}
                    )
        finally:
            page.context.close()
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_the_dashboard_chart_bars_stand_out_in_light_and_dark(browser, live_server, superuser, seeded):
    for scheme in SCHEMES:
        page = logged_in_page(browser, live_server, superuser, color_scheme=scheme)
        try:
            page.goto("/admin/")
            assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches") == (
                scheme == "dark"
            )
            contrasts = page.evaluate(BAR_CONTRASTS)
            assert len(contrasts) == 60
            assert min(contrasts) >= 3, f"{scheme}: chart bars at {min(contrasts):.2f}:1 against the page"
        finally:
            page.context.close()
