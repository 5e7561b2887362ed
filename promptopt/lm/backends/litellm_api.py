"""An API model reached through litellm (any provider litellm knows, or an OpenAI-compatible
``api_base``)."""

from __future__ import annotations

import time
from typing import Any

from promptopt.lm_protocol import Completion


class LiteLLMBackend:
    is_local = False
    in_process = False

    def __init__(self, model: str, extra: dict[str, Any]) -> None:
        self.model = model
        self.extra = dict(extra)

    def cache_identity(self) -> str:
        return self.model

    def connection(self) -> tuple[str, dict[str, Any]]:
        return self.model, dict(self.extra)

    def context_window(self) -> int | None:
        import litellm

        try:
            info = litellm.get_model_info(self.model)
        except Exception:  # litellm raises for models its map does not know
            return None
        tokens = info.get("max_input_tokens") or info.get("max_tokens")
        return int(tokens) if tokens else None

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any], timeout: float) -> Completion:
        model, conn = self.connection()
        return litellm_completion(model, conn, messages, params, timeout)


def litellm_completion(
    model: str, conn: dict[str, Any], messages: list[dict[str, str]], params: dict[str, Any], timeout: float
) -> Completion:
    """One request through litellm with no retries of its own (the LM's are the only ones)."""
    import litellm

    litellm.suppress_debug_info = True  # its banner says nothing our LMError does not
    start = time.perf_counter()
    resp = litellm.completion(
        model=model,
        messages=messages,
        # max_retries goes to the OpenAI client, num_retries to litellm's own retry wrapper:
        # either would multiply the LM's attempts and the timeout.
        **{**conn, **params, "timeout": timeout, "max_retries": 0, "num_retries": 0},
    )
    return to_completion(resp, time.perf_counter() - start, litellm)


def to_completion(resp: Any, latency: float, litellm: Any) -> Completion:
    choice = resp.choices[0]
    text = choice.message.content or ""
    usage = getattr(resp, "usage", None)
    try:
        cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
    except Exception:
        cost = 0.0
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost=cost,
        latency=latency,
        cached=False,
        finish_reason=getattr(choice, "finish_reason", None),
        model=str(getattr(resp, "model", "")),
    )
