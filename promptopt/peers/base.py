"""What every peer runner shares: checking its data, its run session, and turning the candidates
it imported into the result."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import RunOptions
from promptopt.optimizers.datasets import check_dataset
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.result import Budget, Candidate, OptimizationResult
from promptopt.optimizers.session import RunSession


def learning_curve(candidates: Sequence[Candidate]) -> list[tuple[int, float]]:
    """(metric calls, best validation score so far) at each candidate that improved on it."""
    curve: list[tuple[int, float]] = []
    best = -math.inf
    for c in sorted(candidates, key=lambda c: (c.discovered_at, c.id)):
        score = c.val_score
        if c.val_scores and score > best:
            best = score
            curve.append((int(c.discovered_at), float(score)))
    return curve


class PeerRun:
    """One peer compile call on a :class:`RunSession`: the run directory (locked), the events and
    the result; the peer's own state lives in ``state_dir`` (a folder of the run directory)."""

    def __init__(
        self,
        result_name: str,
        program: Program,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None,
        *,
        lm: LanguageModel | None,
        run_dir: str | Path | None,
        resume: bool,
        state_name: str,
        callbacks: Sequence[object] = (),
        metric: Callable[..., Any] | None = None,
        num_threads: int = 4,
    ) -> None:
        self.train = check_dataset("trainset", trainset, who=result_name)
        self.val = check_dataset("valset", self.train if valset is None else valset, who=result_name)
        self.program = program
        # A metric only for peers that promptopt's evaluator scores for (the rest score in the peer).
        options = RunOptions(num_threads=num_threads, callbacks=tuple(callbacks), progress=False)
        self.session = RunSession(
            result_name, program, metric, options, lm=lm, run_dir=run_dir, resume=resume
        )
        self.state_dir: str | None = None
        if self.session.rundir is not None:
            path = self.session.rundir.path / state_name
            if not resume and path.exists():
                shutil.rmtree(path)  # a fresh run: the peer must not pick up the earlier one's state
            path.mkdir(parents=True, exist_ok=True)
            self.state_dir = str(path)

    @property
    def task_lm(self) -> LanguageModel:
        if self.session.lm is None:
            raise ValueError(
                "A peer run needs a task LM: pass lm=... to compile or promptopt.configure(lm=...)."
            )
        return self.session.lm

    def run(
        self, search: Callable[[PeerRun], OptimizationResult], name: str, config: dict[str, Any]
    ) -> OptimizationResult:
        with self.session:
            self.session.start(name, config, resumed=False)
            return self.session.end(search(self))

    def result(
        self,
        candidates: list[Candidate],
        best_id: int,
        best_components: dict[str, Any],
        budget: Budget,
        stop_reason: str,
        config: dict[str, Any],
        trials: list[dict[str, Any]] | None = None,
    ) -> OptimizationResult:
        """The result, its ``best_program`` the seed with ``best_components`` (what the peer returned)."""
        scored = [c for c in candidates if c.val_scores]
        return self.session.result(
            candidates,
            best_id,
            budget=budget,
            stop_reason=stop_reason,
            config=config,
            best_program=self.program.with_components(best_components),
            pareto_front=pareto.front(scored) if scored else [],
            learning_curve=learning_curve(candidates),
            trials=trials or [],
        )


class PeerOptimizer:
    """What every peer runner is: its ``compile`` runs the peer on a :class:`PeerRun` in the
    optimizer contract's shape; a subclass names itself and writes ``_search``."""

    name: ClassVar[str]
    result_name: ClassVar[str]  # the peer's name in the result
    state_name: ClassVar[str]  # the folder of the run directory that holds the peer's own state
    scores_with_promptopt: ClassVar[bool] = False  # promptopt's evaluator scores for it
    metric: Callable[..., Any]
    num_threads: int
    callbacks: tuple[object, ...]

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

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
        run = PeerRun(
            self.result_name,
            program,
            trainset,
            valset,
            lm=lm,
            run_dir=run_dir,
            resume=resume,
            state_name=self.state_name,
            callbacks=self.callbacks,
            metric=self.metric if self.scores_with_promptopt else None,
            num_threads=self.num_threads,
        )
        self._check(run)
        return run.run(self._search, self.name, self.config())

    def _check(self, run: PeerRun) -> None:
        """Refuse a run that cannot work, before anything runs."""

    def _search(self, run: PeerRun) -> OptimizationResult:
        raise NotImplementedError
