"""``LM``: any litellm model string, with a cache, retries, limits and accounting.

``LM("openai/gpt-4o-mini")`` or any model a litellm user knows; ``LM("local")``
for the embedded llama.cpp model (started on first use), ``LM("local/<name>")``
for another local model (see ``promptopt lm list``).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from promptopt.lm.backends import Backend, LlamaServerBackend, resolve_backend
from promptopt.lm.cache import Cache, request_key
from promptopt.lm.usage import Usage, report
from promptopt.lm_protocol import Completion, LMError

# The wait before retry k (k = 1, 2, ...) is min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**(k-1)) seconds,
# times a random factor in [0.5, 1]: 0.5-1 s, 1-2 s, 2-4 s, ... and never more than 30 s.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0

# Default seconds one attempt may wait: for a remote API, and for promptopt's own llama.cpp server,
# which on a CPU shared with other work can take minutes over one long reply (see LM's docstring).
DEFAULT_TIMEOUT_S = 120.0
LOCAL_TIMEOUT_S = 600.0

_RETRYABLE_NAMES = {
    "RateLimitError",
    "APIConnectionError",
    "Timeout",
    "APITimeoutError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "ConnectionError",
    "ReadTimeout",
}
_TIMEOUT_NAMES = {"Timeout", "APITimeoutError", "ReadTimeout"}


def backoff_seconds(retry: int) -> float:
    """How long to wait before retry number ``retry`` (from 1); see ``BACKOFF_BASE_S``."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (retry - 1)) * (0.5 + random.random() / 2)


def _retryable(exc: BaseException) -> bool:
    return any(cls.__name__ in _RETRYABLE_NAMES for cls in type(exc).__mro__)


def _timed_out(exc: BaseException) -> bool:
    return any(cls.__name__ in _TIMEOUT_NAMES for cls in type(exc).__mro__)


class LM:
    """A language model reached through litellm.

    Args:
        model: a litellm model string, ``"local"`` or ``"local/<name>"`` (the llama.cpp server), or
            ``"hf/<path>"``: a transformers model in this process (:mod:`promptopt.lm.hf`), such as
            a LoRA adapter from ``promptopt train``.
        temperature, max_tokens: defaults for every call (overridable per call).
        cache: ``True`` (the shared on-disk cache), ``False``, a path, or a :class:`Cache`.
            Empty replies (nothing but whitespace) are returned but not cached, so a later run asks
            again instead of replaying them.
        num_retries: how many times a request that failed transiently (timeout, connection error,
            rate limit, 5xx) is sent again; other failures are not retried. These are the only
            retries: the HTTP client under litellm is told not to retry on its own. A request to
            the local server that timed out is not sent again: the server goes on generating the
            abandoned reply, so a second copy would wait behind it and time out in turn.
        timeout: seconds one attempt may wait for the server (the HTTP client's limit, which a
            server that sends nothing meets exactly); default 120 s, and 600 s for the local server.
            One call takes at most about ``timeout * (1 + num_retries)`` plus the waits between
            attempts (:func:`backoff_seconds`: 0.5-1 s before the first retry, doubling, at most
            30 s each), not counting the wait for a free slot under ``max_concurrency``. With the
            defaults that is about 6 minutes for a remote API (3 x 120 s + at most 3 s) and about
            10 minutes for the local server (one 600 s attempt; only connection errors, which fail
            at once, are retried). The local default is long because a CPU-served model is slow
            when the machine is busy: one reflection-sized call (1,400 prompt tokens, 53 reply
            tokens) to the 1.5B model took 236 s on two cores shared with other model servers,
            and a timeout there fails the call rather than saving time. Raise it on a slower or
            busier machine. Neither applies to ``hf/`` models, which run in this process.
        max_concurrency: requests in flight at once (cached replies do not count);
            defaults to the local server's slots (1 unless ``PROMPTOPT_LOCAL_SLOTS`` says more;
            see :func:`promptopt.lm.engines.local_slots`) and to 8 for an API.
        history_size: how many recent calls :meth:`inspect_history` can show.
        **kwargs: passed to ``litellm.completion`` (``api_base``, ``api_key``, ...).
    """

    def __init__(
        self,
        model: str = "local",
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        cache: bool | str | os.PathLike[str] | Cache = True,
        num_retries: int = 2,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        history_size: int = 100,
        **kwargs: Any,
    ) -> None:
        if "max_retries" in kwargs:
            # litellm would hand it to the HTTP client, whose retries multiply ours and the timeout
            raise TypeError("LM() takes num_retries, not max_retries: promptopt's retries are the only ones.")
        self.model = model
        self.defaults: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        self.extra = kwargs
        self.num_retries = num_retries
        self.backend: Backend = resolve_backend(model, kwargs)
        self.is_local = isinstance(self.backend, LlamaServerBackend)
        self.is_hf = self.backend.in_process
        self.timeout = (
            timeout if timeout is not None else LOCAL_TIMEOUT_S if self.is_local else DEFAULT_TIMEOUT_S
        )
        if cache is True:
            self.cache: Cache | None = Cache()
        elif cache is False or cache is None:
            self.cache = None
        elif isinstance(cache, Cache):
            self.cache = cache
        else:
            self.cache = Cache(cache)
        default_concurrency = self.backend.slots() if self.is_local else 1 if self.backend.is_local else 8
        self._slots = threading.BoundedSemaphore(max_concurrency or default_concurrency)
        self.usage = Usage()
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)

    def __repr__(self) -> str:
        return f"LM({self.model!r})"

    def identity(self) -> dict[str, Any]:
        """Which model this is, precisely enough to tell two models apart (see
        :mod:`promptopt.lm.identity`); a local model's file is resolved, its server is not started."""
        from promptopt.lm.identity import lm_identity

        return lm_identity(self.model)

    # The objects below are process-bound; copies of programs share the LM.
    def __deepcopy__(self, memo: dict[int, Any]) -> LM:
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for k in ("_slots", "backend", "usage"):
            state.pop(k, None)
        state["_max_conc"] = self._slots._initial_value  # type: ignore[attr-defined]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        max_conc = state.pop("_max_conc")
        self.__dict__.update(state)
        self._slots = threading.BoundedSemaphore(max_conc)
        self.backend = resolve_backend(self.model, self.extra)
        self.usage = Usage()

    def copy(self, **overrides: Any) -> LM:
        """The same model with other defaults, sharing this LM's cache."""
        kwargs = {**self.defaults, **self.extra, **overrides}
        return LM(
            self.model,
            cache=self.cache or False,
            num_retries=self.num_retries,
            timeout=self.timeout,
            max_concurrency=self._slots._initial_value,  # type: ignore[attr-defined]
            **kwargs,
        )

    # Routing -------------------------------------------------------------
    def connection(self) -> tuple[str, dict[str, Any]]:
        """The litellm model string and connection kwargs (``api_base``, ``api_key``, ...) requests go to.

        For a local model this starts (or joins) its server, so other clients can reach the same model.
        """
        return self.backend.connection()

    def context_window(self) -> int | None:
        """The model's context window in tokens (a local model's server ``n_ctx``, litellm's figure
        for an API model), or None when it cannot be known. A local model's server is started."""
        return self.backend.context_window()

    # Calling -------------------------------------------------------------
    def __call__(
        self,
        messages: list[dict[str, str]] | str,
        *,
        rollout_id: int | str | None = None,
        cache: bool = True,
        **options: Any,
    ) -> Completion:
        """Send one chat request. ``rollout_id`` asks for a fresh sample of a cached request."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        params = {**self.defaults, **options}
        request = {"model": self.backend.cache_identity(), "messages": messages, "params": params}
        if rollout_id is not None:
            request["rollout_id"] = rollout_id
        key = request_key(request)
        use_cache = cache and self.cache is not None
        if use_cache:
            hit = self.cache.get(key)  # type: ignore[union-attr]
            if hit is not None:
                self._account(messages, hit)
                return hit
        try:
            completion = self._request(messages, params)
        except Exception:
            self.usage.add_failure()
            report(None)
            raise
        # An empty reply goes back to the caller (the adapter reports it as an empty reply, in the
        # trace) but is not cached: it is more often a passing fault of the server than an answer,
        # and a cached one would be replayed on every later run. It is not retried here: at
        # temperature 0 the same request mostly gets the same reply, so retries would only add time.
        # (A Completion carries text only, so a reply of tool calls alone is empty here too.)
        if use_cache and completion.text.strip():
            self.cache.put(key, request, completion)  # type: ignore[union-attr]
        self._account(messages, completion)
        return completion

    def _request(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        if self.backend.in_process:
            with self._slots:
                return self.backend.complete(messages, params, self.timeout)
        last: BaseException | None = None
        attempts = 0
        for attempt in range(self.num_retries + 1):
            attempts += 1
            try:
                with self._slots:
                    return self.backend.complete(messages, params, self.timeout)
            except Exception as exc:
                last = exc
                local_timeout = self.backend.is_local and _timed_out(exc)
                if not _retryable(exc) or attempt == self.num_retries or local_timeout:
                    break
                time.sleep(backoff_seconds(attempt + 1))
        hint = ""
        if last is not None and _timed_out(last):
            hint = f" (each attempt may wait timeout={self.timeout:g} s; LM(..., timeout=...) sets it)"
        raise LMError(
            f"{self.model}: request failed after {attempts} attempt(s): {type(last).__name__}: {last}{hint}"
        ) from last

    def _account(self, messages: list[dict[str, str]], c: Completion) -> None:
        self.usage.add(c)
        report(c)
        self.history.append({"time": time.time(), "messages": messages, "completion": c})

    def inspect_history(self, n: int = 1, *, printer: Any = print) -> list[dict[str, Any]]:
        """Show (and return) the last ``n`` calls: messages, reply, tokens, latency."""
        last = list(self.history)[-n:]
        for item in last:
            c: Completion = item["completion"]
            printer("=" * 72)
            for m in item["messages"]:
                printer(f"[{m['role']}]\n{m['content']}\n")
            tag = "cached" if c.cached else f"{c.latency:.2f}s"
            printer(
                f"[reply] ({c.prompt_tokens}+{c.completion_tokens} tokens, {tag}, "
                f"finish={c.finish_reason})\n{c.text}"
            )
        return last
