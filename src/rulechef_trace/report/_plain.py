"""The ``to_dict()`` shared by the read layer's frozen dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any


class Plain:
    """Mixin: ``to_dict()`` for a frozen dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """Return the data as plain dicts and lists (JSON-ready)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]
