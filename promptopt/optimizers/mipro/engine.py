"""MIPROv2: instruction and demo search with Bayesian optimization (Opsahl-Ong et al., 2024).

1. Bootstrap ``num_candidates - 1`` demo sets per predictor from the teacher's successful
   training runs (set 0 is the seed's own demos).
2. Propose ``num_candidates - 1`` instructions per predictor with a grounded proposer
   (instruction 0 is the seed's own).
3. Search the combinations with Optuna's multivariate TPE: each trial picks an instruction
   index (and a demo-set index) per predictor and is scored on a random minibatch of the
   validation set. Every ``minibatch_full_eval_steps`` trials, and at the end, the combination
   with the best average minibatch score that is not yet fully evaluated is scored on the
   whole validation set. The returned program is the best *fully evaluated* combination.

Runs, resumes and workers — with ``run_dir``:

* ``RUN_DIR/proposals.json`` holds the search space (proposals, demo sets, summaries),
  written once, atomically;
* the Optuna study (default ``sqlite:///RUN_DIR/optuna.db``, or ``storage=<RDB URL>``) holds
  the trials and full evaluations;
* ``compile(..., resume=True)`` continues a killed or stopped run: nothing is proposed again
  and only the missing trials run. A resumed single-worker run ends as the uninterrupted run
  would have — the same trials (combinations, minibatches, scores), candidates, metric calls
  and chosen program — wherever it was killed: every random choice follows from ``seed`` and
  the step's place in the run, and work cut short (a trial, a full evaluation, the
  preparation) is redone as it was and counted once. Resuming a finished run returns its
  result again and evaluates nothing. A damaged ``proposals.json`` or study (unreadable,
  empty, missing beside the other) stops the run with a
  :class:`~promptopt.optimizers.mipro.state.DamagedRunError` naming the file;
* any number of processes may call ``compile(..., run_dir=SAME_DIR, resume=True)`` at once:
  the first prepares the search space while the others wait for it, then all pull trials
  from the shared study until ``num_trials`` are done (exactly that many complete). Each
  worker's result reflects every full evaluation visible when it ends; the last worker to
  finish sees them all, and ``RUN_DIR/result.json`` is rewritten by each, under the lock.
  Workers must share the run directory (it holds the lock); do not start a fresh run
  (``resume=False``) on a directory other workers are using. A trial left running by a dead
  worker on the same host is taken over by the next worker to ask and redone; the study cannot
  tell whether a worker on another host is alive, so its abandoned trials keep counting until
  marked failed by hand (the next trial then takes their place in the run).

Layout of ``RUN_DIR``: ``proposals.json`` (search space), ``optuna.db`` (default storage),
``events.jsonl``, ``result.json`` and ``best_program.json`` (rewritten by each worker when it
ends), ``setup.lock`` / ``search.lock`` (the locks), ``STOP`` (create it to stop every worker
after its current trial; delete it before resuming). Ctrl-C ends a worker cleanly with the
best fully evaluated program; during the preparation (bootstrapping, proposals) there is
nothing to return yet, so it propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.bootstrap import check_limits
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.mipro.run import MIPRORun
from promptopt.optimizers.mipro.search import redacted_url
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    FailureStreak,
    StopOptions,
    Stopper,
)

# auto presets: (num_candidates, num_trials). With one predictor and demo search there are
# num_candidates**2 combinations; the trials cover roughly a third (light) to all (heavy) of them,
# which is where TPE has had enough startup trials to start exploiting.
AUTO_PRESETS: dict[str, tuple[int, int]] = {
    "light": (6, 12),
    "medium": (12, 30),
    "heavy": (18, 60),
}


class MIPROv2:
    """Joint instruction and few-shot search (see the module docstring for the algorithm).

    Args:
        metric: ``metric(example, prediction, trace) -> float | bool | Score``.
        auto: ``"light"`` (6 candidates, 12 trials), ``"medium"`` (12, 30) or ``"heavy"`` (18, 60);
            ``num_candidates`` / ``num_trials`` override the preset's values.
        num_candidates: instructions per predictor, and demo sets per predictor, counting the seed's.
        num_trials: minibatch trials in the whole run (all workers together).
        max_bootstrapped_demos, max_labeled_demos: demo limits per predictor and set (``0`` and
            ``0``: instruction-only search, no demo dimension).
        metric_threshold, teacher, max_rounds: bootstrapping (see :class:`BootstrapFewShot`).
        proposer_lm: the LM that writes the dataset summary and the proposals (default: the task
            LM). ``prompt_model`` is accepted as another name for it.
        proposer_temperature: sampling temperature of proposal calls.
        data_aware, program_aware, tip_aware, fewshot_aware, history_aware: which grounding the
            proposer prompt gets.
        summary_batches, summary_batch_size: training batches the dataset summary is written from.
        minibatch_size: validation examples per trial (capped at the validation set's size). By
            default 25, or fewer with ``max_metric_calls`` so that the budget pays for the trials
            after the seed's and the final full evaluation (see :func:`fitted_minibatch_size`).
        minibatch_full_eval_steps: a full evaluation after every this many completed trials.
        storage: an Optuna storage URL (default: SQLite in ``run_dir``; in memory without one).
        study_name: the study's name in the storage.
        max_metric_calls, max_seconds, max_tokens, max_cost, patience (in trials without a better
            full score), score_threshold, stoppers: when to stop early (``RUN_DIR/STOP`` too).
        seed: every random choice; each follows from the seed and the step's place in the run (a
            trial's slot, a predictor's name), not from the order in which processes ran.
        num_threads: parallel examples in every evaluation.
        max_consecutive_failures: stop after this many task-LM runs in a row could not be scored
            (the LM raised, the metric raised or gave an unusable value; ``None``: never). The run
            is left unfinished, with the cause as its stop reason, and ``resume=True`` continues it.
        allow_unbounded_metric: accept any finite metric value, not only [0, 1].
        callbacks: :class:`~promptopt.optimizers.callbacks.Callback` instances.
        progress: a live progress line and the LM-call estimate on stderr.
    """

    name = "mipro"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        auto: str | None = "light",
        num_candidates: int | None = None,
        num_trials: int | None = None,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        metric_threshold: float | None = None,
        teacher: Program | None = None,
        max_rounds: int = 1,
        proposer_lm: LanguageModel | None = None,
        prompt_model: LanguageModel | None = None,
        proposer_temperature: float = 0.7,
        data_aware: bool = True,
        program_aware: bool = True,
        tip_aware: bool = True,
        fewshot_aware: bool = True,
        history_aware: bool = True,
        summary_batches: int = 2,
        summary_batch_size: int = 5,
        minibatch_size: int | None = None,
        minibatch_full_eval_steps: int = 10,
        storage: str | None = None,
        study_name: str = "mipro",
        max_metric_calls: int | None = None,
        max_seconds: float | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        patience: int | None = None,
        score_threshold: float | None = None,
        stoppers: Sequence[Stopper] = (),
        seed: int = 0,
        num_threads: int = 4,
        failure_score: float = 0.0,
        max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allow_unbounded_metric: bool = False,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> None:
        if auto is not None and auto not in AUTO_PRESETS:
            raise ValueError(f"auto must be one of {sorted(AUTO_PRESETS)} or None, not {auto!r}.")
        if auto is None and (num_candidates is None or num_trials is None):
            raise ValueError("With auto=None give both num_candidates and num_trials.")
        preset = AUTO_PRESETS.get(auto or "", (0, 0))
        self.num_candidates = num_candidates if num_candidates is not None else preset[0]
        self.num_trials = num_trials if num_trials is not None else preset[1]
        if self.num_candidates < 1 or self.num_trials < 1:
            raise ValueError("num_candidates and num_trials must be at least 1.")
        if (minibatch_size is not None and minibatch_size < 1) or minibatch_full_eval_steps < 1:
            raise ValueError("minibatch_size and minibatch_full_eval_steps must be at least 1.")
        if proposer_lm is not None and prompt_model is not None and proposer_lm is not prompt_model:
            raise ValueError("Give the proposer LM once: proposer_lm=... or prompt_model=..., not both.")
        check_limits(max_bootstrapped_demos, max_labeled_demos)
        FailureStreak(max_consecutive_failures)  # checks the limit now, not at compile time
        self.metric = metric
        self.auto = auto
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.metric_threshold = metric_threshold
        self.teacher = teacher
        self.max_rounds = max_rounds
        self.proposer_lm = proposer_lm or prompt_model
        self.proposer_temperature = proposer_temperature
        self.data_aware = data_aware
        self.program_aware = program_aware
        self.tip_aware = tip_aware
        self.fewshot_aware = fewshot_aware
        self.history_aware = history_aware
        self.summary_batches = summary_batches
        self.summary_batch_size = summary_batch_size
        self.minibatch_size = minibatch_size
        self.minibatch_full_eval_steps = minibatch_full_eval_steps
        self.storage = storage
        self.study_name = study_name
        self.max_metric_calls = max_metric_calls
        self.stop_options = StopOptions(
            max_seconds=max_seconds,
            max_tokens=max_tokens,
            max_cost=max_cost,
            patience=patience,
            score_threshold=score_threshold,
            extra=tuple(stoppers),
        )
        self.seed = seed
        self.num_threads = num_threads
        self.failure_score = failure_score
        self.max_consecutive_failures = max_consecutive_failures
        self.allow_unbounded_metric = allow_unbounded_metric
        self.callbacks = list(callbacks)
        self.progress = progress

    def config(self) -> dict[str, Any]:
        keys = [
            "auto",
            "num_candidates",
            "num_trials",
            "max_bootstrapped_demos",
            "max_labeled_demos",
            "metric_threshold",
            "max_rounds",
            "proposer_temperature",
            "data_aware",
            "program_aware",
            "tip_aware",
            "fewshot_aware",
            "history_aware",
            "summary_batches",
            "summary_batch_size",
            "minibatch_size",
            "minibatch_full_eval_steps",
            "study_name",
            "max_metric_calls",
            "seed",
            "failure_score",
            "max_consecutive_failures",
            "allow_unbounded_metric",
        ]
        cfg = {k: getattr(self, k) for k in keys}
        cfg["storage"] = redacted_url(self.storage)
        cfg.update(self.stop_options.to_dict())
        return cfg

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
            trainset: demos are bootstrapped and the dataset summary written from it.
            valset: trials and full evaluations score on it (default: the trainset).
            lm: the task LM (default: the configured one).
            run_dir: where the search space, the study (by default) and the result live.
            resume: continue the run in ``run_dir`` (or join it as another worker) instead of
                starting over.
        """
        return MIPRORun(self, program, trainset, valset, lm, run_dir, resume).execute()
