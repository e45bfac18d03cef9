"""The self-contained HTML report of a trace or of a storage folder."""

from rulechef_trace.report.html.page import render_html, write_html

__all__ = ["render_html", "write_html"]
