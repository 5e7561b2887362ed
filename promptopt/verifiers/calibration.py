"""Calibrating a judge against human labels: optimize its prompts (instructions, demos, the wording of
its criteria) with GEPA or MIPROv2 on train/validation examples, and report its agreement with the
labels on held-out examples before and after, with intervals and the paired change.

    from promptopt import GEPA
    from promptopt.verifiers import PairwiseJudge, agreement_with_label, calibrate

    report = calibrate(
        PairwiseJudge(),
        labeled,                       # examples with inputs and a human `label`
        optimizer=GEPA(agreement_with_label, max_metric_calls=200, reflection_lm=proposer),
        lm=judge_lm,
        run_dir="runs/calibrate-llmbar",
    )
    report.save("results/verifiers/llmbar.json")
    report.judge.save("judge.json")    # the calibrated judge, a program like any other
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score
from promptopt.core.program import Program
from promptopt.evaluate import evaluate
from promptopt.io import write_json_atomic
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import Optimizer
from promptopt.optimizers.result import OptimizationResult
from promptopt.verifiers.agreement import Agreement, AgreementChange, agreement, agreement_change


class Labels(Protocol):
    """How to read a human label from an example and a judge's verdict from its prediction."""

    def gold(self, example: Example) -> Hashable: ...

    def verdict(self, prediction: Prediction | None) -> Hashable | None: ...

    def flipped(self, prediction: Prediction | None) -> bool | None: ...


@dataclass(frozen=True)
class PairwiseLabels:
    """Pairwise judges: the label is the better output (1 or 2); a tie (0) is a verdict of its own."""

    label_field: str = "label"

    def gold(self, example: Example) -> Hashable:
        return int(example[self.label_field])

    def verdict(self, prediction: Prediction | None) -> Hashable | None:
        return None if prediction is None else int(prediction.winner)

    def flipped(self, prediction: Prediction | None) -> bool | None:
        if prediction is None:
            return None
        return prediction.first_order != prediction.second_order


@dataclass(frozen=True)
class PassFailLabels:
    """Pointwise judges: the label is pass/fail (true/false, 1/0); the judge passes an output whose
    score reaches ``threshold``."""

    threshold: float = 0.5
    label_field: str = "label"

    def gold(self, example: Example) -> Hashable:
        value = example[self.label_field]
        if isinstance(value, str):
            return value.strip().lower() in ("pass", "true", "yes", "1")
        return bool(value)

    def verdict(self, prediction: Prediction | None) -> Hashable | None:
        return None if prediction is None else float(prediction.score) >= self.threshold

    def flipped(self, prediction: Prediction | None) -> bool | None:
        return None


def pass_fail_agreement(threshold: float = 0.5, label_field: str = "label") -> Callable[..., Score]:
    """The metric a pointwise judge is calibrated with: 1 when its verdict (score at or above
    ``threshold``: pass) is the label's, else 0, with feedback naming the label, the judge's score and
    its reasons, for GEPA's reflection."""
    labels = PassFailLabels(threshold, label_field)

    def agreement_with_pass_fail(example: Example, prediction: Prediction, trace: Any = None) -> Score:
        gold, verdict = labels.gold(example), labels.verdict(prediction)
        said, score = ("passes" if gold else "fails"), float(prediction.score)
        if verdict == gold:
            return Score(1.0, f"Correct: the output {said} by its label; the judge scored it {score:.2f}.")
        return Score(
            0.0,
            f"Wrong: the output {said} by its label, but the judge scored it {score:.2f} "
            f"({'pass' if verdict else 'fail'} at {threshold}). The judge's account: {prediction.feedback}",
        )

    return agreement_with_pass_fail


@dataclass(frozen=True)
class HeldOutVerdicts:
    """A judge's verdicts on the held-out examples, in the examples' order (``None``: no verdict)."""

    ids: tuple[str, ...]
    gold: tuple[Hashable, ...]
    verdicts: tuple[Hashable | None, ...]
    flipped: tuple[bool | None, ...]
    groups: tuple[str, ...]  # e.g. the LLMBar subset of each example ("" when none)

    def agreement(self, seed: int = 0, *, only: str | None = None) -> Agreement:
        keep = [i for i, g in enumerate(self.groups) if only is None or g == only]
        # Pointwise judges have no position; a pairwise verdict without a reply has no flag.
        flags = [self.flipped[i] for i in keep]
        flips = flags if any(f is not None for f in flags) else None
        return agreement(
            [self.gold[i] for i in keep],
            [self.verdicts[i] for i in keep],
            position_inconsistent=flips,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "gold": list(self.gold),
            "verdicts": list(self.verdicts),
            "flipped": list(self.flipped),
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class CalibrationReport:
    """Held-out agreement before and after calibration, overall and per group, and the paired change."""

    before: Agreement
    after: Agreement
    change: AgreementChange
    by_group: dict[str, tuple[Agreement, Agreement]]
    sizes: tuple[int, int, int]
    before_verdicts: HeldOutVerdicts
    after_verdicts: HeldOutVerdicts
    result: OptimizationResult
    judge: Program = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sizes": {"train": self.sizes[0], "val": self.sizes[1], "test": self.sizes[2]},
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "change": self.change.to_dict(),
            "by_group": {
                g: {"before": b.to_dict(), "after": a.to_dict()} for g, (b, a) in self.by_group.items()
            },
            "judge_components": self.result.best_candidate.components,
            "optimizer": {
                "name": self.result.optimizer,
                "stop_reason": self.result.stop_reason,
                "budget": self.result.budget.to_dict(),
                "config": self.result.config,
            },
            "verdicts": {"before": self.before_verdicts.to_dict(), "after": self.after_verdicts.to_dict()},
        }

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write the report as JSON (``extra`` keys, e.g. ``provenance``, are added at the top level)."""
        return write_json_atomic(path, {**self.to_dict(), **extra})


def split_labeled(
    examples: Sequence[Example], sizes: tuple[int, int, int] | None = None, seed: int = 0
) -> tuple[list[Example], list[Example], list[Example]]:
    """Train, validation and held-out examples from one seeded shuffle (default 40/30/30 %)."""
    rows = list(examples)
    random.Random(f"calibrate:{seed}").shuffle(rows)
    n = len(rows)
    n_train, n_val, n_test = sizes or (int(0.4 * n), int(0.3 * n), n - int(0.4 * n) - int(0.3 * n))
    if n_train + n_val + n_test > n or min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"Cannot draw {n_train}/{n_val}/{n_test} train/val/held-out examples from {n} labeled ones."
        )
    return rows[:n_train], rows[n_train : n_train + n_val], rows[n_train + n_val : n_train + n_val + n_test]


def held_out_verdicts(
    judge: Program,
    examples: Sequence[Example],
    labels: Labels,
    metric: Callable[..., Any],
    *,
    lm: LanguageModel | None = None,
    num_threads: int = 4,
    group_field: str = "subset",
    progress: bool = False,
) -> HeldOutVerdicts:
    """Run ``judge`` on every example; a failed run (an unreadable reply) is a missing verdict."""
    run = evaluate(judge, examples, metric, lm=lm, num_threads=num_threads, display_progress=progress)
    if run.unscored and any(r.failure == "LM" for r in run.unscored):
        lm_down = next(r for r in run.unscored if r.failure == "LM")
        raise RuntimeError(
            f"The judge's LM failed on {lm_down.example.id} ({lm_down.error}); agreement needs every verdict "
            "the judge could give: run again once the LM answers."
        )
    preds = [r.prediction if r.error is None else None for r in run.results]
    return HeldOutVerdicts(
        ids=tuple(r.example.id for r in run.results),
        gold=tuple(labels.gold(r.example) for r in run.results),
        verdicts=tuple(labels.verdict(p) for p in preds),
        flipped=tuple(labels.flipped(p) for p in preds),
        groups=tuple(str(r.example.get(group_field, "") or "") for r in run.results),
    )


def calibrate(
    judge: Program,
    examples: Sequence[Example],
    *,
    optimizer: Optimizer,
    labels: Labels | None = None,
    metric: Callable[..., Any] | None = None,
    sizes: tuple[int, int, int] | None = None,
    seed: int = 0,
    lm: LanguageModel | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    num_threads: int = 4,
    progress: bool = False,
) -> CalibrationReport:
    """Optimize ``judge`` against the human labels of ``examples`` and report held-out agreement.

    Args:
        judge: a judge program (:class:`~promptopt.verifiers.PairwiseJudge`,
            :class:`~promptopt.verifiers.RubricJudge`, or your own).
        examples: labeled examples, split by ``sizes`` (train, val, held-out) from one ``seed``ed shuffle.
        optimizer: the optimizer, built with the agreement metric (e.g.
            ``GEPA(agreement_with_label, max_metric_calls=200, reflection_lm=...)``).
        labels: how to read labels and verdicts; defaults to :class:`PairwiseLabels`.
        metric: the metric the held-out runs are scored with (only their verdicts count); defaults
            to the optimizer's.
        lm: the judge's LM; run_dir / resume: the optimizer's run directory (a killed calibration
            resumes there).
        progress: show a progress bar while the held-out examples are judged, before and after
            (the optimizer shows its own).
    """
    labels = labels or PairwiseLabels()
    metric = metric or getattr(optimizer, "metric", None)
    if metric is None:
        raise ValueError("Give metric=...: the optimizer does not expose the metric it was built with.")
    train, val, test = split_labeled(examples, sizes, seed)
    before = held_out_verdicts(judge, test, labels, metric, lm=lm, num_threads=num_threads, progress=progress)
    result = optimizer.compile(judge, train, val, lm=lm, run_dir=run_dir, resume=resume)
    calibrated = result.best_program
    assert calibrated is not None
    after = held_out_verdicts(
        calibrated, test, labels, metric, lm=lm, num_threads=num_threads, progress=progress
    )
    pairwise = any(f is not None for f in (*before.flipped, *after.flipped))
    change = agreement_change(
        list(before.gold),
        list(before.verdicts),
        list(after.verdicts),
        flips_before=list(before.flipped) if pairwise else None,
        flips_after=list(after.flipped) if pairwise else None,
        seed=seed,
    )
    groups = sorted({g for g in before.groups if g})
    return CalibrationReport(
        before=before.agreement(seed),
        after=after.agreement(seed),
        change=change,
        by_group={g: (before.agreement(seed, only=g), after.agreement(seed, only=g)) for g in groups},
        sizes=(len(train), len(val), len(test)),
        before_verdicts=before,
        after_verdicts=after,
        result=result,
        judge=calibrated,
    )
