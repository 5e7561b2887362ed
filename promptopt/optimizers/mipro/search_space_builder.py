"""Building the search space: demo sets per predictor, then grounded instruction proposals.

Runs once per run (in the process that prepares it); the result is saved as
``search_space.json`` (see :mod:`promptopt.optimizers.mipro.search_space`).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.core.signature import Signature
from promptopt.lm.usage import track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers import phases
from promptopt.optimizers.bootstrap import Bootstrapper, demo_sets
from promptopt.optimizers.callbacks import Dispatcher
from promptopt.optimizers.components import predictor_names, serialize_components
from promptopt.optimizers.evaluation import CandidateEvaluator, scores_of
from promptopt.optimizers.mipro.proposer import GroundedProposer
from promptopt.optimizers.mipro.retries import run_until_scored
from promptopt.optimizers.mipro.search_space import SearchSpace, serialize_demos
from promptopt.optimizers.mipro.summaries import dataset_summary, program_summary
from promptopt.optimizers.phase_clock import PhaseClock

if TYPE_CHECKING:
    from promptopt.optimizers.mipro.engine import MIPROv2


class SearchSpaceBuilder:
    """Builds a run's :class:`SearchSpace`; the seed is scored on ``val`` with the run's evaluator, so
    its records serve the search too."""

    def __init__(
        self,
        opt: MIPROv2,
        program: Program,
        train: list[Example],
        val: list[Example],
        evaluator: CandidateEvaluator,
        proposer_lm: LanguageModel,
        events: Dispatcher,
    ) -> None:
        self.opt = opt
        self.program = program
        self.names = predictor_names(program)
        self.train = train
        self.val = val
        self.evaluator = evaluator
        self.proposer_lm = proposer_lm
        self.events = events
        self._teacher_calls = 0

    def build(self) -> SearchSpace:
        """Demo sets, the seed's validation scores, summaries and proposals."""
        cfg = self.opt.search
        t0 = time.time()
        rng = random.Random(cfg.seed)
        seed_comps = self.program.components()
        clock = PhaseClock()
        with track_usage() as usage:
            with clock.time(phases.BOOTSTRAP):
                demo_sets_by_pred = self._bootstrap(rng)
            # Missing seed scores (an example the metric always fails on) are tried again by the
            # search before the seed can be chosen; the proposer gets the mean of those it has.
            with clock.time(phases.VALIDATION):
                seed_scores = scores_of(
                    run_until_scored(self.evaluator, serialize_components(seed_comps), self.val)
                )
            with track_usage() as proposer_usage, clock.time(phases.PROPOSAL):
                summary = ""
                if cfg.data_aware:
                    summary = dataset_summary(
                        self.proposer_lm,
                        self.train,
                        batch_size=cfg.summary_batch_size,
                        max_batches=cfg.summary_batches,
                        rng=random.Random(f"{cfg.seed}:summary"),
                        options=lambda key: {"rollout_id": f"mipro-{cfg.seed}-summary-{key}"},
                    )
                prog_summary = program_summary(self.program) if cfg.program_aware else ""
                instructions, logs = self._propose(
                    demo_sets_by_pred,
                    summary,
                    prog_summary,
                    sum(seed_scores.values()) / len(seed_scores) if seed_scores else 0.0,
                )
        return SearchSpace(
            train_ids=[e.id for e in self.train],
            val_ids=[e.id for e in self.val],
            predictors=self.names,
            instructions=instructions,
            demo_sets={n: [serialize_demos(s) for s in sets] for n, sets in demo_sets_by_pred.items()},
            dataset_summary=summary,
            program_summary=prog_summary,
            proposals=logs,
            seed_scores=seed_scores,
            metric_calls=self.evaluator.metric_calls + self._teacher_calls,
            bootstrap_calls=self._teacher_calls,
            usage=usage.to_dict(),
            proposer_calls=proposer_usage.calls,
            seconds=time.time() - t0,
            seconds_by_phase=clock.totals(),
        )

    def _bootstrap(self, rng: random.Random) -> dict[str, list[list[Example]]]:
        """Per predictor: the seed's demos, then ``num_candidates - 1`` bootstrapped sets."""
        opt, cfg = self.opt, self.opt.search
        own = {n: list(p.demos) for n, p in self.program.named_predictors()}
        self._teacher_calls = 0
        if cfg.max_bootstrapped_demos == 0 and cfg.max_labeled_demos == 0:
            return {n: [own[n]] for n in self.names}
        teacher = opt.teacher if opt.teacher is not None else self.program
        if predictor_names(teacher) != self.names:
            raise ValueError(
                f"The teacher's predictors {predictor_names(teacher)} differ from the program's {self.names}."
            )
        boot = Bootstrapper(
            teacher,
            opt.metric,
            metric_threshold=cfg.metric_threshold,
            max_rounds=cfg.max_rounds,
            lm=self.evaluator.lm,
            num_threads=opt.run_options.num_threads,
            failure_score=opt.run_options.failure_score,
            streak=self.evaluator.streak,  # one count of failures in a row for the whole run
            allow_unbounded_metric=opt.run_options.allow_unbounded_metric,
        )
        sets = demo_sets(
            boot,
            self.names,
            self.train,
            cfg.num_candidates - 1,
            max_bootstrapped_demos=cfg.max_bootstrapped_demos,
            max_labeled_demos=cfg.max_labeled_demos,
            rng=rng,
            labeled_first=False,  # bootstrapped demos first: they are what the search is for
        )
        self._teacher_calls = boot.metric_calls
        return {n: [own[n]] + [s[n] for s in sets] for n in self.names}

    def _propose(
        self,
        demo_sets_by_pred: dict[str, list[list[Example]]],
        summary: str,
        prog_summary: str,
        seed_score: float,
    ) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
        cfg = self.opt.search
        proposer = GroundedProposer(
            self.proposer_lm,
            temperature=cfg.proposer_temperature,
            use_tips=cfg.tip_aware,
            use_history=cfg.history_aware,
            use_demos=cfg.fewshot_aware,
        )
        preds = dict(self.program.named_predictors())
        instructions: dict[str, list[str]] = {}
        logs: list[dict[str, Any]] = []
        for name in self.names:
            sig = preds[name].signature
            pool = [s for s in demo_sets_by_pred[name][1:] if s] or self._labeled_pool(sig)
            texts, tried = proposer.propose(
                name,
                sig,
                sig.instruction,
                cfg.num_candidates - 1,
                # Each predictor's tips follow from the seed and its name, not from what the
                # bootstrapping or an earlier predictor happened to draw.
                rng=random.Random(f"{cfg.seed}:proposals:{name}"),
                demo_pool=pool,
                seed_score=seed_score,
                dataset_summary=summary,
                # one step: the summary would only repeat the step's own inputs and outputs
                program_summary=prog_summary if len(self.names) > 1 else "",
                rollout_prefix=f"mipro-{cfg.seed}",
            )
            instructions[name] = [sig.instruction, *texts]
            for log in tried:
                logs.append(log.to_dict())
                self.events.on_proposal(
                    {
                        "iteration": 0,
                        "component": f"{name}.instruction",
                        "text": log.text,
                        "accepted": log.accepted,
                        "reason": log.reason,
                        "raw": log.raw,
                    }
                )
        return instructions, logs

    def _labeled_pool(self, sig: Signature) -> list[list[Example]]:
        """Training examples that carry this step's fields, in groups of three (for grounding)."""
        needed = [*sig.input_names, *(f.name for f in sig.outputs if f.name != "reasoning")]
        fit = [e for e in self.train if all(n in e for n in needed)][:9]
        return [fit[i : i + 3] for i in range(0, len(fit), 3)]
