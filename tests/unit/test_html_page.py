"""The shared pieces of the HTML report pages (core/reports/html_page.py)."""

from __future__ import annotations

import base64
import re

from rsdl_qgis_plugin.core.reports.html_page import embedded_png, number, page_start, table


def test_number_leaves_undefined_values_blank():
    assert number(None) == "" and number(0.123456) == "0.1235" and number(0.5, 6) == "0.500000"


def test_table_escapes_its_header_and_takes_rows_as_given():
    text = table(["a<b", "c"], [["<i>x</i>", "1"]])
    assert "<th>a&lt;b</th>" in text and "<td><i>x</i></td>" in text


def test_page_start_escapes_title_and_inputs():
    text = "\n".join(page_start("A & B", [("raster", "x<y.tif")]))
    assert "<title>A &amp; B</title>" in text and "<h1>A &amp; B</h1>" in text
    assert "x&lt;y.tif" in text and text.startswith("<!DOCTYPE html>")


def test_embedded_png_holds_the_bytes():
    png = b"\x89PNG\r\n\x1a\nfake"
    tag = embedded_png(png, 'chart "one"')
    data = re.search(r"base64,([^\"]+)", tag).group(1)
    assert base64.b64decode(data) == png and 'alt="chart &quot;one&quot;"' in tag
