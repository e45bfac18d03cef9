"""A deterministic, offline stand-in for the LLM that rulechef talks to.

:class:`StandInLLM` mimics the part of the OpenAI client that rulechef 0.2.2
uses (``client.chat.completions.create(**kwargs)``). It never touches the
network, uses no randomness and no clock, and answers in milliseconds.

It recognises which rulechef prompt it was sent from fixed markers in
rulechef's prompt text (:mod:`rulechef_trace._capture.rulechef02.prompts`)
and derives every answer from the data shown in that prompt, never from
answers canned for one data set:

* synthesis (bulk or per class): keyword rules ``(?i)\\b(?:w1|w2)\\b`` whose
  keywords occur in at least two positive texts and in none of the negative
  texts (counter-examples and the other labels' data evidence);
* patch: tighten rules that fired on other labels, add keyword rules for the
  failing inputs (``<label>_patch_*`` at the default priority for unmatched
  inputs, ``<label>_override_*`` one priority above the rule that claimed a
  misclassified input) and a lowest-priority ``<label>_fallback`` rule built
  from a word shared by many failing inputs;
* audit: remove rules with precision 0, merge pairs of keyword rules with the
  same label and priority;
* guidance, critic and trigger decision: computed from the metrics and
  counts in the prompt.

To give a learning run a story, every ``bad_patch_every``-th patch answer is
deliberately worse: alternately an over-broad rule above every other rule, and
the deletion of the top rule of the best-scoring class, so that rulechef gets
to reject patches.

The modules: ``_client`` (the client and its OpenAI-shaped answers),
``_parsing`` (what a prompt shows), ``_rules`` (keywords and rule JSON),
``_synthesis``, ``_patches`` and ``_coordinator`` (the answers). They import
each other relatively and nothing of the package but the prompt markers, so
the benchmark can load them from their files without importing the package.
"""

from __future__ import annotations

from rulechef_trace._capture.rulechef02.prompts import PROMPT_KINDS

from ._client import StandInLLM, detect_prompt_kind

__all__ = ["PROMPT_KINDS", "StandInLLM", "detect_prompt_kind"]
