"""The README's Quickstart runs as pasted, offline, and does what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> str:
    """The first Python block under the README's Quickstart heading."""
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the Quickstart has no python block"
    return match.group(1)


def test_the_quickstart_runs_as_pasted_and_prints_the_story(tmp_path: Path) -> None:
    """No API key, a fresh folder: the story on stdout, the trace where the comment says."""
    (tmp_path / "quickstart.py").write_text(quickstart(), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("=" * 78 + "\nRULECHEF TRACE  support  (learn, completed")
    assert "finalized: completed" in done.stdout
    assert "✓ Added example" not in done.stdout  # rulechef's own prints were quieted
    assert (tmp_path / "traces" / "support.trace.json").is_file()
