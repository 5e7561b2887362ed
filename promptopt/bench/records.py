"""The typed records of a LangProBe store: a cell (one optimizer run and its scores) and the seed
program's shared baseline.

Each record is frozen and reads and writes the JSON layout described in :mod:`promptopt.bench.store`
(``to_dict``/``from_dict`` round-trip a stored file exactly). ``from_dict`` raises
:class:`RecordError` naming what is missing or malformed, so a damaged or hand-edited file is reported
as such rather than failing later with a ``KeyError`` deep inside a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from promptopt.bench.stats import PairedLift, pair_by_id, sign_counts, sign_test
from promptopt.lm.usage import Usage
from promptopt.provenance import Provenance

# 2: cells carry their identity and provenance.
SCHEMA = 2

OK, FAILED = "ok", "failed"
BUSY = "busy"  # the status of a cell another process was running: not run here, not stored


class RecordError(ValueError):
    """A stored record that lacks a field or holds one of the wrong kind; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _field(data: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in data:
        raise RecordError(f"missing {where}{name}")
    return data[name]


def _object(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        kind = f"a JSON {type(value).__name__}, not an object"
        raise RecordError(kind if name == "record" else f"its {name} is {kind}")
    return value


@dataclass(frozen=True)
class CellConfig:
    """What a cell's result depends on besides data, LMs and code (see :mod:`promptopt.bench.identity`).

    A seed-program cell (optimizer ``baseline``) has budget 0 and no helper LMs.
    """

    task: str
    program: str
    optimizer: str
    lm: str
    seed: int
    budget: int = 0
    reflection_lm: str | None = None
    proposer_lm: str | None = None
    sizes: tuple[int, ...] = ()
    split_seed: int = 0
    max_tokens: int | None = None
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)
    lm_cache: str = "shared"  # cells written before the option existed shared one cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "program": self.program,
            "optimizer": self.optimizer,
            "lm": self.lm,
            "seed": self.seed,
            "budget": self.budget,
            "reflection_lm": self.reflection_lm,
            "proposer_lm": self.proposer_lm,
            "sizes": list(self.sizes),
            "split_seed": self.split_seed,
            "max_tokens": self.max_tokens,
            "optimizer_options": dict(self.optimizer_options),
            "lm_cache": self.lm_cache,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CellConfig:
        data = _object(data, "config")
        names = ("task", "program", "optimizer", "lm", "seed")
        required = {name: _field(data, name, "config.") for name in names}
        return cls(
            **required,
            budget=data.get("budget") or 0,
            reflection_lm=data.get("reflection_lm"),
            proposer_lm=data.get("proposer_lm"),
            sizes=tuple(data.get("sizes") or ()),
            split_seed=data.get("split_seed", required["seed"]),
            max_tokens=data.get("max_tokens"),
            optimizer_options=dict(data.get("optimizer_options") or {}),
            lm_cache=data.get("lm_cache", "shared"),
        )

    def baseline_part(self) -> dict[str, Any]:
        """The part of the config the seed program's scores depend on (shared by the cell's optimizers)."""
        keep = ("task", "program", "lm", "seed", "sizes", "split_seed", "max_tokens")
        full = self.to_dict()
        return {k: full[k] for k in keep}


@dataclass(frozen=True)
class SplitScores:
    """One program scored on the examples of one split, example by example."""

    score: float
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    errors: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "ids": list(self.ids),
            "scores": list(self.scores),
            "errors": self.errors,
            "usage": self.usage.to_dict(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Any, name: str = "scores") -> SplitScores:
        data = _object(data, name)
        ids, scores = _field(data, "ids", f"{name}."), _field(data, "scores", f"{name}.")
        if len(ids) != len(scores):
            raise RecordError(f"{name} has {len(ids)} example ids but {len(scores)} scores")
        return cls(
            score=_field(data, "score", f"{name}."),
            ids=tuple(ids),
            scores=tuple(scores),
            errors=data.get("errors", 0),
            usage=Usage.from_dict(data.get("usage") or {}),
            seconds=data.get("seconds", 0.0),
        )


@dataclass(frozen=True)
class CellSpending:
    """What the optimizer spent: the budget unit (metric calls), LM calls, tokens, cost and time."""

    metric_calls: int
    lm_calls: int
    tokens: int
    seconds: float
    metric_calls_counted: int = 0  # counted at the metric, for optimizers that report none
    uncached_lm_calls: int | None = None  # None: recorded before LM calls were told apart
    proposer_lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds_this_process: float = 0.0  # the seconds of the last process (a resumed run's share)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric_calls": self.metric_calls,
            "metric_calls_counted": self.metric_calls_counted,
            "lm_calls": self.lm_calls,
            "uncached_lm_calls": self.uncached_lm_calls,
            "proposer_lm_calls": self.proposer_lm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "seconds": self.seconds,
            "seconds_this_process": self.seconds_this_process,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CellSpending:
        data = _object(data, "budget")
        names = ("metric_calls", "lm_calls", "tokens", "seconds")
        required = {name: _field(data, name, "budget.") for name in names}
        return cls(
            **required,
            metric_calls_counted=data.get("metric_calls_counted", 0),
            uncached_lm_calls=data.get("uncached_lm_calls"),
            proposer_lm_calls=data.get("proposer_lm_calls", 0),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            cost=data.get("cost", 0.0),
            seconds_this_process=data.get("seconds_this_process", 0.0),
        )


@dataclass(frozen=True)
class OptimizerSummary:
    """Which optimizer ran, why it stopped, its options and how many candidates it scored."""

    name: str
    stop_reason: str
    config: Mapping[str, Any]
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stop_reason": self.stop_reason,
            "config": dict(self.config),
            "candidates": self.candidates,
        }

    @classmethod
    def from_dict(cls, data: Any) -> OptimizerSummary:
        data = _object(data, "optimizer")
        return cls(
            name=_field(data, "name", "optimizer."),
            stop_reason=data.get("stop_reason") or "",
            config=dict(data.get("config") or {}),
            candidates=data.get("candidates", 0),
        )


# Lift statistics that cells stored by older code lack; they are counted from the per-example scores.
_COUNTED = ("n_distinct", "wins", "losses", "ties", "sign_p")


def _counted(baseline: SplitScores, optimized: SplitScores, n: int | None) -> dict[str, Any]:
    _, base, opt = pair_by_id(baseline.ids, baseline.scores, optimized.ids, optimized.scores)
    wins, losses, ties = sign_counts([o - b for b, o in zip(base, opt, strict=True)])
    return {
        "n_distinct": len(base) if n is None else n,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "sign_p": sign_test(wins, losses),
    }


@dataclass(frozen=True)
class CellNumbers:
    """A finished cell's numbers: both programs on the test split, the paired lift, validation scores,
    what the optimizer spent, its learning curve and the components it adopted."""

    splits: Mapping[str, Sequence[str]]
    baseline_test: SplitScores
    baseline_val: float
    optimized_test: SplitScores
    optimized_val: float
    lift: PairedLift
    spending: CellSpending
    learning_curve: tuple[tuple[float, float], ...]
    components: Mapping[str, Any]
    optimizer: OptimizerSummary

    def to_dict(self) -> dict[str, Any]:
        return {
            "splits": {name: list(ids) for name, ids in self.splits.items()},
            "baseline": {"test": self.baseline_test.to_dict(), "val_score": self.baseline_val},
            "optimized": {"test": self.optimized_test.to_dict(), "val_score": self.optimized_val},
            "lift": self.lift.to_dict(),
            "validation": {"baseline": self.baseline_val, "optimized": self.optimized_val},
            "budget": self.spending.to_dict(),
            "learning_curve": [list(point) for point in self.learning_curve],
            "components": dict(self.components),
            "optimizer": self.optimizer.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellNumbers:
        for name in ("baseline", "optimized", "lift", "budget", "splits"):
            _field(data, name)
        baseline, optimized = _object(data["baseline"], "baseline"), _object(data["optimized"], "optimized")
        validation = _object(data.get("validation") or {}, "validation")
        baseline_test = SplitScores.from_dict(_field(baseline, "test", "baseline."), "baseline.test")
        optimized_test = SplitScores.from_dict(_field(optimized, "test", "optimized."), "optimized.test")
        lift = dict(_object(data["lift"], "lift"))
        if any(name not in lift for name in _COUNTED):
            lift = {**_counted(baseline_test, optimized_test, lift.get("n")), **lift}
        try:
            paired_lift = PairedLift.from_dict(lift)
        except KeyError as exc:
            raise RecordError(f"its lift lacks {exc}") from exc
        return cls(
            splits={name: list(ids) for name, ids in _object(data["splits"], "splits").items()},
            baseline_test=baseline_test,
            baseline_val=validation.get("baseline", baseline.get("val_score")),
            optimized_test=optimized_test,
            optimized_val=validation.get("optimized", optimized.get("val_score")),
            lift=paired_lift,
            spending=CellSpending.from_dict(data["budget"]),
            learning_curve=tuple((x, y) for x, y in data.get("learning_curve") or ()),
            components=dict(data.get("components") or {}),
            optimizer=OptimizerSummary.from_dict(data.get("optimizer") or {"name": ""}),
        )


@dataclass(frozen=True)
class CellError:
    """Why a cell failed: the exception's type and message, and where it was raised."""

    type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: Any) -> CellError:
        data = _object(data, "error")
        return cls(str(data.get("type", "")), str(data.get("message", "")), str(data.get("traceback", "")))

    def describe(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True)
class CellRecord:
    """One cell of the matrix as stored in ``cells/<key>.json``.

    ``status`` is :data:`OK` (``numbers`` set), :data:`FAILED` (``error`` set) or, only in what
    :func:`~promptopt.bench.runner.run_cell` returns and never stored, :data:`BUSY`. ``identity`` is
    the stored identity (compared as a whole, see :class:`~promptopt.bench.identity.CellIdentity`);
    ``reused`` marks a record returned as stored instead of run, and is not written.
    """

    key: str
    status: str
    config: CellConfig
    numbers: CellNumbers | None = None
    error: CellError | None = None
    identity: Mapping[str, Any] | None = None
    provenance: Provenance | None = None
    started_at: str | None = None
    finished_at: str | None = None
    host: str | None = None
    seconds: float | None = None  # the whole cell: baseline, optimizer and test evaluation
    schema: int = SCHEMA
    reused: bool = field(default=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def finished(self) -> CellNumbers:
        """The numbers of a finished cell; raises ``ValueError`` for a failed or busy one."""
        if self.numbers is None:
            raise ValueError(f"cell {self.key} has no numbers: its status is {self.status!r}.")
        return self.numbers

    def as_reused(self) -> CellRecord:
        return replace(self, reused=True)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": self.schema,
            "key": self.key,
            "status": self.status,
            "config": self.config.to_dict(),
            "started_at": self.started_at,
            "host": self.host,
        }
        if self.identity is not None:
            data["identity"] = dict(self.identity)
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        if self.numbers is not None:
            data.update(self.numbers.to_dict())
        data["error"] = None if self.error is None else self.error.to_dict()
        data["finished_at"] = self.finished_at
        data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CellRecord:
        """Read a stored cell; raises :class:`RecordError` naming what it lacks."""
        data = _object(data, "record")
        key, status = _field(data, "key"), _field(data, "status")
        config = CellConfig.from_dict(_field(data, "config"))
        identity = data.get("identity")
        provenance = data.get("provenance")
        return cls(
            key=key,
            status=status,
            config=config,
            numbers=CellNumbers.from_dict(data) if status == OK else None,
            error=None if data.get("error") is None else CellError.from_dict(data["error"]),
            identity=identity if isinstance(identity, Mapping) else None,
            provenance=Provenance.from_dict(provenance) if isinstance(provenance, Mapping) else None,
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            host=data.get("host"),
            seconds=data.get("seconds"),
            schema=data.get("schema", 1),
        )


@dataclass(frozen=True)
class BaselineRecord:
    """The seed program scored on validation and test for one (task, program, lm, seed), stored once in
    ``baselines/<key>.json`` and shared by the cells of every optimizer."""

    key: str
    config: Mapping[str, Any]  # CellConfig.baseline_part() of the cells that share it
    splits: Mapping[str, Sequence[str]]
    val: SplitScores
    test: SplitScores
    identity: Mapping[str, Any] | None = None
    provenance: Provenance | None = None
    finished_at: str | None = None
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": self.schema, "key": self.key, "config": dict(self.config)}
        if self.identity is not None:
            data["identity"] = dict(self.identity)
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        data.update(
            splits={name: list(ids) for name, ids in self.splits.items()},
            val=self.val.to_dict(),
            test=self.test.to_dict(),
            finished_at=self.finished_at,
        )
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BaselineRecord:
        data = _object(data, "record")
        for name in ("key", "config", "splits", "val", "test"):
            _field(data, name)
        identity, provenance = data.get("identity"), data.get("provenance")
        return cls(
            key=data["key"],
            config=dict(_object(data["config"], "config")),
            splits={name: list(ids) for name, ids in _object(data["splits"], "splits").items()},
            val=SplitScores.from_dict(data["val"], "val"),
            test=SplitScores.from_dict(data["test"], "test"),
            identity=identity if isinstance(identity, Mapping) else None,
            provenance=Provenance.from_dict(provenance) if isinstance(provenance, Mapping) else None,
            finished_at=data.get("finished_at"),
            schema=data.get("schema", 1),
        )
