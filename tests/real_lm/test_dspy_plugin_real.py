"""promptopt's optimizers on DSPy's own modules, run by DSPy on the real local model.

Each test takes a DSPy program exactly as a DSPy user writes it (a ``dspy.Predict``, a
``dspy.ChainOfThought``, a two-module pipeline, a ``dspy.ReAct`` agent), compiles it with
``promptopt.dspy.GEPA`` or ``promptopt.dspy.MIPROv2`` on small splits and checks what must hold on
any model: the compiled module is the user's class with every predictor's instruction and demos as
components, the student is left untouched, DSPy's LM calls are counted in the budget, DSPy's own
evaluator gives the adopted program's validation score back, and the module saves, loads and
predicts alike.

Whether the compiled modules also score higher on held-out data is a question for runs of many
minutes over repeated seeds, which are evidence rather than tests: ``experiments/dspy_plugin_local.py``
(GEPA and MIPROv2 next to dspy.GEPA and dspy.MIPROv2) and ``experiments/dspy_mipro_repeats.py``
(MIPROv2 on a ChainOfThought and a two-module pipeline), with their outputs in
``results/dspy-plugin/``.

The task LM is a ``dspy.LM`` pointed at the local llama.cpp server of the 0.5B model at temperature
0, with DSPy's response cache kept in memory for the test session; the reflection / proposal LM is
the same model at temperature 0.7, uncached. The cache is what makes "the same score back" a fair
check: llama-server reuses the KV cache of a shared prompt prefix, and a token computed in a batch of
another size can differ in its last bits, so at temperature 0 a repeated request may still change a
near-tied token.
"""

from __future__ import annotations

import time

import dspy
import pytest

import promptopt as po
from langprobe import get_task
from langprobe.dspy_programs import HeartDiagnosis, IrisSpecies, PetalsThenSpecies, scores_on
from promptopt.dspy import GEPA, MIPROv2
from promptopt.dspy.conversion import to_dspy_examples
from promptopt.dspy.lms import dspy_lm
from promptopt.optimizers import Callback

# Minutes on the local model: run with `pytest -m slow` (CI does).
pytestmark = pytest.mark.slow

TASK_MODEL = "local"


@pytest.fixture(autouse=True, scope="module")
def memory_only_dspy_cache():
    """DSPy's response cache in memory: repeated task-LM requests answer alike, and nothing is
    written to the user's ~/.dspy_cache."""
    from dspy.clients.cache import Cache

    # Read from the module's namespace: reading ``dspy.cache`` would build the default disk cache.
    saved = vars(dspy).get("cache")
    dspy.cache = Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None)
    yield
    if saved is None:
        del dspy.cache
    else:
        dspy.cache = saved


def task_lm(max_tokens: int = 64) -> dspy.LM:
    return dspy_lm(po.LM(TASK_MODEL, max_tokens=max_tokens), cache=True)


def proposal_lm() -> dspy.LM:
    return dspy_lm(po.LM(TASK_MODEL, temperature=0.7, max_tokens=250))


def small_mipro(metric, tmp_path) -> MIPROv2:
    """A MIPROv2 small enough for a test: 2 candidates per predictor, 3 trials on minibatches of 2
    with a full validation every 3, up to 1 bootstrapped + 1 labelled demo."""
    return MIPROv2(
        metric,
        auto=None,
        num_candidates=2,
        num_trials=3,
        minibatch_size=2,
        minibatch_full_eval_steps=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        prompt_model=proposal_lm(),
        num_threads=2,
        run_dir=tmp_path / "run",
        progress=False,
    )


def mean_on(program, examples, metric) -> float:
    """Accuracy with DSPy's own evaluator; a reply DSPy cannot parse scores 0."""
    scores = scores_on(program, examples, metric)
    return sum(scores) / len(scores)


def data(task_name, seed, sizes):
    """LangProBe splits as dspy.Examples, the task's metric in DSPy's 3-argument form and in
    dspy.GEPA's feedback form."""
    task = get_task(task_name)
    splits = task.splits(seed=seed, sizes=sizes)
    train, val, test = (to_dspy_examples(s) for s in (splits.train, splits.val, splits.test))

    def accuracy(example, pred, trace=None):
        return task.metric(example, pred).value

    def with_feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
        score = task.metric(gold, pred)
        return dspy.Prediction(score=score.value, feedback=score.feedback)

    return train, val, test, accuracy, with_feedback


def assert_saves_loads_and_predicts_alike(compiled, fresh, examples, field, lm, path):
    compiled.save(path)
    loaded = fresh()
    loaded.load(path)
    for name, pred in compiled.named_predictors():
        other = dict(loaded.named_predictors())[name]
        assert other.signature.instructions == pred.signature.instructions
        assert [dict(d) for d in other.demos] == [dict(d) for d in pred.demos]
    with dspy.context(lm=lm):
        for ex in examples:
            assert getattr(loaded(**ex.inputs()), field) == getattr(compiled(**ex.inputs()), field)


def compile_and_check(student, optimizer, splits, accuracy, lm, components):
    """Compile ``student``; check the mechanics every compiled module must satisfy; return it."""
    train, val, _ = splits
    instructions = {name: p.signature.instructions for name, p in student.named_predictors()}
    t0 = time.perf_counter()
    with dspy.context(lm=lm):
        compiled = optimizer.compile(student, trainset=train, valset=val)
        val_score = mean_on(compiled, val, accuracy)
    result = compiled.promptopt_result
    demos = {n: len(p.demos) for n, p in compiled.named_predictors()}
    print(
        f"\n{type(student).__name__}: validation {result.seed_score:.3f} -> {result.best_score:.3f}; "
        f"{result.budget.metric_calls} metric calls, {result.budget.lm_calls} LM calls, "
        f"{len(result.candidates)} candidates, stopped: {result.stop_reason}; "
        f"{time.perf_counter() - t0:.0f}s; demos {demos}"
    )
    assert type(compiled) is type(student) and compiled is not student
    assert set(result.candidates[0].components) == components
    # The student is left as the user wrote it.
    assert {n: p.signature.instructions for n, p in student.named_predictors()} == instructions
    assert all(p.demos == [] for p in student.predictors())
    # DSPy's calls are counted: every metric call ran the program at least once.
    assert result.budget.lm_calls >= result.budget.metric_calls > len(val)
    # The module handed back is the one that was scored: DSPy's own evaluator, on the same
    # (cached, temperature-0) LM, gives the adopted candidate's validation score back.
    assert val_score == pytest.approx(result.best_score), (val_score, result.best_score)
    return compiled


@pytest.mark.real_lm
def test_promptopt_gepa_compiles_a_dspy_predict(tmp_path):
    train, val, test, accuracy, with_feedback = data("heartdisease", seed=0, sizes=(8, 6, 2))
    lm = task_lm()
    gepa = GEPA(
        with_feedback,
        max_metric_calls=24,
        reflection_lm=proposal_lm(),
        max_demos=4,
        num_threads=2,
        run_dir=tmp_path / "run",
        progress=False,
    )
    components = {"self.instruction", "self.demos"}
    student = dspy.Predict(HeartDiagnosis)
    compiled = compile_and_check(student, gepa, (train, val, test), accuracy, lm, components)
    assert (tmp_path / "run" / "result.json").exists()
    assert_saves_loads_and_predicts_alike(
        compiled, lambda: dspy.Predict(HeartDiagnosis), test, "diagnosis", lm, tmp_path / "p.json"
    )


# (how to build one, the components it must expose, iris split seed, max_tokens)
MIPRO_CASES = {
    "chain_of_thought": (
        lambda: dspy.ChainOfThought(IrisSpecies),
        {"predict.instruction", "predict.demos"},
        0,
        200,
    ),
    # The petals described in words, then the species named from the measurements and the description.
    "two_module_pipeline": (
        PetalsThenSpecies,
        {"describe.instruction", "describe.demos", "classify.instruction", "classify.demos"},
        1,
        100,
    ),
}


@pytest.mark.real_lm
@pytest.mark.parametrize("case", list(MIPRO_CASES))
def test_promptopt_mipro_compiles_dspy_modules(case, tmp_path):
    """MIPROv2 on a ChainOfThought and on a two-module pipeline: every predictor's instruction and
    demos are components, optimized together."""
    make, components, split_seed, max_tokens = MIPRO_CASES[case]
    train, val, test, accuracy, _ = data("iris", seed=split_seed, sizes=(6, 4, 2))
    lm = task_lm(max_tokens=max_tokens)
    mipro = small_mipro(accuracy, tmp_path)
    compiled = compile_and_check(make(), mipro, (train, val, test), accuracy, lm, components)
    assert_saves_loads_and_predicts_alike(compiled, make, test, "species", lm, tmp_path / "m.json")


def petal_size(petal_length: float, petal_width: float) -> str:
    """Describes petals."""
    length, width = float(petal_length), float(petal_width)
    if length < 2.5:
        return "small petals, as setosa has"
    return "large petals, as virginica has" if width >= 1.7 else "medium petals, as versicolor has"


@pytest.mark.real_lm
def test_promptopt_gepa_on_a_dspy_react_agent(tmp_path):
    """A dspy.ReAct agent with one tool: its instruction and the tool's description are components,
    and GEPA's reflection on the local model proposes a new description from the agent's traces."""
    train, val, test, _, metric = data("iris", seed=2, sizes=(4, 2, 1))

    proposals = []

    class Proposals(Callback):
        def on_proposal(self, event):
            proposals.append(event)

    # The ReAct mechanics (tool descriptions as components) need no strong model: the 0.5B runs it.
    # One step per call and minibatches of 2: the validation (2), then an iteration whose parent
    # minibatch (2) is reflected on for every component at once and whose child is scored on it (2),
    # with the child's validation (2) paid for in advance.
    react_lm = dspy_lm(po.LM("local", max_tokens=150))
    reflection_lm = dspy_lm(po.LM("local", temperature=0.7, max_tokens=250))
    student = dspy.ReAct(IrisSpecies, tools=[petal_size], max_iters=1)
    with dspy.context(lm=react_lm):
        compiled = GEPA(
            metric,
            max_metric_calls=8,
            minibatch_size=2,
            tie_extensions=0,
            reflection_lm=reflection_lm,
            component_selector="all",
            evolve_demos=False,
            # The budget is for the reflection on the tool description, not for a demo candidate.
            seed_demos=0,
            callbacks=[Proposals()],
            num_threads=2,
            progress=False,
        ).compile(student, trainset=train, valset=val)
        prediction = compiled(**test[0].inputs())
    result = compiled.promptopt_result
    assert "react.tool[petal_size]" in result.candidates[0].components
    assert result.candidates[0].components["react.tool[petal_size]"] == "Describes petals."
    assert any(p["component"] == "react.tool[petal_size]" for p in proposals)
    assert type(compiled) is dspy.ReAct and prediction.species in ("setosa", "versicolor", "virginica")
    tool_line = f"<desc>{compiled.tools['petal_size'].desc}</desc>"
    assert tool_line.replace("\n", "  ") in compiled.react.signature.instructions
    print(
        f"\npromptopt.dspy.GEPA on a ReAct agent: validation {result.seed_score:.3f} -> "
        f"{result.best_score:.3f}; "
        f"tool proposals: {[p['text'] for p in proposals if p['component'].startswith('react.tool')]}"
    )
