"""Where the story lived in 0.1.0; it is :mod:`rulechef_trace.report.text` now."""

from rulechef_trace.report.text import (
    event_lines,
    footer_lines,
    header_lines,
    pct,
    print_trace,
    render_trace,
)

__all__ = ["pct", "print_trace", "render_trace"]

# Their 0.1.0 private names, for callers that have not moved to report.text yet.
_event_lines = event_lines
_footer = footer_lines
_header = header_lines
