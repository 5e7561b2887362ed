"""Reflection: turn traces and feedback into a better instruction.

The reflective dataset shows, for one predictor, what it read, what it wrote
and what the metric said, failures first, capped in number and length so the
reflection prompt stays small. Two proposers ship:

* :class:`RewriteProposer` — the GEPA paper's move: the reflection LM rewrites
  the whole instruction inside a fenced block. Good with strong reflectors.
* :class:`RulesProposer` — for small local reflectors, which mostly rephrase
  a prompt when asked to rewrite it: the LM only writes a few short rules
  learned from the failures; they are appended to the instruction in a
  managed ``Rules:`` list of bounded size (the oldest rule goes first).

Guard rails reject, rather than adopt, an empty, truncated, unfenced or
over-long proposal, and one identical to the current instruction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptopt.core.example import Example
from promptopt.core.signature import Signature
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.evaluation import Record

RULES_HEADER = "\n\nRules:\n"


@dataclass
class ReflectiveExample:
    inputs: dict[str, str]
    outputs: dict[str, str] | None
    feedback: str
    score: float
    error: str | None = None
    raw: str | None = None

    def render(self, index: int) -> str:
        lines = [f"### Example {index}", "Inputs:"]
        lines += [f"{k}: {v}" for k, v in self.inputs.items()]
        if self.outputs is not None:
            lines.append("Output:")
            lines += [f"{k}: {v}" for k, v in self.outputs.items()]
        else:
            lines.append(f"Output (could not be read: {self.error}):")
            lines.append(self.raw or "(empty)")
        lines.append(f"Feedback: {self.feedback}")
        return "\n".join(lines)


def _clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


class PredictorFeedback(Protocol):
    """Feedback on one predictor's part in a run, asked when GEPA reflects on that predictor (the
    run's own feedback is about the program as a whole); ``None`` keeps the run's feedback."""

    def __call__(self, example: Example, record: Record, predictor: str) -> str | None: ...


def reflective_dataset(
    predictor: str,
    records: Sequence[Record],
    *,
    max_examples: int = 4,
    max_chars: int = 600,
) -> list[ReflectiveExample]:
    """What one predictor did on a minibatch, worst results first, capped in size.

    At least one success is kept when there is one, so the reflector sees what
    to preserve as well as what to fix.
    """
    items: list[ReflectiveExample] = []
    for rec in records:
        entries = rec.entries(predictor)
        if not entries:
            continue
        e = entries[0]
        items.append(
            ReflectiveExample(
                inputs={k: _clip(v, max_chars) for k, v in e.inputs.items()},
                outputs={k: _clip(v, max_chars) for k, v in e.outputs.items()} if e.outputs else None,
                feedback=_clip(rec.feedback, max_chars),
                score=rec.score,
                error=e.error,
                raw=_clip(e.raw, max_chars) if e.raw else None,
            )
        )
    ordered = sorted(items, key=lambda x: x.score)
    chosen = ordered[:max_examples]
    if chosen and all(x.score < ordered[-1].score for x in chosen) and max_examples > 1:
        chosen = [*chosen[: max_examples - 1], ordered[-1]]
    return chosen


@dataclass
class ProposalRequest:
    """What a proposer improves: ``instruction`` is the component's current text.

    ``subject`` is empty for a predictor's instruction; for another text component it says what
    the text is ("the description of the tool `search`"), and ``signature`` and ``examples`` are
    those of the predictor that reads it.
    """

    component: str
    instruction: str
    signature: Signature
    examples: list[ReflectiveExample]
    subject: str = ""


@dataclass
class Proposal:
    instruction: str | None
    reason: str = ""
    raw: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.instruction is not None


class Proposer(Protocol):
    """Anything that turns a :class:`ProposalRequest` into a :class:`Proposal`."""

    def __call__(self, request: ProposalRequest, lm: LanguageModel) -> Proposal: ...


def _io_summary(sig: Signature) -> tuple[str, str]:
    ins = ", ".join(f"`{f.name}`" for f in sig.inputs) or "nothing"
    outs = ", ".join(
        f"`{f.name}`" + (f" (one of {', '.join(f.choices)})" if f.choices else "") for f in sig.outputs
    )
    return ins, outs


def split_rules(instruction: str) -> tuple[str, list[str]]:
    base, sep, rest = instruction.partition(RULES_HEADER)
    if not sep:
        return instruction, []
    rules = [ln[2:].strip() for ln in rest.splitlines() if ln.startswith("- ")]
    return base, rules


def join_rules(base: str, rules: Sequence[str]) -> str:
    return base if not rules else base + RULES_HEADER + "\n".join(f"- {r}" for r in rules)


def fenced_blocks(text: str) -> list[str]:
    """The contents of the ``` blocks in ``text``, stripped.

    A block's first line is its info string, not content, when it is empty or one word
    (```` ```python ````, or ```` ``` fences ````, the small models' echo of "inside ``` fences");
    a first line of several words is content, and so is a block on one line. A fence opened and
    never closed holds the rest of the reply. (MIPROv2's proposer module has the same reader: each
    optimizer's package holds its own sources, so a change to one reruns only that optimizer's
    recorded cells.)
    """
    parts = text.split("```")
    # parts[1], parts[3], ... are the blocks; an even count of parts means the last fence was
    # opened and never closed, and a reply that stopped on its own (a cut-off one is rejected
    # before it is read) meant the block to run to its end.
    inside = parts[1::2] if len(parts) % 2 else [*parts[1:-1:2], parts[-1]]
    blocks = []
    for block in inside:
        first, newline, rest = block.partition("\n")
        if newline and re.fullmatch(r"[\w.+-]*", first.strip()):
            block = rest
        blocks.append(block.strip())
    return blocks


class RewriteProposer:
    """The reflection LM rewrites the whole instruction (fenced)."""

    def __init__(self, template: str | None = None) -> None:
        self.template = template or REWRITE_TEMPLATE

    def __call__(self, request: ProposalRequest, lm: LanguageModel) -> Proposal:
        ins, outs = _io_summary(request.signature)
        fields = {
            "instruction": request.instruction,
            "inputs": ins,
            "outputs": outs,
            "examples": "\n\n".join(x.render(i + 1) for i, x in enumerate(request.examples)),
        }
        if request.subject:
            prompt = REWRITE_TEXT_TEMPLATE.format(subject=request.subject, **fields)
        else:
            prompt = self.template.format(**fields)
        completion = lm([{"role": "user", "content": prompt}])
        raw = completion.text or ""
        if completion.truncated:
            return Proposal(None, "truncated: the reply hit the token limit", raw)
        blocks = fenced_blocks(raw)
        if not blocks:
            return Proposal(None, "unfenced: no ``` block in the reply", raw)
        text = max(blocks, key=len)
        if not text:
            return Proposal(None, "empty: the fenced block is empty", raw)
        return Proposal(text, "rewrite", raw)


class RulesProposer:
    """The reflection LM writes a few rules; they extend a bounded ``Rules:`` list."""

    def __init__(self, max_rules: int = 8, max_rule_chars: int = 240, template: str | None = None) -> None:
        self.max_rules = max_rules
        self.max_rule_chars = max_rule_chars
        self.template = template or RULES_TEMPLATE

    def __call__(self, request: ProposalRequest, lm: LanguageModel) -> Proposal:
        base, rules = split_rules(request.instruction)
        ins, outs = _io_summary(request.signature)
        known = (
            ("It already follows these rules:\n" + "\n".join(f"- {r}" for r in rules) + "\n\n")
            if rules
            else ""
        )
        template = RULES_TEXT_TEMPLATE if request.subject else self.template
        prompt = template.format(
            subject=request.subject,
            instruction=base,
            known_rules=known,
            inputs=ins,
            outputs=outs,
            examples="\n\n".join(x.render(i + 1) for i, x in enumerate(request.examples)),
        )
        completion = lm([{"role": "user", "content": prompt}])
        raw = completion.text or ""
        lines = [ln.strip() for ln in raw.splitlines()]
        if completion.truncated and lines:
            lines = lines[:-1]  # the last line may be cut mid-sentence
        new: list[str] = []
        seen = {_norm(r) for r in rules}
        for ln in lines:
            m = re.match(r"^(?:[-*•]|\d+[.)])\s+(.*)$", ln)
            if not m:
                continue
            rule = m.group(1).replace("**", "").replace("__", "").strip().strip("*").strip()
            if not (8 <= len(rule) <= self.max_rule_chars) or _norm(rule) in seen:
                continue
            if re.search(r"\bexample \d", rule, re.IGNORECASE):
                continue  # about one shown example, not a general rule
            seen.add(_norm(rule))
            new.append(rule)
        if not new:
            reason = "truncated" if completion.truncated else "no usable rule in the reply"
            return Proposal(None, reason, raw)
        merged = (rules + new[:3])[-self.max_rules :]
        return Proposal(join_rules(base, merged), f"rules +{len(new[:3])}", raw, {"rules": new[:3]})


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


REWRITE_TEMPLATE = """You are improving the instruction of one step of an AI program.

Current instruction:
```
{instruction}
```

The step reads {inputs} and writes {outputs}.

Here are examples of the step at work, each with feedback on its output:

{examples}

Write an improved instruction that fixes the mistakes described in the feedback and keeps what works.
Include the facts and rules the feedback reveals, stated generally: the examples will not be shown again.
Reply with the new instruction only, inside ``` fences."""

RULES_TEMPLATE = """An AI step follows this instruction:
"{instruction}"

{known_rules}It reads {inputs} and writes {outputs}. Here are some of its outputs, with feedback:

{examples}

What general rules would have made these outputs correct? Write 1 to 3 new rules, each on its own line
starting with "- ". Each rule is one short sentence that also helps with new inputs."""

REWRITE_TEXT_TEMPLATE = """You are improving {subject}, which one step of an AI program reads.

Current text:
```
{instruction}
```

The step reads {inputs} and writes {outputs}.

Here are examples of the step at work, each with feedback on its output:

{examples}

Write an improved version of the text that would have led the step to correct outputs, and keeps what
works. State facts and rules generally: the examples will not be shown again.
Reply with the new text only, inside ``` fences."""

RULES_TEXT_TEMPLATE = """An AI step reads {subject}:
"{instruction}"

{known_rules}The step reads {inputs} and writes {outputs}. Here are some of its outputs, with feedback:

{examples}

What general rules, added to that text, would have made these outputs correct? Write 1 to 3 new rules,
each on its own line starting with "- ". Each rule is one short sentence that also helps with new inputs."""
