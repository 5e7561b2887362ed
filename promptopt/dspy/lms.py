"""Language models across the bridge: a ``dspy.LM`` on a promptopt LM's model (:func:`dspy_lm`,
:class:`PromptoptEngine`), and a ``dspy.LM`` as promptopt calls one (:class:`DspyLanguageModel`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import dspy
from dspy.utils.callback import BaseCallback

from promptopt.core.program import ConfigurationError
from promptopt.dspy.conversion import SOURCE_ATTR
from promptopt.dspy.usage import CallUsage, TaskUsageReporter
from promptopt.lm.client import LM
from promptopt.lm.usage import report
from promptopt.lm_protocol import Completion, LanguageModel

# --- language models -----------------------------------------------------------


class PromptoptEngine:
    """A DSPy engine answering each request with a promptopt language model.

    Any ``lm(messages, **options) -> Completion`` works (``promptopt.LM``, a scripted test LM), and
    the calls go through promptopt: its cache, concurrency limit and usage accounting.
    """

    _FINISH = frozenset({"stop", "length", "tool_call", "content_filter", "error"})

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = (
                request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            )
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        options: dict[str, Any] = {}
        if request.config.temperature is not None:
            options["temperature"] = request.config.temperature
        if request.config.max_tokens is not None:
            options["max_tokens"] = request.config.max_tokens
        c: Completion = self.lm(messages, **options)
        return Response(
            id=None,
            model=c.model or "promptopt",
            message=Message.assistant([TextPart(c.text or "")]),
            finish_reason=c.finish_reason if c.finish_reason in self._FINISH else "stop",
            usage=Usage(input_tokens=c.prompt_tokens, output_tokens=c.completion_tokens),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def dspy_lm(
    lm: LanguageModel,
    *,
    cache: bool = False,
    callbacks: Sequence[BaseCallback] = (),
    route: Literal["direct", "promptopt"] | None = None,
    engine: str = "litellm",
    **overrides: Any,
) -> dspy.LM:
    """A ``dspy.LM`` on the same model as a promptopt LM, with its temperature and max_tokens.

    ``route="direct"`` (the default for a ``promptopt.LM``) lets DSPy call the model itself: a
    local model is reached at its server's OpenAI-compatible ``api_base``. ``route="promptopt"``
    (the default for any other language model, e.g. a scripted one) sends every request through
    the promptopt LM via :class:`PromptoptEngine`. DSPy's own response cache is off unless
    ``cache=True``; ``overrides`` replace LM options (``temperature=1.0``, ...).
    """
    route = route or ("direct" if isinstance(lm, LM) else "promptopt")
    if route == "direct":
        if not isinstance(lm, LM):
            raise TypeError(
                "route='direct' needs a promptopt.LM; other language models use route='promptopt'."
            )
        model, conn = lm.connection()
        params = {**lm.defaults, **overrides}
        out = dspy.LM(
            model,
            cache=cache,
            callbacks=list(callbacks),
            num_retries=lm.num_retries,
            timeout=lm.timeout,
            engine=engine,
            **conn,
            **params,
        )
        setattr(out, SOURCE_ATTR, lm)
        return out
    if route != "promptopt":
        raise ValueError(f"route must be 'direct' or 'promptopt', not {route!r}.")
    params = {**(lm.defaults if isinstance(lm, LM) else {"temperature": 0.0, "max_tokens": 512}), **overrides}
    name = lm.model if isinstance(lm, LM) else type(lm).__name__
    out = dspy.LM(
        f"promptopt/{name}",
        engine=PromptoptEngine(lm),
        cache=cache,
        callbacks=list(callbacks),
        num_retries=0,
        **params,
    )
    setattr(out, SOURCE_ATTR, lm)
    return out


# --- language models -----------------------------------------------------------------------


class DspyLanguageModel:
    """A ``dspy.LM`` callable as a promptopt language model ``lm(messages, **options) -> Completion``.

    The call goes through the dspy.LM (its model, provider settings, cache and callbacks);
    ``rollout_id`` is passed on so repeated proposals are fresh samples. Each call is reported to
    promptopt's usage trackers with the tokens DSPy recorded.
    """

    def __init__(self, lm: Any) -> None:
        if not isinstance(lm, dspy.BaseLM):
            raise TypeError(f"DspyLanguageModel wraps a dspy.LM, not a {type(lm).__name__}.")
        self.lm = lm
        self.model = str(getattr(lm, "model", type(lm).__name__))
        source = getattr(lm, SOURCE_ATTR, None)
        # A small local model is best used with the short-rules proposer (see GEPA's proposer="auto").
        self.is_local = bool(getattr(source, "is_local", False))

    def __repr__(self) -> str:
        return f"DspyLanguageModel({self.model!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> DspyLanguageModel:
        return self

    def __call__(
        self, messages: list[dict[str, str]] | str, *, rollout_id: Any = None, **options: Any
    ) -> Completion:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        options.pop("cache", None)
        temperature = options.get("temperature", getattr(self.lm, "kwargs", {}).get("temperature"))
        if rollout_id is not None and temperature:  # a fresh sample; meaningless at temperature 0
            options["rollout_id"] = rollout_id
        tracker = CallUsage()
        start = time.perf_counter()
        try:
            # A tracker of its own: the call is reported once, here, not also as a task-LM call.
            with dspy.context(usage_tracker=tracker):
                outputs = self.lm(messages=messages, **options)
        except Exception:
            report(None)
            raise
        first = outputs[0] if outputs else ""
        text = (first.get("text") or "") if isinstance(first, Mapping) else str(first or "")
        completion = Completion(
            text=text,
            prompt_tokens=tracker.prompt_tokens,
            completion_tokens=tracker.completion_tokens,
            cost=tracker.cost,
            latency=time.perf_counter() - start,
            cached=not tracker.seen,
            finish_reason=None,
            model=self.model,
        )
        report(completion)
        return completion


def _is_local_name(model: str) -> bool:
    return model == "local" or model.startswith("local/")


def proposal_lm(lm: Any) -> LanguageModel | None:
    """A reflection / proposal LM as promptopt calls it: a ``dspy.LM`` is wrapped, a model string
    becomes a ``promptopt.LM`` (sampling at temperature 0.7), a promptopt LM is used as is."""
    if lm is None:
        return None
    if isinstance(lm, dspy.BaseLM):
        return DspyLanguageModel(lm)
    if isinstance(lm, str):
        return LM(lm, temperature=0.7, max_tokens=700 if _is_local_name(lm) else 4000)
    if callable(lm):
        return lm
    raise TypeError(f"Give the LM as a dspy.LM, a promptopt.LM or a model string, not a {type(lm).__name__}.")


def task_dspy_lm(lm: Any) -> Any:
    """A task LM as DSPy runs it: a ``dspy.LM`` as is; a promptopt LM or ``"local"`` through
    :func:`~promptopt.dspy.conversion.dspy_lm`; any other string as ``dspy.LM(string)``."""

    if isinstance(lm, dspy.BaseLM):
        return lm
    if isinstance(lm, str):
        return dspy_lm(LM(lm)) if _is_local_name(lm) else dspy.LM(lm)
    if callable(lm):
        return dspy_lm(lm)
    raise TypeError(
        f"Give the task LM as a dspy.LM, a promptopt.LM or a model string, not {type(lm).__name__}."
    )


def resolve_task_lm(student: dspy.Module, task_model: Any = None) -> Any:
    """The dspy.LM the student runs on: ``task_model``, else the configured one. None only when
    every predictor has its own LM."""
    if task_model is not None:
        return task_dspy_lm(task_model)
    lm = dspy.settings.lm
    if lm is None:
        missing = [name for name, pred in student.named_predictors() if getattr(pred, "lm", None) is None]
        if missing:
            raise ConfigurationError(
                f"No DSPy language model is configured for the predictors {missing}: call "
                "dspy.configure(lm=dspy.LM(...)) (or run compile inside dspy.context(lm=...)) before "
                "compiling, or give each predictor its own lm."
            )
    return lm


def some_lm(student: dspy.Module, task_lm: Any) -> Any:
    if task_lm is not None:
        return task_lm
    return next(pred.lm for _, pred in student.named_predictors() if getattr(pred, "lm", None) is not None)


@contextmanager
def counting_task_calls() -> Any:
    with dspy.context(usage_tracker=TaskUsageReporter()):
        yield
