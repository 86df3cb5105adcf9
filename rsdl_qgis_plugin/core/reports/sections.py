"""A report as titled sections of (label, text) rows, rendered as log lines or a self-contained HTML page."""

from __future__ import annotations

import html

__all__ = ["Section", "section_lines", "sections_html"]

Section = tuple[str, list[tuple[str, str]]]


def section_lines(sections: list[Section]) -> list[str]:
    """The report as log lines: a heading line, then one indented line per row."""
    lines = []
    for heading, rows in sections:
        lines.append(f"{heading}:")
        lines.extend(f"  {label}: {text}" if label else f"  {text}" for label, text in rows)
    return lines


def sections_html(title: str, sections: list[Section]) -> str:
    """The report as an HTML page with one table per section."""
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}td{padding:2px 12px;vertical-align:top}"
        "td:first-child{font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><table>")
        parts.extend(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(text)}</td></tr>" for label, text in rows
        )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
