"""LabeledFewShot: ``k`` random training examples as every predictor's demos."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.baselines.demo_sets import demo_set_run, scoring_valset
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.components import predictor_names, serialize_components, with_demo_set
from promptopt.optimizers.datasets import check_dataset
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import DEFAULT_MAX_CONSECUTIVE_FAILURES, ConsecutiveFailuresError


class LabeledFewShot:
    """``k`` training examples, drawn at random with ``seed``, as every predictor's demos.

    Args:
        k: demos per predictor (fewer when the training set is smaller).
        seed: the random draw.
        metric: only needed with ``score=True``.
        score: also score the seed and the new program on the validation set (both are
            returned either way; the new program is the result's best).
        max_consecutive_failures: with ``score=True``, stop scoring after this many validation
            examples in a row could not be scored (LM or metric failures); ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
    """

    name: ClassVar[str] = "labeled_few_shot"

    def __init__(
        self,
        k: int = 16,
        seed: int = 0,
        *,
        metric: Callable[..., Any] | None = None,
        score: bool = False,
        num_threads: int = 4,
        callbacks: Sequence[Callback] = (),
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
    ) -> None:
        if k < 0:
            raise ValueError("k must be 0 or more.")
        if score and metric is None:
            raise ValueError("score=True needs a metric: LabeledFewShot(k, metric=...).")
        self.k, self.seed, self.metric, self.score = k, seed, metric, score
        self.run_options = RunOptions(
            num_threads=num_threads,
            max_consecutive_failures=max_consecutive_failures,
            allow_unbounded_metric=allow_unbounded_metric,
            callbacks=tuple(callbacks),
            progress=False,
        )

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed, "score": self.score}

    def compile(
        self,
        program: Program,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        *,
        lm: LanguageModel | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> OptimizationResult:
        """Set ``k`` labeled demos on every predictor; returns the result with ``best_program``."""
        names = predictor_names(program)
        train = check_dataset("trainset", trainset, who="LabeledFewShot")
        val = scoring_valset(valset, self.score, who="LabeledFewShot")
        with demo_set_run(
            "promptopt.LabeledFewShot", self, program, lm=lm, run_dir=run_dir, resume=resume
        ) as run:
            reason = "done"
            try:
                run.add(serialize_components(program.components()), "seed", val)
                demos = random.Random(self.seed).sample(train, min(self.k, len(train)))
                run.add(with_demo_set(program, {n: demos for n in names}), "labeled", val)
            except ConsecutiveFailuresError as exc:
                reason = str(exc)
            # Not listed when the seed already had exactly these demos: the seed is the result then.
            best = next((c.id for c in run.candidates if c.origin == "labeled"), 0)
            return run.result(best, reason, self.config())
