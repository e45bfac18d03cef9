"""LLM call spans: one CLIENT span per ``llm_called`` event, in the GenAI conventions' terms.

The span is made after the call (the event comes when the call returned or
raised) with its real start and end, as a child of the step span that was
current while the call ran. ``gen_ai.*`` attributes follow the OpenTelemetry
GenAI client conventions; ``llm.*`` ones are OpenInference's, which Phoenix
reads for model and token counts. Tokens a provider did not report are left
out, never sent as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from rulechef_trace.otel._attributes import Attributes, clean

#: Hosts whose provider the GenAI conventions name (``gen_ai.provider.name`` values).
_PROVIDERS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.moonshot.ai": "moonshot_ai",
    "api.perplexity.ai": "perplexity",
    "api.x.ai": "x_ai",
    "generativelanguage.googleapis.com": "gcp.gemini",
}


def _endpoint(client: Any) -> tuple[str, int | None] | None:
    """The host and port a client sends to (never its path, query or credentials)."""
    base = getattr(client, "base_url", None)
    if base is None:
        return None
    try:
        parts = urlsplit(str(base))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if port is None and parts.scheme in ("http", "https"):
        port = 443 if parts.scheme == "https" else 80
    return host, port


def _clients(chef: Any) -> list[Any]:
    learner = getattr(chef, "learner", None)
    coordinator = getattr(chef, "coordinator", None)
    found = (getattr(chef, "llm", None), getattr(learner, "llm", None))
    return [c for c in (*found, getattr(coordinator, "llm", None)) if c is not None]


def server_attributes(chef: Any) -> Attributes:
    """``server.*`` and ``gen_ai.provider.name`` of a chef's LLM, when all its clients agree.

    rulechef may call a chef's, a learner's and a coordinator's client; an
    ``llm_called`` event does not say which, so the endpoint is named only
    when every client of the chef sends to the same one.
    """
    endpoints = {_endpoint(c) for c in _clients(chef)}
    if len(endpoints) != 1:
        return {}
    (endpoint,) = endpoints
    if endpoint is None:
        return {}
    host, port = endpoint
    provider = _PROVIDERS.get(host)
    if provider is None and host.endswith(".openai.azure.com"):
        provider = "azure.ai.openai"
    return clean(
        {
            "server.address": host,
            "server.port": port,
            "gen_ai.provider.name": provider,
            "llm.provider": provider,
        }
    )


def sampling_attributes(payload: Mapping[str, Any], server: Attributes) -> Attributes:
    """What the conventions want known when a call's span starts (samplers may read it)."""
    return clean(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": server.get("gen_ai.provider.name"),
            "gen_ai.request.model": payload.get("model"),
            "server.address": server.get("server.address"),
            "server.port": server.get("server.port"),
        }
    )


def call_attributes(payload: Mapping[str, Any], server: Attributes) -> Attributes:
    """The attributes of one call's span: GenAI, OpenInference and rulechef's own."""
    usage = payload.get("usage") or {}
    model, answered = payload.get("model"), payload.get("response_model")
    reason = payload.get("finish_reason")
    error = payload.get("error") if isinstance(payload.get("error"), Mapping) else None
    return clean(
        {
            "openinference.span.kind": "LLM",
            "gen_ai.operation.name": "chat",
            **server,
            "gen_ai.request.model": model,
            "gen_ai.response.model": answered,
            "gen_ai.response.finish_reasons": [reason] if reason else None,
            "gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
            "gen_ai.usage.cache_read.input_tokens": usage.get("cached_tokens"),
            "llm.model_name": answered or model,
            "llm.token_count.prompt": usage.get("input_tokens"),
            "llm.token_count.completion": usage.get("output_tokens"),
            "llm.token_count.total": usage.get("total_tokens"),
            "llm.token_count.prompt_details.cache_read": usage.get("cached_tokens"),
            "rulechef.llm.step": payload.get("step"),
            "rulechef.iteration": payload.get("iteration"),
            "rulechef.class": payload.get("label"),
            "rulechef.audit.stage": payload.get("stage"),
            "rulechef.llm.response_chars": payload.get("response_chars"),
            "rulechef.llm.reasoning_tokens": usage.get("reasoning_tokens"),
            "input.value": _call_input(payload),
            "output.value": _call_output(payload, error),
        }
    )


def span_name(payload: Mapping[str, Any]) -> str:
    """``chat {model}`` as the conventions name a chat call."""
    model = payload.get("model")
    return f"chat {model}" if model else "chat"


def _call_input(payload: Mapping[str, Any]) -> str:
    text = f"{payload.get('step')} call"
    if payload.get("iteration") is not None:
        text += f", iteration {payload['iteration']}"
    if payload.get("label") is not None:
        text += f", class {payload['label']}"
    return text


def _call_output(payload: Mapping[str, Any], error: Mapping[str, Any] | None) -> str:
    if payload.get("status") == "error":
        return f"error: {(error or {}).get('type') or 'unknown'}"
    text = f"{payload.get('response_chars', '?')} characters"
    if payload.get("finish_reason"):
        text += f", finish {payload['finish_reason']}"
    return text
