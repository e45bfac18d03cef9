"""The demo against an endpoint whose every call fails: exit 1 and one line naming the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rulechef_trace.cli import main
from tests.openai_server import Reply, base_url, openai_server


def test_a_demo_whose_llm_answers_401_exits_1_naming_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real openai client gets 401 on every call: status llm_error, exit 1, one line."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with openai_server([Reply(status=401)]) as server:
        code = main(["demo", "--dir", str(tmp_path / "demo"), "--base-url", base_url(server)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "rulechef-trace: error: demo run failed: every LLM call failed: "
        "openai.AuthenticationError: Error code: 401"
    )
    assert "(learn, llm_error" in out
    assert "every synthesis call FAILED: openai.AuthenticationError" in " ".join(out.split())
