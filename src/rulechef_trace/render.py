"""Where the story lived in 0.1.0; it is :mod:`rulechef_trace.report.text` now."""

from rulechef_trace.report.text import _event_lines as _event_lines
from rulechef_trace.report.text import _footer as _footer
from rulechef_trace.report.text import _header as _header
from rulechef_trace.report.text import pct, print_trace, render_trace

__all__ = ["pct", "print_trace", "render_trace"]
