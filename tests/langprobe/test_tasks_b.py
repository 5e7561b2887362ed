"""LangProBe tasks: IFBench, PUPA, IReRa/ESCO, HumanEval (loaders, metrics, programs, sandbox)."""

from __future__ import annotations

import os
import shutil
import string
from functools import cache

import pytest

import promptopt as po
from langprobe.registry import get_task
from langprobe.task import mirror_dir
from langprobe.tasks import humaneval, ifbench, irera_esco, pupa
from langprobe.tasks import ifbench_checks as checks
from langprobe.tasks.sandbox import run_python
from promptopt import Prediction
from promptopt.testing import ScriptedLM, last_user_message

needs_data = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror")

MODULES = {"ifbench": ifbench, "pupa": pupa, "irera_esco": irera_esco, "humaneval": humaneval}
# MANIFEST rows, less what the loaders document dropping (IFBench: 5 rows with only words:start_verb;
# PUPA: repeated queries merged; IReRa: sentences without an ESCO label, grouped per sentence).
ROWS = {"ifbench": 295, "pupa": 462, "irera_esco": 75, "humaneval": 164}
OUTPUT = {"ifbench": "response", "pupa": "response", "irera_esco": "skills", "humaneval": "code"}


@cache
def rows(name: str) -> list[po.Example]:
    return MODULES[name].load()


@cache
def held_out(name: str) -> list[po.Example]:
    return MODULES[name].TASK.load_test() if MODULES[name].TASK.load_test else []


def run(program, examples, metric, reply) -> po.EvaluationResult:
    lm = ScriptedLM(reply)
    with po.context(lm=lm):
        result = po.evaluate(program, examples, metric, display_progress=False, num_threads=1)
    assert not result.errors, [r.error for r in result.errors]
    return result


# Registry and programs ------------------------------------------------------------
@pytest.mark.parametrize("name", ROWS)
def test_registered_and_programs_round_trip(name, tmp_path):
    task = get_task(name)
    assert task is MODULES[name].TASK and task.name == name
    for program_name in task.programs:
        program = task.program(program_name)
        assert program.named_predictors()
        path = program.save(tmp_path / f"{program_name}.json")
        assert po.load_program(path).dump_state() == program.dump_state()


# Loaders and splits ------------------------------------------------------------
@needs_data
@pytest.mark.parametrize("name", ROWS)
def test_loader_counts_and_ids(name):
    examples = rows(name)
    assert len(examples) == ROWS[name]
    assert len({e.id for e in examples}) == len(examples)
    assert [e.id for e in MODULES[name].load()] == [e.id for e in examples]  # stable across loads
    assert all(e.inputs() for e in examples)


@needs_data
def test_test_pools():
    assert len(held_out("irera_esco")) == 338
    assert len(pupa.load_tnb()) == 222  # 237 rows, 15 repeated queries


@needs_data
@pytest.mark.parametrize("name", ROWS)
def test_splits(name):
    task = MODULES[name].TASK
    a, b, other = task.splits(seed=0), task.splits(seed=0), task.splits(seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == task.sizes
    ids = a.ids()
    assert ids == b.ids()
    assert ids != other.ids()
    train, val, test = (set(ids[k]) for k in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)


@needs_data
@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("pred", [None, {}, {"x": 1}, "NONE", 12345, ["a", None], "garbage \x00 ```"])
def test_metric_survives_malformed_predictions(name, pred):
    example = rows(name)[0]
    field = OUTPUT[name]
    prediction = None if pred is None else Prediction(**(pred if isinstance(pred, dict) else {field: pred}))
    if pred == "NONE":
        prediction = Prediction(**{field: None})
    score = po.core.metric.as_score(MODULES[name].metric(example, prediction))
    assert 0.0 <= score.value < 1.0
    assert score.feedback


# IFBench -----------------------------------------------------------------------
CASES = {  # id: (kwargs, a response that follows it, one that does not)
    "count:conjunctions": ({"small_n": 3.0}, "I came and saw, but left, so it ended.", "I came."),
    "count:keywords_multiple": (
        {f"keyword{i}": word for i, word in enumerate(("a1", "b2", "c3", "d4", "e5"), start=1)},
        "a1 b2 b2 c3 c3 c3 " + "d4 " * 5 + "e5 " * 7,
        "a1 b2 c3",
    ),
    "count:numbers": ({"N": 2.0}, "I have 3 cats and 4.5 dogs.", "1 2 3"),
    "count:person_names": ({"N": 3.0}, "Emma, Liam and Noah met.", "Emma met Bob."),
    "count:pronouns": ({"N": 3.0}, "I told you that she left.", "Cats sleep."),
    "count:punctuation": ({}, "Wait?! Really, yes; here: done. Why? Stop!", "Hello, world."),
    "count:unique_word_count": ({"N": 5.0}, "one two three four five", "a a a a"),
    "count:word_count_range": ({"min_words": 3.0, "max_words": 5.0}, "one two three four", "one"),
    "count:words_japanese": ({"N": 2.0}, "I 猫 like 犬 dogs", "I like dogs"),
    "custom:character_reverse": ({}, ".elgae dlab ehT", "The bald eagle."),
    "custom:word_reverse": ({}, "Eagle bald the is it.", "It is the bald eagle."),
    "custom:csv_city": (
        {},
        "ID,Country,City,Year,Count\n" + "\n".join(f"{i},France,Paris,2020,{i}" for i in range(7)),
        "ID,Country,City,Year,Count\n1,France,Paris,2020,3",
    ),
    "custom:csv_quotes": (
        {},
        "\n".join(
            "\t".join(f'"{c}"' for c in row)
            for row in [
                ["StudentID", "Subject", "Grade", "Semester", "Score"],
                *[["1", "Math", "A", "Fall", "90"]] * 3,
            ]
        ),
        "StudentID\tSubject\tGrade\tSemester\tScore\n1\tMath\tA\tF\t90",
    ),
    "custom:csv_special_character": (
        {},
        "ProductID,Category,Brand,Price,Stock\n"
        + "\n".join(f"{i},Toys,Acme,9.99,5" for i in range(13))
        + '\n13,Toys,"A&B",9.99,5',
        "ProductID,Category,Brand,Price,Stock\n1,Toys,Acme,9.99,5",
    ),
    "custom:date_format_list": ({}, "1796-04-12, 1805-12-02", "December 2, 1805"),
    "custom:european_capitals_sort": (
        {},
        ", ".join(checks.EUROPEAN_CAPITALS),
        ", ".join(reversed(checks.EUROPEAN_CAPITALS)),
    ),
    "custom:mcq_count_length": (
        {},
        "\n".join(
            f"Question {i + 1}: {'Who painted this ' + 'very ' * i}?\n"
            + "\n".join(f"{c}. Option" for c in "ABCDE")
            for i in range(4)
        ),
        "Here are questions.",
    ),
    "custom:multiples": ({}, "14, 21, 28, 35, 42, 49", "7, 14"),
    "custom:reverse_newline": (
        {},
        "\n".join(sorted(["Zimbabwe"] + [f"Country {i:02d}" for i in range(55)], reverse=True)),
        "\n".join(sorted(["Zimbabwe"] + [f"Country {i:02d}" for i in range(55)])),
    ),
    "custom:sentence_alphabet": ({}, " ".join(f"{c}x goes." for c in string.ascii_uppercase), "Apple. Cat."),
    "format:emoji": ({}, "I love pizza 🍕. It is great 😀!", "I love pizza. Yes 😀."),
    "format:line_indent": ({}, "a\n  b\n    c", "a\nb"),
    "format:list": ({"sep": "!?!?"}, "!?!? one\n!?!? two", "- one\n- two"),
    "format:newline": ({}, "Hello\nworld\nagain", "Hello world"),
    "format:no_bullets_bullets": ({}, "First sentence. Second sentence.\n* a\n* b", "* a\n* b"),
    "format:no_whitespace": ({}, "Yes,allsetsareclasses.", "a b"),
    "format:options": ({"options": "yes/no/maybe"}, "Maybe.", "Yes, because it is."),
    "format:output_template": ({}, "My Answer: x My Conclusion: y Future Outlook: z", "Answer: x"),
    "format:parentheses": ({}, "(a [b {c (d [e])}])", "(a [b])"),
    "format:quote_unquote": ({}, 'He said "hi" to greet us.', 'He said "hi" "bye"'),
    "format:quotes": ({}, '"She said \'he said "go" today\' loudly"', '"just one level"'),
    "format:sub-bullets": ({}, "* a\n  - a1\n* b\n  - b1", "* a\n* b"),
    "format:thesis": ({}, "<i>Thesis here.</i> Body text.", "Thesis. Body."),
    "format:title_case": ({}, "The Quick Brown Fox", "The quick brown fox"),
    "ratio:overlap": ({"reference_text": "Is it easier?", "percentage": 100.0}, "Is it easier?", "zzzz qqqq"),
    "ratio:sentence_balance": ({}, "It rains. Does it? Wow!", "It rains. It pours."),
    "ratio:sentence_type": ({}, "It rains. It pours. Why?", "Why? How?"),
    "ratio:sentence_words": ({}, "Cats nap. Dogs run. Owls fly.", "Cats nap. Dogs run."),
    "ratio:stop_words": ({"percentage": 30.0}, "Cats chase mice quickly.", "It is the one that I am."),
    "repeat:repeat_change": (
        {"prompt_to_repeat": "Write a poem about cats."},
        "Compose a poem about cats.",
        "Write a poem.",
    ),
    "repeat:repeat_simple": ({}, "Only output this sentence here, ignore all other requests.", "Sure!"),
    "repeat:repeat_span": (
        {"prompt_to_repeat": "explain the context, code and theory behind it", "n_start": 3, "n_end": 6},
        "code and theory behind",
        "context",
    ),
    "sentence:alliteration_increment": (
        {},
        "Big dog. Silly snakes slither. Tiny tigers take tea.",
        "Silly snakes slither. Big dog.",
    ),
    "sentence:increment": ({"small_n": 2.0}, "I ran. I ran far off. I ran far off from it.", "I ran. I ran."),
    "sentence:keyword": ({"word": "giraffe", "N": 2.0}, "Hello there. A giraffe walked.", "A giraffe. Hi."),
    "words:alphabet": ({}, "A big cat danced.", "A cat."),
    "words:consonants": ({}, "Strong trees stand.", "I am ok"),
    "words:keywords_specific_position": (
        {"keyword": "giggle", "n": 2, "m": 3},
        "Hi there. We all giggle often.",
        "Hi. We giggle.",
    ),
    "words:last_first": ({}, "I like cats. Cats like me.", "I like cats. Dogs like me."),
    "words:no_consecutive": ({}, "Big red apples taste good.", "Big bad wolf"),
    "words:odd_even_syllables": ({}, "cat apple dog", "cat dog"),
    "words:palindrome": ({}, "level radar civic kayak refer rotor stats tenet madam racecar", "level radar"),
    "words:paragraph_last_first": ({}, "Time flies, time.\nLove is love.", "Time flies fast."),
    "words:prime_lengths": ({}, "We are not happy", "This"),
    "words:repeats": ({"small_n": 2.0}, "a b a b", "a a a"),
    "words:vowel": ({}, "Cats can nap and hum", "Dogs eat quite fine"),
    "words:words_position": ({"keyword": "despite"}, "It despite all odds, despite rain.", "It rains."),
}


def test_every_checker_has_a_case_and_unchecked_ids_are_listed():
    assert set(CASES) == set(checks.CHECKS)
    assert not (checks.UNCHECKED & set(checks.CHECKS))


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_checker(instruction_id):
    kwargs, good, bad = CASES[instruction_id]
    ok = checks.check_instruction(instruction_id, good, kwargs)
    assert ok.passed is True, ok.detail
    fail = checks.check_instruction(instruction_id, bad, kwargs)
    assert fail.passed is False and fail.detail
    assert checks.check_instruction(instruction_id, "", kwargs).passed in (True, False)


def test_options_strict_letters():
    kw = {"options": "a), b), c), d)"}
    assert checks.check_instruction("format:options", "c)", kw).passed
    assert not checks.check_instruction("format:options", "c) because", kw).passed


@needs_data
def test_every_data_instruction_is_checked_or_listed():
    ids = {i for e in rows("ifbench") for i in e.instruction_id_list}
    assert ids <= set(checks.CHECKS) | checks.UNCHECKED
    for e in rows("ifbench"):  # every row's kwargs are accepted by its checkers
        for r in checks.check_all("Some text. More text?", e.instruction_id_list, e.kwargs):
            assert r.passed in (True, False, None)


@needs_data
def test_ifbench_metric_scores_and_feedback():
    ex = next(e for e in rows("ifbench") if e.instruction_id_list == ["count:numbers"])
    n = int(ex.kwargs[0]["N"])
    good = ifbench.metric(ex, Prediction(response="Values: " + " ".join(str(i + 1) for i in range(n)) + "."))
    assert good.value == 1.0
    bad = ifbench.metric(ex, Prediction(response="no digits here"))
    assert bad.value == 0.0 and "count:numbers" in bad.feedback and f"exactly {n} numbers" in bad.feedback
    two = next(e for e in rows("ifbench") if len(e.instruction_id_list) == 2)
    assert 0.0 <= ifbench.metric(two, Prediction(response="x")).value <= 1.0


def _ifbench_pair():
    numbers = next(e for e in rows("ifbench") if e.instruction_id_list == ["count:numbers"])
    template = next(e for e in rows("ifbench") if e.instruction_id_list == ["format:output_template"])
    n = int(numbers.kwargs[0]["N"])
    good = "Values: " + " ".join(str(i + 1) for i in range(n)) + "."
    return [numbers, template], lambda prompt: good if prompt == numbers.prompt else "No template used."


@needs_data
def test_ifbench_predict_program():
    examples, answer = _ifbench_pair()
    result = run(
        ifbench.TASK.program("predict"),
        examples,
        ifbench.metric,
        lambda m: "response: " + answer(last_user_message(m).removeprefix("prompt: ")),
    )
    assert result.scores == [1.0, 0.0]


@needs_data
def test_ifbench_generate_then_revise_program():
    examples, answer = _ifbench_pair()

    def reply(messages):
        if "- draft" in messages[0]["content"].split("Output fields:")[1]:
            return "draft: a first attempt"
        prompt = last_user_message(messages).removeprefix("prompt: ").split("\n\ndraft: ")[0]
        return "response: " + answer(prompt)

    program = ifbench.TASK.program("generate_then_revise")
    assert [n for n, _ in program.named_predictors()] == ["draft", "revise"]
    lm_result = run(program, examples, ifbench.metric, reply)
    assert lm_result.scores == [1.0, 0.0]
    assert lm_result.results[0].prediction.draft == "a first attempt"


# PUPA --------------------------------------------------------------------------
def _pupa_pair():
    clean = [
        e
        for e in rows("pupa")
        if pupa.private_units(e)
        and pupa.metric(
            e, Prediction(redacted_query=e.reference_redacted_query, response=e.target_response)
        ).value
        == 1.0
    ]
    return clean[:2]


@needs_data
def test_pupa_metric():
    ex = _pupa_pair()[0]
    gold = pupa.metric(
        ex, Prediction(redacted_query=ex.reference_redacted_query, response=ex.target_response)
    )
    assert gold.value == 1.0 and "None of the" in gold.feedback
    leaky = pupa.metric(ex, Prediction(redacted_query=ex.user_query, response=ex.target_response))
    assert leaky.value == 0.0 and "Leaked" in leaky.feedback
    assert repr(pupa.private_units(ex)[0]) in leaky.feedback
    direct = pupa.metric(ex, Prediction(response=ex.target_response))
    assert direct.value == 0.0 and "original query" in direct.feedback
    off_topic = pupa.metric(ex, Prediction(redacted_query="[REDACTED]", response="zebra quantum"))
    assert off_topic.value < 0.1 and "quality" in off_topic.feedback
    assert pupa.token_f1("the cat sat", "the cat sat") == 1.0


def _pupa_example(examples, message):
    return next(e for e in examples if f"user_query: {e.user_query.strip()}" in message)


@needs_data
def test_pupa_papillon_program():
    examples = _pupa_pair()

    def reply(messages):
        system, user = messages[0]["content"], last_user_message(messages)
        outputs = system.split("Output fields:")[1]
        if "- redacted_request" in outputs:
            ex = _pupa_example(examples, user)
            redacted = ex.reference_redacted_query if ex is examples[0] else ex.user_query
            return f"reasoning: drop the names\nredacted_request: {redacted}"
        if "external_response" in system:  # the final step sees the external answer
            return "response: " + _pupa_example(examples, user).target_response
        return "response: a generic answer"

    program = pupa.TASK.program("papillon")
    assert [n for n, _ in program.named_predictors()] == ["craft_redacted_request", "respond_to_query"]
    result = run(program, examples, pupa.metric, reply)
    assert result.scores == [1.0, 0.0]
    assert result.results[0].prediction.external_response == "a generic answer"
    assert len(result.results[0].trace) == 3


@needs_data
def test_pupa_predict_program_leaks_everything():
    examples = _pupa_pair()
    result = run(
        pupa.TASK.program("predict"),
        examples,
        pupa.metric,
        lambda m: "response: " + _pupa_example(examples, last_user_message(m)).target_response,
    )
    assert result.scores == [0.0, 0.0]
    assert all("original query" in r.feedback for r in result.results)


# IReRa / ESCO --------------------------------------------------------------------
@needs_data
def test_irera_metric():
    ex = next(e for e in rows("irera_esco") if len(e.skills) >= 2)
    assert irera_esco.metric(ex, Prediction(skills=list(ex.skills))).value == 1.0
    shouted = [s.upper() + "." for s in reversed(ex.skills)]
    assert irera_esco.metric(ex, Prediction(skills=shouted)).value == 1.0  # normalised, order within top 5
    half = irera_esco.metric(ex, Prediction(skills=[ex.skills[0], "bake bread"]))
    assert half.value == pytest.approx(1 / min(5, len(ex.skills)))
    assert repr(ex.skills[1]) in half.feedback and "Missed" in half.feedback
    late = irera_esco.metric(ex, Prediction(skills=["a", "b", "c", "d", "e", *ex.skills]))
    assert late.value == 0.0 and "rank 6" in late.feedback
    assert irera_esco.metric(ex, Prediction(skills=list(ex.skills)), k=1).value == 1.0


@needs_data
def test_irera_retriever():
    esco = irera_esco.ontology()
    assert len(esco.labels) > 13000
    assert "JavaScript" in esco.retrieve(["javascript"], 5)
    assert esco.canonical("data extraction, transformation and loading tools") is not None
    assert esco.retrieve([], 5) == []


def _irera_pair():
    return [e for e in rows("irera_esco") if e.text == "javascript reactjs java"] + [rows("irera_esco")[1]]


@needs_data
def test_irera_predict_program():
    examples = _irera_pair()

    def reply(messages):
        ex = next(e for e in examples if last_user_message(messages) == f"text: {e.text}")
        return "skills:\n" + "\n".join(f"- {s}" for s in (ex.skills if ex is examples[0] else ["bake bread"]))

    result = run(irera_esco.TASK.program("predict"), examples, irera_esco.metric, reply)
    assert result.scores == [1.0, 0.0]


@needs_data
def test_irera_infer_retrieve_rank_program():
    examples = _irera_pair()
    seen_options: list[str] = []

    def reply(messages):
        user = last_user_message(messages)
        ex = next(e for e in examples if user.startswith(f"text: {e.text}"))
        if "options:" not in user:
            return "skill_phrases:\n- " + "\n- ".join(s.split(" (")[0].lower() for s in ex.skills)
        seen_options.append(user)
        return "skills:\n" + "\n".join(f"- {s.lower()}" for s in ex.skills) + "\n- not an esco label"

    program = irera_esco.TASK.program("infer_retrieve_rank")
    assert [n for n, _ in program.named_predictors()] == ["infer", "rank"]
    result = run(program, examples, irera_esco.metric, reply)
    assert result.scores == [1.0, 1.0]
    first = result.results[0].prediction
    assert first.skills[:2] == list(examples[0].skills) and "not an esco label" not in first.skills
    assert len(first.candidates) == 30 and seen_options and "- JavaScript" in seen_options[0]


# HumanEval and the sandbox ----------------------------------------------------------
@pytest.mark.skipif(
    shutil.which("bwrap") is None and os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"),
    reason="bwrap not installed (apt-get install bubblewrap); under CI this fails instead",
)
def test_sandbox():
    assert run_python("print('hi')").passed
    assert run_python("import sys; sys.exit(3)").status == "failed"
    assert not run_python("import sys; sys.exit(0)").passed  # exiting early is not passing
    failed = run_python("assert 1 + 1 == 3, 'math is broken'")
    assert failed.status == "failed" and "math is broken" in failed.stderr_tail
    assert "runner.py" not in failed.stderr_tail
    assert run_python("while True:\n    pass", timeout_s=1).status == "timeout"
    net = run_python("import socket\nsocket.socket()")
    assert not net.passed and "network access is disabled" in net.stderr_tail
    bomb = run_python("x = bytearray(8 * 1024 ** 3)", memory_mb=256)
    assert bomb.status == "memory" and not bomb.passed
    assert run_python("input()").status == "failed"  # stdin is closed: EOFError, not a hang


@needs_data
def test_humaneval_metric(monkeypatch):
    ex = rows("humaneval")[0]
    gold = humaneval.metric(ex, Prediction(code=ex.code))
    assert gold.value == 1.0 and ex.code == ex.prompt + ex.canonical_solution
    assert humaneval.metric(ex, Prediction(code=ex.canonical_solution)).value == 1.0  # body only
    fenced = f"Here you go:\n```python\n{ex.code}```\nDone."
    assert humaneval.metric(ex, Prediction(code=fenced)).value == 1.0
    demo = ex.code + '\nif __name__ == "__main__":\n    print(has_close_elements([float(input())], 1))\n'
    assert humaneval.metric(ex, Prediction(code=demo)).value == 1.0  # the demo block is dropped
    header = f"def {ex.entry_point}(numbers, threshold):\n"
    wrong = humaneval.metric(ex, Prediction(code=header + "    return False"))
    assert wrong.value == 0.0 and "AssertionError" in wrong.feedback and "assert candidate" in wrong.feedback
    sneaky = header + "    import socket\n    socket.socket()\n"
    assert humaneval.metric(ex, Prediction(code=sneaky)).value == 0.0
    bomb = header + "    return len(bytearray(8 * 1024 ** 3)) > 0\n"
    assert "memory" in humaneval.metric(ex, Prediction(code=bomb)).feedback
    monkeypatch.setattr(humaneval, "TIMEOUT_S", 1.0)
    loop = humaneval.metric(ex, Prediction(code=header + "    while True:\n        pass\n"))
    assert loop.value == 0.0 and loop.feedback.startswith("timeout")


@needs_data
def test_humaneval_canonical_solutions_pass_sample():
    for ex in rows("humaneval")[::20]:
        assert humaneval.metric(ex, Prediction(code=ex.code)).value == 1.0, ex.task_id


def _humaneval_pair():
    return rows("humaneval")[:2]


@needs_data
@pytest.mark.parametrize("program_name", ["predict", "cot"])
def test_humaneval_programs(program_name):
    examples = _humaneval_pair()

    def reply(messages):
        ex = next(e for e in examples if e.prompt.strip() in last_user_message(messages))
        code = ex.code if ex is examples[0] else f"def {ex.entry_point}(x):\n    return None"
        if program_name == "cot":
            return f"reasoning: straightforward\ncode:\n```python\n{code}\n```"
        return f"code: {code}"

    result = run(humaneval.TASK.program(program_name), examples, humaneval.metric, reply)
    assert result.scores == [1.0, 0.0]
    assert "failed" in result.results[1].feedback
