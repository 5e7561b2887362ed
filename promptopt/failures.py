"""Telling an LM failure (the example could not be scored) from a failing example (the program or
its reply was at fault, which is a score)."""

from __future__ import annotations

import re

from promptopt.core.trace import Trace

# Exception classes (by name, anywhere in the class hierarchy or the cause chain) that mean the LM
# could not answer, whichever client raised them: promptopt's own, openai's and litellm's (all
# APIError), httpx's (TransportError), requests' (ConnectionError, Timeout).
LM_FAILURE_NAMES = frozenset(
    {
        "LMError",
        "LocalModelError",
        "HFModelError",
        "ConfigurationError",
        "OpenAIError",
        "APIError",
        "TransportError",
        "ConnectionError",
        "Timeout",
    }
)
_CONTEXT_OVERFLOW = re.compile(
    r"context.?window|context (length|size)|maximum context|too many tokens|prompt is too long", re.IGNORECASE
)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(out) < 16:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_lm_failure(exc: BaseException, trace: Trace | None = None) -> bool:
    """Whether the LM, not the program or its reply, made the program fail.

    True for the known failure classes of LM clients (and ``ConnectionError`` / ``TimeoutError``),
    and for whatever a predictor's LM call itself raised (its trace entry has messages but no reply).
    A prompt too long for the model's context is the candidate's fault: False.
    """
    chain = _chain(exc)
    if any(
        type(e).__name__ == "ContextWindowExceededError" or _CONTEXT_OVERFLOW.search(str(e)) for e in chain
    ):
        return False
    for e in chain:
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in LM_FAILURE_NAMES for cls in type(e).__mro__):
            return True
    text = f"{type(exc).__name__}: {exc}"
    return any(entry.error == text and entry.raw is None and entry.messages for entry in trace or ())
