"""Verifiers: LM judges as metrics, and judges calibrated against human labels.

``Rubric`` / ``load_rubric``    criteria with ids, wording, weights and levels (outcome or event)
``RubricJudge``                 a pointwise judge program; ``judge.metric()`` is a GEPA-ready metric
``PairwiseJudge``               which of two outputs is better, asked in both orders
``agreement``                   accuracy, Cohen's kappa and position bias against human labels, with CIs
``calibrate``                   a judge's prompts optimized against labels, held-out agreement before/after
"""

from promptopt.verifiers.agreement import Agreement, AgreementChange, agreement, agreement_change, cohen_kappa
from promptopt.verifiers.calibration import (
    CalibrationReport,
    PairwiseLabels,
    PassFailLabels,
    calibrate,
    pass_fail_agreement,
)
from promptopt.verifiers.pairwise_judge import PairwiseJudge, agreement_with_label
from promptopt.verifiers.rubric import Criterion, Rubric, RubricError, load_rubric
from promptopt.verifiers.rubric_judge import JudgeVerdictError, RubricJudge
from promptopt.verifiers.verdicts import CriterionVerdict, PairwiseVerdict, RubricVerdict, position_bias_rate

__all__ = [
    "Agreement",
    "AgreementChange",
    "CalibrationReport",
    "Criterion",
    "CriterionVerdict",
    "JudgeVerdictError",
    "PairwiseJudge",
    "PairwiseLabels",
    "PairwiseVerdict",
    "PassFailLabels",
    "Rubric",
    "RubricError",
    "RubricJudge",
    "RubricVerdict",
    "agreement",
    "agreement_change",
    "agreement_with_label",
    "calibrate",
    "cohen_kappa",
    "load_rubric",
    "pass_fail_agreement",
    "position_bias_rate",
]
