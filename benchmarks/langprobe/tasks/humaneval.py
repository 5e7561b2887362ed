"""HumanEval: complete a Python function from its signature and docstring; pass@1 on hidden tests."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
import textwrap
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from langprobe.tasks.sandbox import run_python
from promptopt import ChainOfThought, Example, Predict, Score, Signature

TIMEOUT_S = 10.0
MEMORY_MB = 1024
_FEEDBACK_CHARS = 800
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def _rows(folder) -> list[dict[str, Any]]:
    if folder is not None:
        with gzip.open(folder / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    return load_from_hub("openai/openai_humaneval", split="test")


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return [
        Example(
            _id="humaneval-" + r["task_id"].split("/")[-1],
            prompt=r["prompt"],
            entry_point=r["entry_point"],
            canonical_solution=r["canonical_solution"],
            # The reference in the shape of the output field, so it can serve as a demo.
            code=r["prompt"] + r["canonical_solution"],
            test=r["test"],
            task_id=r["task_id"],
        ).with_inputs("prompt")
        for r in _rows(task_dir("humaneval", data_dir))
    ]


def extract_code(text: object) -> str:
    """The code in a reply: the fenced block defining a function if there is one, else the text."""
    if text is None:
        return ""
    text = str(text)
    blocks = [b for b in _FENCE.findall(text) if b.strip()]
    if not blocks:
        return text.strip("\n")
    with_def = [b for b in blocks if re.search(r"^\s*def ", b, re.MULTILINE)]
    return (with_def or blocks)[0].strip("\n")


def _drop_main_block(code: str) -> str:
    # A demo under `if __name__ == "__main__":` (often calling input()) is not part of the answer.
    return re.sub(r"^if __name__\s*==\s*['\"]__main__['\"]\s*:.*?(?=^\S|\Z)", "", code, flags=re.M | re.S)


def build_program(prompt: str, code: str, entry_point: str) -> str:
    """The prompt plus the model's code: a full definition overrides the stub, a body completes it."""
    code = _drop_main_block(code)
    if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", textwrap.dedent(code), re.MULTILINE):
        # The prompt still supplies imports and helper functions the model may not repeat.
        return prompt.rstrip() + "\n\n\n" + textwrap.dedent(code) + "\n"
    # A body only. Reply parsing strips the first line's indentation, so try restoring that first.
    candidates = ["    " + code.lstrip(), textwrap.indent(textwrap.dedent(code), "    ")]
    for body in candidates:
        try:
            ast.parse(prompt + body)
        except SyntaxError:
            continue
        return prompt + body + "\n"
    return prompt + candidates[-1] + "\n"


def metric(example: Example, prediction, trace=None) -> Score:
    raw = prediction.get("code") if hasattr(prediction, "get") else None
    code = extract_code(raw)
    entry = example.entry_point
    if not code.strip():
        return Score(0.0, f"The code field is empty; it must hold the completed Python function `{entry}`.")
    program = build_program(example.prompt, code, entry) + "\n\n" + example.test + f"\n\ncheck({entry})\n"
    result = run_python(program, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB)
    if result.passed:
        return Score(1.0, f"All tests of `{entry}` passed.")
    if result.status == "timeout":
        return Score(
            0.0,
            f"timeout: `{entry}` ran longer than {TIMEOUT_S:g} s on the tests "
            "(an infinite loop or a far too slow algorithm).",
        )
    if result.status == "memory":
        return Score(0.0, f"`{entry}` exceeded the {MEMORY_MB} MB memory limit on the tests (MemoryError).")
    tail = result.stderr_tail[-_FEEDBACK_CHARS:]
    return Score(0.0, f"The tests of `{entry}` failed:\n{tail}")


def _signature() -> Signature:
    return Signature.parse(
        "prompt -> code",
        instruction="Complete the Python function whose signature and docstring are given. "
        "Write the whole function, including its def line, as plain Python code.",
        descriptions={
            "prompt": "A Python function signature with a docstring describing its behaviour.",
            "code": "The complete Python function definition, no explanation.",
        },
    )


TASK = Task(
    name="humaneval",
    load=load,
    metric=metric,
    programs={"predict": lambda: Predict(_signature()), "cot": lambda: ChainOfThought(_signature())},
    sizes=(20, 44, 100),
    description="HumanEval Python function completion; pass@1 in a sandboxed interpreter.",
    kind="code",
)
