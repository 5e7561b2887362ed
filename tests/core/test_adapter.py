import pytest

from promptopt import ChatAdapter, Example, ParseError, Signature
from promptopt.core.signature import Field

A = ChatAdapter()


def sig(spec="question -> answer", **kw):
    return Signature.parse(spec, **kw)


def test_format_system_demos_and_user():
    s = sig("question -> reasoning, answer", instruction="Solve it.")
    demos = [Example(question="1+1?", reasoning="add", answer="2"), Example(other="skip me")]
    msgs = A.format(s, demos, {"question": "2+2?"})
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Solve it.")
    assert "reasoning: ...\nanswer: ..." in msgs[0]["content"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "reasoning: add\nanswer: 2"
    assert msgs[-1]["content"] == "question: 2+2?"
    with pytest.raises(KeyError, match="missing input"):
        A.format(s, [], {})


@pytest.mark.parametrize(
    "text",
    [
        "reasoning: 2 and 2\nanswer: 4",
        "**Reasoning:** 2 and 2\n**Answer:** 4",
        "### Reasoning\n2 and 2\n### Answer:\n4",
        "[[ ## reasoning ## ]]\n2 and 2\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]",
        '{"reasoning": "2 and 2", "answer": "4"}',
        "Reasoning: 2 and 2\n\nAnswer: 4",
    ],
)
def test_parse_tolerates_small_model_formats(text):
    out = A.parse(sig("question -> reasoning, answer"), text)
    assert out["answer"] == "4"
    assert "2 and 2" in out["reasoning"]


def test_parse_single_output_without_header_takes_whole_reply():
    assert A.parse(sig(), "  Paris  ") == {"answer": "Paris"}


def test_parse_missing_reasoning_is_tolerated_missing_answer_is_not():
    s = sig("question -> reasoning, answer")
    assert A.parse(s, "answer: 7") == {"reasoning": "", "answer": "7"}
    with pytest.raises(ParseError, match="lacks"):
        A.parse(s, "reasoning: I think it is 7")


@pytest.mark.parametrize("text", ["", "   ", None])
def test_parse_empty_reply(text):
    with pytest.raises(ParseError, match="empty"):
        A.parse(sig(), text)


def test_typed_fields():
    s = Signature.make(["q"], [Field("n", type="int"), Field("ok", type="bool"), Field("xs", type="list")])
    out = A.parse(s, "n: $1,200 apples\nok: Yes.\nxs:\n- a\n- b")
    assert out == {"n": 1200, "ok": True, "xs": ["a", "b"]}
    assert A.parse(s, 'n: 3.5\nok: no\nxs: ["x", "y"]')["xs"] == ["x", "y"]
    with pytest.raises(ParseError, match="number"):
        A.parse(s, "n: many\nok: yes\nxs: a")
    with pytest.raises(ParseError, match="yes or no"):
        A.parse(s, "n: 1\nok: perhaps\nxs: a")


def test_choices_are_mapped_or_rejected():
    s = sig("x -> label", choices={"label": ["setosa", "versicolor", "virginica"]})
    assert A.parse(s, "label: Setosa.") == {"label": "setosa"}
    assert A.parse(s, "label: I believe it is virginica") == {"label": "virginica"}
    with pytest.raises(ParseError, match="one of"):
        A.parse(s, "label: setosa or virginica")
    with pytest.raises(ParseError, match="one of"):
        A.parse(s, "label: a rose")


@pytest.mark.parametrize(
    "text, want",
    [
        ("better: Output B follows the instruction better by providing a list", "B"),
        ("better: output_a, since b is off topic", "A"),
        ("better: B follows the instruction; A does not", "B"),
    ],
)
def test_a_choice_named_first_and_then_explained_is_read(text, want):
    s = sig("x -> better", choices={"better": ["A", "B"]})
    assert A.parse(s, text) == {"better": want}


def test_choices_named_together_up_front_stay_unreadable():
    s = sig("x -> better", choices={"better": ["A", "B"]})
    with pytest.raises(ParseError, match="one of"):
        A.parse(s, "better: A or B, it depends on the reader")


def test_header_only_at_line_start():
    s = sig("question -> reasoning, answer")
    out = A.parse(s, "reasoning: the answer: is not here yet\nanswer: 5")
    assert out["answer"] == "5"
    assert out["reasoning"] == "the answer: is not here yet"


@pytest.mark.parametrize(
    "text, want",
    [
        ("label: NOT SUPPORTED", "NOT_SUPPORTED"),
        ("label: Not supported.", "NOT_SUPPORTED"),
        ("label: The claim is not supported", "NOT_SUPPORTED"),
        ("label: not_supported", "NOT_SUPPORTED"),
        ("label: SUPPORTED", "SUPPORTED"),
        ("label: the claim is supported", "SUPPORTED"),
    ],
)
def test_choice_contained_in_another_choice(text, want):
    s = sig("claim -> label", choices={"label": ["SUPPORTED", "NOT_SUPPORTED"]})
    assert A.parse(s, text) == {"label": want}


@pytest.mark.parametrize(
    "reply, want",
    [
        ("response: **42**", "42"),
        ("response: * first point\n* second point", "* first point\n* second point"),
        ("**response:** **bold** then plain", "**bold** then plain"),
    ],
)
def test_emphasis_is_removed_but_bullets_stay(reply, want):
    sig = Signature.parse("prompt -> response")
    assert ChatAdapter().parse(sig, reply)["response"] == want


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        ("reasoning: 72 + 72 + 54 = 198.\n\nThe answer to the problem is \\(\\boxed{198}\\).", "198"),
        ("reasoning: 3 times 4 makes 12, so the final answer is 12.", "12"),
        ("reasoning: Add them.\nThe answer is: $5$", "5"),
        ("reasoning: Halve it: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ],
)
def test_a_chain_of_thought_that_states_its_answer_fills_the_last_field(reply, want):
    s = sig("question -> reasoning, answer")
    out = A.parse(s, reply)
    assert out["answer"] == want and out["reasoning"].startswith(reply.split(": ", 1)[1][:8])


def test_a_stated_answer_is_typed_and_only_rescues_the_last_field():
    s = Signature.parse("question -> reasoning, answer: float")
    assert A.parse(s, "reasoning: 6 * 7. The answer is 42.") == {
        "reasoning": "6 * 7. The answer is 42.",
        "answer": 42.0,
    }
    with pytest.raises(ParseError, match="lacks"):
        A.parse(s, "reasoning: The answer is:")  # nothing stated
    two = sig("question -> reasoning, answer, confidence")
    with pytest.raises(ParseError, match="lacks"):
        A.parse(two, "reasoning: The answer is 4.")  # two fields missing: not guessed


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        ("reasoning: The petals are long. Therefore, the species of the iris flower is setosa.", "setosa"),
        ("reasoning: Long petals.\nSo the flower is most likely **virginica**.", "virginica"),
        ("reasoning: Wide sepals; these are versicolor", "versicolor"),
        # Negated, two labels, or a label that is not the closing sentence's answer: not guessed.
        ("reasoning: The species is not setosa.", None),
        ("reasoning: It is setosa or it is versicolor.", None),
        ("reasoning: The species is setosa. But the petals are wide.", None),
        ("reasoning: Setosa has short petals, unlike this one.", None),
    ],
)
def test_a_closed_last_field_is_read_from_the_closing_sentence_only_when_it_names_one_label(reply, want):
    s = sig("measurements -> reasoning, species", choices={"species": ["setosa", "versicolor", "virginica"]})
    if want is None:
        with pytest.raises(ParseError, match="lacks"):
            A.parse(s, reply)
    else:
        assert A.parse(s, reply)["species"] == want
