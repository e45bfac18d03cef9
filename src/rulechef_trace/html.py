"""Where the HTML report lived in 0.1.0; it is :mod:`rulechef_trace.report.html` now."""

from rulechef_trace.report.html import render_html, write_html

__all__ = ["render_html", "write_html"]
