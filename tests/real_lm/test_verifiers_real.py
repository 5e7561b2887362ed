"""The rubric judge on the real local model: its replies parse into verdicts with reasons, and its
calls are counted as a judge's. Whether the 0.5B model judges well is not asserted here (it does
not: it calls prose a number); the judge's quality is measured by calibration, under results/."""

from __future__ import annotations

import pytest

import promptopt as po
from promptopt.lm.usage import track_usage
from promptopt.verifiers import Rubric, RubricJudge


@pytest.mark.real_lm
def test_a_rubric_judge_on_the_local_model(tmp_path, local_lm_factory):
    lm = local_lm_factory(tmp_path / "cache.sqlite", max_tokens=128)
    rubric = Rubric.of([{"id": "number", "description": "The output is a number written in digits."}])
    judge = RubricJudge(rubric, lm=lm)
    metric = judge.metric(task_input="question", output="answer")
    question = po.Example(question="How many legs does a spider have?")
    with track_usage() as usage:
        scores = [metric(question, po.Prediction(answer=a)) for a in ("8", "Spiders are arachnids.")]
    assert usage.judge_calls == usage.calls == 2 and usage.judge_tokens > 0
    for score in scores:
        assert score.value in (0.0, 1.0)  # a verdict was read, not a parse failure
        assert score.feedback.startswith(("Met: number", "Not met: number"))
    verdict = judge.judge("How many legs does a spider have?", "8")
    assert verdict.verdicts[0].reason.strip()  # the judge gave a reason with its verdict
