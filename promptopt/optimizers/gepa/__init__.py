"""GEPA: reflective Pareto evolution of prompts."""

from promptopt.optimizers.gepa.adaptive import AdaptiveProposer
from promptopt.optimizers.gepa.engine import GEPA, auto_budget
from promptopt.optimizers.gepa.reflection import (
    Proposal,
    ProposalRequest,
    Proposer,
    RewriteProposer,
    RulesProposer,
)

__all__ = [
    "GEPA",
    "AdaptiveProposer",
    "Proposal",
    "ProposalRequest",
    "Proposer",
    "RewriteProposer",
    "RulesProposer",
    "auto_budget",
]
