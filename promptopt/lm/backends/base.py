"""The contract between :class:`~promptopt.lm.client.LM` and where its requests go."""

from __future__ import annotations

from typing import Any, Protocol

from promptopt.lm_protocol import Completion


class Backend(Protocol):
    """One model's endpoint. The LM owns caching, retries, concurrency and accounting; a backend
    sends one attempt of one request.

    Attributes:
        is_local: served on this machine: one request at a time, a long timeout, and a timed-out
            request is not sent again (the server goes on generating the abandoned reply).
        in_process: runs inside this process (no HTTP endpoint, no retries, no timeout).
    """

    is_local: bool
    in_process: bool

    def cache_identity(self) -> str:
        """The model's name in cache keys, precise enough that two models never share replies."""
        ...

    def connection(self) -> tuple[str, dict[str, Any]]:
        """The litellm model string and connection keywords other clients (DSPy) reach it with."""
        ...

    def context_window(self) -> int | None:
        """The model's context window in tokens, or None when it cannot be known."""
        ...

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any], timeout: float) -> Completion:
        """One attempt at one chat request; raises what the transport raised."""
        ...
