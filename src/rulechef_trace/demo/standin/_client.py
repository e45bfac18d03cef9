"""The stand-in client: OpenAI-shaped responses and :class:`StandInLLM`."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rulechef_trace._capture.rulechef02.prompts import (
    AUDIT,
    CRITIC,
    GUIDANCE,
    PATCH,
    PER_CLASS,
    SYNTHESIS,
    TRIGGER,
    prompt_kind,
)

from ._coordinator import audit_answer, critic_answer, guidance_answer, trigger_answer
from ._parsing import patch_context
from ._patches import bad_patch, good_patch, patch_answer
from ._synthesis import per_class_answer, synthesis_answer

logger = logging.getLogger("rulechef_trace")

# ---------------------------------------------------------------------------
# OpenAI-compatible response objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Message:
    content: str
    role: str = "assistant"


@dataclass(frozen=True)
class _Choice:
    message: _Message
    index: int = 0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class _Completion:
    id: str
    model: str
    choices: list[_Choice]
    usage: _Usage
    object: str = "chat.completion"


class _Completions:
    """The ``client.chat.completions`` namespace."""

    def __init__(self, owner: StandInLLM) -> None:
        self._owner = owner

    def create(self, **kwargs: Any) -> _Completion:
        """Answer one chat completion request.

        Args:
            **kwargs: OpenAI-style arguments. Only ``messages`` (and ``model``,
                echoed back) are used; ``response_format``, token limits,
                ``temperature`` and anything else are accepted and ignored.

        Returns:
            An object shaped like an OpenAI ``ChatCompletion`` whose
            ``choices[0].message.content`` is a JSON string.
        """
        messages = kwargs.get("messages") or []
        return self._owner._complete(messages, str(kwargs.get("model") or ""))


class _Chat:
    """The ``client.chat`` namespace."""

    def __init__(self, owner: StandInLLM) -> None:
        self.completions = _Completions(owner)


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------


def detect_prompt_kind(prompt: str) -> str:
    """Tell which rulechef 0.2.2 prompt this is.

    Args:
        prompt: The full user prompt text.

    Returns:
        One of :data:`PROMPT_KINDS`; ``"other"`` when no marker matches.
    """
    return prompt_kind(prompt)


def _prompt_from_messages(messages: Sequence[dict[str, Any]]) -> str:
    """Join the text of all non-assistant messages."""
    parts = []
    for message in messages:
        if message.get("role") == "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) if isinstance(part, dict) else str(part)
                for part in content
            )
        parts.append(str(content))
    return "\n".join(parts)


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


# ---------------------------------------------------------------------------
# The stand-in client
# ---------------------------------------------------------------------------


class StandInLLM:
    """Deterministic offline replacement for an OpenAI chat client.

    Use it wherever rulechef expects a client (``RuleChef(client=...)``,
    ``AgenticCoordinator(llm_client=...)``; one instance may serve both).
    Answers depend only on the prompt text and, for patches, on how many
    patch prompts this instance has answered before.

    Attributes:
        chat: The ``chat.completions.create`` namespace.
        calls: Number of calls answered, by prompt kind (see
            :data:`PROMPT_KINDS`).
        bad_patch_every: Every n-th patch answer is deliberately worse
            (0 or less: never).
        terms_per_rule: Keywords per synthesized rule.
        rules_per_class: Most rules per class in a synthesis answer.
    """

    def __init__(
        self,
        *,
        bad_patch_every: int = 2,
        terms_per_rule: int = 3,
        rules_per_class: int = 3,
    ) -> None:
        """Create a stand-in.

        Args:
            bad_patch_every: Make every n-th patch answer a deliberately worse
                proposal, alternately an over-broad top-priority rule and the
                deletion of a good rule, so runs see rejected patches. 0 or
                less disables it.
            terms_per_rule: Keywords per synthesized rule.
            rules_per_class: Most rules per class in a synthesis answer.
        """
        self.chat = _Chat(self)
        self.calls: collections.Counter[str] = collections.Counter()
        self.bad_patch_every = bad_patch_every
        self.terms_per_rule = max(1, terms_per_rule)
        self.rules_per_class = max(1, rules_per_class)

    def respond(self, prompt: str) -> str:
        """Answer one prompt and count it under its kind.

        Args:
            prompt: The user prompt text.

        Returns:
            The answer, a JSON object as text (``"{}"`` for unknown prompts).
        """
        kind = detect_prompt_kind(prompt)
        self.calls[kind] += 1
        answer = self._answerer(kind)
        if answer is None:
            return "{}"
        try:
            return _dump(answer(prompt))
        except Exception:  # an unexpected prompt shape must not crash a run
            logger.exception("stand-in: could not answer a %s prompt", kind)
            return "{}"

    def _answerer(self, kind: str) -> Callable[[str], dict[str, Any]] | None:
        """The function that answers prompts of ``kind``, or None."""
        if kind == SYNTHESIS:
            return lambda p: synthesis_answer(p, self.terms_per_rule, self.rules_per_class)
        if kind == PER_CLASS:
            return lambda p: per_class_answer(p, self.terms_per_rule, self.rules_per_class)
        answerers: dict[str, Callable[[str], dict[str, Any]]] = {
            PATCH: self._patch_answer,
            AUDIT: audit_answer,
            GUIDANCE: guidance_answer,
            CRITIC: critic_answer,
            TRIGGER: trigger_answer,
        }
        return answerers.get(kind)

    def _patch_answer(self, prompt: str) -> dict[str, Any]:
        """A good or a deliberately bad patch, by this instance's patch count."""
        ctx = patch_context(prompt)
        if not ctx.failures:
            return patch_answer("no failures to fix")
        number = self.calls[PATCH]  # 1-based; this call is already counted
        if self.bad_patch_every > 0 and number % self.bad_patch_every == 0:
            answer = bad_patch(ctx, bad_round=number // self.bad_patch_every)
        else:
            answer = good_patch(ctx)
        answer["rules"] = answer["rules"][: ctx.max_rules]
        return answer

    def _complete(self, messages: Sequence[dict[str, Any]], model: str) -> _Completion:
        """Build an OpenAI-shaped completion for a list of chat messages."""
        prompt = _prompt_from_messages(messages)
        content = self.respond(prompt)
        return _Completion(
            id=f"standin-{sum(self.calls.values())}",
            model=model or "standin",
            choices=[_Choice(message=_Message(content=content))],
            usage=_Usage(prompt_tokens=len(prompt) // 4, completion_tokens=len(content) // 4),
        )
