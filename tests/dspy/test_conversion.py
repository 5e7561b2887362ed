"""The DSPy bridge: export, import, metric and example conversion, and LMs, without a real model."""

from __future__ import annotations

import json
import typing

import dspy
import pytest
from dspy.utils import DummyLM

import promptopt as po
from promptopt.dspy.conversion import (
    PromptoptModule,
    components_from_dspy,
    dspy_signature,
    from_dspy_example,
    signature_from_dspy,
    to_dspy,
    to_dspy_example,
    to_dspy_examples,
)
from promptopt.dspy.lms import dspy_lm
from promptopt.dspy.metrics import dspy_metric
from promptopt.dspy.programs import from_dspy
from promptopt.testing import FakeOpenAIServer, ScriptedLM


def demo(**fields):
    return po.Example(**fields).with_inputs("question")


def classify_signature():
    return po.Signature.parse(
        "question, n: int -> label, ok: bool, items: list",
        "Classify the question.",
        descriptions={"question": "What the user asked.", "label": "The class."},
        choices={"label": ("yes", "no")},
    )


class Critic(po.Program):
    def __init__(self):
        self.review = po.Predict("answer -> verdict", "Review the answer.")

    def forward(self, answer):
        return self.review(answer=answer)


class Pipeline(po.Program):
    """Two stages in a list, a nested sub-program and a data attribute that holds no predictor."""

    def __init__(self):
        self.stages = [
            po.ChainOfThought(
                "question -> answer",
                "Answer the question.",
                demos=[demo(question="2+2?", reasoning="Add.", answer="4")],
            ),
            po.Predict("question, answer -> final", "Polish the answer."),
        ]
        self.critic = Critic()
        self.notes = {"max": 3}

    def forward(self, question):
        answer = self.stages[0](question=question).answer
        final = self.stages[1](question=question, answer=answer).final
        verdict = self.critic(answer=final).verdict
        return po.Prediction(final=final, verdict=verdict)


# --- signatures ---------------------------------------------------------------


def test_signature_keeps_instruction_fields_types_choices_and_descriptions():
    sig = classify_signature()
    d = dspy_signature(sig)
    assert d.instructions == "Classify the question."
    assert list(d.input_fields) == ["question", "n"] and list(d.output_fields) == ["label", "ok", "items"]
    assert d.input_fields["question"].json_schema_extra["desc"] == "What the user asked."
    assert d.output_fields["label"].annotation == typing.Literal["yes", "no"]
    assert d.input_fields["n"].annotation is int and d.output_fields["ok"].annotation is bool
    assert signature_from_dspy(d) == sig


def test_signature_from_a_native_dspy_signature():
    sig = signature_from_dspy(dspy.ChainOfThought("question -> answer: int").predict.signature)
    assert sig.input_names == ["question"] and sig.output_names == ["reasoning", "answer"]
    assert sig.outputs[1].type == "int" and sig.outputs[0].desc == ""  # DSPy's ${reasoning} placeholder


# --- round trips ----------------------------------------------------------------


def test_predict_round_trip():
    program = po.Predict(
        classify_signature(), demos=[po.Example(question="q", n=1, label="yes").with_inputs("question", "n")]
    )
    module = to_dspy(program)
    assert type(module) is dspy.Predict
    assert [n for n, _ in module.named_predictors()] == ["self"]
    assert module.signature.instructions == program.instruction
    assert dict(module.demos[0].items()) == {"question": "q", "n": 1, "label": "yes"}
    assert components_from_dspy(module, program) == program.components()


def test_chain_of_thought_round_trip_and_native_dspy_cot():
    program = po.ChainOfThought(
        "question -> answer", "Think, then answer.", demos=[demo(question="a", answer="b")]
    )
    module = to_dspy(program)
    assert list(module.signature.output_fields) == ["reasoning", "answer"]
    assert "step by step" in module.signature.output_fields["reasoning"].json_schema_extra["desc"]
    assert components_from_dspy(module, program) == program.components()

    native = dspy.ChainOfThought("question -> answer")
    native.predict.signature = native.predict.signature.with_instructions("Native instruction.")
    comps = components_from_dspy(native, program)  # DSPy's "predict" maps onto promptopt's "self"
    assert comps["self.instruction"] == "Native instruction." and comps["self.demos"] == []
    assert program.with_components(comps).instruction == "Native instruction."


def test_multi_predictor_program_round_trip_names_and_demos():
    program = Pipeline()
    module = to_dspy(program)
    assert isinstance(module, PromptoptModule)
    names = [n for n, _ in module.named_predictors()]
    assert names == [n for n, _ in program.named_predictors()] == ["stages[0]", "stages[1]", "critic.review"]
    assert all(type(p) is dspy.Predict for p in module.predictors())
    assert components_from_dspy(module, program) == program.components()

    # What a DSPy optimizer changes comes back as promptopt components.
    module.stages[1].signature = module.stages[1].signature.with_instructions("Polish harder.")
    module.critic.review.demos = [dspy.Example(answer="x", verdict="fine", augmented=True)]
    comps = components_from_dspy(module, program)
    tuned = program.with_components(comps)
    assert tuned.get_instructions()["stages[1]"] == "Polish harder."
    (only,) = tuned.get_demos()["critic.review"]
    assert dict(only) == {"answer": "x", "verdict": "fine"} and only.input_keys == {"answer"}
    assert program.get_instructions()["stages[1]"] == "Polish the answer."  # the seed is untouched


def test_module_runs_the_promptopt_forward_through_dspy_predictors():
    program = Pipeline()
    module = to_dspy(program)
    lm = DummyLM(
        [{"reasoning": "r", "answer": "four"}, {"final": "Four."}, {"verdict": "good"}] * 2,
    )
    with dspy.context(lm=lm, trace=[]), po.collect_trace() as trace:
        out = module(question="2+2?")
        dspy_trace = list(dspy.settings.trace)
    assert isinstance(out, dspy.Prediction) and out.final == "Four." and out.verdict == "good"
    assert [t[0] for t in dspy_trace] == [module.stages[0], module.stages[1], module.critic.review]
    assert dspy_trace[1][1] == {"question": "2+2?", "answer": "four"}
    assert [e.predictor for e in trace] == ["stages[0]", "stages[1]", "critic.review"]
    assert trace[0].outputs == {"reasoning": "r", "answer": "four"}
    # The first stage's demo and instruction were in its prompt.
    first_prompt = json.dumps(lm.history[0]["messages"])
    assert "Answer the question." in first_prompt and "2+2?" in first_prompt

    # A deep copy (what optimizers make of candidates) routes through its own predictors.
    copy = module.deepcopy()
    copy.stages[0].signature = copy.stages[0].signature.with_instructions("COPY INSTRUCTION")
    with dspy.context(lm=lm):
        copy(question="3+3?")
    assert "COPY INSTRUCTION" in lm.history[-3]["messages"][0]["content"]
    assert components_from_dspy(module, program)["stages[0].instruction"] == "Answer the question."


def test_bootstrap_fewshot_on_an_exported_program_imports_back():
    program = Pipeline()
    lm = DummyLM([{"reasoning": "r", "answer": "4"}, {"final": "4."}, {"verdict": "ok"}] * 10)

    def metric(example, prediction, trace=None):
        return float(prediction.final == example.final)

    train = to_dspy_examples([po.Example(question="2+2?", final="4.").with_inputs("question")])
    opt = dspy.BootstrapFewShot(metric=dspy_metric(metric), max_bootstrapped_demos=1, max_labeled_demos=0)
    with dspy.context(lm=lm):
        compiled = opt.compile(to_dspy(program), trainset=train)
    tuned = program.with_components(components_from_dspy(compiled, program))
    demos = tuned.get_demos()
    assert dict(demos["stages[1]"][0]) == {"question": "2+2?", "answer": "4", "final": "4."}
    assert demos["stages[1]"][0].input_keys == {"question", "answer"}
    assert dict(demos["critic.review"][0]) == {"answer": "4.", "verdict": "ok"}
    # The imported program runs in promptopt's own runtime, each predictor with its one demo in the prompt.
    seen = []

    def reply(messages):
        seen.append(messages)
        system = messages[0]["content"]
        if "Answer the question." in system:
            return "reasoning: r\nanswer: 4"
        return "final: 4." if "Polish" in system else "verdict: ok"

    with po.context(lm=ScriptedLM(reply)):
        assert tuned(question="1+3?").final == "4."
    assert [len(m) for m in seen] == [4, 4, 4]
    assert seen[1][2] == {"role": "assistant", "content": "final: 4."}


def test_unknown_predictor_names_and_attribute_clashes_are_reported():
    with pytest.raises(KeyError, match="no counterpart"):
        components_from_dspy(to_dspy(Pipeline()), po.Predict("a -> b"))

    class Clash(po.Program):
        def __init__(self):
            self.history = po.Predict("a -> b")

        def forward(self, a):
            return self.history(a=a)

    with pytest.raises(ValueError, match="clashes"):
        to_dspy(Clash())


# --- examples and metrics -------------------------------------------------------


def test_example_conversion_keeps_inputs_and_ids():
    ex = po.Example(_id="ex-7", question="q", answer="a").with_inputs("question")
    d = to_dspy_example(ex)
    assert dict(d.inputs().items()) == {"question": "q"} and dict(d.labels().items()) == {"answer": "a"}
    back = from_dspy_example(d)
    assert back == ex and back.id == "ex-7"
    plain = from_dspy_example(dspy.Example(question="q", answer="a", augmented=True), input_keys=["question"])
    assert dict(plain) == {"question": "q", "answer": "a"} and plain.input_keys == {"question"}


def test_metric_wrapper_forms_and_counts():
    def metric(example, prediction, trace=None):
        ok = prediction.answer == example.answer
        return po.Score(float(ok), "Right." if ok else f"Expected {example.answer}.")

    gold = to_dspy_example(po.Example(_id="g1", question="q", answer="a").with_inputs("question"))
    right, wrong = dspy.Prediction(answer="a"), dspy.Prediction(answer="b")
    plain = dspy_metric(metric)
    assert plain(gold, right) == 1.0 and plain(gold, wrong, None) == 0.0
    assert plain.calls == 2 and [row[1:] for row in plain.log] == [("g1", 1.0), ("g1", 0.0)]

    fb = dspy_metric(metric, feedback=True)
    out = fb(gold, wrong, None, "self", None)
    assert isinstance(out, dspy.Prediction) and out.score == 0.0 and out.feedback == "Expected a."
    assert fb.calls == 0 and fb.feedback_calls == 1
    assert fb(gold, right).feedback == "Right."
    bare = dspy_metric(
        lambda e, p: p.answer == e.answer, feedback=True
    )  # 2-argument metric, no feedback text
    assert bare(gold, right).feedback == "This trajectory got a score of 1.0."
    dspy.GEPA(metric=fb, max_metric_calls=1, reflection_lm=dspy_lm(ScriptedLM(["x"])))  # accepts the form


# --- language models --------------------------------------------------------------


def test_dspy_lm_through_promptopt_counts_usage_and_passes_options():
    scripted = ScriptedLM(lambda m: "[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]")
    lm = dspy_lm(scripted, temperature=0.3, max_tokens=77)
    with po.track_usage() as usage, dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="?").answer == "42"
    assert usage.calls == 1 and scripted.calls[0]["options"] == {"temperature": 0.3, "max_tokens": 77}
    assert scripted.calls[0]["messages"][0]["role"] == "system"


@pytest.fixture
def fake_server():
    with FakeOpenAIServer("[[ ## answer ## ]]\nserved", prompt_tokens=11, completion_tokens=2) as server:
        yield server


def test_dspy_lm_direct_reaches_the_same_endpoint_with_the_same_settings(fake_server):
    ours = po.LM(
        "openai/tiny",
        api_base=fake_server.base_url,
        api_key="sk-test",
        temperature=0.2,
        max_tokens=33,
        cache=False,
    )
    lm = dspy_lm(ours)
    assert lm.model == "openai/tiny" and lm.cache is False
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="?").answer == "served"
    (req,) = fake_server.requests
    assert req["path"].endswith("/chat/completions")
    assert (
        req["body"]["model"] == "tiny"
        and req["body"]["temperature"] == 0.2
        and req["body"]["max_tokens"] == 33
    )
    assert lm.history[0]["usage"]["prompt_tokens"] == 11


def test_dspy_lm_for_a_local_model_uses_the_server_api_base(monkeypatch, fake_server):
    from promptopt.lm import models, server

    class Server:
        spec = models.get_model(None)
        api_base = fake_server.base_url
        model_sha256 = "0" * 64
        started = 0

        def ensure_running(self):
            Server.started += 1
            return self

    monkeypatch.setattr(server.LocalServer, "for_model", classmethod(lambda cls, name=None: Server()))
    lm = dspy_lm(po.LM("local", cache=False, max_tokens=9))
    assert Server.started == 1
    assert lm.model == f"openai/{models.DEFAULT_MODEL}" and lm.kwargs["api_base"] == fake_server.base_url
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer")(question="?")
    assert fake_server.requests[0]["body"]["model"] == models.DEFAULT_MODEL
    assert fake_server.requests[0]["body"]["max_tokens"] == 9


# --- DSPy modules as promptopt programs ----------------------------------------------


class Checker(dspy.Module):
    def __init__(self):
        super().__init__()
        self.check = dspy.Predict("answer -> verdict")

    def forward(self, answer):
        return self.check(answer=answer)


class DspyPipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.gen = dspy.ChainOfThought("question -> answer")
        self.inner = Checker()

    def forward(self, question):
        answer = self.gen(question=question).answer
        return dspy.Prediction(answer=answer, verdict=self.inner(answer=answer).verdict)


def shouting_lm():
    """Answers LOUD when the generator's instruction says SHOUT, else quiet (DSPy's field markers)."""

    def reply(messages):
        system = messages[0]["content"]
        if "`verdict`" in system.split("Your output fields are:")[1]:
            return "[[ ## verdict ## ]]\nok"
        answer = "LOUD" if "SHOUT" in system else "quiet"
        return f"[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\n{answer}"

    return dspy_lm(ScriptedLM(reply))


def test_from_dspy_exposes_every_predictor_and_runs_through_dspy():
    native = DspyPipeline()
    program = from_dspy(native, lm=shouting_lm())
    assert [n for n, _ in program.named_predictors()] == ["gen.predict", "inner.check"]
    assert program.get_instructions()["gen.predict"] == native.gen.predict.signature.instructions
    with po.collect_trace() as trace:
        assert program(question="q") == po.Prediction(answer="quiet", verdict="ok")
    assert [e.predictor for e in trace] == ["gen.predict", "inner.check"]
    assert trace[0].inputs == {"question": "q"} and trace[0].outputs["answer"] == "quiet"

    louder = program.with_components({"gen.predict.instruction": "SHOUT the answer."})
    assert louder(question="q").answer == "LOUD" and program(question="q").answer == "quiet"
    assert components_from_dspy(louder.module)["gen.predict.instruction"] == "SHOUT the answer."
    assert native.gen.predict.signature.instructions != "SHOUT the answer."  # the user's module is untouched


def test_promptopt_gepa_optimizes_a_dspy_module():
    from promptopt.optimizers import GEPA

    program = from_dspy(DspyPipeline(), lm=shouting_lm())
    data = [
        po.Example(_id=f"q{i}", question=f"q{i}", answer="LOUD").with_inputs("question") for i in range(6)
    ]

    def metric(example, prediction, trace=None):
        ok = prediction.answer == "LOUD"
        return po.Score(float(ok), "Correct." if ok else "Wrong: the answer must be LOUD; SHOUT it.")

    rules = ScriptedLM(["- Always SHOUT the answer in capitals."])
    result = GEPA(
        metric, max_metric_calls=30, reflection_lm=rules, proposer="rules", evolve_demos=False, progress=False
    ).compile(program, data[:3], data[3:])
    assert result.seed_score == 0.0 and result.best_score == 1.0
    best = result.best_program
    assert "SHOUT" in best.get_instructions()["gen.predict"]
    assert "SHOUT" in components_from_dspy(best.module)["gen.predict.instruction"]
