import json

import pytest

import promptopt as po
from promptopt.testing import ScriptedLM, field_value, last_user_message


def test_example_inputs_labels_and_ids():
    ex = po.Example(question="2+2?", answer="4").with_inputs("question")
    assert ex.inputs() == {"question": "2+2?"}
    assert ex.labels() == {"answer": "4"}
    assert ex.id == po.Example(question="2+2?", answer="4").id  # content-derived, stable
    assert po.Example(_id="q1", question="x").id == "q1"
    with pytest.raises(KeyError, match="lacks"):
        ex.with_inputs("nope")
    with pytest.raises(ValueError, match="with_inputs"):
        po.Example(a=1).inputs()
    assert po.Example.from_dict(ex.to_dict()) == ex


def test_signature_parse_types_and_errors():
    sig = po.Signature.parse("question, context -> answer: int", instruction="Be brief.")
    assert sig.input_names == ["question", "context"]
    assert sig.outputs[0].type == "int"
    assert po.Signature.from_dict(sig.to_dict()) == sig
    with pytest.raises(ValueError, match="->"):
        po.Signature.parse("question answer")
    with pytest.raises(ValueError, match="unique"):
        po.Signature.parse("a -> a")
    with pytest.raises(ValueError, match="type"):
        po.Signature.parse("a -> b: complex")


class Pipeline(po.Program):
    def __init__(self):
        self.draft = po.ChainOfThought("question -> draft")
        self.critique = po.Predict("question, draft -> critique")
        self.stages = [po.Predict("question, draft, critique -> answer")]

    def forward(self, question):
        d = self.draft(question=question).draft
        c = self.critique(question=question, draft=d).critique
        return self.stages[0](question=question, draft=d, critique=c)


def pipeline_lm():
    def reply(messages):
        system = messages[0]["content"]
        if "critique:" in system.split("Output fields:")[1]:
            return "critique: looks fine"
        if "draft:" in system.split("Output fields:")[1]:
            return "reasoning: think\ndraft: 4"
        return "answer: 4"

    return ScriptedLM(reply)


def test_named_components_copy_and_trace():
    prog = Pipeline()
    names = [n for n, _ in prog.named_predictors()]
    assert names == ["draft", "critique", "stages[0]"]
    comps = prog.components()
    assert set(comps) == {f"{n}.{k}" for n in names for k in ("instruction", "demos")}
    new = prog.with_components(
        {
            "critique.instruction": "Critique harshly.",
            "draft.demos": [{"question": "1+1?", "reasoning": "add", "draft": "2"}],
        }
    )
    assert new.get_instructions()["critique"] == "Critique harshly."
    assert prog.get_instructions()["critique"] != "Critique harshly."  # original untouched
    assert new.get_demos()["draft"][0]["draft"] == "2"
    with pytest.raises(KeyError, match="Unknown component"):
        prog.with_components({"nope.instruction": "x"})

    with po.context(lm=pipeline_lm()), po.collect_trace() as trace:
        pred = new(question="2+2?")
    assert pred.answer == "4"
    assert [e.predictor for e in trace] == ["draft", "critique", "stages[0]"]
    assert trace[0].outputs == {"reasoning": "think", "draft": "4"}
    assert all(e.ok and e.raw for e in trace)
    # the demo is rendered as a user/assistant pair before the real question
    assert any("1+1?" in m["content"] for m in trace[0].messages if m["role"] == "user")


def test_save_load_roundtrip(tmp_path):
    prog = Pipeline().with_instructions({"draft": "Draft carefully."})
    path = prog.save(tmp_path / "prog.json")
    data = json.loads(path.read_text())
    assert data["format"] == "promptopt.program/1"
    fresh = Pipeline().load(path)
    assert fresh.get_instructions() == prog.get_instructions()
    assert fresh.components() == prog.components()
    rebuilt = po.load_program(path)  # the class is importable and takes no arguments
    assert rebuilt.get_instructions() == prog.get_instructions()
    single = po.ChainOfThought("question -> answer", "Answer.")
    single.save(tmp_path / "one.json")
    assert po.load_program(tmp_path / "one.json").signature == single.signature
    with pytest.raises(ValueError, match="predictors"):
        po.Predict("a -> b").load(path)


def test_predict_without_lm_explains_what_to_do():
    with pytest.raises(po.ConfigurationError, match="configure"):
        po.Predict("q -> a")(q="x")


def test_parse_failure_is_recorded_in_trace_and_raised_to_caller():
    lm = ScriptedLM(lambda m: "I do not know the format")
    prog = po.Predict("question -> reasoning_steps, answer")
    with po.context(lm=lm), po.collect_trace() as trace, pytest.raises(po.ParseError):
        prog(question="x")
    assert trace[0].error and "lacks" in trace[0].error
    assert trace[0].raw == "I do not know the format"


def test_scripted_lm_helpers():
    lm = ScriptedLM(lambda m: f"answer: {field_value(last_user_message(m), 'question')}!")
    with po.context(lm=lm):
        assert po.Predict("question -> answer")(question="hi").answer == "hi!"
    assert len(lm.calls) == 1


def test_score_normalisation():
    from promptopt.core.metric import as_score

    assert as_score(True) == po.Score(1.0)
    assert as_score({"score": 0.5, "feedback": "meh"}) == po.Score(0.5, "meh")
    with pytest.raises(TypeError, match="must return"):
        as_score("good")
    with pytest.raises(ValueError, match="NaN"):
        as_score(float("nan"))
    m = po.exact_match("answer")
    ex = po.Example(q="x", answer="Paris").with_inputs("q")
    assert m(ex, po.Prediction(answer=" paris. ")).value == 1.0
    bad = m(ex, po.Prediction(answer="Rome"))
    assert bad.value == 0.0 and "Paris" in bad.feedback
