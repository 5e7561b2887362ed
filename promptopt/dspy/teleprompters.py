"""promptopt's optimizers for DSPy programs, in DSPy's teleprompter shape.

::

    import dspy


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
  in an evaluation (``trace=None``, ``pred_name=None``: the module-level score). When GEPA reflects
  on one predictor, a feedback metric is also asked with that predictor's ``pred_name`` and
  ``pred_trace``, as dspy.GEPA does (``feedback_metric_calls`` in the result's config).
* promptopt's machinery applies unchanged: budgets (``max_metric_calls``, ``auto``, the stoppers),
  ``run_dir`` with ``resume=True`` to continue a killed run, callbacks, progress. LM calls made
  through DSPy (uncached ones) are counted in the result's budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt import Teleprompter

from promptopt.core.example import Example
from promptopt.dspy.conversion import from_dspy_example, to_dspy_example
from promptopt.dspy.keywords import GEPA_KEYWORDS, MIPRO_KEYWORDS, translate
from promptopt.dspy.lms import DspyLanguageModel, counting_task_calls, proposal_lm, resolve_task_lm, some_lm
from promptopt.dspy.metrics import DspyPredictorFeedback, metric_form, promptopt_metric
from promptopt.dspy.programs import DspyProgram, from_dspy, react_tools
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import deserialize_components
from promptopt.optimizers.gepa import engine as _gepa
from promptopt.optimizers.mipro import engine as _mipro
from promptopt.optimizers.result import OptimizationResult

# The attribute of the compiled module that holds the OptimizationResult.
RESULT_ATTR = "promptopt_result"

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
    components (named as :class:`~promptopt.dspy.conversion.DspyProgram` names them) on a
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


class _Plugin(Teleprompter):
    """What the DSPy-shaped optimizers share: metric, run directory, data and LM handling.

    They are DSPy teleprompters, so DSPy's callbacks and ``mlflow.dspy.autolog`` see their compiles.
    """

    def __init__(self, metric: Callable[..., Any], run_dir: str | Path | None, resume: bool) -> None:
        super().__init__()
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

    def _translated(self, options: dict[str, Any], rules: Any, who: str) -> dict[str, Any]:
        """DSPy's keywords as promptopt's; a ``run_dir`` among them (DSPy's ``log_dir``) is taken."""
        out = translate(options, rules, who)
        if "run_dir" in out:
            self.run_dir = out.pop("run_dir")
        return out

    def get_params(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "resume": self.resume, **self._engine().config()}

    def _engine(self, *args: Any, **overrides: Any) -> Any:
        raise NotImplementedError

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
        self.options = self._translated(options, GEPA_KEYWORDS, "promptopt.dspy.GEPA")
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
        teacher: dspy.Module | None = None,
        valset: Iterable[Any] | None = None,
        run_dir: str | Path | None = None,
        resume: bool | None = None,
        **options: Any,
    ) -> dspy.Module:
        """Optimize ``student``; returns an optimized deep copy with ``promptopt_result`` attached.

        ``valset`` defaults to the trainset; ``run_dir`` / ``resume`` override the constructor's;
        other keywords override GEPA options for this run.
        """
        if teacher is not None:
            raise TypeError("promptopt.dspy.GEPA takes no teacher: it learns from the student's own traces.")
        _check_student(student)
        options = self._translated(options, GEPA_KEYWORDS, "promptopt.dspy.GEPA")
        run = self._run_options(run_dir, resume)
        train = _examples(trainset, "trainset")
        val = _examples(valset, "valset")
        task_lm = resolve_task_lm(student)
        reflection = proposal_lm(self.reflection_lm) or DspyLanguageModel(some_lm(student, task_lm))
        if metric_form(self.metric) == "feedback":
            options.setdefault(
                "predictor_feedback", DspyPredictorFeedback(self.metric, dict(student.named_predictors()))
            )
        engine = self._engine(reflection, **options)
        with counting_task_calls():
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
        self.options = self._translated(options, MIPRO_KEYWORDS, "promptopt.dspy.MIPROv2")
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
        options = self._translated(options, MIPRO_KEYWORDS, "promptopt.dspy.MIPROv2")
        run = self._run_options(run_dir, resume)
        train = _examples(trainset, "trainset")
        val = _examples(valset, "valset")
        task_lm = resolve_task_lm(student, self.task_model)
        proposer = proposal_lm(self.prompt_model) or DspyLanguageModel(some_lm(student, task_lm))
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
        with counting_task_calls():
            result = engine.compile(program, train, val, **run)  # type: ignore[arg-type]
        return _compiled(student, result)
