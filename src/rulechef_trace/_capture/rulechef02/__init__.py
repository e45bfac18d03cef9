"""Everything that knows rulechef 0.2.x: hooks, per-phase bookkeeping, facts, prompt markers.

Nothing outside this folder reads a rulechef internal. Support for another
rulechef line (its roadmap plans "split before synthesis" for 0.3) goes in a
sibling folder with its own hook table; ``_capture/install.py`` picks the
table. See docs/architecture.md, "Support a new rulechef version".
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

#: The rulechef releases this hook table is tested with (the pin in pyproject.toml).
SUPPORTED = ">=0.2.2,<0.3"
_LOWEST = (0, 2, 2)
_BELOW = (0, 3)


@functools.lru_cache(maxsize=1)
def rulechef_version() -> str | None:
    """The installed rulechef's version string, or ``None`` when it is not installed."""
    try:
        return version("rulechef")
    except PackageNotFoundError:
        return None


def supported(found: str | None) -> bool:
    """Tell whether rulechef ``found`` (a version string) lies in :data:`SUPPORTED`."""
    if found is None:
        return False
    parts: list[int] = []
    for piece in found.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits or digits != piece:
            break  # a pre-release or local tag ends the release part
        parts.append(int(digits))
    release = tuple(parts)
    return _LOWEST <= release < _BELOW
