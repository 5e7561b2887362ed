"""The inference proxy: the only LM a task app sees, one URL per rollout.

For each rollout promptopt opens, the proxy serves an OpenAI-compatible endpoint at
``<proxy>/rollouts/<rollout id>/v1`` (``POST .../chat/completions``) that

* puts the candidate's component values into the messages in place of the seed prompts, so the
  app's code keeps its own prompts and still runs the candidate;
* sends the call through a promptopt LM (any litellm model or the local model: its cache, usage
  accounting and budget apply), never to any other URL;
* records every call into that rollout's trace (messages as sent, reply, tokens), so GEPA's
  reflection sees what the app's LM saw and answered.

It binds 127.0.0.1 by default and accepts only the bearer token of an open rollout: a call after the
rollout ended is refused (410), one with another token is refused (401).
"""

from __future__ import annotations

import contextvars
import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI reads the handlers' annotations here
from fastapi.responses import JSONResponse

from promptopt.core import settings
from promptopt.core.trace import Trace, TraceEntry
from promptopt.lm_protocol import LanguageModel
from promptopt.task_apps.server import RunningApp, in_thread, serve

# The request options passed on to the LM; anything else in the request (tools, n, logprobs, ...) is
# not forwarded, so one rollout cannot change how promptopt's LM is called beyond these.
FORWARDED_OPTIONS = ("temperature", "max_tokens", "top_p", "stop")


@dataclass
class ProxyRollout:
    """One rollout's endpoint: its URL and token for the app, and the LM calls it made."""

    id: str
    token: str
    url: str
    substitutions: Mapping[str, tuple[str, str]]  # component -> (seed text, the candidate's text)
    trace: Trace = field(default_factory=Trace)
    open: bool = True
    # The context the rollout was opened in: its calls run there, so the usage trackers of the run
    # that opened it (its budget and accounting) count them although they arrive on server threads.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


MAX_ENDED_REMEMBERED = 10_000


class InferenceProxy:
    """Serves one OpenAI-compatible endpoint per open rollout, answering through ``lm`` (None: the
    task LM in effect where each rollout is opened)."""

    def __init__(self, lm: LanguageModel | None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lm = lm
        self.host, self.port = host, port
        self._rollouts: dict[str, ProxyRollout] = {}
        # Ended rollouts, by id, so a late call is told "ended" (410), not "unknown" (401); bounded,
        # since a long run opens one rollout per example per candidate.
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._running: RunningApp | None = None
        self._serving: Any = None

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> InferenceProxy:
        self._serving = serve(self._app(), host=self.host, port=self.port)
        self._running = self._serving.__enter__()
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
            self._serving = self._running = None

    def __enter__(self) -> InferenceProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._running is None:
            raise RuntimeError(
                "The inference proxy is not running: use it as a context manager or call start()."
            )
        return self._running.url

    # --- rollouts ---------------------------------------------------------------------
    def open_rollout(
        self, seed_components: Mapping[str, str], candidate: Mapping[str, str] | None = None
    ) -> ProxyRollout:
        """A fresh endpoint for one rollout; the candidate's texts replace the seed texts it differs in."""
        unknown = sorted(set(candidate or {}) - set(seed_components))
        if unknown:
            raise KeyError(f"The candidate sets components the app does not have: {unknown}.")
        # Every component, changed or not: a call is attributed to the components whose text it holds.
        subs = {name: (seed, (candidate or {}).get(name, seed)) for name, seed in seed_components.items()}
        rid = uuid.uuid4().hex
        rollout = ProxyRollout(rid, secrets.token_urlsafe(24), f"{self.url}/rollouts/{rid}/v1", subs)
        with self._lock:
            self._rollouts[rid] = rollout
        return rollout

    def close_rollout(self, rollout: ProxyRollout) -> Trace:
        """End the rollout: later calls on its URL are refused. Returns its trace."""
        rollout.open = False
        with self._lock:
            self._rollouts.pop(rollout.id, None)
            self._ended[rollout.id] = rollout.token
            while len(self._ended) > MAX_ENDED_REMEMBERED:
                self._ended.popitem(last=False)
        return rollout.trace

    @contextmanager
    def rollout(
        self, seed_components: Mapping[str, str], candidate: Mapping[str, str] | None = None
    ) -> Iterator[ProxyRollout]:
        opened = self.open_rollout(seed_components, candidate)
        try:
            yield opened
        finally:
            self.close_rollout(opened)

    # --- the endpoint -----------------------------------------------------------------
    def _app(self) -> Any:
        app = FastAPI(title="promptopt inference proxy")

        @app.post("/rollouts/{rid}/v1/chat/completions")
        async def chat(rid: str, request: Request) -> Any:
            rollout = self._rollouts.get(rid)
            given = request.headers.get("authorization", "")
            ended_token = self._ended.get(rid)
            if (
                rollout is None
                and ended_token is not None
                and hmac.compare_digest(given, f"Bearer {ended_token}")
            ):
                return _error(410, "this rollout has ended; its endpoint takes no more calls")
            if rollout is None or not hmac.compare_digest(given, f"Bearer {rollout.token}"):
                return _error(401, "unknown rollout or wrong token")
            if not rollout.open:
                return _error(410, "this rollout has ended; its endpoint takes no more calls")
            try:
                body = await request.json()
                messages = body["messages"]
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    raise TypeError("messages must be a list of objects")
            except (ValueError, KeyError, TypeError) as exc:
                return _error(400, f"not a chat completion request: {exc}")
            options = {k: body[k] for k in FORWARDED_OPTIONS if body.get(k) is not None}
            return await in_thread(lambda: self._complete(rollout, messages, options))

        return app

    def _call_lm(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> Any:
        # Without an LM of its own the proxy answers with the task LM in effect where the rollout
        # was opened (``evaluate(lm=...)``, an optimizer's task LM), as a promptopt predictor would.
        lm = self.lm or settings.get("lm")
        if lm is None:
            raise RuntimeError("no LM: give the proxy one, or run the program under evaluate(lm=...)")
        return lm(messages, **options)

    def _complete(
        self, rollout: ProxyRollout, messages: list[dict[str, Any]], options: dict[str, Any]
    ) -> Any:
        sent, used = substitute(messages, rollout.substitutions)
        shown = "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in sent)
        entry = TraceEntry(predictor=used[0] if used else "app", inputs={"messages": shown}, messages=sent)
        try:
            completion = rollout.context.copy().run(self._call_lm, sent, options)
        except Exception as exc:  # the LM's failure reaches the app as a 502, and the trace keeps it
            entry.error = f"{type(exc).__name__}: {exc}"
            rollout.trace.append(entry)
            return _error(502, f"the LM behind the proxy failed: {entry.error}")
        entry.raw = completion.text
        entry.outputs = {"reply": completion.text}
        entry.prompt_tokens, entry.completion_tokens = completion.prompt_tokens, completion.completion_tokens
        entry.latency, entry.cached = completion.latency, completion.cached
        rollout.trace.append(entry)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": completion.model or "promptopt",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
        }


def substitute(
    messages: list[dict[str, Any]], substitutions: Mapping[str, tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages with every seed text replaced by its candidate text, and the components found.

    A component whose seed text appears in no message of this call is not part of it (an app with
    several prompts sends each in its own calls)."""
    out, used = [], []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            for name, (seed, candidate) in substitutions.items():
                if seed and seed in content:
                    content = content.replace(seed, candidate)
                    if name not in used:
                        used.append(name)
        out.append({**m, "content": content})
    return out, used


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "promptopt_proxy"}}, status_code=status)
