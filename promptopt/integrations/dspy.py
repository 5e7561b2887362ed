"""The DSPy bridge: run DSPy's optimizers from a promptopt seed, and bring their results back.

Export::

    module = to_dspy(program)                 # same instructions, fields, descriptions, demos
    task = dspy_lm(po.LM("local"))            # a dspy.LM on the same model and settings
    opt = dspy.MIPROv2(metric=dspy_metric(metric), ...)
    with dspy.context(lm=task):
        optimized = opt.compile(module, trainset=to_dspy_examples(train), ...)

Import::

    tuned = program.with_components(components_from_dspy(optimized, program))

A single predictor (``Predict``/``ChainOfThought``) becomes a ``dspy.Predict``
whose signature is the promptopt one (a chain of thought keeps its
``reasoning`` output field). A program with several predictors becomes a
:class:`PromptoptModule`: its ``forward`` is the promptopt program's own
Python ``forward``, with every promptopt predictor call routed through a real
``dspy.Predict`` held at the same attribute path (``generate``, ``hops[1]``,
``critic.review``). DSPy optimizers therefore see, trace and change ordinary
DSPy predictors, and ``named_predictors()`` names them by their promptopt paths.

:func:`from_dspy` goes the other way: any DSPy module (nested modules,
``ChainOfThought``, ``ReAct``) becomes a promptopt :class:`DspyProgram` whose
components are the instructions and demos of every DSPy predictor, so
promptopt's optimizers can tune it while DSPy runs it.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import threading
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import dspy
from dspy.utils.callback import BaseCallback

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score, call_metric
from promptopt.core.program import Predict, Program, TextComponent
from promptopt.core.signature import Field, Signature
from promptopt.core.trace import TraceEntry, record
from promptopt.lm.client import LM
from promptopt.lm_protocol import Completion, LanguageModel

__all__ = [
    "CallCounter",
    "DspyMetric",
    "DspyProgram",
    "PromptoptEngine",
    "PromptoptModule",
    "components_from_dspy",
    "dspy_lm",
    "dspy_metric",
    "dspy_signature",
    "from_dspy",
    "from_dspy_example",
    "from_dspy_prediction",
    "module_key",
    "react_tools",
    "signature_from_dspy",
    "to_dspy",
    "to_dspy_example",
    "to_dspy_examples",
]

# The attribute on an exported dspy.Predict that names its promptopt predictor.
PATH_ATTR = "_promptopt_path"
# The attribute on an exported dspy.Example that keeps the promptopt example id.
ID_ATTR = "_promptopt_id"
# The attribute on a PromptoptModule's prediction naming the components that produced it.
KEY_ATTR = "_promptopt_key"
# The attribute on a dspy.LM made by dspy_lm that keeps the promptopt LM it was made from.
SOURCE_ATTR = "_promptopt_source"

# --- signatures ---------------------------------------------------------------

_ANNOTATIONS: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list[str]}


def _annotation(f: Field) -> Any:
    if f.choices:
        return Literal[f.choices]  # type: ignore[valid-type]
    return _ANNOTATIONS[f.type]


def _field_kwargs(f: Field) -> dict[str, str]:
    return {"desc": f.desc} if f.desc else {}


def dspy_signature(signature: Signature) -> type[dspy.Signature]:
    """The DSPy signature with the same instruction, field names, types, choices and descriptions."""
    fields: dict[str, tuple[Any, Any]] = {}
    for f in signature.inputs:
        fields[f.name] = (_annotation(f), dspy.InputField(**_field_kwargs(f)))
    for f in signature.outputs:
        fields[f.name] = (_annotation(f), dspy.OutputField(**_field_kwargs(f)))
    return dspy.Signature(fields, signature.instruction)


def _field_type(annotation: Any) -> tuple[str, tuple[str, ...] | None]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "str", tuple(str(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, set):
        return "list", None
    for name, tp in (("bool", bool), ("int", int), ("float", float)):
        if annotation is tp:
            return name, None
    return "str", None


def signature_from_dspy(signature: type[dspy.Signature]) -> Signature:
    """The promptopt signature of a DSPy one (types outside promptopt's set become ``str``)."""

    def convert(name: str, info: Any) -> Field:
        desc = str((info.json_schema_extra or {}).get("desc") or "")
        if desc == f"${{{name}}}":  # DSPy's placeholder for "no description"
            desc = ""
        ftype, choices = _field_type(info.annotation)
        return Field(name, desc, ftype, choices)

    return Signature(
        inputs=tuple(convert(n, i) for n, i in signature.input_fields.items()),
        outputs=tuple(convert(n, i) for n, i in signature.output_fields.items()),
        instruction=signature.instructions,
    )


# --- examples and predictions ----------------------------------------------------


def _input_keys(example: Example) -> frozenset[str] | None:
    try:
        return example.input_keys
    except ValueError:
        return None


def to_dspy_example(example: Example | Mapping[str, Any]) -> dspy.Example:
    """A ``dspy.Example`` with the same fields and inputs; it remembers the promptopt id."""
    ex = example if isinstance(example, Example) else Example(**dict(example))
    out = dspy.Example(**ex.toDict())
    keys = _input_keys(ex)
    if keys is not None:
        out = out.with_inputs(*[k for k in ex if k in keys])
    setattr(out, ID_ATTR, ex.id)
    return out


def to_dspy_examples(examples: Iterable[Example | Mapping[str, Any]]) -> list[dspy.Example]:
    return [to_dspy_example(e) for e in examples]


def from_dspy_example(example: Any, input_keys: Iterable[str] | None = None) -> Example:
    """A promptopt ``Example`` from a ``dspy.Example`` (or a dict of fields).

    The inputs are the DSPy example's own input keys when it has them, else ``input_keys``.
    DSPy's bookkeeping field ``augmented`` (on bootstrapped demos) is dropped.
    """
    if isinstance(example, Example):
        return example
    keys: Iterable[str] | None = None
    ex_id: str | None = None
    if isinstance(example, dspy.Example):
        fields = dict(example.items())
        keys = getattr(example, "_input_keys", None)
        ex_id = vars(example).get(ID_ATTR)
    elif isinstance(example, Mapping):
        fields = dict(example)
    else:
        raise TypeError(f"Cannot read a {type(example).__name__} as an example.")
    fields.pop("augmented", None)
    out = Example(_id=ex_id, **fields)
    keys = keys if keys is not None else input_keys
    if keys is not None:
        wanted = set(keys)
        out = out.with_inputs(*[k for k in fields if k in wanted])
    return out


def from_dspy_prediction(prediction: Any) -> Prediction:
    if isinstance(prediction, Prediction):
        return prediction
    if prediction is None:
        return Prediction()
    if isinstance(prediction, dspy.Example):  # dspy.Prediction is one
        return Prediction(**dict(prediction.items()))
    if isinstance(prediction, Mapping):
        return Prediction(**dict(prediction))
    raise TypeError(f"Cannot read a {type(prediction).__name__} as a prediction.")


# --- programs -> DSPy ------------------------------------------------------------

_ROUTES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "promptopt_dspy_routes", default=None
)


def _dspy_predict(pred: Predict, path: str) -> dspy.Predict:
    out = dspy.Predict(dspy_signature(pred.signature), **pred.config)
    out.demos = [to_dspy_example(d) for d in pred.demos]
    setattr(out, PATH_ATTR, path)
    return out


def to_dspy(program: Program) -> dspy.Module:
    """Export a promptopt program to DSPy, starting from exactly its components.

    A standalone ``Predict``/``ChainOfThought`` becomes a ``dspy.Predict`` (DSPy name ``self``,
    like promptopt's); any other program becomes a :class:`PromptoptModule`.
    """
    if isinstance(program, Predict):
        return _dspy_predict(program, "self")
    return PromptoptModule(program)


class _Namespace(dspy.Module):
    """Holds the DSPy predictors of one promptopt sub-program, under the same attribute names."""

    def forward(self, **inputs: Any) -> Any:
        raise RuntimeError("This module only holds predictors; call the PromptoptModule that owns it.")


_RESERVED = frozenset(vars(dspy.Module())) | {n for n in dir(dspy.Module) if not n.startswith("_")}


def _mirror(value: Any, paths: dict[int, str], made: dict[int, Any], seen: set[int]) -> Any:
    """The DSPy counterpart of one attribute value: predictors, and containers holding them."""
    if isinstance(value, Predict):
        if id(value) not in made:
            made[id(value)] = _dspy_predict(value, paths[id(value)])
        return made[id(value)]
    if isinstance(value, Program):
        if id(value) in seen:
            return None
        seen.add(id(value))
        ns = _Namespace()
        found = False
        for name, sub in vars(value).items():
            if name.startswith("_"):
                continue
            mirrored = _mirror(sub, paths, made, seen)
            if mirrored is not None:
                _check_name(name)
                setattr(ns, name, mirrored)
                found = True
        return ns if found else None
    if isinstance(value, (list, tuple)):
        items = [_mirror(v, paths, made, seen) for v in value]
        return items if any(i is not None for i in items) else None
    if isinstance(value, dict):
        out = {k: m for k, v in value.items() if (m := _mirror(v, paths, made, seen)) is not None}
        return out or None
    return None


def _check_name(name: str) -> None:
    if name in _RESERVED:
        raise ValueError(
            f"The promptopt attribute {name!r} clashes with a dspy.Module attribute; rename it to export "
            "the program to DSPy."
        )


def _routed_forward(self: Predict, **inputs: Any) -> Prediction:
    """A promptopt predictor's forward inside a PromptoptModule: the call goes to its DSPy twin."""
    routes = _ROUTES.get()
    target = routes.get(self.name) if routes else None
    if target is None:
        raise RuntimeError(
            f"Predictor {self.name!r} belongs to a program exported to DSPy; call the PromptoptModule."
        )
    call_inputs = {n: inputs[n] for n in self.signature.input_names if n in inputs}
    entry = TraceEntry(predictor=self.name, inputs=call_inputs)
    try:
        out = target(**call_inputs)
        entry.outputs = dict(out.items())
    except Exception as exc:
        entry.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        record(entry)
    return Prediction(**entry.outputs)


class PromptoptModule(dspy.Module):
    """A promptopt program as a DSPy module.

    The DSPy predictors sit at the promptopt attribute paths (so ``named_predictors()`` returns
    promptopt predictor names); ``forward`` runs the promptopt program's own ``forward`` with each
    promptopt predictor call answered by the matching ``dspy.Predict``, which records DSPy traces.
    Predictions carry the key of the components that produced them (see :func:`module_key`).
    """

    def __init__(self, program: Program) -> None:
        super().__init__()
        own = program.deepcopy()
        named = own.named_predictors()
        if not named:
            raise ValueError("The program has no predictors to export.")
        paths = {id(p): n for n, p in named}
        made: dict[int, Any] = {}
        if isinstance(own, Predict):
            self.predict = _dspy_predict(own, "self")
        else:
            seen: set[int] = {id(own)}
            for name, value in vars(own).items():
                if name.startswith("_"):
                    continue
                mirrored = _mirror(value, paths, made, seen)
                if mirrored is not None:
                    _check_name(name)
                    setattr(self, name, mirrored)
        exported = {getattr(p, PATH_ATTR, None) for _, p in self.named_predictors()}
        missing = sorted(set(paths.values()) - exported)
        if missing:
            raise ValueError(
                f"Predictors {missing} sit where DSPy cannot see them (e.g. a list inside a list); "
                "hold them in attributes, lists or dicts of the program."
            )
        for _, pred in named:
            pred.forward = types.MethodType(_routed_forward, pred)
        self._program = own

    def forward(self, **inputs: Any) -> dspy.Prediction:
        routes = {getattr(p, PATH_ATTR, n): p for n, p in self.named_predictors()}
        token = _ROUTES.set(routes)
        try:
            out = self._program(**inputs)
        finally:
            _ROUTES.reset(token)
        pred = dspy.Prediction(**dict(out.items()))
        setattr(pred, KEY_ATTR, module_key(self))
        return pred


def module_key(module: dspy.Module) -> str:
    """A short hash of a DSPy module's instructions and demos (identifies a candidate)."""
    parts = []
    for name, pred in module.named_predictors():
        demos = [dict(d.items()) if hasattr(d, "items") else d for d in pred.demos]
        parts.append([name, pred.signature.instructions, demos])
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- DSPy -> components ----------------------------------------------------------


def _path_for(name: str, pred: Any, known: list[str] | None, count: int) -> str:
    path = getattr(pred, PATH_ATTR, None) or name
    if known is None or path in known:
        return path
    if name.endswith(".predict") and name[: -len(".predict")] in known:  # a dspy.ChainOfThought inside
        return name[: -len(".predict")]
    if count == 1 and len(known) == 1:  # e.g. dspy.ChainOfThought ("predict") for a promptopt "self"
        return known[0]
    raise KeyError(
        f"The DSPy predictor {name!r} has no counterpart in the promptopt program; it has {known}."
    )


def components_from_dspy(module: dspy.Module, program: Program | None = None) -> dict[str, Any]:
    """The components (``'<path>.instruction'``, ``'<path>.demos'``) of a DSPy module's predictors.

    With ``program`` the names are mapped onto its predictors, so
    ``program.with_components(components_from_dspy(module, program))`` reproduces the module in
    promptopt; without it they are the DSPy predictor names (as :func:`from_dspy` uses them).
    """
    named = list(module.named_predictors())
    known = [n for n, _ in program.named_predictors()] if program is not None else None
    comps: dict[str, Any] = {}
    for name, pred in named:
        path = _path_for(name, pred, known, len(named))
        comps[f"{path}.instruction"] = pred.signature.instructions
        inputs = list(pred.signature.input_fields)
        comps[f"{path}.demos"] = [from_dspy_example(d, input_keys=inputs) for d in pred.demos]
    return comps


# --- metrics -------------------------------------------------------------------


class DspyMetric:
    """A promptopt metric in DSPy's forms.

    Called as ``(gold, pred, trace=None, pred_name=None, pred_trace=None)``, which covers DSPy's
    evaluators and bootstrapping (2 or 3 arguments) and dspy.GEPA (5). It returns the score as a
    float, or with ``feedback=True`` a ``dspy.Prediction(score=..., feedback=...)``.

    ``calls`` counts scoring calls and ``feedback_calls`` dspy.GEPA's extra per-predictor feedback
    requests (``pred_name`` given); ``log`` keeps ``(candidate key, example id, score)`` per scoring
    call, the key being the :func:`module_key` a :class:`PromptoptModule` put on its prediction.
    """

    def __init__(self, metric: Callable[..., Any], *, feedback: bool = False) -> None:
        self.metric = metric
        self.feedback = feedback
        self.calls = 0
        self.feedback_calls = 0
        self.log: list[tuple[str | None, str, float]] = []
        self._lock = threading.Lock()
        self.__name__ = getattr(metric, "__name__", type(metric).__name__)

    def score(self, gold: Any, pred: Any) -> Score:
        return call_metric(self.metric, from_dspy_example(gold), from_dspy_prediction(pred), None)

    def __call__(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
    ) -> Any:
        score = self.score(gold, pred)
        with self._lock:
            if pred_name is None:
                self.calls += 1
                key = vars(pred).get(KEY_ATTR) if hasattr(pred, "__dict__") else None
                self.log.append((key, from_dspy_example(gold).id, score.value))
            else:
                self.feedback_calls += 1
        if self.feedback:
            text = score.feedback or f"This trajectory got a score of {score.value}."
            return dspy.Prediction(score=score.value, feedback=text)
        return score.value


def dspy_metric(metric: Callable[..., Any], *, feedback: bool = False) -> DspyMetric:
    """Wrap ``metric(example, prediction, trace) -> float | Score`` for DSPy (see :class:`DspyMetric`)."""
    return DspyMetric(metric, feedback=feedback)


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


class CallCounter(BaseCallback):
    """A DSPy callback counting the calls (and failed calls) of the LMs it is attached to."""

    def __init__(self) -> None:
        self.calls = 0
        self.failed = 0
        self._lock = threading.Lock()

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            self.calls += 1
            if exception is not None:
                self.failed += 1


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


# --- DSPy modules -> promptopt programs ------------------------------------------------


class DspyProgram(Program):
    """A DSPy module as a promptopt program, so promptopt's optimizers can tune it.

    Its components are the instruction and demos of every DSPy predictor, named as DSPy names them
    (``generate``, ``hop.predict``, ``react.react``); a promptopt ``Predict`` stands for each one.
    The description of every ``dspy.ReAct`` tool is a text component too (``react.tool[search]``):
    a new description is set on the tool and replaces the tool's line in the agent's instruction
    (where a rewrite of that instruction has dropped the line, only the tool object changes).
    Running the program writes those components into the module and runs the module through DSPy
    with ``lm`` (default: the ``dspy.LM`` configured with ``dspy.configure``); every DSPy predictor
    call is recorded in the promptopt trace under its name, so reflection sees each step.
    """

    def __init__(self, module: dspy.Module, *, lm: Any = None) -> None:
        self._module = module.deepcopy()
        self._lm = lm
        self._stand_ins = {
            name: Predict(
                signature_from_dspy(pred.signature),
                demos=[
                    from_dspy_example(d, input_keys=list(pred.signature.input_fields)) for d in pred.demos
                ],
            )
            for name, pred in self._module.named_predictors()
        }
        if not self._stand_ins:
            raise ValueError("The DSPy module has no predictors.")
        self._tools = react_tools(self._module)
        self._tool_descs = {key: tool.desc or "" for key, (_, tool) in self._tools.items()}
        # The line each tool has in its agent's instruction at the start; a new description replaces it.
        self._tool_lines = {key: str(tool) for key, (_, tool) in self._tools.items()}
        self._assign_names()

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return list(self._stand_ins.items())

    def text_components(self) -> dict[str, TextComponent]:
        """The description of every ``dspy.ReAct`` tool (``finish`` aside), as ``'<agent>.tool[<name>]'``."""
        return {
            key: TextComponent(self._tool_descs[key], owner, f"the description of the tool `{tool.name}`")
            for key, (owner, tool) in self._tools.items()
        }

    def components(self) -> dict[str, Any]:
        return {**super().components(), **{k: c.text for k, c in self.text_components().items()}}

    def with_components(self, components: Mapping[str, Any]) -> DspyProgram:
        descs = {k: v for k, v in components.items() if k in self._tools}
        new = super().with_components({k: v for k, v in components.items() if k not in self._tools})
        assert isinstance(new, DspyProgram)
        for key, text in descs.items():
            if not isinstance(text, str):
                raise TypeError(f"Component {key!r} is a tool description and takes a str, not {text!r}.")
            new._tool_descs[key] = text
        return new

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "tools": dict(self._tool_descs)}

    def load_state(self, state: Mapping[str, Any]) -> DspyProgram:
        tools = dict(state.get("tools", {}))
        unknown = sorted(set(tools) - set(self._tools))
        if unknown:
            raise ValueError(
                f"Saved state has tools {unknown} that this module lacks; it has {sorted(self._tools)}."
            )
        super().load_state({k: v for k, v in state.items() if k != "tools"})
        self._tool_descs.update(tools)
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> DspyProgram:
        # Candidates are copies of the program; they share its LM (its history, callbacks, cache).
        if self._lm is not None:
            memo.setdefault(id(self._lm), self._lm)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in vars(self).items():
            setattr(new, key, copy.deepcopy(value, memo))
        return new

    @property
    def module(self) -> dspy.Module:
        """The DSPy module with this program's components written into it."""
        self._sync()
        return self._module

    def _sync(self) -> None:
        lines: dict[str, list[tuple[str, str]]] = {}
        for key, (owner, tool) in self._tools.items():
            tool.desc = self._tool_descs[key]
            lines.setdefault(owner, []).append((self._tool_lines[key], str(tool)))
        for name, pred in self._module.named_predictors():
            stand_in = self._stand_ins[name]
            instruction = stand_in.instruction
            for seed_line, line in lines.get(name, []):
                instruction = instruction.replace(seed_line, line)
            if pred.signature.instructions != instruction:
                pred.signature = pred.signature.with_instructions(instruction)
            demos = [to_dspy_example(d) for d in stand_in.demos]
            if [dict(d.items()) for d in pred.demos] != [dict(d.items()) for d in demos]:
                pred.demos = demos

    def forward(self, **inputs: Any) -> Prediction:
        module = self.module
        names = {id(p): n for n, p in module.named_predictors()}
        settings: dict[str, Any] = {"trace": []}
        if self._lm is not None:
            settings["lm"] = self._lm
        with dspy.context(**settings):
            try:
                out = module(**inputs)
            finally:
                steps = list(dspy.settings.trace or [])
                for pred, pred_inputs, pred_out in steps:
                    if id(pred) in names:
                        outputs = dict(pred_out.items()) if hasattr(pred_out, "items") else None
                        record(
                            TraceEntry(predictor=names[id(pred)], inputs=dict(pred_inputs), outputs=outputs)
                        )
        return from_dspy_prediction(out)


def react_tools(module: dspy.Module) -> dict[str, tuple[str, Any]]:
    """``{'<agent>.tool[<name>]': (agent predictor name, dspy.Tool)}`` for every ``dspy.ReAct`` in a module.

    ReAct writes each tool's description into its agent predictor's instruction when it is built
    (one ``(i) <tool>`` line per tool); the synthetic ``finish`` tool is left out.
    """
    names = {id(p): n for n, p in module.named_predictors()}
    found: dict[str, tuple[str, Any]] = {}
    for _, sub in module.named_sub_modules():
        if isinstance(sub, dspy.ReAct) and id(sub.react) in names:
            owner = names[id(sub.react)]
            for tool_name, tool in sub.tools.items():
                if tool_name != "finish":
                    found[f"{owner}.tool[{tool_name}]"] = (owner, tool)
    return found


def from_dspy(module: dspy.Module, *, lm: Any = None) -> DspyProgram:
    """A promptopt program over any DSPy module (see :class:`DspyProgram`)."""
    return DspyProgram(module, lm=lm)
