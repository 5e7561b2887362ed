"""dspy.MIPROv2 from promptopt's seed program, planned to spend about the budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.peers.base import PeerOptimizer, PeerRun
from promptopt.peers.dspy_accounting import DspyAccounting
from promptopt.peers.mipro_plan import mipro_settings


class DspyMIPROv2(PeerOptimizer):
    """``dspy.MIPROv2(auto=None)`` with ``num_candidates``/``num_trials``/minibatching planned by
    :func:`~promptopt.peers.mipro_plan.mipro_settings` so that its metric calls approximate the
    budget.

    Candidates are the seed and every configuration MIPROv2 evaluated on the full validation set,
    with the per-example scores its metric calls produced. dspy.MIPROv2 cannot resume a killed
    run: a resumed one starts over; ``RUN_DIR/dspy_mipro`` receives its saved candidate programs.
    """

    name: ClassVar[str] = "dspy_mipro"
    result_name = "dspy.MIPROv2"
    state_name = "dspy_mipro"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_metric_calls: int,
        prompt_lm: LanguageModel,
        seed: int = 0,
        num_threads: int = 4,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        callbacks: Sequence[object] = (),
    ) -> None:
        self.metric = metric
        self.max_metric_calls = max_metric_calls
        self.prompt_lm = prompt_lm
        self.seed = seed
        self.num_threads = num_threads
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.callbacks = tuple(callbacks)

    def config(self) -> dict[str, Any]:
        return {
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
        }

    def _search(self, run: PeerRun) -> OptimizationResult:
        import dspy

        from promptopt.dspy.conversion import (
            PromptoptModule,
            components_from_dspy,
            module_key,
            to_dspy_examples,
        )
        from promptopt.dspy.metrics import dspy_metric

        program, train, val = run.program, run.train, run.val
        plan = mipro_settings(
            self.max_metric_calls,
            len(train),
            len(val),
            len(program.named_predictors()),
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
        )
        acct = DspyAccounting(run.task_lm, self.prompt_lm)
        scorer = dspy_metric(self.metric)
        optimizer = dspy.MIPROv2(
            metric=scorer,
            prompt_model=acct.other,
            task_model=acct.task,
            auto=None,
            num_candidates=plan.num_candidates,
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            num_threads=self.num_threads,
            seed=self.seed,
            log_dir=run.state_dir,
            track_stats=True,
        )
        student = PromptoptModule(program)
        with acct.running():
            optimized = optimizer.compile(
                student,
                trainset=to_dspy_examples(train),
                valset=to_dspy_examples(val),
                num_trials=plan.num_trials,
                minibatch=plan.minibatch,
                minibatch_size=plan.minibatch_size,
                minibatch_full_eval_steps=plan.minibatch_full_eval_steps,
            )

        val_ids = {e.id for e in val}
        first_seen: dict[str, int] = {}
        scores: dict[str, dict[str, float]] = {}
        for n, (key, ex_id, value) in enumerate(scorer.log, start=1):
            if key is None or ex_id not in val_ids:
                continue
            first_seen.setdefault(key, n)
            scores.setdefault(key, {})[ex_id] = value

        seed_key = module_key(student)
        entries = [(seed_key, student)] + [
            (module_key(d["program"]), d["program"]) for d in getattr(optimized, "candidate_programs", [])
        ]
        candidates: list[Candidate] = []
        by_key: dict[str, int] = {}
        for key, module in [*entries, (module_key(optimized), optimized)]:
            if key in by_key:
                continue
            by_key[key] = len(candidates)
            full = scores.get(key, {})
            candidates.append(
                Candidate(
                    id=len(candidates),
                    components=serialize_components(components_from_dspy(module, program)),
                    parents=[] if not candidates else [0],
                    origin="seed" if not candidates else "mipro",
                    val_scores=full if set(full) == val_ids else {},
                    discovered_at=first_seen.get(key, 0),
                )
            )
        trials = [
            {
                "trial": int(t),
                **{k: v for k, v in row.items() if isinstance(v, (int, float, str, type(None)))},
            }
            for t, row in sorted(getattr(optimized, "trial_logs", {}).items())
        ]
        config = {
            **self.config(),
            "plan": plan.to_dict(),
            "best_full_eval_score": getattr(optimized, "score", None),
            **acct.config(),
        }
        return run.result(
            candidates,
            by_key[module_key(optimized)],
            components_from_dspy(optimized, program),
            acct.budget(scorer.calls),
            f"dspy.MIPROv2 finished {plan.num_trials} trials",
            config,
            trials,
        )
