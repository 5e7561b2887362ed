"""Scoring candidates: each (candidate, example) pair is run and scored at most once.

Optimizers describe a candidate by its serialized components; the evaluator
builds the program, runs the examples it has not seen in parallel, and keeps
a JSON-able record of each (score, feedback, prediction, error and a trace
without the rendered messages) so a resumed run needs no re-scoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.core.trace import TraceEntry
from promptopt.evaluate import evaluate
from promptopt.lm.base import LanguageModel
from promptopt.optimizers.result import deserialize_components


@dataclass
class Record:
    """The outcome of one candidate on one example."""

    example_id: str
    score: float
    feedback: str = ""
    prediction: dict[str, Any] | None = None
    error: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)

    def entries(self, predictor: str) -> list[TraceEntry]:
        return [TraceEntry.from_dict(t) for t in self.trace if t["predictor"] == predictor]

    def to_dict(self) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "score": self.score,
            "feedback": self.feedback,
            "prediction": self.prediction,
            "error": self.error,
            "trace": self.trace,
        }


def components_key(components: dict[str, Any]) -> str:
    blob = json.dumps(components, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CandidateEvaluator:
    """Runs candidates on examples with a per-(candidate, example) record cache.

    ``metric_calls`` counts the pairs actually run, which is the budget unit of
    every optimizer here.
    """

    def __init__(
        self,
        program: Program,
        metric: Callable[..., Any],
        *,
        num_threads: int = 4,
        failure_score: float = 0.0,
        lm: LanguageModel | None = None,
        records: dict[str, dict[str, Any]] | None = None,
        metric_calls: int = 0,
    ) -> None:
        self.program = program
        self.metric = metric
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.lm = lm
        self.records: dict[str, dict[str, Any]] = dict(records or {})
        self.metric_calls = metric_calls
        self._programs: dict[str, Program] = {}

    def build(self, components: dict[str, Any]) -> Program:
        key = components_key(components)
        if key not in self._programs:
            self._programs[key] = self.program.with_components(deserialize_components(components))
        return self._programs[key]

    def cached(self, components: dict[str, Any], examples: Sequence[Example]) -> list[Record] | None:
        """The records if every example was already scored for this candidate, else None."""
        key = components_key(components)
        found = [self.records.get(f"{key}|{ex.id}") for ex in examples]
        if any(r is None for r in found):
            return None
        return [Record(**r) for r in found]  # type: ignore[arg-type]

    def run(self, components: dict[str, Any], examples: Sequence[Example]) -> list[Record]:
        key = components_key(components)
        missing = [ex for ex in examples if f"{key}|{ex.id}" not in self.records]
        if missing:
            result = evaluate(
                self.build(components),
                missing,
                self.metric,
                num_threads=self.num_threads,
                display_progress=False,
                failure_score=self.failure_score,
                lm=self.lm,
            )
            for r in result.results:
                self.records[f"{key}|{r.example.id}"] = Record(
                    example_id=r.example.id,
                    score=r.score,
                    feedback=r.feedback,
                    prediction=r.prediction.to_dict() if r.prediction is not None else None,
                    error=r.error,
                    trace=[{k: v for k, v in e.to_dict().items() if k != "messages"} for e in r.trace],
                ).to_dict()
            self.metric_calls += len(missing)
        return [Record(**self.records[f"{key}|{ex.id}"]) for ex in examples]
