"""The rubric judge on the real local model: its replies parse into verdicts with reasons, its calls
are counted as a judge's, and on a criterion a 0.5B model can check it tells a number from prose."""

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
        digits = metric(question, po.Prediction(answer="8"))
        prose = metric(question, po.Prediction(answer="Spiders are arachnids that live in webs."))
    assert usage.judge_calls == usage.calls == 2
    assert digits.value == 1.0 and prose.value == 0.0, (digits, prose)
    assert "Not met: number" in prose.feedback and "Met: number" in digits.feedback
