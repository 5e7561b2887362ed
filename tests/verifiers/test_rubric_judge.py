"""The pointwise rubric judge on a scripted judge LM: scores and weights, feedback, map-reduce over a
long trace, judge calls counted apart, parse failures recorded, components and persistence."""

import pytest

import promptopt as po
from promptopt.core.program import Predict, load_program
from promptopt.core.trace import TraceEntry, collect_trace
from promptopt.evaluate import evaluate
from promptopt.lm.usage import track_usage
from promptopt.optimizers.baselines import LabeledFewShot
from promptopt.testing import ScriptedLM, field_value, last_user_message, toy_examples, toy_program
from promptopt.verifiers import JudgeVerdictError, Rubric, RubricJudge

RUBRIC = Rubric.of(
    [
        {"id": "number", "description": "The output is a number.", "weight": 3},
        {"id": "short", "description": "The output is at most five characters long."},
    ],
    name="numbers",
)


def steps_shown(message):
    """The trace chunk of an event judge's request (it spans several blank-line-separated steps)."""
    return message.split("steps: ", 1)[1].rsplit("\n\ncriterion: ", 1)[0]


def judge_reply(messages):
    """A judge that checks the criteria for real, and answers gibberish about 'unreadable'."""
    msg = last_user_message(messages)
    criterion = field_value(msg, "criterion")
    if "\n\nsteps: " in msg:
        met = "BAD" not in steps_shown(msg)
        return f"reason: {'no BAD step' if met else 'a step says BAD'}\nverdict: {'yes' if met else 'no'}"
    text = field_value(msg, "output")
    if "unreadable" in criterion:
        return "I cannot decide."
    met = text.strip().isdigit() if "number" in criterion else len(text.strip()) <= 5
    return f"reason: {text!r} {'meets' if met else 'misses'} it\nverdict: {'yes' if met else 'no'}"


def test_scores_weigh_the_criteria_and_feedback_names_what_failed():
    judge = RubricJudge(RUBRIC, lm=ScriptedLM(judge_reply))
    both = judge.judge("Count the apples.", "42")
    assert both.score == 1.0 and [v.score for v in both.verdicts] == [1.0, 1.0]
    long_number = judge.judge("Count the apples.", "1234567")
    assert long_number.score == pytest.approx(0.75)  # number (weight 3) met, short (1) not
    feedback = long_number.feedback()
    assert "Not met: short: The output is at most five characters long." in feedback
    assert "misses it" in feedback and "Met: number." in feedback
    words = judge.judge("Count the apples.", "many apples")
    assert words.score == 0.0 and "Not met: number" in words.feedback()


def test_the_metric_scores_with_feedback_and_counts_the_judge_apart():
    judge_lm, task_lm = ScriptedLM(judge_reply), ScriptedLM(lambda m: "answer: 7")
    judge = RubricJudge(RUBRIC, lm=judge_lm)
    metric = judge.metric(task_input="question", output="answer")
    program = Predict("question -> answer")
    examples = [po.Example(question=f"q{i}").with_inputs("question") for i in range(3)]
    with track_usage() as usage:
        result = evaluate(program, examples, metric, lm=task_lm, display_progress=False, num_threads=1)
    assert result.score == 1.0 and all(r.feedback.startswith("Met: number, short") for r in result.results)
    assert usage.calls == 3 + 3 * 2 and usage.judge_calls == len(judge_lm.calls) == 6
    assert usage.judge_tokens > 0 and usage.judge_tokens < usage.total_tokens
    # The judge ran apart from the judged program's trace: reflection sees only the program's calls.
    assert all([e.predictor for e in r.trace] == ["self"] for r in result.results)


def test_an_unreadable_verdict_is_a_recorded_failure_not_a_zero():
    rubric = Rubric.of([{"id": "odd", "description": "The output is unreadable to the judge."}])
    judge = RubricJudge(rubric, lm=ScriptedLM(judge_reply))
    verdict = judge.judge("q", "7")
    assert verdict.score is None and verdict.failures[0].failure.startswith(
        "the judge's reply could not be read"
    )
    assert "No verdict on odd" in verdict.feedback()
    examples = [po.Example(question="q").with_inputs("question")]
    result = evaluate(
        Predict("question -> answer"),
        examples,
        judge.metric(),
        lm=ScriptedLM(lambda m: "answer: 7"),
        display_progress=False,
    )
    (row,) = result.results
    assert row.failure == "metric" and "JudgeVerdictError" in row.error and len(result.unscored) == 1
    with pytest.raises(JudgeVerdictError, match="odd: the judge's reply could not be read"):
        judge(task_input="q", output="7")


def test_a_long_trace_is_judged_in_chunks_and_reduced():
    rubric = Rubric.of([{"id": "clean", "description": "No step says BAD.", "level": "event"}])
    steps = [
        TraceEntry("hop", {"query": f"query {i} " + "x" * 120}, outputs={"note": "ok"}) for i in range(6)
    ]
    steps[4] = TraceEntry("hop", {"query": "query 4 " + "x" * 120}, outputs={"note": "BAD"})
    judge_lm = ScriptedLM(judge_reply)
    judge = RubricJudge(rubric, lm=judge_lm, max_chunk_chars=400)
    verdict = judge.judge("q", "out", steps)
    chunks_read = [steps_shown(last_user_message(c["messages"])) for c in judge_lm.calls]
    assert len(chunks_read) == verdict.verdicts[0].chunks >= 3
    assert all(len(c) <= 400 for c in chunks_read) and sum("BAD" in c for c in chunks_read) == 1
    assert verdict.score == pytest.approx(1 - 1 / len(chunks_read))  # mean over chunks
    strict = RubricJudge(rubric, lm=ScriptedLM(judge_reply), max_chunk_chars=400, reduce="all")
    assert strict.judge("q", "out", steps).score == 0.0
    no_trace = RubricJudge(rubric, lm=ScriptedLM(judge_reply)).judge("q", "out")
    assert no_trace.score is None and "needs the trace's steps" in no_trace.failures[0].failure


def test_the_judged_programs_trace_reaches_event_criteria_through_the_metric():
    rubric = Rubric.of([{"id": "clean", "description": "No step says BAD.", "level": "event"}])
    judge = RubricJudge(rubric, lm=ScriptedLM(judge_reply))
    metric = judge.metric(task_input="question", output="answer")
    with collect_trace() as outer:
        bad = metric(po.Example(question="q"), po.Prediction(answer="a"), [TraceEntry("gen", {"q": "BAD"})])
    assert bad.value == 0.0 and "Not met: clean" in bad.feedback
    assert len(outer) == 0  # the judge's own calls stay out of any enclosing trace


def test_the_criteria_wording_is_in_every_judge_prompt():
    judge_lm = ScriptedLM(judge_reply)
    RubricJudge(RUBRIC, lm=judge_lm).judge("q", "42")
    reworded = RUBRIC.with_descriptions({"number": "The output is a whole number."})
    RubricJudge(reworded, lm=judge_lm).judge("q", "42")
    prompts = [last_user_message(c["messages"]) for c in judge_lm.calls]
    # The wording is part of the request, so a response cache keyed on requests keys on the rubric.
    assert "criterion: The output is a number." in prompts[0]
    assert "criterion: The output is a whole number." in prompts[2] and prompts[0] != prompts[2]


def test_components_include_the_wording_and_a_saved_judge_loads(tmp_path):
    judge = RubricJudge(RUBRIC, lm=ScriptedLM(judge_reply), max_chunk_chars=900, reduce="all")
    comps = judge.components()
    assert comps["criteria.number"] == "The output is a number." and "outcome.instruction" in comps
    assert set(judge.text_components()) == {"criteria.number", "criteria.short"}
    new = judge.with_components(
        {"criteria.short": "At most five characters.", "outcome.instruction": "Judge."}
    )
    assert new.rubric["short"].description == "At most five characters." and new.rubric["short"].weight == 1.0
    assert (
        new.outcome.instruction == "Judge."
        and judge.rubric["short"].description != new.rubric["short"].description
    )
    with pytest.raises(TypeError, match="criterion's wording"):
        judge.with_components({"criteria.short": ""})
    new.save(tmp_path / "judge.json")
    loaded = load_program(tmp_path / "judge.json")
    assert isinstance(loaded, RubricJudge) and loaded.components() == new.components()
    assert (loaded.max_chunk_chars, loaded.reduce) == (900, "all")


def test_an_optimizer_result_counts_judge_calls_apart():
    judge_lm = ScriptedLM(judge_reply)
    metric = RubricJudge(RUBRIC, lm=judge_lm).metric(task_input="word", output="out")
    train, val = toy_examples(4), toy_examples(3, offset=10)
    optimizer = LabeledFewShot(k=2, metric=metric, score=True, num_threads=1)
    result = optimizer.compile(toy_program(), train, val, lm=ScriptedLM(lambda m: "out: 5"))
    # Two candidates (the seed and the labeled demos) on 3 examples, two criteria each.
    assert result.budget.judge_lm_calls == len(judge_lm.calls) == 2 * 3 * 2
    assert result.budget.lm_calls == result.budget.judge_lm_calls + 2 * 3
    assert 0 < result.budget.judge_tokens < result.budget.prompt_tokens + result.budget.completion_tokens
