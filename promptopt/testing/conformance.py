"""The optimizer contract (:mod:`promptopt.optimizers.base`) as one set of tests, run against every
optimizer: subclass :class:`OptimizerConformance` in a test module and give it a ``case`` fixture
returning an :class:`OptimizerCase`; pytest collects every check for every case::

    class TestMine(OptimizerConformance):
        @pytest.fixture
        def case(self):
            return OptimizerCase(
                "mine",
                build=lambda metric, budget, cbs: Mine(metric, max_metric_calls=budget, callbacks=cbs),
                task_lm=lambda: ScriptedLM(toy_reply),
                most_metric_calls=lambda budget, n_train, n_val: budget + n_val,
            )

A check a case cannot pass by design (a STOP file for an optimizer whose library runs the loop)
is declared in the case and skipped with the reason, never silently passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.io import json_safe
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.base import Optimizer
from promptopt.optimizers.callbacks import Callback
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import OptimizationResult
from promptopt.optimizers.rundir import RunDir, RunDirBusyError
from promptopt.testing.faults import Killed, dies_at
from promptopt.testing.toy_task import toy_examples, toy_metric, toy_program

# (metric, budget, callbacks) -> a fresh optimizer
Build = Callable[[Callable[..., Any], int, Sequence[Callback]], Optimizer]


def _train() -> list[Example]:
    return toy_examples(6)


def _val() -> list[Example]:
    return toy_examples(4, offset=10)


@dataclass(frozen=True)
class OptimizerCase:
    """One optimizer, set up to run on the toy task in seconds.

    Attributes:
        most_metric_calls: ``(budget, n_train, n_val) ->`` the most metric calls a run may spend
            (the budget and the overshoot the optimizer documents).
        stops_on_file: whether ``RUN_DIR/STOP`` ends the run between steps (an optimizer whose
            library runs the loop, or one with no loop, says why not in ``stop_skip``).
        resume: ``"exact"`` (a run resumed after a kill ends as the uninterrupted run, budget and
            curve included), ``"continues"`` (it ends with the same candidates, scores and choice,
            though work redone may add to what it spent) or ``"no"`` (``resume_skip`` says why).
        exclusive_run_dir: whether a second process on the same run directory is refused
            (MIPROv2 workers share one on purpose).
        kill_at: the metric call at which the killed run dies.
    """

    name: str
    build: Build
    task_lm: Callable[[], LanguageModel]
    most_metric_calls: Callable[[int, int, int], int]
    budget: int = 30
    metric: Callable[..., Any] = toy_metric
    program: Callable[[], Program] = toy_program
    trainset: Callable[[], list[Example]] = _train
    valset: Callable[[], list[Example]] = _val
    stops_on_file: bool = True
    stop_skip: str = ""
    resume: Literal["exact", "continues", "no"] = "exact"
    resume_skip: str = ""
    exclusive_run_dir: bool = True
    kill_at: int = 8
    requires: tuple[str, ...] = field(default=())  # importable modules it needs

    def compile(
        self,
        *,
        run_dir: Path | None = None,
        resume: bool = False,
        metric: Callable[..., Any] | None = None,
        callbacks: Sequence[Callback] = (),
        program: Program | None = None,
    ) -> OptimizationResult:
        optimizer = self.build(metric or self.metric, self.budget, callbacks)
        return optimizer.compile(
            program or self.program(),
            self.trainset(),
            self.valset(),
            lm=self.task_lm(),
            run_dir=run_dir,
            resume=resume,
        )


class _Events(Callback):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.ended: list[OptimizationResult] = []

    def on_event(self, name: str, event: Any) -> None:
        self.names.append(name)
        if name == "run_end":
            self.ended.append(event["result"])


class _KillAtTheEnd(Callback):
    """Kills the run as it ends: its state and result are saved, the caller never gets them."""

    def on_run_end(self, event: Any) -> None:
        raise Killed


class _StopWhenSeedScored(Callback):
    """Creates the STOP file once the seed has its validation score, as a user would mid-run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_val_evaluated(self, event: Any) -> None:
        self.path.touch()


def comparable(result: OptimizationResult) -> dict[str, Any]:
    """A result as JSON without what differs between equal runs: wall time and worker pids."""
    data = json.loads(json.dumps(json_safe(result.to_dict())))
    data["budget"].pop("seconds", None)
    data["budget"].pop("seconds_by_phase", None)
    for row in data.get("trials", []):
        row.pop("worker", None)
    return data


class OptimizerConformance:
    """The contract's checks; a subclass provides the ``case`` fixture."""

    @pytest.fixture
    def case(self) -> OptimizerCase:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError("Give the suite a case fixture returning an OptimizerCase.")

    @pytest.fixture(autouse=True)
    def _requirements(self, case: OptimizerCase) -> None:
        for module in case.requires:
            pytest.importorskip(module)

    def test_the_seed_is_candidate_zero_and_the_program_is_left_alone(self, case: OptimizerCase) -> None:
        program = case.program()
        before = serialize_components(program.components())
        result = case.compile(program=program)
        seed = result.candidates[0]
        assert seed.origin == "seed"
        assert seed.components == before
        assert serialize_components(program.components()) == before
        assert result.best_program is not None
        best = serialize_components(result.best_program.components())
        assert best == result.candidates[result.best_id].components

    def test_the_budget_is_respected(self, case: OptimizerCase) -> None:
        result = case.compile()
        bound = case.most_metric_calls(case.budget, len(case.trainset()), len(case.valset()))
        assert 0 < result.budget.metric_calls <= bound, (result.budget.metric_calls, bound)
        assert result.budget.lm_calls >= result.budget.metric_calls > 0

    def test_a_stop_file_stops_the_run(self, case: OptimizerCase, tmp_path: Path) -> None:
        if not case.stops_on_file:
            pytest.skip(case.stop_skip)
        full = case.compile(run_dir=tmp_path / "full")
        stop = _StopWhenSeedScored(tmp_path / "stopped" / "STOP")
        stopped = case.compile(run_dir=tmp_path / "stopped", callbacks=[stop])
        assert "stop file" in stopped.stop_reason
        assert stopped.budget.metric_calls < full.budget.metric_calls

    def test_a_run_resumed_after_a_kill_ends_as_the_uninterrupted_run(
        self, case: OptimizerCase, tmp_path: Path
    ) -> None:
        if case.resume == "no":
            pytest.skip(case.resume_skip)
        full = case.compile(run_dir=tmp_path / "full")
        with pytest.raises(Killed):
            case.compile(run_dir=tmp_path / "killed", metric=dies_at(case.metric, case.kill_at))
        resumed = case.compile(run_dir=tmp_path / "killed", resume=True)
        _assert_resumed_to(case, resumed, full)
        if case.resume != "exact":
            assert resumed.best_id == full.best_id
            assert resumed.budget.metric_calls >= case.kill_at - 1

    def test_a_run_killed_as_it_ends_resumes_to_the_same_result(
        self, case: OptimizerCase, tmp_path: Path
    ) -> None:
        if case.resume == "no":
            pytest.skip(case.resume_skip)
        full = case.compile(run_dir=tmp_path / "full")
        with pytest.raises(Killed):
            case.compile(run_dir=tmp_path / "killed", callbacks=[_KillAtTheEnd()])
        resumed = case.compile(run_dir=tmp_path / "killed", resume=True)
        _assert_resumed_to(case, resumed, full)

    def test_the_result_round_trips(self, case: OptimizerCase, tmp_path: Path) -> None:
        result = case.compile(run_dir=tmp_path / "run")
        back = OptimizationResult.from_dict(json.loads(json.dumps(json_safe(result.to_dict()))))
        assert comparable(back) == comparable(result)
        saved = OptimizationResult.load(tmp_path / "run" / "result.json", case.program())
        assert comparable(saved) == comparable(result)
        assert saved.best_program is not None
        assert saved.best_program.components() == result.best_program.components()  # type: ignore[union-attr]

    def test_events_open_with_run_start_and_close_with_the_result(self, case: OptimizerCase) -> None:
        events = _Events()
        result = case.compile(callbacks=[events])
        assert events.names[0] == "run_start" and events.names[-1] == "run_end"
        assert events.ended == [result]

    def test_a_run_directory_in_use_is_refused(self, case: OptimizerCase, tmp_path: Path) -> None:
        if not case.exclusive_run_dir:
            pytest.skip("its workers share one run directory on purpose")
        held = RunDir(tmp_path / "run")
        held.lock()
        try:
            with pytest.raises(RunDirBusyError):
                case.compile(run_dir=tmp_path / "run")
        finally:
            held.unlock()

    def test_bad_data_is_refused_before_anything_runs(self, case: OptimizerCase) -> None:
        optimizer = case.build(case.metric, case.budget, ())
        with pytest.raises(ValueError, match="non-empty trainset"):
            optimizer.compile(case.program(), [], case.valset(), lm=case.task_lm())
        twice = case.trainset()[:2] * 2
        with pytest.raises(ValueError, match="duplicate example ids"):
            optimizer.compile(case.program(), twice, case.valset(), lm=case.task_lm())


def _assert_resumed_to(case: OptimizerCase, resumed: OptimizationResult, full: OptimizationResult) -> None:
    """A resumed run ends as the uninterrupted one: exactly, or (for an optimizer whose resume repeats
    part of its search) with the same candidates and scores."""
    if case.resume == "exact":
        assert comparable(resumed) == comparable(full)
    else:
        assert [(c.components, c.val_scores) for c in resumed.candidates] == [
            (c.components, c.val_scores) for c in full.candidates
        ]
