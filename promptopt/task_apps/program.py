"""A task app as a promptopt :class:`Program`: its components are the app's prompt components, a call
runs one rollout, and the app's LM calls (through the proxy) become the call's trace.

    app = TaskApp.connect("http://127.0.0.1:8123", lm=po.LM("local"), token="...")
    splits = app.examples()                       # train / val / test examples: ids the app knows
    result = evaluate(app.program(), splits.test, rollout_score)

The app scores its own rollouts: :func:`rollout_score` is the metric that reads that score and
feedback from the prediction. A rollout the app failed is a recorded failure of that example; an app
that cannot be reached is an outage (never a score).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score
from promptopt.core.program import Predict, Program, TextComponent
from promptopt.core.trace import Trace, record
from promptopt.lm_protocol import LanguageModel
from promptopt.task_apps.client import TaskAppClient
from promptopt.task_apps.protocol import AppInfo, RolloutRequest
from promptopt.task_apps.proxy import InferenceProxy

_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class TaskAppSplits:
    train: list[Example]
    val: list[Example]
    test: list[Example]

    def ids(self) -> dict[str, list[str]]:
        return {k: [e.id for e in getattr(self, k)] for k in ("train", "val", "test")}


class TaskApp:
    """A connected task app: its client, its info and the inference proxy its rollouts use."""

    def __init__(self, client: TaskAppClient, info: AppInfo, proxy: InferenceProxy) -> None:
        self.client, self.info, self.proxy = client, info, proxy

    @classmethod
    def connect(
        cls, url: str, *, lm: LanguageModel | None = None, token: str | None = None, timeout: float = 120.0
    ) -> TaskApp:
        """Read the app's info and start a proxy answering its LM calls with ``lm`` (None: the task
        LM in effect where the program runs, e.g. ``evaluate(..., lm=...)``)."""
        client = TaskAppClient(url, token=token, timeout=timeout)
        info = client.info()
        return cls(client, info, InferenceProxy(lm).start())

    def close(self) -> None:
        self.proxy.stop()

    def __enter__(self) -> TaskApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def examples(self) -> TaskAppSplits:
        """The app's examples by id (``example_id`` and ``split`` are their inputs)."""

        def rows(split: str) -> list[Example]:
            name = _SPLIT_NAMES[split]
            return [
                Example(_id=i, example_id=i, split=name).with_inputs("example_id", "split")
                for i in self.info.splits[name]
            ]

        return TaskAppSplits(rows("train"), rows("val"), rows("test"))

    def program(self) -> TaskAppProgram:
        return TaskAppProgram(self)


class TaskAppProgram(Program):
    """The app as a program; ``components()`` are its prompt components (seed texts to start)."""

    def __init__(self, app: TaskApp, components: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.prompts = dict(components or app.info.components)

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return []  # the app's LM calls are its own; its prompts are text components

    def text_components(self) -> dict[str, TextComponent]:
        return {
            name: TextComponent(text, name, f"the task app's prompt `{name}`")
            for name, text in self.prompts.items()
        }

    def components(self) -> dict[str, Any]:
        return dict(self.prompts)

    def with_components(self, components: Mapping[str, Any]) -> TaskAppProgram:
        unknown = sorted(set(components) - set(self.prompts))
        if unknown:
            raise KeyError(f"Unknown component(s) {unknown}; the app's prompts are {sorted(self.prompts)}.")
        for name, text in components.items():
            if not isinstance(text, str):
                raise TypeError(f"Component {name!r} is the app's prompt text and takes a str, not {text!r}.")
        return TaskAppProgram(self.app, {**self.prompts, **components})

    def deepcopy(self) -> TaskAppProgram:
        return TaskAppProgram(self.app, self.prompts)

    def __deepcopy__(self, memo: dict[int, Any]) -> TaskAppProgram:
        # Candidates share the connection to the app and its proxy; only the prompts are their own.
        return TaskAppProgram(self.app, copy.deepcopy(self.prompts, memo))

    def forward(self, example_id: str, split: str = "train") -> Prediction:
        seeds = self.app.info.components
        with self.app.proxy.rollout(seeds, self.prompts) as endpoint:
            request = RolloutRequest(
                rollout_id=uuid.uuid4().hex,
                split=split,
                inference_url=endpoint.url,
                example_id=example_id,
                components=self.prompts,
                inference_token=endpoint.token,
            )
            try:
                result = self.app.client.rollout(request)
            finally:
                _into_active_trace(endpoint.trace)
        return Prediction(**dict(result.outputs), score=result.score, feedback=result.feedback)

    def dump_state(self) -> dict[str, Any]:
        return {
            "format": "promptopt.task-app-program/1",
            "app": self.app.info.name,
            "prompts": dict(self.prompts),
        }

    def load_state(self, state: Mapping[str, Any]) -> TaskAppProgram:
        self.prompts = {**self.prompts, **dict(state.get("prompts", {}))}
        return self


def _into_active_trace(trace: Trace) -> None:
    for entry in trace:
        record(entry)


def rollout_score(example: Example, prediction: Prediction, trace: Trace | None = None) -> Score:
    """The metric of a task app: the score and feedback the app gave its own rollout."""
    return Score(float(prediction["score"]), str(prediction.get("feedback", "")))
