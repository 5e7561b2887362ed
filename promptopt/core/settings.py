"""Process-wide defaults (the task LM, the adapter) with per-context overrides.

``configure(lm=...)`` sets the default for the whole process; ``context(lm=...)``
overrides it inside a block (and inside threads started through promptopt's
evaluator, which copies the context), so an optimizer can run a teacher and a
student side by side without touching global state.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_global: dict[str, Any] = {"lm": None, "adapter": None}
_override: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "promptopt_settings", default=None
)
_KEYS = frozenset(_global)


def _check(kwargs: dict[str, Any]) -> None:
    unknown = set(kwargs) - _KEYS
    if unknown:
        raise TypeError(f"Unknown setting(s) {sorted(unknown)}; known: {sorted(_KEYS)}")


def configure(**kwargs: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(lm=LM("local"))``."""
    _check(kwargs)
    _global.update(kwargs)


@contextmanager
def context(**kwargs: Any) -> Iterator[None]:
    """Override settings for the code inside the block (thread- and task-local)."""
    _check(kwargs)
    token = _override.set({**(_override.get() or {}), **kwargs})
    try:
        yield
    finally:
        _override.reset(token)


def get(key: str) -> Any:
    over = _override.get()
    return over[key] if over and key in over else _global[key]
