"""A proposer that picks among several proposers by how their children fared.

Which way of proposing helps depends on the task and the reflector more than on the reflector's size
alone: on one classification task a small local reflector's full rewrite moved the score where its
rules did not, on a reasoning task the rules did. :class:`AdaptiveProposer` tries each proposer in
turn, then prefers the one whose children won their minibatch comparison most often (a proposal
rejected by the guard rails counts as a loss). The tallies are part of the run state, so a resumed
run makes the same choices as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.gepa.reflection import (
    Proposal,
    ProposalRequest,
    Proposer,
    RewriteProposer,
    RulesProposer,
)


class AdaptiveProposer:
    """Chooses one of ``proposers`` per call: each is tried ``warmup`` times in the given order, then
    the one with the highest smoothed win rate ``(wins + 1) / (tries + 2)`` is used; ties go to the
    one tried least, then to the earlier one.

    The engine reports each outcome through :meth:`observe`; :meth:`state_dict` and
    :meth:`load_state_dict` carry the tallies through the run state.
    """

    def __init__(self, proposers: Mapping[str, Proposer], warmup: int = 1) -> None:
        if not proposers:
            raise ValueError("AdaptiveProposer needs at least one proposer.")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, not {warmup}.")
        self.proposers = dict(proposers)
        self.warmup = warmup
        self.tries = dict.fromkeys(self.proposers, 0)
        self.wins = dict.fromkeys(self.proposers, 0)
        self._pending: list[str] = []

    def choose(self) -> str:
        names = list(self.proposers)
        for name in names:
            if self.tries[name] < self.warmup:
                return name

        def rank(i_name: tuple[int, str]) -> tuple[float, int, int]:
            i, name = i_name
            return (-(self.wins[name] + 1) / (self.tries[name] + 2), self.tries[name], i)

        return min(enumerate(names), key=rank)[1]

    def __call__(self, request: ProposalRequest, lm: LanguageModel) -> Proposal:
        name = self.choose()
        self._pending.append(name)
        proposal = self.proposers[name](request, lm)
        proposal.extras = {**proposal.extras, "proposer": name}
        return proposal

    def observe(self, improved: bool) -> None:
        """The outcome of the proposals made since the last call: did the child beat its parent?"""
        for name in self._pending:
            self.tries[name] += 1
            self.wins[name] += int(improved)
        self._pending.clear()

    def tally(self, outcomes: Sequence[tuple[str, bool]]) -> None:
        """Outcomes of proposals made side by side (a parallel round): each by the proposer that
        wrote it, in the round's order; what :meth:`__call__` queued meanwhile is replaced by them."""
        self._pending.clear()
        for name, improved in outcomes:
            if name in self.tries:
                self.tries[name] += 1
                self.wins[name] += int(improved)

    def state_dict(self) -> dict[str, Any]:
        return {"tries": dict(self.tries), "wins": dict(self.wins)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending.clear()
        for key, tally in (("tries", self.tries), ("wins", self.wins)):
            saved = state.get(key, {})
            for name in tally:
                tally[name] = int(saved.get(name, 0))

    def summary(self) -> str:
        return ", ".join(f"{n} {self.wins[n]}/{self.tries[n]}" for n in self.proposers)


def rewrite_or_rules() -> AdaptiveProposer:
    """GEPA's ``proposer="adaptive"``: full rewrites and appended rules, tried in that order."""
    return AdaptiveProposer({"rewrite": RewriteProposer(), "rules": RulesProposer()})


def auto_proposer(lm: Any) -> Proposer:
    """Full rewrites for capable (API) reflectors, as in the GEPA paper; for small local reflectors,
    which often only rephrase a prompt they are asked to rewrite, rewrites and rules side by side,
    chosen by their results (:class:`AdaptiveProposer`)."""
    if getattr(lm, "is_local", False):
        return rewrite_or_rules()
    return RewriteProposer()
