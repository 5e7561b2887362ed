"""promptopt's GEPA and MIPROv2 as DSPy optimizers (promptopt.dspy), with scripted LMs behind dspy.LM."""

from __future__ import annotations

import json
import re

import dspy
import pytest

import promptopt as po
from promptopt.dspy import GEPA, MIPROv2
from promptopt.dspy.conversion import to_dspy_examples
from promptopt.dspy.lms import dspy_lm
from promptopt.dspy.metrics import dspy_metric, metric_form, promptopt_metric
from promptopt.optimizers.result import OptimizationResult
from promptopt.testing import FakeOpenAIServer, Killed, ScriptedLM, dies_at, toy_examples
from promptopt.testing.dspy_toy import dspy_toy_lm

# --- the task: the answer must be LOUD, which the LM writes only when told to SHOUT ----------------


def _output_fields(system: str) -> list[str]:
    section = system.split("Your output fields are:")[1].split("All interactions")[0]
    return re.findall(r"`(\w+)`", section)


def task_reply(messages):
    """DSPy's chat format: LOUD when the instruction says SHOUT or the input already is LOUD."""
    system, last = messages[0]["content"], messages[-1]["content"]
    value = "LOUD" if "SHOUT" in system or "LOUD" in last else "quiet"
    return (
        "\n\n".join(
            f"[[ ## {f} ## ]]\n{'thinking' if f == 'reasoning' else value}" for f in _output_fields(system)
        )
        + "\n\n[[ ## completed ## ]]"
    )


def task_lm():
    return ScriptedLM(task_reply)


def reflection_reply(messages):
    return "```\nSHOUT the answer in capital letters.\n```"


def proposer_reply(messages):
    prompt = messages[-1]["content"]
    if prompt.startswith("Here are"):
        return "Questions whose answers are written in capitals."
    return "proposed_instruction: SHOUT the answer in capital letters."


def data(n, offset=0):
    return [
        dspy.Example(question=f"question {offset + i}?", answer="LOUD").with_inputs("question")
        for i in range(n)
    ]


def metric(example, pred, trace=None):
    return float(pred.answer == example.answer)


def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    ok = pred.answer == gold.answer
    return dspy.Prediction(score=float(ok), feedback="Correct." if ok else "Wrong: the answer must be LOUD.")


class Pipeline(dspy.Module):
    """Two sub-predictors: a draft, then the final answer from the draft."""

    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> draft")
        self.finish = dspy.ChainOfThought("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return self.finish(question=question, draft=draft)


STUDENTS = {
    "predict": lambda: dspy.Predict("question -> answer"),
    "cot": lambda: dspy.ChainOfThought("question -> answer"),
    "pipeline": Pipeline,
}


def instructions(module):
    return {name: pred.signature.instructions for name, pred in module.named_predictors()}


def check_compiled(student, compiled, kind, tmp_path, lm):
    assert type(compiled) is type(student) and compiled is not student
    before, after = instructions(student), instructions(compiled)
    assert before.keys() == after.keys()
    changed = [n for n in before if before[n] != after[n]]
    assert changed and all("SHOUT" in after[n] for n in changed)
    assert all("SHOUT" not in text for text in before.values())  # the student is untouched
    result = compiled.promptopt_result
    assert isinstance(result, OptimizationResult)
    assert result.seed_score == 0.0 and result.best_score == 1.0
    assert result.budget.lm_calls > 0 and result.budget.proposer_lm_calls >= 1
    # The module runs on the configured LM, and saves and loads with DSPy's own methods.
    with dspy.context(lm=lm):
        assert compiled(question="new?").answer == "LOUD"
        assert student(question="new?").answer == "quiet"
    compiled.save(tmp_path / f"{kind}.json")
    saved = json.loads((tmp_path / f"{kind}.json").read_text())
    assert any("SHOUT" in json.dumps(v) for v in saved.values())
    fresh = STUDENTS[kind]()
    fresh.load(tmp_path / f"{kind}.json")
    assert instructions(fresh) == after
    assert [len(p.demos) for p in fresh.predictors()] == [len(p.demos) for p in compiled.predictors()]
    with dspy.context(lm=lm):
        for q in ("a?", "b?"):
            assert fresh(question=q).toDict() == compiled(question=q).toDict()


# --- metric forms --------------------------------------------------------------------------------


def test_metric_forms_are_detected_and_converted_with_feedback():
    seen = []

    def three(example, pred, trace=None):
        seen.append((type(example), type(pred), trace))
        return pred.answer == example.answer

    def two(example, pred):
        return 0.5

    def five(gold, pred, trace, pred_name, pred_trace):
        seen.append((trace, pred_name, pred_trace))
        return dspy.Prediction(score=0.0, feedback=f"Expected {gold.answer}.")

    assert metric_form(three) == metric_form(two) == "dspy"
    assert metric_form(five) == metric_form(feedback_metric) == "feedback"
    assert metric_form(lambda *args: 1.0) == "feedback"
    assert metric_form(dspy_metric(lambda e, p: 1.0, feedback=True)) == "feedback"
    with pytest.raises(TypeError, match="positional argument"):
        metric_form(lambda x: 1.0)

    gold = po.Example(question="q", answer="LOUD").with_inputs("question")
    right, wrong = po.Prediction(answer="LOUD"), po.Prediction(answer="quiet")
    assert promptopt_metric(three)(gold, right, None) == po.Score(1.0)
    assert seen[0] == (dspy.Example, dspy.Prediction, None)  # DSPy's own objects, as in an evaluation
    assert promptopt_metric(two)(gold, right) == po.Score(0.5)
    assert promptopt_metric(five)(gold, wrong, None) == po.Score(0.0, "Expected LOUD.")
    assert seen[1] == (None, None, None)  # the module-level score and feedback
    fb = promptopt_metric(feedback_metric)
    assert fb(gold, wrong) == po.Score(0.0, "Wrong: the answer must be LOUD.")
    assert fb(gold, right) == po.Score(1.0, "Correct.")


# --- GEPA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["predict", "cot", "pipeline"])
def test_gepa_compiles_dspy_modules(kind, tmp_path):
    lm = dspy_lm(task_lm())
    reflector = ScriptedLM(reflection_reply)
    student = STUDENTS[kind]()
    optimizer = GEPA(
        feedback_metric if kind != "cot" else metric,
        max_metric_calls=40,
        reflection_lm=dspy_lm(reflector, temperature=1.0),  # a dspy.LM, wrapped for the proposer
        evolve_demos=kind == "predict",
        progress=False,
    )
    with dspy.context(lm=lm):
        compiled = optimizer.compile(student, trainset=data(4), valset=data(3, offset=10))
    check_compiled(student, compiled, kind, tmp_path, lm)
    assert len(reflector.calls) >= 1
    reflection_prompt = reflector.calls[0]["messages"][-1]["content"]
    if kind != "cot":  # the feedback metric's text reached the reflection
        assert "the answer must be LOUD" in reflection_prompt
    if kind == "pipeline":  # round-robin changed the first predictor only
        assert "SHOUT" in instructions(compiled)["draft"]
        assert instructions(compiled)["finish.predict"] == instructions(student)["finish.predict"]


def test_gepa_demos_come_back_as_dspy_examples(tmp_path):
    # The reflection never helps: any improvement must come from demos, whose answers are LOUD.
    demo_aware = ScriptedLM(
        lambda m: task_reply(m) if not any(x["role"] == "assistant" for x in m) else
        task_reply(m).replace("quiet", "LOUD")
    )  # fmt: skip
    optimizer = GEPA(
        metric,
        max_metric_calls=40,
        reflection_lm=ScriptedLM(["```\nAnswer the question.\n```"]),
        evolve_demos=True,
        component_selector="round_robin",
        progress=False,
        seed=1,
    )
    student = dspy.Predict("question -> answer")
    with dspy.context(lm=dspy_lm(demo_aware)):
        compiled = optimizer.compile(student, trainset=data(4), valset=data(3, offset=10))
    assert compiled.promptopt_result.best_score == 1.0
    assert compiled.demos and all(isinstance(d, dspy.Example) for d in compiled.demos)
    assert all(d.answer == "LOUD" for d in compiled.demos) and student.demos == []
    compiled.save(tmp_path / "p.json")
    fresh = dspy.Predict("question -> answer")
    fresh.load(tmp_path / "p.json")
    assert [dict(d) for d in fresh.demos] == [d.toDict() for d in compiled.demos]  # DSPy loads dicts
    with dspy.context(lm=dspy_lm(demo_aware)):
        assert fresh(question="z?").answer == compiled(question="z?").answer == "LOUD"


def test_gepa_uses_the_task_lm_for_reflection_by_default_and_predictor_lms():
    scripted = ScriptedLM(lambda m: reflection_reply(m) if "Current instruction" in m[-1]["content"]
                          else task_reply(m))  # fmt: skip
    student = dspy.Predict("question -> answer")
    student.lm = dspy_lm(scripted)  # a predictor with its own LM needs no configured one
    assert dspy.settings.lm is None
    compiled = GEPA(metric, max_metric_calls=30, progress=False, evolve_demos=False).compile(
        student, trainset=data(3), valset=data(3, offset=5)
    )
    assert "SHOUT" in compiled.signature.instructions
    assert any("Current instruction" in c["messages"][-1]["content"] for c in scripted.calls)


def test_gepa_resumes_from_its_run_dir(tmp_path):
    def optimizer(the_metric, **kw):
        return GEPA(
            the_metric,
            max_metric_calls=40,
            reflection_lm=ScriptedLM(reflection_reply),
            evolve_demos=False,
            num_threads=1,
            progress=False,
            **kw,
        )

    full_lm = task_lm()
    with dspy.context(lm=dspy_lm(full_lm)):
        full = optimizer(metric).compile(Pipeline(), trainset=data(4), valset=data(3, offset=10))

    killing = dies_at(metric, 5)  # in the first iteration, after the seed was scored and saved

    def dying(example, pred, trace=None):  # metric's own form: a *args one would be given five
        return killing(example, pred, trace)

    run_dir = tmp_path / "run"
    with dspy.context(lm=dspy_lm(task_lm())), pytest.raises(Killed):
        optimizer(dying, run_dir=run_dir).compile(Pipeline(), trainset=data(4), valset=data(3, offset=10))
    assert json.loads((run_dir / "state.json").read_text())["candidates"]

    resumed_lm = task_lm()
    with dspy.context(lm=dspy_lm(resumed_lm)):
        resumed = optimizer(metric, run_dir=run_dir, resume=True).compile(
            Pipeline(), trainset=data(4), valset=data(3, offset=10)
        )
    assert instructions(resumed) == instructions(full)
    a, b = resumed.promptopt_result, full.promptopt_result
    assert [c.components for c in a.candidates] == [c.components for c in b.candidates]
    assert [c.val_scores for c in a.candidates] == [c.val_scores for c in b.candidates]
    assert a.budget.metric_calls == b.budget.metric_calls
    assert len(resumed_lm.calls) < len(full_lm.calls)  # the seed's scores were not recomputed
    assert (run_dir / "result.json").exists() and (run_dir / "best_program.json").exists()
    with pytest.raises(ValueError, match="same data"), dspy.context(lm=dspy_lm(task_lm())):
        optimizer(metric, run_dir=run_dir, resume=True).compile(
            Pipeline(), trainset=data(3), valset=data(3, offset=10)
        )


def test_clear_errors():
    with pytest.raises(po.ConfigurationError, match=r"dspy\.configure\(lm="):
        GEPA(metric, max_metric_calls=5).compile(dspy.Predict("question -> answer"), trainset=data(2))
    with dspy.context(lm=dspy_lm(task_lm())):
        with pytest.raises(ValueError, match="with_inputs"):
            GEPA(metric, max_metric_calls=5).compile(
                dspy.Predict("question -> answer"), trainset=[dspy.Example(question="q", answer="a")]
            )
        with pytest.raises(TypeError, match=r"dspy\.Module"):
            GEPA(metric, max_metric_calls=5).compile(po.Predict("question -> answer"), trainset=data(2))
        with pytest.raises(ValueError, match="resume=True needs"):
            GEPA(metric, max_metric_calls=5, resume=True).compile(
                dspy.Predict("question -> answer"), trainset=data(2)
            )
    with pytest.raises(ValueError, match="exactly one"):
        GEPA(metric)
    with pytest.raises(TypeError, match="unexpected keyword"):
        GEPA(metric, auto="light", no_such_option=1)
    with pytest.raises(TypeError, match="prompt_model"):
        MIPROv2(metric, proposer_lm=ScriptedLM(["x"]))


# --- MIPROv2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["predict", "cot", "pipeline"])
def test_mipro_compiles_dspy_modules(kind, tmp_path):
    lm = dspy_lm(task_lm())
    proposer = ScriptedLM(proposer_reply)
    student = STUDENTS[kind]()
    optimizer = MIPROv2(
        metric,
        auto=None,
        num_candidates=2,
        num_trials=4,
        minibatch_size=3,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        prompt_model=proposer,
        task_model=lm,
        run_dir=tmp_path / "run",
        progress=False,
    )
    compiled = optimizer.compile(student, trainset=data(4), valset=data(3, offset=10))
    check_compiled(student, compiled, kind, tmp_path, lm)
    assert len(proposer.calls) >= 1
    assert (tmp_path / "run" / "search_space.json").exists()


# --- DSPy's own LM calls are counted --------------------------------------------------------------


def chat_reply(messages):
    """What the chat server answers: reflection_reply to reflections, task_reply to the rest."""
    reflection = "Current instruction" in messages[-1]["content"]
    return reflection_reply(messages) if reflection else task_reply(messages)


@pytest.fixture
def chat_server():
    with FakeOpenAIServer(chat_reply, prompt_tokens=100, completion_tokens=10) as server:
        yield server


def test_calls_of_dspy_lms_are_counted_in_the_budget(chat_server):
    def lm(**kw):
        return dspy.LM("openai/tiny", api_base=chat_server.base_url, api_key="sk-test", cache=False, **kw)

    task, reflection = lm(), lm(temperature=1.0)
    with dspy.context(lm=task):
        compiled = GEPA(
            metric, max_metric_calls=30, reflection_lm=reflection, evolve_demos=False, progress=False
        ).compile(dspy.Predict("question -> answer"), trainset=data(3), valset=data(3, offset=5))
    assert "SHOUT" in compiled.signature.instructions
    budget = compiled.promptopt_result.budget
    n_reflections = sum(
        "Current instruction" in r["body"]["messages"][-1]["content"] for r in chat_server.requests
    )
    assert n_reflections >= 1 and budget.proposer_lm_calls == n_reflections
    assert budget.lm_calls == len(chat_server.requests) > budget.metric_calls  # each call counted once
    assert budget.prompt_tokens == 100 * budget.lm_calls and budget.completion_tokens == 10 * budget.lm_calls
    assert len(reflection.history) == n_reflections  # the reflections went through the user's dspy.LM


def test_mipro_compile_options_and_teacher(tmp_path):
    lm = dspy_lm(task_lm())
    optimizer = MIPROv2(
        metric,
        auto=None,
        num_candidates=2,
        num_trials=4,
        minibatch_size=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=0,
        prompt_model=dspy_lm(ScriptedLM(proposer_reply)),
        progress=False,
    )
    with dspy.context(lm=lm):
        # A teacher that shouts: its runs pass the metric and become the student's bootstrapped demos.
        teacher = dspy.Predict("question -> answer")
        teacher.signature = teacher.signature.with_instructions("SHOUT.")
        compiled = optimizer.compile(
            dspy.Predict("question -> answer"),
            trainset=data(4),
            valset=data(3, offset=10),
            teacher=teacher,
            num_trials=3,  # compile keywords override the optimizer's options for this run
            run_dir=tmp_path / "run",
        )
        result = compiled.promptopt_result
        assert len(result.trials) == 3 and result.stop_reason == "all 3 trials run"
        # The student alone never passes the metric, so only the teacher's runs can be these demos.
        (sets,) = json.loads((tmp_path / "run" / "search_space.json").read_text())["demo_sets"].values()
        assert sets[0] == [] and sets[1] and all(d["fields"]["answer"] == "LOUD" for d in sets[1])
        with pytest.raises(ValueError, match="teacher's predictors"):
            optimizer.compile(
                dspy.Predict("question -> answer"), trainset=data(4), teacher=Pipeline(), num_trials=1
            )


# --- ReAct: tool descriptions are components -------------------------------------------------------


def lookup(query: str) -> str:
    """Looks something up."""
    return "LOUD"


def react_reply(messages):
    """The agent calls `lookup` only when its description says ALWAYS; the answer is in what it returns."""
    system, last = messages[0]["content"], messages[-1]["content"]
    if "next_tool_name" not in _output_fields(system):
        return task_reply(messages)
    call = "ALWAYS" in system and "observation_0" not in last
    name, args = ("lookup", '{"query": "q"}') if call else ("finish", "{}")
    return (
        f"[[ ## next_thought ## ]]\nthinking\n\n[[ ## next_tool_name ## ]]\n{name}\n\n"
        f"[[ ## next_tool_args ## ]]\n{args}\n\n[[ ## completed ## ]]"
    )


def tool_reflection_reply(messages):
    prompt = messages[-1]["content"]
    if "the description of the tool `lookup`" in prompt:
        return "```\nALWAYS call this first: it returns the answer.\n```"
    return "```\nAnswer the question.\n```"


def test_react_tool_descriptions_are_components():
    from promptopt.dspy.programs import from_dspy
    from promptopt.dspy.teleprompters import apply_components

    agent = dspy.ReAct("question -> answer", tools=[lookup])
    program = from_dspy(agent)
    comps = program.components()
    assert comps["react.tool[lookup]"] == "Looks something up."
    assert "react.tool[finish]" not in comps  # ReAct's own finish tool is not the user's
    (text,) = program.text_components().values()
    assert text.predictor == "react" and "`lookup`" in text.subject

    tuned = program.with_components({"react.tool[lookup]": "Returns the answer."})
    assert tuned.components()["react.tool[lookup]"] == "Returns the answer."
    assert program.components()["react.tool[lookup]"] == "Looks something up."  # a copy was changed
    instruction = tuned.module.react.signature.instructions
    assert "<desc>Returns the answer.</desc>" in instruction and "Looks something up." not in instruction
    assert tuned.module.tools["lookup"].desc == "Returns the answer."
    assert from_dspy(agent).load_state(tuned.dump_state()).components() == tuned.components()

    module = agent.deepcopy()
    apply_components(module, {"react.tool[lookup]": "Returns the answer."})
    assert module.react.signature.instructions == instruction
    assert agent.tools["lookup"].desc == "Looks something up."
    with pytest.raises(TypeError, match="takes a str"):
        program.with_components({"react.tool[lookup]": ["not", "text"]})


def test_gepa_evolves_a_react_tool_description(tmp_path):
    lm = dspy_lm(ScriptedLM(react_reply))
    reflector = ScriptedLM(tool_reflection_reply)
    student = dspy.ReAct("question -> answer", tools=[lookup])
    optimizer = GEPA(
        metric, max_metric_calls=60, reflection_lm=reflector, component_selector="round_robin", progress=False
    )
    with dspy.context(lm=lm):
        compiled = optimizer.compile(student, trainset=data(4), valset=data(3, offset=10))
        assert student(question="new?").answer == "quiet"
        assert compiled(question="new?").answer == "LOUD"
    result = compiled.promptopt_result
    assert result.seed_score == 0.0 and result.best_score == 1.0
    assert result.best_candidate.components["react.tool[lookup]"].startswith("ALWAYS")
    assert compiled.tools["lookup"].desc.startswith("ALWAYS")
    assert "ALWAYS call this first" in compiled.react.signature.instructions
    assert student.tools["lookup"].desc == "Looks something up."
    prompts = [c["messages"][-1]["content"] for c in reflector.calls]
    assert any("the description of the tool `lookup`" in p for p in prompts)
    # DSPy saves the agent's instruction, tool lines included; a fresh agent loads and behaves the same.
    compiled.save(tmp_path / "react.json")
    fresh = dspy.ReAct("question -> answer", tools=[lookup])
    fresh.load(tmp_path / "react.json")
    with dspy.context(lm=lm):
        assert fresh(question="new?").answer == "LOUD"


def test_dspy_keywords_are_taken_or_refused_with_the_promptopt_way(tmp_path):
    gepa = GEPA(
        lambda e, p, t=None: 1.0,
        max_metric_calls=10,
        reflection_minibatch_size=2,
        candidate_selection_strategy="current_best",
        log_dir=str(tmp_path / "log"),
        track_stats=True,
    )
    assert gepa.options == {"minibatch_size": 2, "parent_selector": "best"}
    assert gepa.run_dir == str(tmp_path / "log")
    assert gepa.get_params()["parent_selector"] == "best"
    with pytest.raises(TypeError, match=r"max_full_evals=.*use max_metric_calls=N"):
        GEPA(lambda e, p, t=None: 1.0, max_full_evals=3)
    with pytest.raises(ValueError, match="candidate_selection_strategy='random'"):
        GEPA(lambda e, p, t=None: 1.0, max_metric_calls=10, candidate_selection_strategy="random")
    mipro = MIPROv2(lambda e, p, t=None: 1.0, init_temperature=1.0, verbose=False, track_stats=True)
    assert mipro.options == {"proposer_temperature": 1.0, "progress": False}
    with pytest.raises(TypeError, match=r"max_errors=.*use max_consecutive_failures=N"):
        MIPROv2(lambda e, p, t=None: 1.0, max_errors=5)
    assert isinstance(gepa, dspy.teleprompt.Teleprompter) and isinstance(mipro, dspy.teleprompt.Teleprompter)


def test_a_feedback_metric_is_asked_about_the_predictor_gepa_reflects_on():
    asked = []

    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        if pred_name is not None:
            asked.append((pred_name, [(inputs, dict(outputs)) for _, inputs, outputs in pred_trace]))
            return dspy.Prediction(score=0.0, feedback=f"About {pred_name}: answer in uppercase.")
        ok = pred.out == gold.out
        return dspy.Prediction(score=float(ok), feedback="Correct." if ok else "Wrong.")

    reflections = []

    def reflector(messages):
        reflections.append(messages[-1]["content"])
        return "Here are rules:\n- Always write the output in uppercase letters."

    student = dspy.Predict("word -> out")
    train, val = to_dspy_examples(toy_examples(4)), to_dspy_examples(toy_examples(3, offset=10))
    with dspy.context(lm=dspy_lm(dspy_toy_lm())):
        compiled = GEPA(
            feedback_metric,
            max_metric_calls=12,
            reflection_lm=ScriptedLM(reflector),
            proposer="rules",
            progress=False,
            seed_demos=0,  # the 12 calls go to a reflection, not to a demo candidate
        ).compile(student, trainset=train, valset=val)
    assert asked and {name for name, _ in asked} == {"self"}
    assert all(trace and "word" in trace[0][0] for _, trace in asked)
    assert any("About self: answer in uppercase." in r for r in reflections)
    assert compiled.promptopt_result.config["feedback_metric_calls"] == len(asked)
