"""MIPROv2: grounded instruction proposals and demo sets, searched with Optuna's TPE."""

from promptopt.optimizers.mipro.config import AUTO_PRESETS, MIPROConfig
from promptopt.optimizers.mipro.engine import MIPROv2
from promptopt.optimizers.mipro.proposer import TIPS, GroundedProposer, ProposalContext, parse_proposal
from promptopt.optimizers.mipro.summaries import dataset_summary, program_summary

__all__ = [
    "AUTO_PRESETS",
    "TIPS",
    "GroundedProposer",
    "MIPROConfig",
    "MIPROv2",
    "ProposalContext",
    "dataset_summary",
    "parse_proposal",
    "program_summary",
]
