"""How a GEPA child is made from its parent: new texts by reflection on the parent's traces,
new demo sets from the pool of successful traces, for the components the selector chose."""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import TextComponent
from promptopt.core.signature import Signature
from promptopt.failures import is_lm_failure
from promptopt.lm.usage import track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.callbacks import Dispatcher
from promptopt.optimizers.evaluation import Record
from promptopt.optimizers.gepa.adaptive import auto_proposer, rewrite_or_rules
from promptopt.optimizers.gepa.config import GEPAConfig
from promptopt.optimizers.gepa.demos import DemoPool
from promptopt.optimizers.gepa.reflection import (
    Proposal,
    ProposalRequest,
    Proposer,
    RewriteProposer,
    RulesProposer,
    reflective_dataset,
)
from promptopt.optimizers.gepa.state import GEPAState
from promptopt.optimizers.gepa.strategies import ComponentChoice, ComponentSelector
from promptopt.optimizers.phase_clock import PhaseClock
from promptopt.optimizers.result import Candidate
from promptopt.optimizers.stoppers import FailureStreak

LM_CALL_SIGNATURE = Signature.make(["messages"], ["reply"], "One LM call of the program.")


def make_proposer(option: str | Proposer, reflection_lm: LanguageModel) -> Proposer:
    if not isinstance(option, str):
        return option
    choices = {
        "auto": lambda: auto_proposer(reflection_lm),
        "rewrite": RewriteProposer,
        "rules": RulesProposer,
        "adaptive": rewrite_or_rules,
    }
    if option not in choices:
        raise ValueError(f"proposer must be one of {sorted(choices)} or a callable, not {option!r}.")
    return choices[option]()


class ChildProposer:
    """Proposes children for one run; counts the reflection LM's failures in a row."""

    def __init__(
        self,
        cfg: GEPAConfig,
        proposer: Proposer,
        reflection_lm: LanguageModel,
        selector: ComponentSelector,
        signatures: dict[str, Signature],
        components: list[str],
        texts: dict[str, TextComponent],
        events: Dispatcher,
        examples: Mapping[str, Example],
        clock: PhaseClock | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or PhaseClock()  # the run's: reflection time goes under "proposal"
        self.proposer = proposer
        self.reflection_lm = reflection_lm
        self.selector = selector
        self.signatures = signatures
        self.components = components
        self.texts = texts
        self.events = events
        self.examples = examples  # the training examples by id, for predictor feedback
        self.reflection_streak = FailureStreak(None)  # never saved: a resumed run counts anew
        # Proposals made in parallel (ParallelRound): counters shared under a lock, and each
        # thread's proposer outcomes kept apart until the round tallies them in order.
        self._lock = threading.RLock()
        self._local = threading.local()

    def begin_task(self) -> None:
        """Start collecting this thread's proposer outcomes instead of reporting them at once."""
        self._local.outcomes = []
        self._local.names = []

    def end_task(self) -> tuple[list[str], list[tuple[str, bool]]]:
        """(the proposers this thread's proposals came from, their outcomes already known)."""
        names, outcomes = self._local.names, self._local.outcomes
        del self._local.names, self._local.outcomes
        return names, outcomes

    def _deferred(self) -> bool:
        return getattr(self._local, "outcomes", None) is not None

    def take_names(self) -> list[str]:
        """The proposers of this thread's proposals since the last call, no longer pending (while
        collecting): one step's several samples are told apart this way."""
        names = list(self._local.names)
        self._local.names.clear()
        return names

    def settle_samples(self, winner: list[str], losers: list[list[str]]) -> None:
        """The kept sample's proposers pending again (the step's outcome decides theirs); the other
        samples' proposers lost: their children were not the best on the minibatch."""
        self._local.names.extend(winner)
        self._local.outcomes.extend((name, False) for names in losers for name in names)

    def choose(self, parent: Candidate, state: GEPAState) -> ComponentChoice:
        return self.selector.select(parent, self.components, self.texts, state)

    def propose(
        self,
        parent: Candidate,
        recs: list[Record],
        state: GEPAState,
        pool: DemoPool,
        rng: random.Random,
        *,
        choice: ComponentChoice | None = None,
        iteration: int | None = None,
        sample: int = 0,
        rollout_tag: str = "",
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The child of ``parent`` (its changed components), or ``(None, [])`` when nothing was proposed.

        ``choice`` and ``iteration`` are given when the components were chosen beforehand and the
        proposal is one of a parallel round (the state's iteration is then not this proposal's);
        ``sample`` numbers the children one step asks for (each its own reflection rollout);
        ``rollout_tag`` sets apart the rollouts of proposals made outside the iterations."""
        child = dict(parent.components)
        changed: list[str] = []
        if choice is None:
            choice = self.choose(parent, state)
        it = state.iteration if iteration is None else iteration
        for comp in choice.components:
            pred, _, kind = comp.rpartition(".")
            if comp in self.texts:
                text = self._reflect(
                    state,
                    it,
                    self.texts[comp].predictor,
                    parent.components[comp],
                    recs,
                    comp,
                    self.texts[comp].subject,
                    sample=sample,
                    rollout_tag=rollout_tag,
                )
                if text is None:
                    if choice.all_of_them:
                        continue
                    return None, []
                child[comp] = text
            elif kind == "demos":
                demos = pool.propose(
                    pred,
                    parent.components[comp],
                    self.cfg.max_demos,
                    rng,
                    max_chars=self.cfg.max_demo_chars,
                )
                self.events.on_proposal(
                    {
                        "iteration": it,
                        "component": comp,
                        "text": None if demos is None else f"{len(demos)} demos",
                        "accepted": demos is not None,
                        "reason": "demo pool" if demos else "no new successful traces for this predictor",
                    }
                )
                if demos is None:
                    continue
                child[comp] = demos
            else:
                text = self._reflect(
                    state, it, pred, parent.components[comp], recs, sample=sample, rollout_tag=rollout_tag
                )
                if text is None:
                    if choice.all_of_them:
                        continue
                    return None, []  # a rejected proposal ends the iteration; the budget was the reflection
                child[comp] = text
            changed.append(comp)
            if not choice.all_of_them:
                break
        return (child, changed) if changed else (None, [])

    def _predictor_feedback(self, state: GEPAState, pred: str, recs: list[Record]) -> list[Record]:
        """The records with ``pred``'s own feedback (asked once per record that ran ``pred``)."""
        ask = self.cfg.predictor_feedback
        assert ask is not None
        out = []
        for rec in recs:
            if rec.entries(pred) and rec.example_id in self.examples:
                with self._lock:
                    state.feedback_calls += 1
                text = ask(self.examples[rec.example_id], rec, pred)
                rec = replace(rec, feedback=text) if text is not None else rec
            out.append(rec)
        return out

    def _reflect(
        self,
        state: GEPAState,
        iteration: int,
        pred: str,
        instruction: str,
        recs: list[Record],
        comp: str | None = None,
        subject: str = "",
        *,
        sample: int = 0,
        rollout_tag: str = "",
    ) -> str | None:
        """A new text for ``comp`` (default: ``pred``'s instruction) from ``pred``'s traces, or None."""
        cfg = self.cfg
        if cfg.predictor_feedback is not None:
            recs = self._predictor_feedback(state, pred, recs)
        examples = reflective_dataset(
            pred, recs, max_examples=cfg.max_reflection_examples, max_chars=cfg.max_reflection_chars
        )
        comp = comp or f"{pred}.instruction"
        if not examples:
            self.no_proposal(iteration, "the predictor left no trace on this minibatch", comp)
            return None
        # A text read by LM calls that are not a promptopt predictor's (a task app's own calls) is
        # shown to the reflector as those calls: the messages they sent and the reply they got.
        signature = self.signatures.get(pred, LM_CALL_SIGNATURE)
        request = ProposalRequest(comp, instruction, signature, examples, subject)
        rollout = f"gepa-{cfg.seed}-{iteration}-{comp if subject else pred}"
        rollout += f"-{sample}" if sample else ""  # a step's later samples: fresh replies, not cached
        rollout += f"-{rollout_tag}" if rollout_tag else ""
        reply = {} if cfg.reflection_max_tokens is None else {"max_tokens": cfg.reflection_max_tokens}
        lm = functools.partial(self.reflection_lm, rollout_id=rollout, **reply)
        with track_usage() as used, self.clock.time(phases.PROPOSAL):
            try:
                proposal = self.proposer(request, lm)
            except Exception as exc:
                proposal = Proposal(None, f"reflection failed: {type(exc).__name__}: {exc}")
                if is_lm_failure(exc):
                    with self._lock:
                        self.reflection_streak.failed("reflection-LM", f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.reflection_streak.scored()
        with self._lock:
            state.proposer_calls += used.calls
        name = proposal.extras.get("proposer")
        if self._deferred():  # "" for a proposer that does not name itself: it still hears the outcome
            self._local.names.append(name if isinstance(name, str) else "")
        text, reason = proposal.instruction, proposal.reason
        if text is not None and cfg.max_instruction_chars and len(text) > cfg.max_instruction_chars:
            text, reason = (
                None,
                f"too long: {len(proposal.instruction or '')} > {cfg.max_instruction_chars} chars",
            )
        if text is not None and text.strip() == instruction.strip():
            text, reason = None, "unchanged: identical to the current instruction"
        if text is None:
            self.observe(False)
        self.events.on_proposal(
            {
                "iteration": iteration,
                "component": comp,
                "text": proposal.instruction,
                "accepted": text is not None,
                "reason": reason,
                "raw": proposal.raw,
                "proposer": proposal.extras.get("proposer"),
            }
        )
        return text

    def observe(self, improved: bool) -> None:
        """Tell the proposer whether its last child was kept (an adaptive one learns from it)."""
        if self._deferred():  # a parallel round tallies it with the others, in order
            names = self._local.names
            self._local.outcomes.extend((n, improved) for n in names)
            names.clear()
            return
        observe = getattr(self.proposer, "observe", None)
        if callable(observe):
            observe(improved)

    def tally(self, outcomes: list[tuple[str, bool]]) -> None:
        """Report outcomes collected side by side (name, kept), in order: to a proposer's ``tally``,
        or one by one to its ``observe`` as if the proposals had been made one at a time."""
        tally, observe = getattr(self.proposer, "tally", None), getattr(self.proposer, "observe", None)
        if callable(tally):
            tally(outcomes)
        elif callable(observe):
            for _, improved in outcomes:
                observe(improved)

    def no_proposal(self, iteration: int, reason: str, component: str | None = None) -> None:
        """Report that nothing is proposed (for ``component``, or in this iteration at all), and why."""
        self.events.on_proposal(
            {
                "iteration": iteration,
                "component": component,
                "text": None,
                "accepted": False,
                "reason": reason,
            }
        )
