"""promptopt's optimizers for DSPy programs, in DSPy's teleprompter shape.

::

    import dspy
    from promptopt.dspy import GEPA, MIPROv2

    dspy.configure(lm=dspy.LM("openai/gpt-4o-mini"))
    program = dspy.ChainOfThought("question -> answer")
    optimizer = GEPA(metric, auto="light", reflection_lm="openai/gpt-4o")
    compiled = optimizer.compile(program, trainset=train, valset=val)
    compiled(question="...")                 # an ordinary DSPy module
    compiled.save("program.json")            # DSPy's own persistence
    compiled.promptopt_result.summary()      # promptopt's OptimizationResult

The contract:

* ``compile(student, *, trainset, valset=None, ...)`` takes any ``dspy.Module`` (nested modules,
  ``Predict``, ``ChainOfThought``, ...) and ``dspy.Example`` data with its inputs marked
  (``.with_inputs(...)``). It returns a deep copy of the student, of the student's own class, whose
  DSPy predictors carry the best instructions and demos found; the student is left untouched. The
  copy saves and loads with DSPy's ``save``/``load`` and predicts like the optimized program.
* ``compiled.promptopt_result`` is the :class:`~promptopt.optimizers.result.OptimizationResult`:
  every candidate with per-example validation scores, the budget spent, the learning curve, the
  stop reason (``result.best_program`` is the promptopt view of the best candidate).
* Every example runs through DSPy, so the user's LM settings apply: the task LM is
  ``dspy.settings.lm`` at compile time (``dspy.configure`` or ``dspy.context``), and a predictor with
  its own ``lm`` keeps it. MIPROv2's ``task_model`` replaces the configured LM for the run.
* The reflection / proposal LM (``reflection_lm``, ``prompt_model``) may be a ``dspy.LM`` (wrapped
  so promptopt's proposers can call it; its calls go through DSPy), a ``promptopt.LM``, or a
  model string (``"local"``, ``"local/<name>"`` or any litellm model). By default it is the task LM.
* The metric may take DSPy's form ``metric(example, prediction, trace=None) -> float | bool`` or
  dspy.GEPA's feedback form ``metric(gold, pred, trace, pred_name, pred_trace) -> float |
  dspy.Prediction(score=..., feedback=...)``; the form is read from its signature (see
  :func:`metric_form`). It receives ``dspy.Example`` / ``dspy.Prediction`` objects and is called as
  in an evaluation (``trace=None``; ``pred_name=None``, so a feedback metric gives the module-level
  feedback, which GEPA's reflection uses for every predictor).
* promptopt's machinery applies unchanged: budgets (``max_metric_calls``, ``auto``, the stoppers),
  ``run_dir`` with ``resume=True`` to continue a killed run, callbacks, progress. LM calls made
  through DSPy (uncached ones) are counted in the result's budget.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dspy

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score, as_score
from promptopt.core.program import ConfigurationError
from promptopt.integrations.dspy import (
    SOURCE_ATTR,
    DspyProgram,
    from_dspy,
    from_dspy_example,
    react_tools,
    to_dspy_example,
)
from promptopt.lm.client import LM
from promptopt.lm.usage import report
from promptopt.lm_protocol import Completion, LanguageModel
from promptopt.optimizers.components import deserialize_components
from promptopt.optimizers.gepa import engine as _gepa
from promptopt.optimizers.mipro import engine as _mipro
from promptopt.optimizers.result import OptimizationResult

__all__ = [
    "GEPA",
    "DspyLanguageModel",
    "MIPROv2",
    "apply_components",
    "metric_form",
    "promptopt_metric",
    "proposal_lm",
    "task_dspy_lm",
]

# The attribute of the compiled module that holds the OptimizationResult.
RESULT_ATTR = "promptopt_result"

# --- metrics -------------------------------------------------------------------------------


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes (None: any number)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def metric_form(metric: Callable[..., Any]) -> Literal["dspy", "feedback"]:
    """``"feedback"`` for dspy.GEPA's 5-argument metric ``(gold, pred, trace, pred_name, pred_trace)``
    (or one taking ``*args``), ``"dspy"`` for DSPy's ``(example, prediction[, trace])``."""
    if not callable(metric):
        raise TypeError(f"The metric must be callable, not {type(metric).__name__}.")
    n = _positional_arity(metric)
    if n is None or n >= 5:
        return "feedback"
    if n in (2, 3):
        return "dspy"
    raise TypeError(
        f"The metric {getattr(metric, '__name__', metric)!r} takes {n} positional argument(s); a DSPy metric "
        "is metric(example, prediction, trace=None) or metric(gold, pred, trace, pred_name, pred_trace)."
    )


class _PromptoptMetric:
    """A DSPy metric called as a promptopt metric ``(example, prediction, trace) -> Score``."""

    def __init__(self, metric: Callable[..., Any]) -> None:
        self.form = metric_form(metric)
        n = _positional_arity(metric)
        self.nargs = 5 if n is None else min(n, 5)
        self.metric = metric
        self.__name__ = getattr(metric, "__name__", type(metric).__name__)

    def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> Score:
        gold = to_dspy_example(example)
        pred = dspy.Prediction(**dict(prediction.items()))
        # As in an evaluation: no DSPy trace, and the module-level score (pred_name None).
        args = (gold, pred, None, None, None)[: self.nargs]
        return as_score(self.metric(*args))


def promptopt_metric(metric: Callable[..., Any]) -> Callable[..., Score]:
    """A DSPy metric in either form (see :func:`metric_form`) as a promptopt metric; feedback is kept."""
    if isinstance(metric, _PromptoptMetric):
        return metric
    return _PromptoptMetric(metric)


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
        tracker = _CallUsage()
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


class _CallUsage:
    """A DSPy usage tracker for one call."""

    def __init__(self) -> None:
        self.seen = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0

    def add_usage(self, lm: str, usage: Mapping[str, Any]) -> None:
        self.seen = True
        self.prompt_tokens += _tokens(usage, "prompt_tokens", "input_tokens")
        self.completion_tokens += _tokens(usage, "completion_tokens", "output_tokens")
        self.cost += float(usage.get("cost") or 0.0)


def _tokens(usage: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = usage.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return 0


class _TaskUsage:
    """A DSPy usage tracker that reports the task LM's uncached calls to promptopt's trackers.

    Calls of a dspy.LM that itself runs on a promptopt LM (``dspy_lm(..., route="promptopt")``)
    are already reported by that LM and are skipped.
    """

    def add_usage(self, lm: str, usage: Mapping[str, Any]) -> None:
        if str(lm).startswith("promptopt/"):
            return
        report(
            Completion(
                text="",
                prompt_tokens=_tokens(usage, "prompt_tokens", "input_tokens"),
                completion_tokens=_tokens(usage, "completion_tokens", "output_tokens"),
                cost=float(usage.get("cost") or 0.0),
                model=str(lm),
            )
        )


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
    :func:`~promptopt.integrations.dspy.dspy_lm`; any other string as ``dspy.LM(string)``."""
    from promptopt.integrations.dspy import dspy_lm

    if isinstance(lm, dspy.BaseLM):
        return lm
    if isinstance(lm, str):
        return dspy_lm(LM(lm)) if _is_local_name(lm) else dspy.LM(lm)
    if callable(lm):
        return dspy_lm(lm)
    raise TypeError(
        f"Give the task LM as a dspy.LM, a promptopt.LM or a model string, not {type(lm).__name__}."
    )


def _resolve_task_lm(student: dspy.Module, task_model: Any = None) -> Any:
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


def _some_lm(student: dspy.Module, task_lm: Any) -> Any:
    if task_lm is not None:
        return task_lm
    return next(pred.lm for _, pred in student.named_predictors() if getattr(pred, "lm", None) is not None)


@contextmanager
def _counting_task_calls() -> Any:
    with dspy.context(usage_tracker=_TaskUsage()):
        yield


# --- data ------------------------------------------------------------------------------------


def _examples(data: Iterable[Any] | None, name: str) -> list[Example] | None:
    """promptopt examples from DSPy ones; duplicates get distinct (stable) ids."""
    if data is None:
        return None
    out: list[Example] = []
    seen: Counter[str] = Counter()
    for i, item in enumerate(data):
        ex = from_dspy_example(item)
        try:
            keys = ex.input_keys
        except ValueError:
            raise ValueError(
                f"{name}[{i}] has no inputs marked; build the examples with "
                "dspy.Example(...).with_inputs('field', ...)."
            ) from None
        base = ex.id
        if seen[base]:
            ex = Example(_id=f"{base}-{seen[base]}", **dict(ex.items())).with_inputs(*keys)
        seen[base] += 1
        out.append(ex)
    if not out:
        raise ValueError(f"The {name} is empty.")
    return out


# --- results back into DSPy ------------------------------------------------------------------


def _demo_fields(demo: Any) -> dict[str, Any]:
    fields = dict(demo.items()) if hasattr(demo, "items") else dict(demo)
    fields.pop("augmented", None)
    return fields


def apply_components(module: dspy.Module, components: Mapping[str, Any]) -> dspy.Module:
    """Set ``'<predictor>.instruction'`` / ``'<predictor>.demos'`` / ``'<agent>.tool[<name>]'``
    components (named as :class:`~promptopt.integrations.dspy.DspyProgram` names them) on a
    module's predictors and ReAct tools, in place; demos equal to a predictor's current ones are
    left as they are. Returns the module."""
    comps = deserialize_components(dict(components))
    preds = dict(module.named_predictors())
    tools = react_tools(module)
    unknown = sorted({key.rpartition(".")[0] for key in comps if key not in tools} - set(preds))
    if unknown:
        raise KeyError(f"No DSPy predictors named {unknown}; the module has {sorted(preds)}.")
    tool_lines: dict[str, list[tuple[str, str]]] = {}
    for key, (owner, tool) in tools.items():
        desc = comps.get(key)
        if desc is not None and desc != tool.desc:
            before = str(tool)
            tool.desc = desc
            tool_lines.setdefault(owner, []).append((before, str(tool)))
    for name, pred in preds.items():
        instruction = comps.get(f"{name}.instruction", pred.signature.instructions)
        for before, after in tool_lines.get(name, []):
            instruction = instruction.replace(before, after)
        if instruction != pred.signature.instructions:
            pred.signature = pred.signature.with_instructions(instruction)
        demos = comps.get(f"{name}.demos")
        if demos is not None and [dict(d.items()) for d in demos] != [_demo_fields(d) for d in pred.demos]:
            pred.demos = [to_dspy_example(d) for d in demos]
    return module


def _compiled(student: dspy.Module, result: OptimizationResult) -> dspy.Module:
    module = student.deepcopy()
    apply_components(module, result.best_candidate.components)
    module._compiled = True
    setattr(module, RESULT_ATTR, result)
    return module


def _check_student(student: Any) -> None:
    if not isinstance(student, dspy.Module):
        raise TypeError(
            f"compile takes a dspy.Module (e.g. dspy.ChainOfThought(...)), not a {type(student).__name__}; "
            "for a promptopt program use promptopt.optimizers."
        )
    if not student.named_predictors():
        raise ValueError("The DSPy module has no predictors to optimize.")


# --- the optimizers ----------------------------------------------------------------------


class _Plugin:
    """What the DSPy-shaped optimizers share: metric, run directory, data and LM handling."""

    def __init__(self, metric: Callable[..., Any], run_dir: str | Path | None, resume: bool) -> None:
        self.metric = metric
        self.promptopt_metric = promptopt_metric(metric)
        self.run_dir = run_dir
        self.resume = resume

    def _run_options(self, run_dir: str | Path | None, resume: bool | None) -> dict[str, Any]:
        run_dir = run_dir if run_dir is not None else self.run_dir
        resume = self.resume if resume is None else resume
        if resume and run_dir is None:
            raise ValueError("resume=True needs the run_dir of the run to continue.")
        return {"run_dir": run_dir, "resume": resume}

    def _program(self, student: dspy.Module, task_lm: Any) -> DspyProgram:
        # The LM is fixed on the program, so every evaluation thread runs on the compile-time LM.
        return from_dspy(student, lm=task_lm)


class GEPA(_Plugin):
    """promptopt's GEPA for DSPy modules (see the module docstring for the contract).

    Args:
        metric: a DSPy metric, 3-argument or dspy.GEPA's 5-argument feedback form; feedback text
            drives the reflection.
        auto: ``"light" | "medium" | "heavy"`` budget preset, or give ``max_metric_calls``.
        max_metric_calls: the budget in (candidate, example) evaluations.
        reflection_lm: a dspy.LM, promptopt LM or model string (default: the task LM).
        run_dir, resume: promptopt's run directory (state, events, result) and resuming from it.
        **options: any other option of :class:`promptopt.optimizers.GEPA` (``evolve_demos``,
            ``minibatch_size``, ``proposer``, ``num_threads``, ``callbacks``, ``max_seconds``, ...).
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = None,
        max_metric_calls: int | None = None,
        reflection_lm: Any = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(metric, run_dir, resume)
        self.auto = auto
        self.max_metric_calls = max_metric_calls
        self.reflection_lm = reflection_lm
        self.options = options
        self._engine()  # checks the budget and options now rather than at compile time

    def _engine(self, reflection_lm: LanguageModel | None = None, **overrides: Any) -> _gepa.GEPA:
        return _gepa.GEPA(
            self.promptopt_metric,
            auto=self.auto,
            max_metric_calls=self.max_metric_calls,
            reflection_lm=reflection_lm,
            **{**self.options, **overrides},
        )

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Iterable[Any],
        valset: Iterable[Any] | None = None,
        run_dir: str | Path | None = None,
        resume: bool | None = None,
        **options: Any,
    ) -> dspy.Module:
        """Optimize ``student``; returns an optimized deep copy with ``promptopt_result`` attached.

        ``valset`` defaults to the trainset; ``run_dir`` / ``resume`` override the constructor's;
        other keywords override GEPA options for this run.
        """
        _check_student(student)
        run = self._run_options(run_dir, resume)
        train = _examples(trainset, "trainset")
        val = _examples(valset, "valset")
        task_lm = _resolve_task_lm(student)
        reflection = proposal_lm(self.reflection_lm) or DspyLanguageModel(_some_lm(student, task_lm))
        engine = self._engine(reflection, **options)
        with _counting_task_calls():
            result = engine.compile(self._program(student, task_lm), train, val, **run)  # type: ignore[arg-type]
        return _compiled(student, result)


class MIPROv2(_Plugin):
    """promptopt's MIPROv2 for DSPy modules (see the module docstring for the contract).

    Args:
        metric: a DSPy metric (3-argument, or the 5-argument feedback form).
        auto: ``"light" | "medium" | "heavy"`` preset, or ``None`` with ``num_candidates`` and
            ``num_trials`` in the options.
        prompt_model: the LM writing the dataset summary and the instruction proposals: a dspy.LM,
            promptopt LM or model string (default: the task LM).
        task_model: the LM the program runs on during the search (a dspy.LM, promptopt LM or model
            string; default: the configured ``dspy.settings.lm``). The compiled module does not keep
            it: it runs on whatever LM is configured when it is called, like the student.
        run_dir, resume: promptopt's run directory (search space, Optuna study, result) and resuming.
        **options: any other option of :class:`promptopt.optimizers.MIPROv2` (``num_candidates``,
            ``num_trials``, ``max_bootstrapped_demos``, ``max_labeled_demos``, ``minibatch_size``,
            ``num_threads``, ``callbacks``, ``max_metric_calls``, ...).
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = "light",
        prompt_model: Any = None,
        task_model: Any = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(metric, run_dir, resume)
        if "proposer_lm" in options:
            raise TypeError("Give the proposal LM as prompt_model=... .")
        self.auto = auto
        self.prompt_model = prompt_model
        self.task_model = task_model
        self.options = options
        self._engine()

    def _engine(self, proposer_lm: LanguageModel | None = None, **overrides: Any) -> _mipro.MIPROv2:
        return _mipro.MIPROv2(
            self.promptopt_metric, auto=self.auto, proposer_lm=proposer_lm, **{**self.options, **overrides}
        )

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Iterable[Any],
        valset: Iterable[Any] | None = None,
        teacher: dspy.Module | None = None,
        run_dir: str | Path | None = None,
        resume: bool | None = None,
        **options: Any,
    ) -> dspy.Module:
        """Optimize ``student``; returns an optimized deep copy with ``promptopt_result`` attached.

        ``valset`` defaults to the trainset. ``teacher``: a DSPy module with the same predictors
        whose successful runs become the bootstrapped demos (default: the student). ``run_dir`` /
        ``resume`` override the constructor's; other keywords (``num_trials``,
        ``max_bootstrapped_demos``, ...) override MIPROv2 options for this run.
        """
        _check_student(student)
        run = self._run_options(run_dir, resume)
        train = _examples(trainset, "trainset")
        val = _examples(valset, "valset")
        task_lm = _resolve_task_lm(student, self.task_model)
        proposer = proposal_lm(self.prompt_model) or DspyLanguageModel(_some_lm(student, task_lm))
        program = self._program(student, task_lm)
        if teacher is not None:
            _check_student(teacher)
            options["teacher"] = self._program(teacher, task_lm)
            names = [n for n, _ in options["teacher"].named_predictors()]
            if names != [n for n, _ in program.named_predictors()]:
                raise ValueError(
                    f"The teacher's predictors {names} differ from the student's "
                    f"{[n for n, _ in program.named_predictors()]}."
                )
        engine = self._engine(proposer, **options)
        with _counting_task_calls():
            result = engine.compile(program, train, val, **run)  # type: ignore[arg-type]
        return _compiled(student, result)
