"""Report sections (core/reports/sections.py) as log lines and as HTML, read back with the standard
library's HTML parser."""

from __future__ import annotations

from rsdl_qgis_plugin.core.reports.sections import Section, section_lines, sections_html
from tests.html_pages import read_page

SECTIONS: list[Section] = [
    ("Model <1> & co", [("File", "/data/a&b <x>.onnx"), ("Type", 'Segmentor "v2"')]),
    ("Classes", [("head 1, value 0", "background  #000000"), ("", "none named")]),
    ("Empty", []),
]


def test_html_shows_every_row_of_every_section_with_its_text_unchanged():
    page = sections_html("Model <info> & more", SECTIONS)
    reader = read_page(page)
    assert reader.title == reader.headings["h1"][0] == "Model <info> & more"
    assert reader.headings["h2"] == [heading for heading, _ in SECTIONS]
    assert reader.tables == [[[label, text] for label, text in rows] for _, rows in SECTIONS]


def test_html_escapes_markup_in_every_field():
    page = sections_html("<script>alert(1)</script>", [("<b>", [("<i>", "<img src=x onerror=y>")])])
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=y&gt;" in page
    assert {tag for tag, _ in read_page(page).tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "table", "tr", "td",
    }  # fmt: skip


def test_html_is_one_self_contained_utf8_page():
    page = sections_html("Ünïcode", SECTIONS)
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</html>\n")
    reader = read_page(page)
    assert ("meta", {"charset": "utf-8"}) in reader.tags
    assert not any(key in attrs for _, attrs in reader.tags for key in ("src", "href"))
    assert reader.title == "Ünïcode"


def test_section_lines_give_a_heading_then_one_indented_line_per_row():
    assert section_lines(SECTIONS) == [
        "Model <1> & co:",
        "  File: /data/a&b <x>.onnx",
        '  Type: Segmentor "v2"',
        "Classes:",
        "  head 1, value 0: background  #000000",
        "  none named",
        "Empty:",
    ]
    assert section_lines([]) == []
