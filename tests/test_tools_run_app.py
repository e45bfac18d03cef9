"""rulechef-trace run -- python -m uvicorn APP: a rulechef-like web app's learning route, traced.

The app (:mod:`tests.rulechef_app`) is shaped like the rulechef app of
rulechef's repository (the wheel has none): its learning route runs
``learn_rules`` in a worker thread from an asyncio task. The server is stopped
the way a user stops it, Ctrl-C to its process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rulechef_trace import load_trace, replay, validate

ROOT = Path(__file__).resolve().parents[1]  # the app is imported as tests.rulechef_app
#: tests.rulechef_app.STORAGE_ENV (importing the app here would make its chef).
STORAGE_ENV = "RULECHEF_TRACE_APP_STORAGE"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what} after {seconds} s")


def test_the_apps_learning_route_under_rulechef_trace_run_leaves_traces_that_replay(
    tmp_path: Path,
) -> None:
    """POST /api/learn, poll the status, DELETE a rule, Ctrl-C: learn and edit traces, exit 0.

    uvicorn ends with status 0 after a Ctrl-C; rulechef-trace run must pass
    that through (not end with 130 itself, nor kill the server before its
    graceful shutdown).
    """
    port = free_port()
    traces = tmp_path / "traces"
    env = {**os.environ, STORAGE_ENV: str(tmp_path / "chef")}
    command = [sys.executable, "-m", "rulechef_trace", "run", "--storage", str(traces), "--"]
    command += [sys.executable, "-m", "uvicorn", "tests.rulechef_app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())

    def up() -> bool:
        assert server.poll() is None, server.communicate()[1]
        try:
            call("GET", "/api/learn/status")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    try:
        wait_for(up, 20, "the server to answer")
        assert call("POST", "/api/learn", {"max_iterations": 1, "sampling_strategy": "diversity"})
        status = wait_for(
            lambda: (s := call("GET", "/api/learn/status"))["running"] is False and s,
            20,
            "the learning run to end",
        )
        assert status["error"] is None and status["progress"] == "done", status
        learned = call("GET", "/api/rules")["rules"]
        assert call("DELETE", f"/api/rules/{learned[0]}") == {"ok": True}
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: the wrapper and the server alike
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
    assert server.returncode == 0, stderr
    assert "Application shutdown complete" in stderr  # the graceful way out
    assert "Traceback" not in stderr

    trace = load_trace(traces / "reviews.trace.json")
    assert validate(trace) == [] and trace.kind == "learn" and trace.status == "completed"
    assert trace.final_rules == learned and sorted(replay(trace)) == sorted(learned)
    assert trace.run["params"]["sampling_strategy"] == "diversity"
    assert trace.run["params"]["min_examples"] == 2
    kept = [load_trace(p) for p in sorted((traces / "reviews.traces").glob("*.trace.json"))]
    assert [t.kind for t in kept] == ["learn", "edit"]
    assert replay(kept[1]) == learned[1:]
    assert not list((tmp_path / "chef").glob("*.trace.json"))  # --storage took the traces
