"""Numbers as every report shows them: metrics in %, changes in points, times in seconds.

A trace may come from another writer, so any value may be missing, a string, a
boolean or not finite; each of these gives an em dash, never ``None`` or ``nan``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DASH", "known", "number", "pct", "points", "seconds", "whole"]

DASH = "—"


def known(value: Any) -> Any:
    """``value``, or an em dash when it is missing (None or empty), so no ``None`` is shown."""
    return DASH if value is None or value == "" else value


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def whole(value: Any) -> int | None:
    """``value`` when it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pct(value: Any) -> str:
    """A 0-1 metric as a percentage (``82.9%``), or an em dash when unknown."""
    found = number(value)
    return DASH if found is None else f"{found:.1%}"


def points(delta: Any) -> str:
    """A change of a 0-1 metric in percentage points (``-0.4 pp``), or an em dash.

    Two decimals where one would round a real change to zero.
    """
    found = number(delta)
    if found is None:
        return DASH
    shown = f"{found * 100:+.1f}"
    if found and float(shown) == 0:
        shown = f"{found * 100:+.2f}"
    return f"{shown} pp"


def seconds(value: Any, places: int = 2) -> str:
    """Seconds with ``places`` decimals (``0.74s``), or an em dash when unknown."""
    found = number(value)
    return DASH if found is None else f"{found:.{places}f}s"
