"""GEPA: reflective Pareto evolution of prompts."""

from promptopt.optimizers.gepa.adaptive import AdaptiveProposer
from promptopt.optimizers.gepa.config import GEPAConfig, auto_budget
from promptopt.optimizers.gepa.engine import GEPA
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
    "GEPAConfig",
    "Proposal",
    "ProposalRequest",
    "Proposer",
    "RewriteProposer",
    "RulesProposer",
    "auto_budget",
]
