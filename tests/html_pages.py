"""Read back the HTML report pages of core/reports with the standard library's parser: what a
browser would show (title, headings, table cells as text) and every tag with its attributes."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"meta", "img", "br", "hr", "link", "input"}  # HTML elements without an end tag
TEXT_HOLDERS = ("title", "h1", "h2", "p", "td", "th")


class PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.title = ""
        self.headings: dict[str, list[str]] = {"h1": [], "h2": []}
        self.paragraphs: list[str] = []
        self.tables: list[list[list[str]]] = []  # table -> rows -> cell texts (th and td)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
        elif tag in self.headings:
            self.headings[tag].append("")
        elif tag == "p":
            self.paragraphs.append("")

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        holder = next((tag for tag in reversed(self.stack) if tag in TEXT_HOLDERS), None)
        if holder == "title":
            self.title += data
        elif holder in ("td", "th"):
            self.tables[-1][-1][-1] += data
        elif holder in self.headings:
            self.headings[holder][-1] += data
        elif holder == "p":
            self.paragraphs[-1] += data


def read_page(page: str) -> PageReader:
    """The page parsed; fails on an element closed out of order or left open."""
    reader = PageReader()
    reader.feed(page)
    reader.close()
    assert not reader.stack, f"elements left open: {reader.stack}"
    return reader
