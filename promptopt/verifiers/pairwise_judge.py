"""A pairwise judge: which of two outputs follows the instruction better, asked in both orders.

LM judges favour a position (often the first output shown). The judge asks once with output 1 as
"A" and once with output 2 as "A"; a preference that follows the slot rather than the output is
reported as a tie, and the share of such verdicts is the judge's position-bias rate. It is a
promptopt :class:`Program` (one predictor, ``compare``), so it can be calibrated against human
labels (:mod:`promptopt.verifiers.calibration`).
"""

from __future__ import annotations

from promptopt.core.adapter import ParseError
from promptopt.core.example import Example, Prediction
from promptopt.core.metric import Score
from promptopt.core.program import Predict, Program
from promptopt.core.signature import Field, Signature
from promptopt.core.trace import Trace
from promptopt.lm_protocol import LanguageModel
from promptopt.verifiers.verdicts import PairwiseVerdict

PAIRWISE_INSTRUCTION = (
    "You compare two outputs written for the same instruction. Decide which output follows the "
    "instruction better: it does what was asked, precisely and helpfully. Do not prefer an output "
    "for its length or its position."
)
PAIRWISE_SIGNATURE = Signature(
    (Field("instruction"), Field("output_a"), Field("output_b")),
    (
        Field("reason", "One or two sentences comparing the two outputs against the instruction."),
        Field("better", "The output that follows the instruction better.", choices=("A", "B")),
    ),
    PAIRWISE_INSTRUCTION,
)


class PairwiseJudge(Program):
    """``judge(instruction=..., output_1=..., output_2=...)`` -> the preferred output (1, 2, or 0 for a
    tie), from two calls with the outputs in both orders."""

    def __init__(self, *, lm: LanguageModel | None = None) -> None:
        self.compare = Predict(PAIRWISE_SIGNATURE, lm=lm)

    def verdict(self, instruction: str, output_1: str, output_2: str) -> PairwiseVerdict:
        """Both orders' preferences; a reply that cannot be read leaves that order without one."""
        orders: list[int | None] = []
        reasons: list[str] = []
        failures: list[str] = []
        for first, second, slot_a in ((output_1, output_2, 1), (output_2, output_1, 2)):
            try:
                reply = self.compare(instruction=instruction, output_a=first, output_b=second)
            except ParseError as exc:
                orders.append(None)
                reasons.append("")
                failures.append(
                    f"order with output {slot_a} first: the judge's reply could not be read: {exc}"
                )
                continue
            orders.append(slot_a if reply.better == "A" else 3 - slot_a)
            reasons.append(str(reply.reason))
        return PairwiseVerdict(orders[0], orders[1], (reasons[0], reasons[1]), "; ".join(failures) or None)

    def forward(self, instruction: str, output_1: str, output_2: str) -> Prediction:
        v = self.verdict(instruction, output_1, output_2)
        if not v.parsed:
            raise PairwiseVerdictError(v.failure or "no verdict")
        return Prediction(winner=v.winner, first_order=v.first_order, second_order=v.second_order)


class PairwiseVerdictError(RuntimeError):
    """A pairwise judge's reply could not be read in at least one order: the pair has no verdict."""


def agreement_with_label(example: Example, prediction: Prediction, trace: Trace | None = None) -> Score:
    """The metric calibration optimizes: 1 when the judge picks the human's output in both orders, 0.5
    for a tie (the order decided; a coin would be right half the time), 0 for the other output. The
    feedback says which, for GEPA's reflection."""
    label = int(example["label"])
    winner = int(prediction.winner)
    if winner == label:
        return Score(1.0, f"Correct: output {label} follows the instruction better, in both orders.")
    if winner == 0:
        slot = "first" if prediction.first_order == 1 else "second"
        return Score(
            0.5,
            f"Position bias: the judge chose whichever output was shown {slot}, so the order decided. "
            f"The better output is output {label}.",
        )
    return Score(
        0.0, f"Wrong: the judge preferred output {winner} in both orders; the better one is output {label}."
    )
