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

* ``RUN_DIR/search_space.json`` holds the search space (proposals, demo sets, summaries),
  written once, atomically;
* the Optuna study (default ``sqlite:///RUN_DIR/optuna.db``, or ``storage=<RDB URL>``) holds
  the trials and full evaluations;
* ``compile(..., resume=True)`` continues a killed or stopped run: nothing is proposed again
  and only the missing trials run. A resumed single-worker run ends as the uninterrupted run
  would have — the same trials (combinations, minibatches, scores), candidates, metric calls
  and chosen program — wherever it was killed: every random choice follows from ``seed`` and
  the step's place in the run, and work cut short (a trial, a full evaluation, the
  preparation) is redone as it was and counted once. Resuming a finished run returns its
  result again and evaluates nothing. A damaged ``search_space.json`` or study (unreadable,
  empty, missing beside the other) stops the run with a
  :class:`~promptopt.optimizers.mipro.search_space.DamagedRunError` naming the file;
* any number of processes may call ``compile(..., run_dir=SAME_DIR, resume=True)`` at once:
  the first prepares the search space while the others wait for it, then all pull trials
  from the shared study until ``num_trials`` are done (exactly that many complete). Each
  worker's result reflects every full evaluation visible when it ends; the last worker to
  finish sees them all, and ``RUN_DIR/result.json`` is rewritten by each, under the lock.
  Workers must share the run directory (it holds the lock); do not start a fresh run
  (``resume=False``) on a directory other workers are using. A trial left running by a dead
  worker on the same host is taken over by the next worker to ask and redone as it was; one
  whose worker, on any host, stopped recording its heartbeat is failed through Optuna once the
  grace period passes, and its slot is redone. A worker with nothing left to ask waits while
  other workers' trials run, so the last one to finish has seen all ``num_trials`` complete.

Layout of ``RUN_DIR``: ``search_space.json`` (search space), ``optuna.db`` (default storage),
``events.jsonl``, ``result.json`` and ``best_program.json`` (rewritten by each worker when it
ends), ``search_space.lock`` / ``search.lock`` (the locks), ``STOP`` (create it to stop every worker
after its current trial; delete it before resuming). Ctrl-C ends a worker cleanly with the
best fully evaluated program; during the preparation (bootstrapping, proposals) there is
nothing to return yet, so it propagates.
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
from promptopt.optimizers.mipro.config import MIPROConfig
from promptopt.optimizers.mipro.run import MIPRORun
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.stoppers import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    StopOptions,
    Stopper,
)


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
        storage: an Optuna storage URL (default: SQLite in ``run_dir``; in memory without one). A
            fresh run (``resume=False``) on a storage that already holds ``study_name`` is a
            :class:`~promptopt.optimizers.mipro.run_files.StudyExistsError`, never a deleted study.
        study_name: the study's name in the storage.
        heartbeat_interval, heartbeat_grace_period: on a storage, each running trial records a
            heartbeat every ``heartbeat_interval`` seconds; one silent for the grace period (default:
            twice the interval) is failed through Optuna, on whatever host its worker ran, and its
            slot redone by the next worker to ask. ``None``: no heartbeats.
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

    name: ClassVar[str] = "mipro"

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
        heartbeat_interval: int | None = 60,
        heartbeat_grace_period: int | None = None,
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
        if proposer_lm is not None and prompt_model is not None and proposer_lm is not prompt_model:
            raise ValueError("Give the proposer LM once: proposer_lm=... or prompt_model=..., not both.")
        self.metric = metric
        self.teacher = teacher
        self.proposer_lm = proposer_lm or prompt_model
        self.search = MIPROConfig.from_options(
            auto,
            num_candidates,
            num_trials,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            metric_threshold=metric_threshold,
            max_rounds=max_rounds,
            proposer_temperature=proposer_temperature,
            data_aware=data_aware,
            program_aware=program_aware,
            tip_aware=tip_aware,
            fewshot_aware=fewshot_aware,
            history_aware=history_aware,
            summary_batches=summary_batches,
            summary_batch_size=summary_batch_size,
            minibatch_size=minibatch_size,
            minibatch_full_eval_steps=minibatch_full_eval_steps,
            storage=storage,
            study_name=study_name,
            heartbeat_interval=heartbeat_interval,
            heartbeat_grace_period=heartbeat_grace_period,
            max_metric_calls=max_metric_calls,
            seed=seed,
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

    def config(self) -> dict[str, Any]:
        return {
            **self.search.to_dict(),
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
            trainset: demos are bootstrapped and the dataset summary written from it.
            valset: trials and full evaluations score on it (default: the trainset).
            lm: the task LM (default: the configured one).
            run_dir: where the search space, the study (by default) and the result live.
            resume: continue the run in ``run_dir`` (or join it as another worker) instead of
                starting over.
        """
        return MIPRORun(self, program, trainset, valset, lm, run_dir, resume).execute()
