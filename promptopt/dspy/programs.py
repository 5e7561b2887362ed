"""Any DSPy module as a promptopt program (:func:`from_dspy`): its components are the
instructions and demos of every DSPy predictor (and the descriptions of a ``dspy.ReAct``'s tools),
so promptopt's optimizers can tune it while DSPy runs it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import dspy

from promptopt.core.example import Prediction
from promptopt.core.program import Predict, Program, TextComponent
from promptopt.core.trace import TraceEntry, record
from promptopt.dspy.conversion import (
    from_dspy_example,
    from_dspy_prediction,
    signature_from_dspy,
    to_dspy_example,
)

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
