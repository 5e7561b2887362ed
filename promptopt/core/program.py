"""Programs and predictors.

A :class:`Program` is plain Python: subclass it, create predictors as
attributes in ``__init__`` and call them in ``forward``. Its optimizable
components — each predictor's instruction and demos — are found by walking the
attributes and are named by their attribute path (``generate``,
``hops[1]``, ``critic.review``); a standalone predictor is named ``self``.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.core import settings
from promptopt.core.adapter import Adapter, ChatAdapter
from promptopt.core.example import Example, Prediction
from promptopt.core.signature import Field, Signature, ensure_signature
from promptopt.core.trace import TraceEntry, record
from promptopt.io import write_json_atomic
from promptopt.lm_protocol import LanguageModel

FORMAT = "promptopt.program/1"


@dataclass(frozen=True)
class TextComponent:
    """A free-text component other than a predictor's instruction, e.g. a tool's description.

    ``predictor`` names the predictor whose traces show the text at work (reflection reads them);
    ``subject`` says what the text is, in words, for the reflection prompt
    ("the description of the tool `search`").
    """

    text: str
    predictor: str
    subject: str


class ConfigurationError(RuntimeError):
    """Something the user must set before running (e.g. no LM configured)."""


class Program:
    """Base class of every program. Override :meth:`forward`."""

    _named: bool = False

    def forward(self, **inputs: Any) -> Prediction:
        raise NotImplementedError(f"{type(self).__name__} must define forward(**inputs).")

    def __call__(self, **inputs: Any) -> Prediction:
        if not self._named:
            self._assign_names()
        return self.forward(**inputs)

    # Components ------------------------------------------------------
    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every predictor of the program with its stable name, in definition order."""
        if isinstance(self, Predict):
            return [("self", self)]
        found: list[tuple[str, Predict]] = []
        seen: set[int] = set()
        for name, value in vars(self).items():
            if not name.startswith("_"):
                _walk(value, name, found, seen)
        return found

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def _assign_names(self) -> None:
        for name, pred in self.named_predictors():
            pred.name = name
        for sub in _subprograms(self):
            sub._named = True
        self._named = True

    def get_instructions(self) -> dict[str, str]:
        return {n: p.signature.instruction for n, p in self.named_predictors()}

    def get_demos(self) -> dict[str, list[Example]]:
        return {n: list(p.demos) for n, p in self.named_predictors()}

    def components(self) -> dict[str, Any]:
        """All optimizable components: ``{'<pred>.instruction': str, '<pred>.demos': [Example]}``."""
        out: dict[str, Any] = {}
        for n, p in self.named_predictors():
            out[f"{n}.instruction"] = p.signature.instruction
            out[f"{n}.demos"] = list(p.demos)
        return out

    def text_components(self) -> dict[str, TextComponent]:
        """Components beyond instructions and demos, by name (none here; see ``DspyProgram``).

        They are included in :meth:`components` and set by :meth:`with_components`.
        """
        return {}

    def with_components(self, components: Mapping[str, Any]) -> Program:
        """A deep copy with some components replaced (names as in :meth:`components`)."""
        preds = dict(self.named_predictors())
        instructions: dict[str, str] = {}
        demos: dict[str, list[Any]] = {}
        for key, value in components.items():
            name, _, kind = key.rpartition(".")
            if name not in preds or kind not in ("instruction", "demos"):
                raise KeyError(
                    f"Unknown component {key!r}; this program's components are {sorted(self.components())}"
                )
            (instructions if kind == "instruction" else demos)[name] = value
        return self.with_instructions(instructions).with_demos(demos)

    def with_instructions(self, instructions: Mapping[str, str]) -> Program:
        new = self.deepcopy()
        preds = dict(new.named_predictors())
        for name, text in instructions.items():
            if name not in preds:
                raise KeyError(f"No predictor named {name!r}; predictors: {sorted(preds)}")
            preds[name].signature = preds[name].signature.with_instruction(text)
        return new

    def with_demos(self, demos: Mapping[str, Sequence[Any]]) -> Program:
        new = self.deepcopy()
        preds = dict(new.named_predictors())
        for name, items in demos.items():
            if name not in preds:
                raise KeyError(f"No predictor named {name!r}; predictors: {sorted(preds)}")
            preds[name].demos = [_as_example(d) for d in items]
        return new

    def deepcopy(self) -> Program:
        new = copy.deepcopy(self)
        new._assign_names()
        return new

    def reset_copy(self) -> Program:
        """A copy with every predictor's demos removed."""
        return self.with_demos({n: [] for n, _ in self.named_predictors()})

    def set_lm(self, lm: LanguageModel | None) -> None:
        for p in self.predictors():
            p.lm = lm

    # Persistence --------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "predictors": {
                n: {
                    "signature": p.signature.to_dict(),
                    "demos": [_demo_to_dict(d) for d in p.demos],
                }
                for n, p in self.named_predictors()
            },
        }

    def load_state(self, state: Mapping[str, Any]) -> Program:
        preds = dict(self.named_predictors())
        saved = state.get("predictors", {})
        if set(saved) != set(preds):
            raise ValueError(
                f"Saved state has predictors {sorted(saved)} but this program has {sorted(preds)}; "
                "load it into an instance of the program that saved it."
            )
        for name, data in saved.items():
            preds[name].signature = Signature.from_dict(data["signature"])
            preds[name].demos = [_as_example(d) for d in data.get("demos", [])]
        self._assign_names()
        return self

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the program's components to a JSON file (atomically)."""
        return write_json_atomic(path, self.dump_state())

    def load(self, path: str | os.PathLike[str]) -> Program:
        """Load components saved by :meth:`save` into this program; returns ``self``."""
        return self.load_state(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p.signature}" for n, p in self.named_predictors())
        return f"{type(self).__name__}({inner})"


def load_program(path: str | os.PathLike[str]) -> Program:
    """Rebuild a saved program: import its class, construct it without arguments (or with its
    ``from_state`` classmethod, when it has one), load state."""
    state = json.loads(Path(path).read_text())
    module_name, _, qualname = state["class"].partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if hasattr(obj, "from_state"):  # a program whose constructor needs what its state holds
            return obj.from_state(state)
        program = obj() if not issubclass(obj, Predict) else obj(_signature_from_state(state))
    except Exception as exc:
        raise ValueError(
            f"Cannot rebuild {state['class']} from {path}: {exc}. Construct the program yourself and "
            "call program.load(path)."
        ) from exc
    return program.load_state(state)


def _signature_from_state(state: Mapping[str, Any]) -> Signature:
    return Signature.from_dict(state["predictors"]["self"]["signature"])


def _as_example(d: Any) -> Example:
    if isinstance(d, Example):
        return d
    if isinstance(d, Mapping) and "fields" in d and "inputs" in d:
        return Example.from_dict(d)
    if isinstance(d, Mapping):
        return Example(**d)
    raise TypeError(f"A demo must be an Example or a dict of fields, not {type(d).__name__}.")


def _demo_to_dict(d: Example) -> dict[str, Any]:
    return d.to_dict()


def _walk(value: Any, path: str, found: list[tuple[str, Predict]], seen: set[int]) -> None:
    if id(value) in seen:
        return
    if isinstance(value, Predict):
        seen.add(id(value))
        found.append((path, value))
    elif isinstance(value, Program):
        seen.add(id(value))
        for name, sub in vars(value).items():
            if not name.startswith("_"):
                _walk(sub, f"{path}.{name}", found, seen)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", found, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}[{key!r}]", found, seen)


def _subprograms(root: Program) -> Iterator[Program]:
    stack: list[Any] = list(vars(root).values())
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Program):
            yield value
            stack.extend(v for k, v in vars(value).items() if not k.startswith("_"))
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


class Predict(Program):
    """One LM call: render the signature and demos, call the LM, parse outputs.

    ``Predict("question -> answer", "Answer briefly.")``. ``config`` holds LM
    options for this predictor (``temperature``, ``max_tokens``, ...).
    """

    def __init__(
        self,
        signature: str | Signature,
        instruction: str | None = None,
        *,
        demos: Sequence[Any] | None = None,
        lm: LanguageModel | None = None,
        adapter: Adapter | None = None,
        **config: Any,
    ) -> None:
        self.signature = ensure_signature(signature, instruction)
        self.demos: list[Example] = [_as_example(d) for d in (demos or [])]
        self.lm = lm
        self.adapter = adapter
        self.config = config
        self.name = "self"

    @property
    def instruction(self) -> str:
        return self.signature.instruction

    def forward(self, **inputs: Any) -> Prediction:
        lm = self.lm or settings.get("lm")
        if lm is None:
            raise ConfigurationError(
                "No language model configured: call promptopt.configure(lm=promptopt.LM('local')) "
                "or pass lm=... to the predictor."
            )
        adapter = self.adapter or settings.get("adapter") or _DEFAULT_ADAPTER
        call_inputs = {n: inputs[n] for n in self.signature.input_names if n in inputs}
        entry = TraceEntry(predictor=self.name, inputs=call_inputs)
        try:
            entry.messages = adapter.format(self.signature, self.demos, inputs)
            completion = lm(entry.messages, **self.config)
            entry.raw = completion.text
            entry.prompt_tokens = completion.prompt_tokens
            entry.completion_tokens = completion.completion_tokens
            entry.latency = completion.latency
            entry.cached = completion.cached
            entry.outputs = adapter.parse(self.signature, completion.text)
        except Exception as exc:
            entry.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record(entry)
        return Prediction(**entry.outputs)


_DEFAULT_ADAPTER = ChatAdapter()

REASONING = Field("reasoning", "Think step by step about the inputs before giving the other outputs.")


class ChainOfThought(Predict):
    """A predictor that writes its ``reasoning`` before the other outputs."""

    def __init__(self, signature: str | Signature, instruction: str | None = None, **kwargs: Any):
        super().__init__(signature, instruction, **kwargs)
        self.signature = self.signature.prepend_output(REASONING)
