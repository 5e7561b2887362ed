"""dspy.BootstrapFewShot from promptopt's seed program."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from promptopt.lm.usage import track_usage
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.peers.base import PeerOptimizer, PeerRun
from promptopt.peers.dspy_accounting import DspyAccounting


class DspyBootstrapFewShot(PeerOptimizer):
    """``dspy.BootstrapFewShot`` (DSPy's defaults: 4 bootstrapped, 16 labeled demos, one round).

    It bootstraps from at most ``max_metric_calls - 2 * len(valset)`` training examples (one metric
    call each, at most); the seed and the compiled program are then scored on the validation set
    with promptopt's evaluator and the task LM, which spends the rest of the budget. Nothing is
    saved to resume from: a resumed run starts over.
    """

    name: ClassVar[str] = "dspy_bootstrap"
    result_name = "dspy.BootstrapFewShot"
    state_name = "dspy_bootstrap"
    scores_with_promptopt = True

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_metric_calls: int,
        seed: int = 0,
        num_threads: int = 4,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        callbacks: Sequence[object] = (),
    ) -> None:
        self.metric = metric
        self.max_metric_calls = max_metric_calls
        self.seed = seed
        self.num_threads = num_threads
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.callbacks = tuple(callbacks)

    def config(self) -> dict[str, Any]:
        return {
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
        }

    def _check(self, run: PeerRun) -> None:
        if self._bootstrap_examples(run) < 1:
            raise ValueError(
                f"A budget of {self.max_metric_calls} metric calls leaves nothing for bootstrapping after "
                f"scoring two programs on {len(run.val)} validation examples."
            )

    def _bootstrap_examples(self, run: PeerRun) -> int:
        return min(len(run.train), self.max_metric_calls - 2 * len(run.val))

    def _search(self, run: PeerRun) -> OptimizationResult:
        n_boot = self._bootstrap_examples(run)
        import dspy

        from promptopt.dspy.conversion import PromptoptModule, components_from_dspy, to_dspy_examples
        from promptopt.dspy.metrics import dspy_metric

        program = run.program
        acct = DspyAccounting(run.task_lm, None)
        scorer = dspy_metric(self.metric)
        optimizer = dspy.BootstrapFewShot(
            metric=scorer,
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=1,
        )
        with acct.running():
            compiled = optimizer.compile(
                PromptoptModule(program), trainset=to_dspy_examples(run.train[:n_boot])
            )
        best_components = components_from_dspy(compiled, program)

        start = time.perf_counter()
        evaluator = run.session.evaluator
        assert evaluator is not None  # the run was given the metric
        # Only the validation runs: DSPy's own calls are counted by the accounting above.
        with track_usage() as usage:
            candidates = []
            for i, comps in enumerate((program.components(), best_components)):
                serialized = serialize_components(comps)
                recs = evaluator.run(serialized, run.val)
                candidates.append(
                    Candidate(
                        id=i,
                        components=serialized,
                        parents=[] if i == 0 else [0],
                        origin="seed" if i == 0 else "bootstrap",
                        val_scores={r.example_id: r.score for r in recs},
                        discovered_at=scorer.calls + evaluator.metric_calls,
                    )
                )
        budget = acct.budget(scorer.calls + evaluator.metric_calls, time.perf_counter() - start, usage)
        best_id = 1 if candidates[1].val_score > candidates[0].val_score else 0
        config = {
            **self.config(),
            "bootstrap_examples": n_boot,
            "bootstrap_metric_calls": scorer.calls,
            **acct.config(),
        }
        return run.result(
            candidates,
            best_id,
            best_components if best_id == 1 else program.components(),
            budget,
            "bootstrapped once, then scored on validation",
            config,
        )
