"""MATH500: competition math problems whose final answer is a LaTeX expression.

Only the 500-row MATH500 test split is available, so train, val and test are
drawn from that one pool. Answers are compared after normalisation (boxes,
``$``, ``\\left``/``\\right``, ``\\text{}``, units, degree signs and spacing
removed) and, where both sides are plain numbers or fractions, numerically.
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Score, Signature


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in a text, braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    bare = re.match(r"\\(?:boxed|fbox) +([^{\s$]+)", rest)  # "\boxed 5"
    if bare:
        return bare.group(1)
    open_at = rest.find("{")
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(rest)):
        if rest[i] == "{":
            depth += 1
        elif rest[i] == "}":
            depth -= 1
            if depth == 0:
                return rest[open_at + 1 : i]
    return None


_UNITS = re.compile(
    r"(?<=[\d}])\s*(?:square\s+)?(?:units?|degrees?|cm|km|inch(?:es)?|feet|foot|ft|miles?|meters?|"
    r"cents?|dollars?|hours?|minutes?|seconds?|days?|years?)(?:\^\{?[23]\}?)?\s*$"
)
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf)\s*\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def normalize(answer: object) -> str:
    """A canonical string for a MATH answer (the last box's content if the text has one)."""
    if answer is None:
        return ""
    s = str(answer).strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\n", " ").replace("\\!", "")
    s = re.sub(r"\\[,;: ]", " ", s)
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s).replace("°", "")
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = _TEXT.sub(r"\1", s)
    s = _UNITS.sub("", s.strip())
    s = s.replace(" ", "")
    s = re.sub(r"^[a-zA-Z]\\in", "", s)
    lhs, eq, rhs = s.partition("=")
    if eq and len(lhs) <= 2 and "=" not in rhs:  # "x=5" and "5" are the same answer
        s = rhs
    s = re.sub(r"\\sqrt(?!\{)(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"\\frac(\{[^{}]*\}|\w)(\{[^{}]*\}|\w)", _braced_frac, s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)
    s = s.rstrip(".")
    if re.fullmatch(r"\(?[A-Ea-e]\)?", s):  # a multiple-choice letter, "(C)" or "C"
        return s.strip("()").upper()
    if re.fullmatch(r"[A-Za-z]{2,}", s):  # a word answer such as "Evelyn" or "east"
        return s.lower()
    return s


def _braced_frac(m: re.Match[str]) -> str:
    num, den = (g if g.startswith("{") else "{" + g + "}" for g in m.groups())
    return f"\\frac{num}{den}"


_NUMBER = r"-?\d+(?:\.\d+)?"


def to_number(s: str) -> Fraction | None:
    """The exact value of a normalised answer that is an integer, decimal or simple fraction."""
    try:
        if re.fullmatch(_NUMBER, s):
            return Fraction(s)
        m = re.fullmatch(rf"(-?)\\frac\{{({_NUMBER})\}}\{{({_NUMBER})\}}", s)
        if m:
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) else value
        m = re.fullmatch(rf"({_NUMBER})/({_NUMBER})", s)
        if m:
            return Fraction(m.group(1)) / Fraction(m.group(2))
        m = re.fullmatch(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # a mixed number, 1\frac{4}{5}
        if m:
            value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
            return -value if m.group(1) else value
    except ZeroDivisionError:
        return None
    return None


def _split_top(s: str) -> tuple[str, list[str]]:
    """Outer brackets (if they enclose everything) and the top-level comma-separated parts."""
    brackets = ""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        depth = 0
        for i, ch in enumerate(s):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth == 0 and i < len(s) - 1:
                break
        else:
            brackets, s = s[0] + s[-1], s[1:-1]
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return brackets, parts


def _same(p: str, g: str) -> bool:
    if p == g:
        return True
    pn, gn = to_number(p), to_number(g)
    if pn is not None and gn is not None:
        return pn == gn
    (pb, pparts), (gb, gparts) = _split_top(p), _split_top(g)
    if pb != gb or len(pparts) != len(gparts) or len(gparts) < 2:
        return False
    if pb:  # a tuple or interval: order matters
        return all(_same(a, b) for a, b in zip(pparts, gparts))
    remaining = list(gparts)  # a bare list of solutions: any order
    for a in pparts:
        match = next((b for b in remaining if _same(a, b)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def is_equiv(predicted: object, gold: object) -> bool:
    """Whether two MATH answers are equal after normalisation (numerically where both are numbers)."""
    p, g = normalize(predicted), normalize(gold)
    return bool(p) and _same(p, g)


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    folder = task_dir("math", data_dir)
    if folder is not None:
        with open(folder / "math500_test.jsonl") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    else:
        rows = load_from_hub("HuggingFaceH4/MATH-500", split="test")
    return [
        Example(
            _id=f"math-{i}",
            problem=r["problem"],
            answer=r["answer"],
            solution=r["solution"],
            subject=r["subject"],
            level=int(str(r["level"]).removeprefix("Level ")),
        ).with_inputs("problem")
        for i, r in enumerate(rows)
    ]


def metric(example: Example, prediction, trace=None) -> Score:
    raw = (prediction or {}).get("answer")
    want = example.answer
    if is_equiv(raw, want):
        return Score(1.0, f"Correct: the answer is {want}.")
    # Diagrams are Asymptote code: noise for a reader of the feedback.
    solution = re.sub(r"\[asy\].*?\[/asy\]", "", example.solution, flags=re.DOTALL).strip()
    if not normalize(raw):
        return Score(
            0.0,
            f"The answer field is empty ({raw!r}); it must hold only the final answer in "
            f"LaTeX. The correct answer is {want}. A correct solution: {solution}",
        )
    return Score(
        0.0,
        f"Wrong: answered {raw!r}, the correct answer is {want}. Give only the final answer "
        f"in simplest form, without words or units. A correct solution: {solution}",
    )


def _signature() -> Signature:
    return Signature.parse(
        "problem -> answer",
        instruction="Solve the competition math problem. Give the final answer in simplest exact form.",
        descriptions={"answer": "The final answer only, in LaTeX, e.g. \\frac{3}{4}, 2\\sqrt{5} or (1,-2)."},
    )


TASK = Task(
    name="math",
    load=load,
    metric=metric,
    programs={"cot": lambda: ChainOfThought(_signature()), "predict": lambda: Predict(_signature())},
    sizes=(50, 50, 150),
    description="MATH500 competition problems; answer equivalence after LaTeX normalisation.",
    kind="reasoning",
)
