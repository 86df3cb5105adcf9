"""The pieces of rsdl's self-contained HTML report pages (rsdl:evaluate, rsdl:evaluateobjects): one
style, number cells, tables, the page's head with its inputs, and charts embedded as base64 PNG, so
a page can be moved or mailed as one file."""

from __future__ import annotations

import base64
import html

__all__ = ["embedded_png", "number", "page_start", "table"]

STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:3px 10px;text-align:right}"
    "td:first-child,th:first-child,td.name{text-align:left}th{background:#f0f0f0}"
    ".note{color:#555;font-size:90%}"
)


def number(value: float | None, digits: int = 4) -> str:
    """A ratio as text; an undefined one (None) as an empty cell."""
    return "" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A table: the header cells are escaped here, the row cells must come escaped."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page_start(title: str, inputs: list[tuple[str, str]]) -> list[str]:
    """The page's first parts: head, title and the table of inputs."""
    return [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        table(["Input", ""], [[html.escape(k), html.escape(v)] for k, v in inputs]),
    ]


def embedded_png(png: bytes, alt: str) -> str:
    """An <img> holding the PNG itself."""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
