"""A pointwise rubric judge: an ordinary promptopt :class:`Program` that scores one output against
each criterion of a rubric, and the metric it provides.

Each criterion is one LM call (small judge models follow one question far better than a list): the
``outcome`` predictor reads the task input, the output and the criterion's wording; the ``event``
predictor reads a chunk of the trace instead of the output (see :mod:`promptopt.verifiers.trace_text`).
Its optimizable components are both predictors' instructions and demos and the wording of every
criterion (``criteria.<id>``), so GEPA and MIPROv2 can calibrate it like any program.

Used as a metric (:meth:`RubricJudge.metric`), the judge runs apart from the judged program's
trace, its LM calls are counted as a judge's (``Budget.judge_lm_calls``), and a reply it cannot
parse makes the example a metric failure (unscored, with the reason) rather than a 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from promptopt.core.adapter import ParseError
from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score
from promptopt.core.program import Predict, Program, TextComponent
from promptopt.core.signature import Field, Signature
from promptopt.core.trace import Trace, isolated_trace
from promptopt.lm.usage import judge_calls
from promptopt.lm_protocol import LanguageModel
from promptopt.verifiers.rubric import EVENT, Rubric
from promptopt.verifiers.trace_text import as_steps, chunks
from promptopt.verifiers.verdicts import CriterionVerdict, RubricVerdict

OUTCOME_INSTRUCTION = (
    "You are a strict judge. Decide whether the output meets the criterion, for the task input given. "
    "Answer yes only when the output clearly meets it."
)
EVENT_INSTRUCTION = (
    "You are a strict judge. The steps below are part of a program's run on the task input. Decide "
    "whether every step shown meets the criterion. Answer yes only when all of them clearly do."
)
_REASON = Field("reason", "One or two sentences: what in the output meets or misses the criterion.")
_VERDICT = Field("verdict", "Does it meet the criterion?", choices=("yes", "no"))
OUTCOME_SIGNATURE = Signature(
    (Field("task_input"), Field("output"), Field("criterion")), (_REASON, _VERDICT), OUTCOME_INSTRUCTION
)
EVENT_SIGNATURE = Signature(
    (Field("task_input"), Field("steps"), Field("criterion")), (_REASON, _VERDICT), EVENT_INSTRUCTION
)
REDUCERS = ("mean", "all")


class JudgeVerdictError(RuntimeError):
    """The judge's reply for an example could not be read: the example has no score."""


class RubricJudge(Program):
    """Scores ``output`` (and, for event criteria, the trace ``steps``) of ``task_input`` against a rubric.

    Args:
        rubric: the criteria, weights and levels.
        lm: the judge's LM (often another model than the task's); ``None`` uses the configured LM.
        max_chunk_chars: the longest piece of a trace (or of an output) one judge call reads.
        reduce: how an event criterion's chunk verdicts combine: ``"mean"`` (the share of chunks that
            meet it) or ``"all"`` (met only when every chunk meets it).
    """

    def __init__(
        self,
        rubric: Rubric,
        *,
        lm: LanguageModel | None = None,
        max_chunk_chars: int = 6000,
        reduce: str = "mean",
    ) -> None:
        if reduce not in REDUCERS:
            raise ValueError(f"reduce={reduce!r}; use one of {REDUCERS}.")
        self.rubric = rubric
        self.max_chunk_chars = max_chunk_chars
        self.reduce = reduce
        self.outcome = Predict(OUTCOME_SIGNATURE, lm=lm)
        self.event = Predict(EVENT_SIGNATURE, lm=lm)

    # --- judging --------------------------------------------------------------------
    def judge(self, task_input: Any, output: Any, steps: Sequence[Any] | None = None) -> RubricVerdict:
        """Every criterion's verdict; a reply that cannot be parsed is a verdict without a score."""
        text = output if isinstance(output, str) else str(output)
        pieces = [text[k : k + self.max_chunk_chars] for k in range(0, len(text), self.max_chunk_chars)] or [
            ""
        ]
        step_chunks = chunks(as_steps(steps), self.max_chunk_chars) if self.rubric.event else []
        verdicts = []
        for c in self.rubric.criteria:
            if c.level == EVENT:
                if not step_chunks:
                    verdicts.append(
                        CriterionVerdict(c.id, None, failure="an event criterion needs the trace's steps")
                    )
                    continue
                calls = [(self.event, {"task_input": task_input, "steps": s}) for s in step_chunks]
            else:
                calls = [(self.outcome, {"task_input": task_input, "output": p}) for p in pieces]
            verdicts.append(self._criterion(c.id, c.description, calls))
        return RubricVerdict(self.rubric, tuple(verdicts))

    def _criterion(
        self, cid: str, wording: str, calls: list[tuple[Predict, dict[str, Any]]]
    ) -> CriterionVerdict:
        scores, reasons = [], []
        for predictor, inputs in calls:
            try:
                reply = predictor(**inputs, criterion=wording)
            except ParseError as exc:
                return CriterionVerdict(
                    cid, None, failure=f"the judge's reply could not be read: {exc}", chunks=len(calls)
                )
            met = reply.verdict == "yes"
            scores.append(1.0 if met else 0.0)
            if not met or not reasons:
                reasons.append(str(reply.reason))
        score = statistics.fmean(scores) if self.reduce == "mean" else min(scores)
        return CriterionVerdict(cid, score, " / ".join(r for r in reasons if r), chunks=len(calls))

    def forward(self, task_input: Any, output: Any, steps: Sequence[Any] | None = None) -> Prediction:
        """The judge as a program (what calibration optimizes): its score, verdicts and feedback."""
        verdict = self.judge(task_input, output, steps)
        if verdict.score is None:
            raise JudgeVerdictError("; ".join(f"{v.criterion}: {v.failure}" for v in verdict.failures))
        return Prediction(
            score=verdict.score, feedback=verdict.feedback(), verdicts=verdict.to_dict()["verdicts"]
        )

    def metric(
        self,
        *,
        task_input: Callable[[Example], Any] | str = "question",
        output: Callable[[Prediction], Any] | str = "answer",
        judge_trace: bool | None = None,
    ) -> Callable[..., Score]:
        """A metric ``(example, prediction, trace) -> Score`` that asks this judge.

        ``task_input`` and ``output`` name the example's input field and the prediction's output
        field the judge reads (or are functions returning them). The judged program's trace is given
        for event criteria (``judge_trace`` defaults to whether the rubric has any).
        """
        read_input = task_input if callable(task_input) else _field_reader(task_input, "example")
        read_output = output if callable(output) else _field_reader(output, "prediction")
        with_trace = bool(self.rubric.event) if judge_trace is None else judge_trace

        def judge_metric(example: Example, prediction: Prediction, trace: Trace | None = None) -> Score:
            with isolated_trace(), judge_calls():
                verdict = self.judge(
                    read_input(example), read_output(prediction), trace if with_trace else None
                )
            if verdict.score is None:
                raise JudgeVerdictError("; ".join(f"{v.criterion}: {v.failure}" for v in verdict.failures))
            return Score(verdict.score, verdict.feedback())

        judge_metric.__name__ = f"judge[{self.rubric.name}]"
        return judge_metric

    # --- components: instructions, demos and the wording of each criterion ----------------
    def text_components(self) -> dict[str, TextComponent]:
        return {
            f"criteria.{c.id}": TextComponent(
                c.description,
                "event" if c.level == EVENT else "outcome",
                f"the wording of the rubric criterion `{c.id}` the judge is asked about",
            )
            for c in self.rubric.criteria
        }

    def components(self) -> dict[str, Any]:
        return {**super().components(), **{k: c.text for k, c in self.text_components().items()}}

    def with_components(self, components: Mapping[str, Any]) -> RubricJudge:
        wording = {k.removeprefix("criteria."): v for k, v in components.items() if k.startswith("criteria.")}
        for key, text in wording.items():
            if not isinstance(text, str) or not text.strip():
                raise TypeError(
                    f"Component 'criteria.{key}' is a criterion's wording and takes text, not {text!r}."
                )
        new = super().with_components({k: v for k, v in components.items() if not k.startswith("criteria.")})
        assert isinstance(new, RubricJudge)
        new.rubric = self.rubric.with_descriptions(wording)
        return new

    # --- persistence: the rubric travels with the prompts -------------------------------
    def dump_state(self) -> dict[str, Any]:
        options = {"max_chunk_chars": self.max_chunk_chars, "reduce": self.reduce}
        return {**super().dump_state(), "rubric": self.rubric.to_dict(), "judge": options}

    def load_state(self, state: Mapping[str, Any]) -> RubricJudge:
        super().load_state({k: v for k, v in state.items() if k not in ("rubric", "judge")})
        if "rubric" in state:
            self.rubric = Rubric.from_dict(state["rubric"], source="the saved judge")
        return self

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RubricJudge:
        """Rebuild a saved judge (used by :func:`promptopt.load_program`)."""
        judge = cls(
            Rubric.from_dict(state["rubric"], source="the saved judge"), **dict(state.get("judge", {}))
        )
        return judge.load_state(state)


def _field_reader(name: str, what: str) -> Callable[[Any], Any]:
    def read(obj: Any) -> Any:
        try:
            return obj[name]
        except (KeyError, TypeError):
            raise KeyError(f"The judge reads {what} field {name!r}, which this {what} lacks.") from None

    return read
