"""Grounded instruction proposals (MIPROv2's proposer).

For one predictor, the proposer LM sees: what the data are about (dataset
summary), what the program does and where this step fits (program summary),
a few demos of the step, the instructions already proposed (with their
validation scores when known), and one tip drawn at random from :data:`TIPS`.
It writes one new instruction per call. The prompt is short and asks for a
single ``proposed_instruction:`` line so that a 0.5B model can follow it.

Replies are parsed tolerantly (a fenced block, a ``proposed_instruction:``
field, or plain text); empty, truncated, over-long and duplicate proposals are
rejected and logged, never adopted.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from promptopt.core.example import Example
from promptopt.core.signature import Signature
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.mipro.summaries import clip, render_example

# Each proposal call gets one tip, drawn at random: varied tips give varied instructions.
TIPS: dict[str, str] = {
    "none": "",
    "simple": "Keep the instruction short and plain.",
    "description": "Describe the task exactly, including what a correct output looks like.",
    "format": "Say exactly how the output must be written.",
    "steps": "Give the steps to follow, in order, in one or two sentences.",
    "persona": "Start by giving the AI a fitting expert role.",
    "stakes": "Say why a correct answer matters here.",
    "pitfalls": "Warn about the most likely mistake on this task.",
}

PROPOSE_TEMPLATE = """You write the instruction for one step of an AI program.
{context}
{step}reads {inputs} and must write {outputs}.
{demos}{history}{tip}
Write a new, better instruction for this step: 1 to 3 sentences, for the AI doing the step.
Reply with one line:
proposed_instruction: <the instruction>"""

_FIELD = re.compile(r"^\W*proposed[ _]instruction[*_ \t]*:[*_ \t]*", re.IGNORECASE | re.MULTILINE)
_PREFIX = re.compile(r"^\W*(?:new |improved |better )?instruction[*_ \t]*:[*_ \t]*", re.IGNORECASE)


@dataclass
class ProposalLog:
    """One proposal attempt, kept in the run's saved proposals for inspection."""

    predictor: str
    attempt: int
    tip: str
    text: str | None
    accepted: bool
    reason: str
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fenced_blocks(text: str) -> list[str]:
    """The contents of the ``` blocks in ``text``, stripped.

    A block's first line is its info string, not content, when it is empty or one word
    (```` ```python ````, or ```` ``` fences ````, the small models' echo of "inside ``` fences");
    a first line of several words is content, and so is a block on one line. A fence opened and
    never closed holds the rest of the reply. (GEPA's reflection module has the same reader: each
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


def parse_proposal(
    raw: str | None, finish_reason: str | None = None, *, max_chars: int = 1500
) -> tuple[str | None, str]:
    """The instruction in a proposer reply, or ``None`` with the reason it was rejected.

    Accepted shapes, first match wins: a fenced block, a ``proposed_instruction:`` field
    (its paragraph), or the whole reply as plain text.
    """
    if finish_reason == "length":
        return None, "truncated: the reply hit the token limit"
    text = (raw or "").strip()
    if not text:
        return None, "empty reply"
    fenced = [b for b in fenced_blocks(text) if b]
    field = _FIELD.search(text)
    if fenced:
        text, how = max(fenced, key=len), "fenced"
        text = _FIELD.sub("", text, count=1)
    elif field:
        # The field's paragraph only: small models like to add an explanation after a blank line.
        text, how = text[field.end() :].strip().split("\n\n")[0], "field"
    else:
        how = "plain"
    text = _PREFIX.sub("", text.strip()).strip().strip("\"'`").strip()
    if not text or not re.search(r"[A-Za-z]{2}", text):
        return None, f"empty {how} proposal"
    if len(text) > max_chars:
        return None, f"too long: {len(text)} > {max_chars} chars"
    return text, how


def filled_output_field(text: str, signature: Signature) -> str | None:
    """The output field a proposal fills on a line of its own (``label: SUPPORTED``), if any.

    Small proposers sometimes answer with one of the shown examples instead of an instruction;
    adopted, such a text reads to the task model as a worked example with a fixed answer.
    """
    for f in signature.outputs:
        if re.search(rf"^\s*[*#_ ]*{re.escape(f.name)}[*_ ]*:\s*\S", text, re.IGNORECASE | re.MULTILINE):
            return f.name
    return None


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _io(sig: Signature) -> tuple[str, str]:
    ins = ", ".join(f"`{f.name}`" for f in sig.inputs) or "nothing"
    outs = ", ".join(
        f"`{f.name}`" + (f" (one of {', '.join(f.choices)})" if f.choices else "") for f in sig.outputs
    )
    return ins, outs


@dataclass
class ProposalContext:
    """Everything one proposal prompt is grounded in."""

    signature: Signature
    dataset_summary: str = ""
    program_summary: str = ""
    demos: Sequence[Example] = ()
    history: Sequence[tuple[str, float | None]] = ()
    tip: str = ""
    step: str = ""  # the predictor's name, shown when the program has several steps

    def prompt(self, max_demo_chars: int = 160) -> str:
        ins, outs = _io(self.signature)
        context = ""
        if self.dataset_summary:
            context += f"\nThe data: {self.dataset_summary}\n"
        if self.program_summary:
            context += f"\n{self.program_summary}\n"
        demos = ""
        if self.demos:
            shown = "\n\n".join(render_example(d, max_demo_chars) for d in self.demos)
            demos = f"\nExamples of the step's inputs and outputs:\n{shown}\n"
        history = ""
        if self.history:
            rows = []
            for text, score in self.history:
                note = f" (score {100 * score:.0f}%)" if score is not None else ""
                rows.append(f'- "{clip(text, 300)}"{note}')
            history = "\nInstructions tried so far:\n" + "\n".join(rows) + "\n"
        tip = f"\nTip: {self.tip}\n" if self.tip else ""
        step = f"The step to instruct is `{self.step}`: it " if self.step else "The step "
        return PROPOSE_TEMPLATE.format(
            context=context, step=step, inputs=ins, outputs=outs, demos=demos, history=history, tip=tip
        )


class GroundedProposer:
    """Proposes ``n`` distinct new instructions for a predictor.

    Args:
        lm: the proposer LM.
        temperature: sampling temperature of proposal calls (varied proposals need > 0).
        max_demos: demos shown per proposal.
        max_chars: proposals longer than this are rejected.
        attempts_per_proposal: calls allowed per wanted proposal before giving up, so a model
            that keeps failing costs a bounded number of calls.
        use_tips, use_history, use_demos: ablation switches for the prompt's parts.
    """

    def __init__(
        self,
        lm: LanguageModel,
        *,
        temperature: float = 0.7,
        max_demos: int = 3,
        max_chars: int = 1500,
        attempts_per_proposal: int = 3,
        use_tips: bool = True,
        use_history: bool = True,
        use_demos: bool = True,
    ) -> None:
        self.lm = lm
        self.temperature = temperature
        self.max_demos = max_demos
        self.max_chars = max_chars
        self.attempts_per_proposal = attempts_per_proposal
        self.use_tips = use_tips
        self.use_history = use_history
        self.use_demos = use_demos

    def propose(
        self,
        predictor: str,
        signature: Signature,
        seed_instruction: str,
        n: int,
        *,
        rng: random.Random,
        demo_pool: Sequence[Sequence[Example]] = (),
        seed_score: float | None = None,
        dataset_summary: str = "",
        program_summary: str = "",
        rollout_prefix: str = "mipro",
    ) -> tuple[list[str], list[ProposalLog]]:
        """Up to ``n`` new instructions (never the seed, never a repeat) and a log of every attempt.

        The step is named in the prompt only alongside a ``program_summary`` (which names the steps).
        """
        accepted: list[str] = []
        seen = {normalize(seed_instruction)}
        logs: list[ProposalLog] = []
        pools = [list(p) for p in demo_pool if p]
        for attempt in range(n * self.attempts_per_proposal):
            if len(accepted) >= n:
                break
            tip_name = rng.choice(sorted(TIPS)) if self.use_tips else "none"
            demos: list[Example] = []
            if self.use_demos and pools:
                demos = pools[attempt % len(pools)][: self.max_demos]
            history: list[tuple[str, float | None]] = []
            if self.use_history:
                history = [(seed_instruction, seed_score), *[(t, None) for t in accepted]]
            ctx = ProposalContext(
                signature,
                dataset_summary,
                program_summary,
                demos,
                history,
                TIPS[tip_name],
                step=predictor if program_summary else "",
            )
            messages = [{"role": "user", "content": ctx.prompt()}]
            try:
                completion = self.lm(
                    messages,
                    temperature=self.temperature,
                    rollout_id=f"{rollout_prefix}-{predictor}-{attempt}",
                )
                raw, finish = completion.text or "", completion.finish_reason
                text, reason = parse_proposal(raw, finish, max_chars=self.max_chars)
            except Exception as exc:  # a failed call costs one attempt, not the run
                raw, text, reason = "", None, f"proposer call failed: {type(exc).__name__}: {exc}"
            if text is not None and (filled := filled_output_field(text, signature)):
                text, reason = None, f"an example, not an instruction: it fills the output field `{filled}`"
            if text is not None and normalize(text) in seen:
                text, reason = None, "duplicate of an earlier instruction"
            if text is not None:
                seen.add(normalize(text))
                accepted.append(text)
            logs.append(ProposalLog(predictor, attempt, tip_name, text, text is not None, reason, raw))
        return accepted, logs
