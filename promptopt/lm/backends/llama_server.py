"""The embedded local model, served by a llama.cpp server this process starts or joins
(:mod:`promptopt.lm.server`), reached through litellm at the server's OpenAI-compatible endpoint."""

from __future__ import annotations

import threading
from typing import Any

from promptopt.lm.backends.litellm_api import litellm_completion
from promptopt.lm.compute_turns import compute_turn
from promptopt.lm.engines import LLAMA_CPP_PYTHON
from promptopt.lm_protocol import Completion


class LlamaServerBackend:
    is_local = True
    in_process = False

    def __init__(self, name: str | None, extra: dict[str, Any]) -> None:
        self.name = name  # None: the default local model
        self.extra = dict(extra)
        self._server: Any = None
        self._lock = threading.Lock()
        self._takes_turns: bool | None = None  # known at the first request

    @property
    def server(self) -> Any:
        """The running server (started, or joined, on first use)."""
        with self._lock:
            if self._server is None:
                from promptopt.lm.server import LocalServer

                server = LocalServer.for_model(self.name)
                server.ensure_running()
                self._server = server
            return self._server

    def slots(self) -> int:
        """Requests the server will serve at once (known before it starts)."""
        from promptopt.lm.engines import local_slots, resolve_engine
        from promptopt.lm.models import LocalModelError

        try:
            return local_slots(resolve_engine())
        except LocalModelError:
            return 1

    def cache_identity(self) -> str:
        server = self.server
        key = f"local/{server.spec.name}@{server.model_sha256[:16]}"
        if server.slots > 1:  # batched replies may differ from one-at-a-time ones
            key += f"+{server.slots}-slots"
        # Replies of llama-cpp-python's server keep the key they were cached under before the
        # engine was a choice; llama-server's are kept apart, per llama.cpp source they were built from.
        if server.engine.name == LLAMA_CPP_PYTHON:
            return key
        return f"{key}+{server.engine.name}({server.engine.identity()['server_build']})"

    def connection(self) -> tuple[str, dict[str, Any]]:
        server = self.server
        return f"openai/{server.spec.name}", {
            "api_base": server.api_base,
            "api_key": "sk-local",
            **self.extra,
        }

    def context_window(self) -> int | None:
        return self.server.context_tokens

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any], timeout: float) -> Completion:
        model, conn = self.connection()
        # A one-slot server takes turns on the CPU with the machine's other local servers
        # (promptopt.lm.compute_turns); the timeout counts from the turn's start.
        if self._takes_turns is None:
            self._takes_turns = self.slots() == 1
        with compute_turn(enabled=self._takes_turns):
            return litellm_completion(model, conn, messages, params, timeout)
