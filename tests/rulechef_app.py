"""A small FastAPI app shaped like the rulechef app, for ``rulechef-trace run`` to trace.

The rulechef app is not in the rulechef wheel (0.2.2 ships none); it lives in
rulechef's repository as a FastAPI app. This one has the same shape where it
matters to tracing: ``POST /api/learn`` starts an asyncio task that runs
``chef.learn_rules`` in a worker thread (``asyncio.to_thread``) under a write
lock and returns at once; ``GET /api/learn/status`` reports ``running``,
``progress`` and ``error``; ``GET /api/rules`` lists the rule ids and
``DELETE /api/rules/{rule_id}`` calls ``chef.delete_rule``. The chef uses the
scripted client of :mod:`tests.scripted` and stores its rules in the folder
named by :data:`STORAGE_ENV`. Nothing here attaches a recorder: under
``rulechef-trace run`` the recorder comes from outside.

Run: ``RULECHEF_TRACE_APP_STORAGE=DIR python -m uvicorn tests.rulechef_app:app``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from tests.scripted import ScriptedLLM, make_chef

#: The environment variable naming the chef's storage folder.
STORAGE_ENV = "RULECHEF_TRACE_APP_STORAGE"


@dataclass
class Learning:
    """What ``GET /api/learn/status`` reports."""

    running: bool = False
    progress: str = "idle"
    error: str | None = None
    rules: int | None = None


class LearnRequest(BaseModel):
    """The body of ``POST /api/learn`` (the rulechef app's fields that reach learn_rules)."""

    max_iterations: int = 1
    sampling_strategy: str | None = None
    incremental_only: bool = False


chef = make_chef(os.environ[STORAGE_ENV], ScriptedLLM())
learning = Learning()
learning_lock = asyncio.Lock()  # guards ``learning``
write_lock = asyncio.Lock()  # one chef call at a time, as the rulechef app does
_tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

app = FastAPI(title="rulechef-like app (tests)")


async def run_learning(request: LearnRequest) -> None:
    """Run learn_rules in a worker thread and record how it went."""
    learning.progress = "learning rules from examples"
    try:
        async with write_lock:
            result = await asyncio.to_thread(
                chef.learn_rules,
                min_examples=2,
                max_refinement_iterations=request.max_iterations,
                sampling_strategy=request.sampling_strategy,
                incremental_only=request.incremental_only,
            )
        learning.rules = len(result[0]) if result else 0
        learning.progress = "done" if result else "not enough data"
    except Exception as exc:  # reported by the status route, as the rulechef app does
        learning.error = f"{type(exc).__name__}: {exc}"
        learning.progress = "failed"
    finally:
        async with learning_lock:
            learning.running = False


@app.post("/api/learn")
async def start_learning(request: LearnRequest) -> dict[str, Any]:
    """Start a learning run in the background; 409 while one is going."""
    async with learning_lock:
        if learning.running:
            raise HTTPException(409, "learning already in progress")
        learning.running, learning.progress, learning.error = True, "queued", None
    task = asyncio.create_task(run_learning(request))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return {"ok": True}


@app.get("/api/learn/status")
async def learning_status() -> dict[str, Any]:
    """Whether a learning run is going, how far it got, and its error if it failed."""
    return asdict(learning)


@app.get("/api/rules")
async def list_rules() -> dict[str, Any]:
    """The chef's rule ids, in its order."""
    async with write_lock:
        return {"rules": [rule.id for rule in chef.dataset.rules]}


@app.delete("/api/rules/{rule_id}")
async def delete_rule(rule_id: str) -> dict[str, Any]:
    """Delete one rule (``chef.delete_rule``); 404 when there is none of that id."""
    async with write_lock:
        deleted = chef.delete_rule(rule_id)
    if not deleted:
        raise HTTPException(404, f"no rule {rule_id}")
    return {"ok": True}
