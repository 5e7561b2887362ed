"""GEPA: reflective Pareto evolution of a program's components (Agrawal et al., 2025).

One iteration: pick a parent from the per-example Pareto front, run it on a
training minibatch with traces, pick the component to change (round-robin),
propose a new value (a reflected instruction, or a new demo set drawn from
successful traces), score the child on the same minibatch, and keep it only if
it does better; kept children are scored on the validation set and join the
front. When enabled, merges of front candidates that changed different
components are tried after each success. Each of these decisions is a strategy
(:mod:`promptopt.optimizers.gepa.strategies`) that can be swapped.

State is saved atomically after every iteration; ``resume=True`` continues a
killed run with the same decisions and the same final result. A finished run
resumed with a larger budget goes on from where it stopped (choices sized by the
budget left, such as the size of a parallel round, are made anew from there, and
spare demo sets drawn when too little was left for a proposal stay candidates);
resumed as it was, it returns its result and spends nothing.

Examples the LM or the metric failed on are not scores: a candidate's
``val_scores`` leave them out, every comparison (minibatch acceptance, ties,
merges, the Pareto front, the best candidate) looks only at examples both
sides were scored on, and missing validation scores are filled in before each
iteration, which is how a resumed run scores what an outage left unscored.
After ``max_consecutive_failures`` failures in a row the run stops with the
cause as its stop reason; it is not finished, so ``resume=True`` continues it.

A run does not spend past its budget (only refilling scores an LM outage left
missing can): a proposal starts only when the budget left
pays for two minibatch runs and the validation of an accepted child (a round of
parallel proposals is cut to what it pays for, and a tie is extended only while
the child's validation stays paid for), so a run ends with less than one
proposal's worth unspent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.datasets import train_and_val
from promptopt.optimizers.gepa.config import GEPAConfig
from promptopt.optimizers.gepa.reflection import PredictorFeedback, Proposer
from promptopt.optimizers.gepa.run import RESULT_NAME, GEPARun
from promptopt.optimizers.gepa.strategies import (
    AcceptanceRule,
    ComponentSelector,
    MinibatchSampler,
    ParentSelector,
)
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.session import RunSession
from promptopt.optimizers.stoppers import DEFAULT_MAX_CONSECUTIVE_FAILURES, StopOptions, Stopper


def default_reflection_lm() -> LanguageModel:
    """The larger local model when its files are installed, else the default local model."""
    from promptopt.lm.client import LM
    from promptopt.lm.model_files import models_dir, part_files
    from promptopt.lm.models import LARGE_MODEL, LocalModelError, get_model

    try:
        if not (models_dir() / f"{LARGE_MODEL}.gguf").exists():
            part_files(get_model(LARGE_MODEL))
        return LM(f"local/{LARGE_MODEL}", temperature=0.7, max_tokens=700)
    except LocalModelError:
        return LM("local", temperature=0.7, max_tokens=700)


class GEPA:
    """Reflective Pareto evolution of instructions (and, optionally, demos).

    Args:
        metric: ``metric(example, prediction, trace) -> float | Score``; feedback text drives reflection.
        auto: ``"light" | "medium" | "heavy"`` budget preset (or give ``max_metric_calls``).
        max_metric_calls: the budget, in (candidate, example) evaluations.
        reflection_lm: the LM that proposes instructions (default: the larger local model when
            installed, else the local model).
        proposer: ``"auto"`` (for local reflectors ``"adaptive"``, rewrites otherwise), ``"rewrite"``,
            ``"rules"``, ``"adaptive"`` (rewrites and rules, chosen by how their children fare), or
            any callable ``(ProposalRequest, lm) -> Proposal``; one with ``observe(improved)``,
            ``state_dict()`` and ``load_state_dict(d)`` hears each outcome and keeps its state in
            the run state.
        component_selector: ``"round_robin"`` (one component per iteration), ``"all"``, or a
            :class:`~promptopt.optimizers.gepa.strategies.ComponentSelector`.
        parent_selector: ``"pareto"`` (GEPA's), ``"best"``, or a ``ParentSelector``.
        minibatch_sampler: ``"epoch_shuffled"`` or a ``MinibatchSampler``.
        acceptance: ``"improvement"`` (with ``tie_extensions``) or an ``AcceptanceRule``.
        evolve_demos: also evolve each predictor's demos from successful training traces.
        max_demos: the most demos per predictor when evolving them; a demo mutation grows a list
            toward this or swaps part of it (see :meth:`DemoPool.propose`).
        max_demo_chars: the most characters of demo field values per predictor, so demos of
            long-input tasks cannot overflow a small model's context (12000, about 3000 tokens,
            leaves an 8192-token window room for the instruction, the input and the reply, and
            holds 16 demos of every classification and reasoning task of the comparison).
        demo_threshold: the score a training run needs for its trace to become a demo.
        labeled_demos: also draw demos from training examples that hold a predictor's fields.
        use_merge, max_merge_invocations, merge_subsample: system-aware merge settings.
        minibatch_size: training examples per reflective step.
        parallel_proposals: proposals made at once, each from its own parent and minibatch, in
            rounds (:mod:`~promptopt.optimizers.gepa.parallel`): a round of ``k`` takes about the
            time of one proposal when the LMs serve calls in parallel. 1: one at a time.
        reflection_samples: children proposed per step for the same parent, minibatch and
            components, each scored on the minibatch; only the best goes on to the acceptance rule
            and the validation set (:mod:`~promptopt.optimizers.gepa.samples`), so less rides on
            one sampled reflection. Each extra child costs one minibatch run. 1: one child.
        tie_extensions: when parent and child tie on the minibatch, score both on up to this many
            further minibatches before rejecting (small minibatches tie often on noisy tasks).
        validation: how a child that won its minibatch is scored on the validation set:
            ``"full"`` (all of it) or ``"adaptive"`` (in doubling stages it must pass against its
            parent, so a child that falls behind costs part of a validation;
            :mod:`~promptopt.optimizers.gepa.validation`).
        seed_demos, seed_traces: with ``seed_demos=k`` > 0, a second starting candidate: the seed
            with BootstrapFewShot's demo set, the calls of its first ``seed_traces`` successful
            training runs and then unused labeled training examples, up to ``k`` demos per
            predictor; scored before the first proposal and counted in the budget
            (:mod:`~promptopt.optimizers.gepa.demo_seed`). 0: none. The defaults 16 and 4 are
            BootstrapFewShot's own, so its program is one of GEPA's candidates and GEPA ends at
            least as high on validation; 16 demos were the best of the settings compared on
            validation in ``results/gepa-variants`` (a small model gains more from demos than
            from the one or two instructions a small budget pays for).
        staged_seed: with a demo candidate, the seed is scored on the first validation stage, the
            demo candidate on all of it, and the seed goes on stage by stage only while it keeps
            up with the demo candidate there (a seed that falls behind stays scored on part of the
            validation set: it can still be a parent, not the final choice), so the calls a
            second full validation would take go to proposals. Off by default: on the comparison's
            validation split at 60 metric calls it did not raise GEPA's validation scores
            (``results/gepa-dev``: 48.4 with it, 51.1 without, 0.5B reflector).
        screened_reflections: a child of a candidate with demos (whose demos hold the training
            examples, so a minibatch cannot tell it from its parent) is reflected from the seed's
            own training runs (the demo candidate's bootstrap: no metric call) and judged on
            validation stages against its parent; and a budget left too small for one more
            proposal (but enough for a validation) goes to such reflections for the best candidate
            and spare demo sets in turn (:mod:`~promptopt.optimizers.gepa.screened_reflection`).
            False: minibatch tests for every child, spare demo sets only.
        perfect_score, skip_perfect_score: skip a parent already perfect on the minibatch.
        max_reflection_examples, max_reflection_chars: caps on the reflective dataset (the
            examples shown per proposal, the characters of each of their fields).
        max_instruction_chars: reject proposals longer than this (0: no cap).
        reflection_max_tokens: the reflection LM's reply length. The first three default to sizes
            fitted to the reflection LM's context window (:mod:`~promptopt.optimizers.gepa.limits`:
            4 examples, 600 characters and 4000 characters for an 8192-token window); the reply
            length defaults to the LM's own ``max_tokens`` (fitted to the window, 1024 tokens for
            8192, only for an LM without one).
        num_threads: parallel examples in every evaluation.
        seed: all random choices derive from it.
        max_stalled_iterations: stop after this many iterations in a row that spent no metric call
            (every minibatch already perfect, or every proposal rejected before it was scored).
        predictor_feedback: ``(example, record, predictor) -> str | None``, asked for feedback on
            one predictor's part when reflecting on it (the metric's own feedback is about the whole
            program); the calls are ``feedback_metric_calls`` in the result's config.
        max_consecutive_failures: stop after this many task-LM runs in a row could not be scored
            (the LM raised, the metric raised or returned a value outside [0, 1], the program
            returned no Prediction), or this many reflection calls in a row could not reach the
            reflection LM; the stop reason names the cause and ``resume=True`` continues the run
            once it is fixed. ``None``: never.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1] (then also set
            ``perfect_score`` and ``demo_threshold`` on the metric's scale).
        max_seconds, max_tokens, max_cost, patience, score_threshold, stoppers: more ways to stop.
        callbacks: :class:`~promptopt.optimizers.callbacks.Callback` instances.
        progress: print a live progress line on stderr.
    """

    name: ClassVar[str] = "gepa"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = None,
        max_metric_calls: int | None = None,
        reflection_lm: LanguageModel | None = None,
        proposer: str | Proposer = "auto",
        component_selector: str | ComponentSelector = "round_robin",
        parent_selector: str | ParentSelector = "pareto",
        minibatch_sampler: str | MinibatchSampler = "epoch_shuffled",
        acceptance: str | AcceptanceRule = "improvement",
        evolve_demos: bool = True,
        max_demos: int = 8,
        max_demo_chars: int | None = 12000,
        demo_threshold: float = 1.0,
        labeled_demos: bool = True,
        use_merge: bool = True,
        max_merge_invocations: int = 5,
        merge_subsample: int = 5,
        minibatch_size: int = 3,
        parallel_proposals: int = 1,
        reflection_samples: int = 1,
        tie_extensions: int = 1,
        validation: str = "full",
        seed_demos: int = 16,
        seed_traces: int = 4,
        screened_reflections: bool = True,
        staged_seed: bool = False,
        perfect_score: float = 1.0,
        skip_perfect_score: bool = True,
        max_reflection_examples: int | None = None,
        max_reflection_chars: int | None = None,
        max_instruction_chars: int | None = None,
        reflection_max_tokens: int | None = None,
        num_threads: int = 4,
        seed: int = 0,
        max_stalled_iterations: int = 12,
        predictor_feedback: PredictorFeedback | None = None,
        failure_score: float = 0.0,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
        max_seconds: float | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        patience: int | None = None,
        score_threshold: float | None = None,
        stoppers: Sequence[Stopper] = (),
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> None:
        self.metric = metric
        self.reflection_lm = reflection_lm
        self.search = GEPAConfig(
            auto=auto,
            max_metric_calls=max_metric_calls,
            proposer=proposer,
            parent_selector=parent_selector,
            minibatch_sampler=minibatch_sampler,
            component_selector=component_selector,
            acceptance=acceptance,
            evolve_demos=evolve_demos,
            max_demos=max_demos,
            max_demo_chars=max_demo_chars,
            demo_threshold=demo_threshold,
            labeled_demos=labeled_demos,
            use_merge=use_merge,
            max_merge_invocations=max_merge_invocations,
            merge_subsample=merge_subsample,
            minibatch_size=minibatch_size,
            parallel_proposals=parallel_proposals,
            reflection_samples=reflection_samples,
            tie_extensions=tie_extensions,
            validation=validation,
            seed_demos=seed_demos,
            seed_traces=seed_traces,
            screened_reflections=screened_reflections,
            staged_seed=staged_seed,
            perfect_score=perfect_score,
            skip_perfect_score=skip_perfect_score,
            max_reflection_examples=max_reflection_examples,
            max_reflection_chars=max_reflection_chars,
            max_instruction_chars=max_instruction_chars,
            reflection_max_tokens=reflection_max_tokens,
            seed=seed,
            max_stalled_iterations=max_stalled_iterations,
            predictor_feedback=predictor_feedback,
        )
        self.run_options = RunOptions(
            num_threads=num_threads,
            failure_score=failure_score,
            max_consecutive_failures=max_consecutive_failures,
            allow_unbounded_metric=allow_unbounded_metric,
            stop=StopOptions(
                max_seconds=max_seconds,
                max_tokens=max_tokens,
                max_cost=max_cost,
                patience=patience,
                score_threshold=score_threshold,
                extra=tuple(stoppers),
            ),
            callbacks=tuple(callbacks),
            progress=progress,
        )

    def config(self, search: GEPAConfig | None = None) -> dict[str, Any]:
        return {
            **(search or self.search).to_dict(),
            **self.run_options.failure_config(),
            **self.run_options.stop.to_dict(),
        }

    def compile(
        self,
        program: Program,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        *,
        lm: LanguageModel | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
    ) -> OptimizationResult:
        """Optimize ``program``; returns the result with ``best_program`` set.

        Args:
            valset: the validation set (``None``: the trainset).
            lm: the task LM (default: the configured one).
            run_dir: where state, events and results are written (needed for ``resume``).
            resume: continue the run saved in ``run_dir`` instead of starting over.
        """
        train, val = train_and_val(trainset, valset, who="GEPA")
        session = RunSession(
            RESULT_NAME,
            program,
            self.metric,
            self.run_options,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            max_metric_calls=self.search.budget(len(val)),
            progress_label="GEPA",
        )
        reflection_lm = self.reflection_lm or default_reflection_lm()
        search = self.search.fitted_to(reflection_lm)
        run = GEPARun(search, session, train, val, reflection_lm, self.config(search))
        with session:
            return run.execute()
