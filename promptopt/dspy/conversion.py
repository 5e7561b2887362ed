"""Converting between promptopt and DSPy: signatures, examples and predictions, a promptopt
program as a DSPy module, and a DSPy module's instructions and demos as promptopt components.

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
The other way, :func:`promptopt.dspy.programs.from_dspy` makes any DSPy module a promptopt program.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import dspy

from promptopt.core.example import Example, Prediction
from promptopt.core.program import Predict, Program
from promptopt.core.signature import Field, Signature
from promptopt.core.trace import TraceEntry, record

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
