"""The gepa library's ``optimize`` on promptopt's program: candidates are instructions per predictor,
evaluated with promptopt's program and evaluator, reflected on with gepa's own prompt."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.io import write_json_atomic
from promptopt.lm.usage import Usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import deserialize_components, serialize_components
from promptopt.optimizers.evaluation import CandidateEvaluator, Record
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.peers.base import PeerOptimizer, PeerRun

log = logging.getLogger("promptopt.peers")


class ProgramAdapter:
    """A ``gepa.GEPAAdapter`` for a promptopt program: candidates are instructions per predictor.

    ``evaluate`` builds the program with the candidate's instructions (the seed's demos stay) and
    runs it through promptopt's :class:`CandidateEvaluator`; ``make_reflective_dataset`` gives, for
    each predictor to update, what it read and wrote on each minibatch example (or why its reply
    could not be read) with the metric's feedback. Proposals come from gepa's own reflection prompt.
    """

    propose_new_texts = None  # gepa's default proposer writes the new instructions

    def __init__(
        self,
        program: Program,
        evaluator: CandidateEvaluator,
        max_chars: int = 2000,
        on_evaluated: Callable[[], None] | None = None,
    ) -> None:
        self.program = program
        self.evaluator = evaluator
        self.max_chars = max_chars
        self.on_evaluated = on_evaluated
        self.seed_components = serialize_components(program.components())
        self.predictors = [n for n, _ in program.named_predictors()]

    def seed_candidate(self) -> dict[str, str]:
        return {n: self.seed_components[f"{n}.instruction"] for n in self.predictors}

    def components(self, candidate: dict[str, str]) -> dict[str, Any]:
        comps = dict(self.seed_components)
        for name, text in candidate.items():
            comps[f"{name}.instruction"] = text
        return comps

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa import EvaluationBatch

        recs = self.evaluator.run(self.components(candidate), batch)
        if self.on_evaluated is not None:
            self.on_evaluated()
        return EvaluationBatch(
            outputs=[r.prediction for r in recs],
            scores=[r.score for r in recs],
            trajectories=recs if capture_traces else None,
        )

    def _clip(self, value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        return text if len(text) <= self.max_chars else text[: self.max_chars] + " …[truncated]"

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name in components_to_update:
            items: list[dict[str, Any]] = []
            rec: Record
            for rec in eval_batch.trajectories or []:
                entries = rec.entries(name)
                if not entries:
                    continue
                e = entries[0]
                if e.outputs:
                    generated: Any = {k: self._clip(v) for k, v in e.outputs.items()}
                else:
                    generated = f"The reply could not be read ({e.error}):\n{self._clip(e.raw or '')}"
                items.append(
                    {
                        "Inputs": {k: self._clip(v) for k, v in e.inputs.items()},
                        "Generated Outputs": generated,
                        "Feedback": rec.feedback or f"This output got a score of {rec.score}.",
                    }
                )
            if items:
                out[name] = items
        return out


class Reflector:
    """gepa's reflection LM (``prompt -> text``) on a promptopt LM, counting its calls."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self.calls = 0

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        self.calls += 1
        return self.lm(messages).text or ""


class Ledger:
    """What earlier processes of one resumable gepa run spent, kept beside gepa's own state.

    gepa resumes from its run directory and counts the metric calls of every process toward
    ``max_metric_calls``; the evaluator of a resumed process only sees its own. The ledger is
    rewritten after every evaluation, so a killed process loses nothing of its account.
    """

    def __init__(self, run_dir: str | None) -> None:
        self.path = None if run_dir is None else Path(run_dir) / "promptopt_accounting.json"
        data = {}
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text())
        self.metric_calls = int(data.get("metric_calls", 0))
        self.seconds = float(data.get("seconds", 0.0))
        self.usage = Usage.from_dict(data.get("usage", {}))
        self.reflection_calls = int(data.get("reflection_calls", 0))

    def total(self, metric_calls: int, seconds: float, usage: Usage, reflection_calls: int) -> dict[str, Any]:
        """This process's spending added to the earlier processes'."""
        both = Usage.from_dict(self.usage.to_dict())
        both.merge(usage)
        return {
            "metric_calls": self.metric_calls + metric_calls,
            "seconds": self.seconds + seconds,
            "usage": both.to_dict(),
            "reflection_calls": self.reflection_calls + reflection_calls,
        }

    def save(self, totals: dict[str, Any]) -> dict[str, Any]:
        if self.path is not None:
            write_json_atomic(self.path, totals)
        return totals


class _LogAdapter:
    def log(self, message: str) -> None:
        log.info(message)


class GepaLibrary(PeerOptimizer):
    """``gepa.optimize`` with :class:`ProgramAdapter` on the program's instructions.

    Merge and a minibatch of 3 are on, as dspy.GEPA sets them; ``RUN_DIR/gepa`` holds gepa's state,
    from which ``resume=True`` continues (a ledger beside it adds what earlier processes spent, as
    gepa counts them toward the budget). ``Budget.metric_calls`` counts the (candidate, example)
    runs actually made; gepa's own count (which includes re-evaluations of a pair, answered from the
    evaluator's records) is ``config['peer_reported_metric_calls']``.
    """

    name: ClassVar[str] = "gepa_lib"
    result_name = "gepa.optimize"
    state_name = "gepa"
    scores_with_promptopt = True

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        max_metric_calls: int,
        reflection_lm: LanguageModel,
        seed: int = 0,
        num_threads: int = 4,
        use_merge: bool = True,
        reflection_minibatch_size: int = 3,
        callbacks: Sequence[object] = (),
        **options: Any,
    ) -> None:
        self.metric = metric
        self.max_metric_calls = max_metric_calls
        self.reflection_lm = reflection_lm
        self.seed = seed
        self.num_threads = num_threads
        self.use_merge = use_merge
        self.reflection_minibatch_size = reflection_minibatch_size
        self.callbacks = tuple(callbacks)
        self.options = options

    def config(self) -> dict[str, Any]:
        return {
            "max_metric_calls": self.max_metric_calls,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "use_merge": self.use_merge,
            "reflection_minibatch_size": self.reflection_minibatch_size,
            **{k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }

    def _search(self, run: PeerRun) -> OptimizationResult:
        import gepa

        program = run.program
        evaluator = run.session.evaluator
        assert evaluator is not None  # the run was given the metric
        ledger = Ledger(run.state_dir)
        reflector = Reflector(self.reflection_lm)
        start = time.perf_counter()
        usage = run.session.usage

        def account() -> dict[str, Any]:
            spent = (evaluator.metric_calls, time.perf_counter() - start, usage, reflector.calls)
            return ledger.save(ledger.total(*spent))

        adapter = ProgramAdapter(program, evaluator, on_evaluated=account)
        found = gepa.optimize(
            seed_candidate=adapter.seed_candidate(),
            trainset=run.train,
            valset=run.val,
            adapter=adapter,
            reflection_lm=reflector,
            max_metric_calls=self.max_metric_calls,
            use_merge=self.use_merge,
            reflection_minibatch_size=self.reflection_minibatch_size,
            run_dir=run.state_dir,
            logger=_LogAdapter(),
            seed=self.seed,
            track_best_outputs=False,
            display_progress_bar=False,
            **self.options,
        )
        totals = account()
        total = Usage.from_dict(totals["usage"])
        val_ids = [e.id for e in run.val]
        candidates = []
        for i, cand in enumerate(found.candidates):
            parents = sorted({int(p) for p in (found.parents[i] or []) if p is not None})
            candidates.append(
                Candidate(
                    id=i,
                    components=adapter.components(cand),
                    parents=parents,
                    origin="seed" if i == 0 else ("merge" if len(parents) > 1 else "reflection"),
                    val_scores={val_ids[int(k)]: float(v) for k, v in found.val_subscores[i].items()},
                    iteration=i,
                    discovered_at=int(found.discovery_eval_counts[i]),
                )
            )
        best_id = int(found.best_idx)
        budget = run.session.budget(
            metric_calls=totals["metric_calls"],
            proposer_calls=totals["reflection_calls"],
            usage=total,
            seconds=totals["seconds"],
        )
        config = {
            **self.config(),
            "resumed_after_metric_calls": ledger.metric_calls,
            "peer_reported_metric_calls": found.total_metric_calls,
        }
        return run.result(
            candidates,
            best_id,
            deserialize_components(candidates[best_id].components),
            budget,
            f"gepa returned after {found.total_metric_calls} of {self.max_metric_calls} metric calls",
            config,
        )
