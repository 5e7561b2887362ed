"""LangProBe tasks (math, mmlu, scone, hover, hotpotqa, heartdisease, gsm8k, iris): loaders, splits,
metrics, and every program end to end on a scripted LM."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import promptopt
from langprobe.registry import get_task
from langprobe.task import mirror_dir
from langprobe.tasks import hotpotqa
from langprobe.tasks import math as math_task
from promptopt import Example, Prediction, Score
from promptopt.testing import ScriptedLM, last_user_message

MIRROR = mirror_dir()
pytestmark = pytest.mark.skipif(MIRROR is None, reason="no local data mirror (shared/data)")


def manifest_rows(task: str, prefix: str = "") -> int:
    files = json.loads((MIRROR / "MANIFEST.json").read_text())["tasks"][task]["files"]
    return sum(f.get("rows", 0) for name, f in files.items() if name.startswith(prefix))


@dataclass(frozen=True)
class Spec:
    field: str  # the output field the metric reads
    rows: Callable[[], int]  # expected loader rows
    test_rows: Callable[[], int] | None  # expected load_test rows, for tasks with an official test file
    wrong: Callable[[Example], str]  # a well-formed but wrong answer

    def gold(self, ex: Example) -> str:
        return str(ex[self.field])


def _other(field: str, choices: tuple[str, ...]) -> Callable[[Example], str]:
    return lambda ex: next(c for c in choices if c != ex[field])


SPECS = {
    "math": Spec("answer", lambda: manifest_rows("math", "math500"), None, lambda ex: "-987654321"),
    "mmlu": Spec(
        "answer",
        lambda: manifest_rows("mmlu", "dev/"),
        lambda: manifest_rows("mmlu", "test/"),
        lambda ex: "ABCD"[("ABCD".index(ex.answer) + 1) % 4],
    ),
    "scone": Spec(
        "label",
        lambda: manifest_rows("scone", "scone_nli/train/"),
        lambda: manifest_rows("scone", "scone_nli/test/"),
        _other("label", ("entailment", "neutral")),
    ),
    # 4000 claims less 18 repeated ones and the one repeated claim whose copies disagree (see hover.py).
    "hover": Spec(
        "label",
        lambda: manifest_rows("hover", "hover_dev") - 19,
        None,
        _other("label", ("SUPPORTED", "NOT_SUPPORTED")),
    ),
    "hotpotqa": Spec("answer", lambda: manifest_rows("hotpotqa"), None, lambda ex: "zzzq xxqv"),
    "heartdisease": Spec(
        "diagnosis", lambda: manifest_rows("heartdisease"), None, _other("diagnosis", ("present", "absent"))
    ),
    "gsm8k": Spec(
        "answer",
        lambda: manifest_rows("gsm8k", "train"),
        lambda: manifest_rows("gsm8k", "test"),
        lambda ex: str(float(ex.answer) + 1),
    ),
    "iris": Spec(
        "species",
        lambda: manifest_rows("iris", "iris.csv"),
        None,
        _other("species", ("setosa", "versicolor", "virginica")),
    ),
}
NEW_TASKS = ("math", "mmlu", "scone", "hover", "hotpotqa", "heartdisease")
PROGRAMS = [(name, program) for name in SPECS for program in get_task(name).programs]


def _two(name: str) -> list[Example]:
    return get_task(name).splits(seed=0).test[:2]


# Loaders ---------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_loader_row_counts_match_the_manifest(name: str) -> None:
    task, spec = get_task(name), SPECS[name]
    rows = task.load(None)
    assert len(rows) == spec.rows()
    assert len({e.id for e in rows}) == len(rows)
    assert all(e.id.startswith(f"{name}-") for e in rows)
    if spec.test_rows is None:
        assert task.load_test is None
    else:
        test = task.load_test(None)
        assert len(test) == spec.test_rows()
        assert not {e.id for e in rows} & {e.id for e in test}


@pytest.mark.parametrize("name", SPECS)
def test_examples_mark_inputs_and_carry_the_label(name: str) -> None:
    spec = SPECS[name]
    for ex in get_task(name).load(None)[:50]:
        assert spec.field not in ex.input_keys
        assert ex.input_keys and all(str(ex[k]).strip() for k in ex.input_keys)
        assert str(ex[spec.field]).strip()


def test_loaders_are_stable_across_calls() -> None:
    for name in SPECS:
        task = get_task(name)
        assert [e.id for e in task.load(None)] == [e.id for e in task.load(None)]
        assert task.load(None)[0] == task.load(None)[0]


def test_data_quirks_are_handled() -> None:
    heart = get_task("heartdisease").load(None)
    assert sum(e.major_vessels == "unknown" or e.thalassemia == "unknown" for e in heart) == 6
    assert {e.diagnosis for e in heart} == {"present", "absent"}
    scone = get_task("scone").load(None) + get_task("scone").load_test(None)
    assert {e.label for e in scone} == {"entailment", "neutral"}
    assert len({e.category for e in scone}) == 6
    assert not any('"' in e.premise + e.hypothesis or "\t" in e.premise + e.hypothesis for e in scone)
    hover = get_task("hover").load(None)
    assert len({e.claim for e in hover}) == len(hover)
    assert {e.label for e in hover} == {"SUPPORTED", "NOT_SUPPORTED"}
    hot = get_task("hotpotqa").load(None)
    assert all(e.context.startswith("[") for e in hot)
    assert sorted(e.context.count("\n") + 1 for e in hot)[:2] == [2, 10]  # one question has two paragraphs
    mmlu = get_task("mmlu").load(None)
    assert {e.answer for e in mmlu} == {"A", "B", "C", "D"}
    assert all(e.choices.startswith("A. ") and all(f"\n{c}. " in e.choices for c in "BCD") for e in mmlu)


# Splits ----------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_splits_have_declared_sizes_and_no_overlap(name: str) -> None:
    task = get_task(name)
    splits = task.splits(seed=0)
    assert tuple(map(len, (splits.train, splits.val, splits.test))) == task.sizes
    ids = splits.ids()
    assert not set(ids["train"]) & set(ids["val"])
    assert not set(ids["train"]) & set(ids["test"])
    assert not set(ids["val"]) & set(ids["test"])


@pytest.mark.parametrize("name", SPECS)
def test_splits_are_deterministic_per_seed_and_differ_across_seeds(name: str) -> None:
    task = get_task(name)
    assert task.splits(seed=0).ids() == task.splits(seed=0).ids()
    assert task.splits(seed=3).ids() == task.splits(seed=3).ids()
    first, second = task.splits(seed=0).ids(), task.splits(seed=1).ids()
    assert all(first[k] != second[k] for k in ("train", "val", "test"))


# Metrics ---------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_metric_scores_gold_one_and_wrong_zero_with_feedback(name: str) -> None:
    task, spec = get_task(name), SPECS[name]
    for ex in task.splits(seed=0).val[:10]:
        right = task.metric(ex, Prediction(**{spec.field: spec.gold(ex)}))
        assert isinstance(right, Score) and right.value == 1.0 and right.feedback
        wrong = task.metric(ex, Prediction(**{spec.field: spec.wrong(ex)}))
        assert isinstance(wrong, Score) and wrong.value == 0.0
        assert wrong.feedback and spec.gold(ex) in wrong.feedback  # says what the right answer is


MALFORMED = [
    Prediction(),
    Prediction(answer=None, label=None, diagnosis=None, species=None),
    Prediction(answer="%% ?? <garbage>", label="%% ?? <garbage>", diagnosis="%% ??", species="%% ??"),
    Prediction(answer="", label="", diagnosis="", species=""),
    Prediction(answer=["zq", "xv"], label=3, diagnosis={"x": 1}, species=0.5),
]


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("prediction", MALFORMED, ids=["missing", "none", "garbage", "empty", "wrong-type"])
def test_metric_scores_malformed_predictions_zero_without_raising(name: str, prediction: Prediction) -> None:
    task = get_task(name)
    for ex in task.splits(seed=0).val[:5]:
        score = task.metric(ex, prediction)
        assert score.value == 0.0 and score.feedback


@pytest.mark.parametrize("name", NEW_TASKS)
def test_metric_survives_a_missing_prediction(name: str) -> None:
    task = get_task(name)
    ex = task.splits(seed=0).val[0]
    score = task.metric(ex, None)
    assert score.value == 0.0 and score.feedback


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("1/2", "\\frac{1}{2}"),
        ("0.5", "\\frac12"),
        ("\\dfrac{17}{50}", "0.34"),
        ("$5.0$", "5"),
        ("The answer is \\boxed{x=5}.", "5"),
        ("90 degrees", "90^\\circ"),
        ("C", "\\text{(C)}"),
        ("evelyn", "\\text{Evelyn}"),
        ("10080", "10,\\!080"),
        ("-2, 1", "1,-2"),
        ("4210_5", "4210_{5}"),
        ("32348", "\\$32,\\!348"),
        ("1.8", "1\\frac{4}{5}"),
        ("5.4", "5.4 \\text{ cents}"),
        ("864", "864 \\mbox{ inches}^2"),
        (".35625", "0.35625"),
        ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("(0.5, 3]", "(\\frac{1}{2},3]"),
        ("11\\sqrt{2}", "11\\sqrt2"),
        ("[-2,7]", "x \\in [-2,7]"),
    ],
)
def test_math_equivalence(predicted: str, gold: str) -> None:
    assert math_task.is_equiv(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("(1,-2)", "(-2,1)"),
        ("2", "1/2"),
        ("0.33", "\\frac{1}{3}"),
        ("", "0"),
        (None, "0"),
        ("3m", "3n"),
        ("(3,4)", "(3,4]"),
    ],
)
def test_math_non_equivalence(predicted: Any, gold: str) -> None:
    assert not math_task.is_equiv(predicted, gold)


def test_math_gold_solutions_box_the_gold_answer() -> None:
    rows = get_task("math").load(None)
    assert all(math_task.is_equiv(ex.solution, ex.answer) for ex in rows)


def test_hotpotqa_partial_answers_get_partial_credit() -> None:
    ex = Example(
        question="q",
        context="c",
        answer="Greenwich Village, New York City",
        supporting_titles=["A", "B"],
        type="bridge",
    ).with_inputs("question", "context")
    score = hotpotqa.metric(ex, Prediction(answer="New York City"))
    assert 0 < score.value < 1
    assert "EM=0" in score.feedback and "F1=" in score.feedback and "Greenwich Village" in score.feedback
    assert hotpotqa.metric(ex, Prediction(answer="the Greenwich village, New York city.")).value == 1.0
    assert hotpotqa.f1("no", "yes") == 0.0 and hotpotqa.f1("yes it is", "yes") == 0.0


# Programs end to end ---------------------------------------------------


def _which(examples: list[Example], message: str) -> int:
    """The example whose inputs shown in this user message match."""
    for i, ex in enumerate(examples):
        shown = [(k, v) for k, v in ex.inputs().items() if f"{k}: " in message]
        if shown and all(f"{k}: {str(v).strip()}" in message for k, v in shown):
            return i
    raise AssertionError(f"no example matches the prompt {message[:200]!r}")


@pytest.mark.parametrize(("name", "program_name"), PROGRAMS)
def test_program_runs_end_to_end_on_a_scripted_lm(name: str, program_name: str) -> None:
    task, spec = get_task(name), SPECS[name]
    examples = _two(name)
    replies = [spec.gold(examples[0]), spec.wrong(examples[1])]

    def reply(messages: list[dict[str, str]]) -> str:
        message = last_user_message(messages)
        i = _which(examples, message)
        if "\n\ncontext: " in message and "- titles" in messages[0]["content"]:  # multihop stage 1
            return f"titles:\n- Page {i}\nfacts: Fact {i} from the context."
        return f"reasoning: Work through it step by step.\n{spec.field}: {replies[i]}"

    lm = ScriptedLM(reply)
    with promptopt.context(lm=lm):
        result = promptopt.evaluate(task.program(program_name), examples, task.metric, display_progress=False)
    assert [r.error for r in result.results] == [None, None]
    assert result.scores == [1.0, 0.0]
    assert result.results[1].feedback
    prediction = result.results[0].prediction
    assert prediction[spec.field]
    if program_name == "cot":
        assert prediction["reasoning"] == "Work through it step by step."
    if program_name == "multihop":
        assert len(lm.calls) == 4
        assert prediction["titles"] == ["Page 0"] and prediction["facts"] == "Fact 0 from the context."
        prompts = [last_user_message(c["messages"]) for c in lm.calls]
        stage2 = [m for m in prompts if "facts: Fact" in m]
        assert len(stage2) == 2 and all("context: " not in m for m in stage2)
    else:
        assert len(lm.calls) == 2


def test_multihop_program_names_its_two_stages_and_round_trips(tmp_path) -> None:
    program = get_task("hotpotqa").program("multihop")
    assert [n for n, _ in program.named_predictors()] == ["gather", "respond"]
    path = program.save(tmp_path / "multihop.json")
    loaded = promptopt.load_program(path)
    assert isinstance(loaded, hotpotqa.MultiHop)
    assert loaded.get_instructions() == program.get_instructions()


@pytest.mark.parametrize("name", SPECS)
def test_choice_fields_list_the_labels_the_metric_accepts(name: str) -> None:
    task, spec = get_task(name), SPECS[name]
    for program_name in task.programs:
        program = task.program(program_name)
        field = next(
            (f for _, p in program.named_predictors() for f in p.signature.outputs if f.name == spec.field),
            None,
        )
        assert field is not None
        if field.choices:
            labels = {spec.gold(ex) for ex in task.load(None)}
            assert labels <= set(field.choices)
