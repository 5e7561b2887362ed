"""How much the reflection LM is shown and may answer, sized to its context window.

A reflection prompt holds the current instruction, a few traced examples (each field cut to a
length) and the proposer's template; the reply holds the new instruction. The limits were first
sized on the local models' 8192-token window, where they are 4 examples of at most 600 characters
per field, instructions of at most 4000 characters and 1024 reply tokens; other windows scale
them, within bounds that keep a small window usable and a huge one affordable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFERENCE_CONTEXT_TOKENS = 8192


@dataclass(frozen=True)
class ReflectionLimits:
    max_reflection_examples: int
    max_reflection_chars: int  # per field of each reflective example
    max_instruction_chars: int  # a longer proposal is rejected
    reflection_max_tokens: int  # the reflection LM's reply


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(value, low), high))


def reflection_limits(context_tokens: int | None) -> ReflectionLimits:
    """The limits for a reflection LM with ``context_tokens`` (None: unknown, the reference size)."""
    n = context_tokens if context_tokens and context_tokens > 0 else REFERENCE_CONTEXT_TOKENS
    scale = n / REFERENCE_CONTEXT_TOKENS
    return ReflectionLimits(
        max_reflection_examples=_clamp(round(4 * scale), 2, 16),
        max_reflection_chars=_clamp(round(600 * scale, -2), 300, 2000),
        max_instruction_chars=_clamp(n // 2 // 1000 * 1000, 1000, 16000),
        reflection_max_tokens=_clamp(n // 8, 512, 4096),
    )


def context_window(lm: Any) -> int | None:
    """The LM's context window in tokens, when it can tell (promptopt LMs can; a plain callable
    cannot, and then the reference limits apply)."""
    ask = getattr(lm, "context_window", None)
    if not callable(ask):
        return None
    try:
        tokens = ask()
    except Exception:  # an LM that cannot say is an LM of unknown window, not a failed run
        return None
    return int(tokens) if isinstance(tokens, int) and tokens > 0 else None
