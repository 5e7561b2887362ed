"""Peer optimizers run from our seed program: dspy.GEPA, dspy.MIPROv2, dspy.BootstrapFewShot, gepa.optimize.

Every runner takes the seed program, metric, data, LMs and a budget in metric calls, runs the peer
with its own runtime, and returns an :class:`~promptopt.optimizers.result.OptimizationResult` whose
``best_program`` is *our* program with the peer's instructions and demos imported back, so a harness
scores every optimizer's output on the test split with the same promptopt runtime.

What each peer is given and how its spending is counted:

* ``run_dspy_gepa``: ``dspy.GEPA(max_metric_calls=budget, reflection_lm=dspy_lm(reflection_lm),
  track_stats=True)``; the program runs as a :class:`~promptopt.integrations.dspy.PromptoptModule`
  on ``dspy_lm(task_lm)``. Candidates are all of GEPA's, with per-example validation scores.
* ``run_dspy_mipro``: ``dspy.MIPROv2(auto=None)`` with ``num_candidates``/``num_trials``/minibatching
  planned by :func:`mipro_settings` so that its metric calls approximate the budget.
* ``run_dspy_bootstrap``: ``dspy.BootstrapFewShot`` on at most ``budget - 2 * len(valset)``
  training examples; the seed and the result are then scored on the validation set by promptopt.
* ``run_gepa_library``: ``gepa.optimize`` with :class:`ProgramAdapter`, which evaluates candidate
  instructions with our program and evaluator and builds the reflective dataset from our traces and
  the metric's feedback.

``Budget.metric_calls`` counts the scoring calls the peer actually made (a counting metric wrapper;
dspy.GEPA's extra per-predictor feedback requests are reported apart in ``config``), and LM calls
are counted on the DSPy LMs (callbacks) or, for the gepa library, by ``promptopt.track_usage``.
DSPy's response cache is off, so every DSPy LM call reaches the model. A gepa-library run resumed
from its ``run_dir`` adds what its earlier processes spent (a ledger beside gepa's state), as gepa
itself counts them toward the budget; a resumed dspy.GEPA counts the calls of the resumed process.
The peer's own cumulative count is ``config['peer_reported_metric_calls']``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.io import write_json_atomic
from promptopt.lm.usage import Usage, track_usage
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.evaluation import CandidateEvaluator, Record
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.result import Budget, Candidate, OptimizationResult

log = logging.getLogger("promptopt.peers")

__all__ = [
    "ProgramAdapter",
    "mipro_settings",
    "run_dspy_bootstrap",
    "run_dspy_gepa",
    "run_dspy_mipro",
    "run_gepa_library",
]


# --- shared pieces --------------------------------------------------------------


def _subdir(run_dir: str | Path | None, name: str) -> str | None:
    if run_dir is None:
        return None
    path = Path(run_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _check_data(trainset: Sequence[Example], valset: Sequence[Example]) -> None:
    if not trainset or not valset:
        raise ValueError("A peer run needs a non-empty trainset and valset.")
    for name, data in (("trainset", trainset), ("valset", valset)):
        ids = [e.id for e in data]
        if len(set(ids)) != len(ids):
            raise ValueError(f"The {name} has duplicate example ids; give each example a distinct _id.")


def _learning_curve(candidates: Sequence[Candidate]) -> list[tuple[int, float]]:
    curve: list[tuple[int, float]] = []
    best = -math.inf
    for c in sorted(candidates, key=lambda c: (c.discovered_at, c.id)):
        score = c.val_score
        if c.val_scores and score > best:
            best = score
            curve.append((int(c.discovered_at), float(score)))
    return curve


def _finish(
    name: str,
    program: Program,
    candidates: list[Candidate],
    best_id: int,
    best_components: dict[str, Any],
    budget: Budget,
    stop_reason: str,
    config: dict[str, Any],
    trials: list[dict[str, Any]] | None = None,
) -> OptimizationResult:
    scored = [c for c in candidates if c.val_scores]
    return OptimizationResult(
        optimizer=name,
        candidates=candidates,
        best_id=best_id,
        pareto_front=pareto.front(scored) if scored else [],
        budget=budget,
        learning_curve=_learning_curve(candidates),
        stop_reason=stop_reason,
        trials=trials or [],
        config=config,
        best_program=program.with_components(best_components),
    )


class _DspyAccounting:
    """The DSPy LMs of one run, with call counters, token usage (from the LMs' histories) and wall time."""

    def __init__(self, task_lm: LanguageModel, other_lm: LanguageModel | None) -> None:
        from promptopt.integrations.dspy import CallCounter, dspy_lm

        self.task_counter = CallCounter()
        self.other_counter = CallCounter()
        self.task = dspy_lm(task_lm, callbacks=[self.task_counter])
        self.other = dspy_lm(other_lm, callbacks=[self.other_counter]) if other_lm is not None else None
        self.seconds = 0.0

    @property
    def lms(self) -> list[Any]:
        return [self.task] + ([self.other] if self.other is not None else [])

    @contextmanager
    def running(self) -> Iterator[None]:
        import dspy

        start = time.perf_counter()
        try:
            with dspy.context(lm=self.task):
                yield
        finally:
            self.seconds = time.perf_counter() - start

    def budget(self, metric_calls: int, extra_seconds: float = 0.0) -> Budget:
        entries = [e for lm in self.lms for e in lm.history]

        def total(key: str) -> int:
            return int(sum(int((e.get("usage") or {}).get(key) or 0) for e in entries))

        calls = self.task_counter.calls + self.other_counter.calls
        return Budget(
            metric_calls=metric_calls,
            lm_calls=calls,
            uncached_lm_calls=calls,
            prompt_tokens=total("prompt_tokens"),
            completion_tokens=total("completion_tokens"),
            cost=sum(float(e.get("cost") or 0.0) for e in entries),
            seconds=self.seconds + extra_seconds,
            proposer_lm_calls=self.other_counter.calls,
        )

    def config(self) -> dict[str, Any]:
        recorded = sum(len(lm.history) for lm in self.lms)
        return {
            "task_lm": self.task.model,
            "other_lm": self.other.model if self.other is not None else None,
            "task_lm_calls": self.task_counter.calls,
            "failed_lm_calls": self.task_counter.failed + self.other_counter.failed,
            # DSPy keeps at most settings.max_history_size calls per LM; beyond it tokens are a lower bound.
            "token_counts_complete": recorded >= self.task_counter.calls + self.other_counter.calls,
        }


# --- dspy.GEPA ------------------------------------------------------------------


def run_dspy_gepa(
    program: Program,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    valset: Sequence[Example],
    *,
    task_lm: LanguageModel,
    reflection_lm: LanguageModel,
    max_metric_calls: int,
    seed: int = 0,
    run_dir: str | Path | None = None,
    num_threads: int = 4,
    **gepa_options: Any,
) -> OptimizationResult:
    """Run ``dspy.GEPA`` from ``program`` (``run_dir/dspy_gepa`` holds its resumable state).

    ``gepa_options`` go to ``dspy.GEPA`` (``use_merge``, ``reflection_minibatch_size``, ...).
    """
    import dspy

    from promptopt.integrations.dspy import (
        PromptoptModule,
        components_from_dspy,
        dspy_metric,
        to_dspy_examples,
    )

    train, val = list(trainset), list(valset)
    _check_data(train, val)
    acct = _DspyAccounting(task_lm, reflection_lm)
    scorer = dspy_metric(metric, feedback=True)
    optimizer = dspy.GEPA(
        metric=scorer,
        max_metric_calls=max_metric_calls,
        reflection_lm=acct.other,
        track_stats=True,
        log_dir=_subdir(run_dir, "dspy_gepa"),
        seed=seed,
        num_threads=num_threads,
        **gepa_options,
    )
    with acct.running():
        optimized = optimizer.compile(
            PromptoptModule(program), trainset=to_dspy_examples(train), valset=to_dspy_examples(val)
        )
    details = optimized.detailed_results
    val_ids = [e.id for e in val]
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
        "max_metric_calls": max_metric_calls,
        "seed": seed,
        "num_threads": num_threads,
        "peer_reported_metric_calls": details.total_metric_calls,
        "feedback_metric_calls": scorer.feedback_calls,
        **{k: v for k, v in gepa_options.items() if isinstance(v, (int, float, str, bool, type(None)))},
        **acct.config(),
    }
    return _finish(
        "dspy.GEPA",
        program,
        candidates,
        int(details.best_idx),
        components_from_dspy(optimized, program),
        acct.budget(scorer.calls),
        f"dspy.GEPA returned after {details.total_metric_calls} of {max_metric_calls} metric calls",
        config,
    )


# --- dspy.MIPROv2 ---------------------------------------------------------------

MIPRO_MAX_CANDIDATES = 18  # DSPy's auto="heavy" uses 18
ASSUMED_BOOTSTRAP_SUCCESS = 0.5


@dataclass(frozen=True)
class MiproPlan:
    num_candidates: int
    num_trials: int
    minibatch: bool
    minibatch_size: int
    minibatch_full_eval_steps: int
    estimated_metric_calls: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _mipro_full_evals(num_trials: int, steps: int) -> int:
    """Full evaluations MIPROv2 makes among ``num_trials`` minibatch trials (it numbers optuna trials,
    and each full evaluation is itself added to the study as a trial)."""
    adjusted = num_trials + num_trials // steps + 1 + (1 if num_trials % steps else 0)
    number, fulls = 1, 0  # optuna trial 0 is the default program
    for _ in range(num_trials):
        trial_num = number + 1
        number += 1
        if trial_num % (steps + 1) == 0 or trial_num == adjusted - 1:
            fulls += 1
            number += 1
    return fulls


def mipro_settings(
    max_metric_calls: int,
    n_train: int,
    n_val: int,
    n_predictors: int,
    *,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 4,
    minibatch_size: int = 35,
    minibatch_full_eval_steps: int = 5,
    max_candidates: int = MIPRO_MAX_CANDIDATES,
) -> MiproPlan:
    """Plan dspy.MIPROv2 (``auto=None``) so its metric calls approximate ``max_metric_calls``.

    MIPROv2 spends metric calls on (1) bootstrapping: ``num_candidates - 2`` demo sets are
    bootstrapped, each running the teacher on training examples until it has enough successful
    traces, estimated here at ``min(n_train, max_bootstrapped_demos / 0.5)`` calls per set (half
    the runs succeed); (2) one full validation evaluation of the seed; (3) ``num_trials`` trials,
    each a minibatch of ``min(35, n_val)`` examples, or the whole validation set when it has no more
    than 35 examples (then ``minibatch=False``), plus with minibatching a full evaluation of the
    best-averaging configuration every ``minibatch_full_eval_steps`` trials and at the end.

    The plan takes the most candidates (up to 18) whose trials still reach DSPy's own rule of thumb,
    ``max(2 * V * log2(N), 1.5 * N)`` trials for ``V`` variables (instruction and demos per
    predictor) and ``N`` candidates, and gives the rest of the budget to more trials.
    """
    if max_metric_calls <= 0 or n_val <= 0 or n_train <= 0 or n_predictors <= 0:
        raise ValueError("mipro_settings needs a positive budget, data sizes and predictor count.")
    minibatch = n_val > minibatch_size
    batch = minibatch_size if minibatch else n_val
    steps = minibatch_full_eval_steps
    zeroshot = max_bootstrapped_demos == 0 and max_labeled_demos == 0
    boot_demos = max_bootstrapped_demos or 3  # DSPy bootstraps 3 demos for its proposer when zero-shot
    per_set = min(n_train, math.ceil(boot_demos / ASSUMED_BOOTSTRAP_SUCCESS))
    num_vars = n_predictors * (1 if zeroshot else 2)

    def cost(n: int, trials: int) -> int:
        spent = max(0, n - 2) * per_set + n_val
        if minibatch:
            return spent + trials * batch + _mipro_full_evals(trials, steps) * n_val
        return spent + trials * n_val

    def fit(n: int) -> int:
        trials = 0
        combos = n ** (n_predictors * (1 if zeroshot else 2))
        while cost(n, trials + 1) <= max_metric_calls:
            if minibatch and _mipro_full_evals(trials + 1, steps) >= combos:
                break  # MIPROv2 fails once every configuration has been fully evaluated
            trials += 1
        return trials

    for n in range(max_candidates, 1, -1):
        trials = fit(n)
        wanted = int(max(2 * num_vars * math.log2(n), 1.5 * n))
        if trials >= wanted:
            return MiproPlan(n, trials, minibatch, batch, steps, cost(n, trials))
    trials = max(1, fit(2))
    return MiproPlan(2, trials, minibatch, batch, steps, cost(2, trials))


def run_dspy_mipro(
    program: Program,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    valset: Sequence[Example],
    *,
    task_lm: LanguageModel,
    prompt_lm: LanguageModel,
    max_metric_calls: int,
    seed: int = 0,
    run_dir: str | Path | None = None,
    num_threads: int = 4,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 4,
) -> OptimizationResult:
    """Run ``dspy.MIPROv2`` from ``program`` with settings from :func:`mipro_settings`.

    Candidates are the seed and every configuration MIPROv2 evaluated on the full validation set,
    with the per-example scores its metric calls produced. MIPROv2 cannot resume a killed run;
    ``run_dir/dspy_mipro`` receives its saved candidate programs.
    """
    import dspy

    from promptopt.integrations.dspy import (
        PromptoptModule,
        components_from_dspy,
        dspy_metric,
        module_key,
        to_dspy_examples,
    )

    train, val = list(trainset), list(valset)
    _check_data(train, val)
    plan = mipro_settings(
        max_metric_calls,
        len(train),
        len(val),
        len(program.named_predictors()),
        max_bootstrapped_demos=max_bootstrapped_demos,
        max_labeled_demos=max_labeled_demos,
    )
    acct = _DspyAccounting(task_lm, prompt_lm)
    scorer = dspy_metric(metric)
    optimizer = dspy.MIPROv2(
        metric=scorer,
        prompt_model=acct.other,
        task_model=acct.task,
        auto=None,
        num_candidates=plan.num_candidates,
        max_bootstrapped_demos=max_bootstrapped_demos,
        max_labeled_demos=max_labeled_demos,
        num_threads=num_threads,
        seed=seed,
        log_dir=_subdir(run_dir, "dspy_mipro"),
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
        {"trial": int(t), **{k: v for k, v in row.items() if isinstance(v, (int, float, str, type(None)))}}
        for t, row in sorted(getattr(optimized, "trial_logs", {}).items())
    ]
    config = {
        "max_metric_calls": max_metric_calls,
        "seed": seed,
        "num_threads": num_threads,
        "max_bootstrapped_demos": max_bootstrapped_demos,
        "max_labeled_demos": max_labeled_demos,
        "plan": plan.to_dict(),
        "best_full_eval_score": getattr(optimized, "score", None),
        **acct.config(),
    }
    return _finish(
        "dspy.MIPROv2",
        program,
        candidates,
        by_key[module_key(optimized)],
        components_from_dspy(optimized, program),
        acct.budget(scorer.calls),
        f"dspy.MIPROv2 finished {plan.num_trials} trials",
        config,
        trials,
    )


# --- dspy.BootstrapFewShot --------------------------------------------------------


def run_dspy_bootstrap(
    program: Program,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    valset: Sequence[Example],
    *,
    task_lm: LanguageModel,
    max_metric_calls: int,
    seed: int = 0,
    run_dir: str | Path | None = None,
    num_threads: int = 4,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 16,
) -> OptimizationResult:
    """Run ``dspy.BootstrapFewShot`` (DSPy's defaults: 4 bootstrapped, 16 labeled demos, one round).

    It bootstraps from at most ``max_metric_calls - 2 * len(valset)`` training examples (one metric
    call each, at most); the seed and the compiled program are then scored on the validation set
    with promptopt's evaluator and ``task_lm``, which spends the rest of the budget.
    """
    import dspy

    from promptopt.integrations.dspy import (
        PromptoptModule,
        components_from_dspy,
        dspy_metric,
        to_dspy_examples,
    )

    train, val = list(trainset), list(valset)
    _check_data(train, val)
    n_boot = min(len(train), max_metric_calls - 2 * len(val))
    if n_boot < 1:
        raise ValueError(
            f"A budget of {max_metric_calls} metric calls leaves nothing for bootstrapping after scoring "
            f"two programs on {len(val)} validation examples."
        )
    acct = _DspyAccounting(task_lm, None)
    scorer = dspy_metric(metric)
    optimizer = dspy.BootstrapFewShot(
        metric=scorer,
        max_bootstrapped_demos=max_bootstrapped_demos,
        max_labeled_demos=max_labeled_demos,
        max_rounds=1,
    )
    with acct.running():
        compiled = optimizer.compile(PromptoptModule(program), trainset=to_dspy_examples(train[:n_boot]))
    best_components = components_from_dspy(compiled, program)

    start = time.perf_counter()
    evaluator = CandidateEvaluator(program, metric, num_threads=num_threads, lm=task_lm)
    with track_usage() as usage:
        candidates = []
        for i, comps in enumerate((program.components(), best_components)):
            serialized = serialize_components(comps)
            recs = evaluator.run(serialized, val)
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
    budget = acct.budget(scorer.calls + evaluator.metric_calls, time.perf_counter() - start)
    budget.lm_calls += usage.calls
    budget.uncached_lm_calls += usage.uncached_calls
    budget.prompt_tokens += usage.prompt_tokens
    budget.completion_tokens += usage.completion_tokens
    budget.cost += usage.cost
    best_id = 1 if candidates[1].val_score > candidates[0].val_score else 0
    config = {
        "max_metric_calls": max_metric_calls,
        "seed": seed,
        "bootstrap_examples": n_boot,
        "bootstrap_metric_calls": scorer.calls,
        "max_bootstrapped_demos": max_bootstrapped_demos,
        "max_labeled_demos": max_labeled_demos,
        **acct.config(),
    }
    return _finish(
        "dspy.BootstrapFewShot",
        program,
        candidates,
        best_id,
        best_components if best_id == 1 else program.components(),
        budget,
        "bootstrapped once, then scored on validation",
        config,
    )


# --- the gepa library --------------------------------------------------------------


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


class _Reflector:
    """gepa's reflection LM (``prompt -> text``) on a promptopt LM, counting its calls."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self.calls = 0

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        self.calls += 1
        return self.lm(messages).text or ""


class _Ledger:
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


def run_gepa_library(
    program: Program,
    metric: Callable[..., Any],
    trainset: Sequence[Example],
    valset: Sequence[Example],
    *,
    task_lm: LanguageModel,
    reflection_lm: LanguageModel,
    max_metric_calls: int,
    seed: int = 0,
    run_dir: str | Path | None = None,
    num_threads: int = 4,
    use_merge: bool = True,
    reflection_minibatch_size: int = 3,
    **gepa_options: Any,
) -> OptimizationResult:
    """Run the gepa library's ``optimize`` on our program's instructions.

    Merge and a minibatch of 3 are on, as dspy.GEPA sets them; ``run_dir/gepa`` holds gepa's state,
    from which a later call with the same ``run_dir`` resumes. ``Budget.metric_calls`` counts the
    (candidate, example) runs actually made; gepa's own count (which includes re-evaluations of a
    pair, answered from the evaluator's records) is ``config['peer_reported_metric_calls']``.
    """
    import gepa

    train, val = list(trainset), list(valset)
    _check_data(train, val)
    evaluator = CandidateEvaluator(program, metric, num_threads=num_threads, lm=task_lm)
    gepa_dir = _subdir(run_dir, "gepa")
    ledger = _Ledger(gepa_dir)
    reflector = _Reflector(reflection_lm)
    start = time.perf_counter()
    with track_usage() as usage:

        def account() -> dict[str, Any]:
            spent = (evaluator.metric_calls, time.perf_counter() - start, usage, reflector.calls)
            return ledger.save(ledger.total(*spent))

        adapter = ProgramAdapter(program, evaluator, on_evaluated=account)
        found = gepa.optimize(
            seed_candidate=adapter.seed_candidate(),
            trainset=train,
            valset=val,
            adapter=adapter,
            reflection_lm=reflector,
            max_metric_calls=max_metric_calls,
            use_merge=use_merge,
            reflection_minibatch_size=reflection_minibatch_size,
            run_dir=gepa_dir,
            logger=_LogAdapter(),
            seed=seed,
            track_best_outputs=False,
            display_progress_bar=False,
            **gepa_options,
        )
        totals = account()
    total = Usage.from_dict(totals["usage"])
    val_ids = [e.id for e in val]
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
    budget = Budget(
        metric_calls=totals["metric_calls"],
        lm_calls=total.calls,
        uncached_lm_calls=total.uncached_calls,
        prompt_tokens=total.prompt_tokens,
        completion_tokens=total.completion_tokens,
        cost=total.cost,
        seconds=totals["seconds"],
        proposer_lm_calls=totals["reflection_calls"],
    )
    config = {
        "max_metric_calls": max_metric_calls,
        "resumed_after_metric_calls": ledger.metric_calls,
        "seed": seed,
        "num_threads": num_threads,
        "use_merge": use_merge,
        "reflection_minibatch_size": reflection_minibatch_size,
        "peer_reported_metric_calls": found.total_metric_calls,
        **{k: v for k, v in gepa_options.items() if isinstance(v, (int, float, str, bool, type(None)))},
    }
    from promptopt.optimizers.components import deserialize_components

    return _finish(
        "gepa.optimize",
        program,
        candidates,
        best_id,
        deserialize_components(candidates[best_id].components),
        budget,
        f"gepa returned after {found.total_metric_calls} of {max_metric_calls} metric calls",
        config,
    )
