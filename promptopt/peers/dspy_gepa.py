"""dspy.GEPA from promptopt's seed program."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.peers.base import PeerOptimizer, PeerRun
from promptopt.peers.dspy_accounting import DspyAccounting


class DspyGEPA(PeerOptimizer):
    """``dspy.GEPA(max_metric_calls=budget, reflection_lm=..., track_stats=True)`` on the program run
    as a :class:`~promptopt.dspy.conversion.PromptoptModule`; candidates are all of GEPA's, with
    per-example validation scores. ``RUN_DIR/dspy_gepa`` holds its state, which a resumed run
    continues from (DSPy counts the metric calls of the resumed process only).

    ``options`` go to ``dspy.GEPA`` (``use_merge``, ``reflection_minibatch_size``, ...).
    """

    name: ClassVar[str] = "dspy_gepa"
    result_name = "dspy.GEPA"
    state_name = "dspy_gepa"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_metric_calls: int,
        reflection_lm: LanguageModel,
        seed: int = 0,
        num_threads: int = 4,
        callbacks: Sequence[object] = (),
        **options: Any,
    ) -> None:
        self.metric = metric
        self.max_metric_calls = max_metric_calls
        self.reflection_lm = reflection_lm
        self.seed = seed
        self.num_threads = num_threads
        self.callbacks = tuple(callbacks)
        self.options = options

    def config(self) -> dict[str, Any]:
        return {
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            "num_threads": self.num_threads,
            **{k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }

    def _search(self, run: PeerRun) -> OptimizationResult:
        import dspy

        from promptopt.dspy.conversion import PromptoptModule, components_from_dspy, to_dspy_examples
        from promptopt.dspy.metrics import dspy_metric

        program = run.program
        acct = DspyAccounting(run.task_lm, self.reflection_lm)
        scorer = dspy_metric(self.metric, feedback=True)
        optimizer = dspy.GEPA(
            metric=scorer,
            max_metric_calls=self.max_metric_calls,
            reflection_lm=acct.other,
            track_stats=True,
            log_dir=run.state_dir,
            seed=self.seed,
            num_threads=self.num_threads,
            **self.options,
        )
        with acct.running():
            optimized = optimizer.compile(
                PromptoptModule(program),
                trainset=to_dspy_examples(run.train),
                valset=to_dspy_examples(run.val),
            )
        details = optimized.detailed_results
        val_ids = [e.id for e in run.val]
        candidates = []
        for i, module in enumerate(details.candidates):
            parents = sorted({int(p) for p in (details.parents[i] or []) if p is not None})
            origin = "seed" if i == 0 else ("merge" if len(parents) > 1 else "reflection")
            candidates.append(
                Candidate(
                    id=i,
                    components=serialize_components(components_from_dspy(module, program)),
                    parents=parents,
                    origin=origin,
                    val_scores={val_ids[int(k)]: float(v) for k, v in details.val_subscores[i].items()},
                    iteration=i,
                    discovered_at=int(details.discovery_eval_counts[i]),
                )
            )
        config = {
            **self.config(),
            "peer_reported_metric_calls": details.total_metric_calls,
            "feedback_metric_calls": scorer.feedback_calls,
            **acct.config(),
        }
        return run.result(
            candidates,
            int(details.best_idx),
            components_from_dspy(optimized, program),
            acct.budget(scorer.calls),
            f"dspy.GEPA returned after {details.total_metric_calls} of {self.max_metric_calls} metric calls",
            config,
        )
