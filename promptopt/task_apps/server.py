"""A Python task app from a plain function and a dataset (FastAPI + uvicorn)::

    app = task_app("qa", answer, examples=splits, components={"system": SYSTEM_PROMPT})
    with serve(app, token="s3cret") as running:      # or uvicorn.run(app) in production
        print(running.url)

``answer(example, components, inference)`` runs the program on one example, calling its LM only
through ``inference`` (an OpenAI-compatible base URL and its API key: ``inference.chat(messages)``,
or ``openai.OpenAI(base_url=inference.url, api_key=inference.token)``), and returns a
:class:`RolloutOutcome` (or a bare score). An exception it raises becomes the rollout's error, never
a score.
"""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request  # at module level: FastAPI reads the handlers' annotations here
from fastapi.responses import JSONResponse

from promptopt.core.example import Example
from promptopt.task_apps.protocol import SPLITS, AppInfo, ProtocolError, RolloutRequest, RolloutResult


@dataclass(frozen=True)
class RolloutOutcome:
    score: float
    feedback: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Inference:
    """Where a rollout's LM calls go: an OpenAI-compatible base URL and its API key."""

    url: str
    token: str | None = None

    def chat(self, messages: list[dict[str, str]], *, timeout: float = 300.0, **options: Any) -> str:
        """The reply text of one chat completion (``options``: temperature, max_tokens, ...)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.post(
            f"{self.url}/chat/completions",
            json={"model": "task-app", "messages": messages, **options},
            headers=headers,
            timeout=timeout,
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])


RolloutFunction = Callable[[Example, Mapping[str, str], Inference], "RolloutOutcome | float"]


def task_app(
    name: str,
    run: RolloutFunction,
    *,
    examples: Mapping[str, Sequence[Example]],
    components: Mapping[str, str],
    token: str | None = None,
) -> Any:
    """A FastAPI app speaking the task-app protocol around ``run``.

    ``examples`` maps ``train``, ``validation`` and ``test`` to examples with distinct ids;
    ``components`` names the prompts the app uses, with their seed texts.
    """
    missing = [s for s in SPLITS if s not in examples]
    if missing:
        raise ValueError(f"examples needs the splits {', '.join(SPLITS)}; missing {', '.join(missing)}.")
    by_id: dict[str, Example] = {}
    for split in SPLITS:
        for ex in examples[split]:
            if ex.id in by_id:
                raise ValueError(f"Example id {ex.id!r} appears twice; every example needs its own id.")
            by_id[ex.id] = ex
    info = AppInfo(name, {s: tuple(e.id for e in examples[s]) for s in SPLITS}, dict(components))
    app = FastAPI(title=name)

    def refused(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given, f"Bearer {token}"):
            return None
        return JSONResponse({"error": "a bearer token is required"}, status_code=401)

    @app.get("/health")
    def health(request: Request) -> Any:
        return refused(request) or {"ok": True}

    @app.get("/info")
    def get_info(request: Request) -> Any:
        return refused(request) or info.to_json()

    @app.post("/rollout")
    async def rollout(request: Request) -> Any:
        if (denied := refused(request)) is not None:
            return denied
        try:
            req = RolloutRequest.from_json(await request.json())
        except (ProtocolError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if req.example_id is not None and req.example_id not in by_id:
            return JSONResponse({"error": f"no example {req.example_id!r}"}, status_code=404)
        example = by_id[req.example_id] if req.example_id is not None else Example(**dict(req.inputs or {}))
        prompts = {**info.components, **dict(req.components or {})}
        try:
            inference = Inference(req.inference_url, req.inference_token)
            outcome = await in_thread(lambda: run(example, prompts, inference))
            if not isinstance(outcome, RolloutOutcome):
                outcome = RolloutOutcome(float(outcome))
            result = RolloutResult(req.rollout_id, outcome.score, outcome.feedback, dict(outcome.outputs))
        except Exception as exc:  # the app's own failure: the rollout's error, not a score
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            result = RolloutResult(req.rollout_id, None, error=error)
        return result.to_json()

    return app


async def in_thread(fn: Callable[[], Any]) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(fn)


@dataclass
class RunningApp:
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningApp]:
    """Serve ``app`` on ``host`` (a free port by default) in a background thread for the block."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not (server.started and server.servers):
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"The task app did not start on {host}:{port}.")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    running = RunningApp(f"http://{host}:{bound[1]}", server, thread)
    try:
        yield running
    finally:
        running.stop()
