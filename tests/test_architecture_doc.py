"""docs/architecture.md keeps the hook table the capture really installs."""

from __future__ import annotations

from pathlib import Path

from rulechef_trace._capture.rulechef02.hooks import hook_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_the_documented_hook_table_is_the_generated_one() -> None:
    """The table between the hook-table markers equals hook_table() line for line."""
    text = DOC.read_text(encoding="utf-8")
    documented = text.split("<!-- hook-table -->\n", 1)[1].split("\n<!-- /hook-table -->", 1)[0]
    assert documented == hook_table()
