"""docs/architecture.md keeps the hook table the capture really installs, and short recipes."""

from __future__ import annotations

import re
from pathlib import Path

from rulechef_trace._capture.rulechef02.hooks import hook_table
from rulechef_trace._schema_gen import REGENERATE

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def test_the_documented_hook_table_is_the_generated_one() -> None:
    """The table between the hook-table markers equals hook_table() line for line."""
    text = DOC.read_text(encoding="utf-8")
    documented = text.split("<!-- hook-table -->\n", 1)[1].split("\n<!-- /hook-table -->", 1)[0]
    assert documented == hook_table()


def test_the_event_type_recipe_names_four_files_and_the_regenerate_command() -> None:
    """Issue 9: the recipe lists four files to edit, then the schema's one regenerate command."""
    text = DOC.read_text(encoding="utf-8")
    recipe = text.split("### Add an event type\n", 1)[1].split("\n### ", 1)[0]
    steps = [line for line in recipe.splitlines() if re.match(r"\d+\. ", line)]
    assert len(steps) == 4
    assert f"\n{REGENERATE}\n" in recipe
